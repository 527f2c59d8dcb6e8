"""Store URLs -> (scheme, location, options), validated with pydantic, routed to plugins.

``file:///abs/path``, ``file://relative/path`` (relative to the working directory, as in
kara-storage 2.x), ``oss://endpoint/bucket/prefix``, ``http(s)://host/prefix``: the core
only splits off the scheme and validates the shape; the plugin that registered the
scheme interprets ``location`` and validates the keyword options with its own model.

The models (:mod:`kara_core.urlmodels`, and pydantic under them) load on first use:
:func:`open_backend` opens a plain URL with plain options through the plugin's
``open_plain`` fast path (:func:`plain_store_url`), which a fresh process reading a
file:// store takes without importing pydantic; anything else goes through the models
(the fast path gives the backend they would give, and leaves every error to them).

This module owns opening backends by URL (:func:`open_backend`) and opening them again
in another process: a backend it opened pickles as its URL and options
(:func:`reopen_backend` on the other side), registered with :mod:`copyreg` for the
backend's class, so nothing is stored on the backend object itself.
"""

from __future__ import annotations

import copyreg
import pickle
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backend import Backend
from .errors import ConfigurationError
from .plugins import get_backend_spec

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from .urlmodels import BackendOptions, StoreURL

__all__ = [
    "BackendOptions",
    "OpenedWith",
    "StoreURL",
    "open_backend",
    "opened_with",
    "parse_store_url",
    "reopen_backend",
]


def __getattr__(name: str) -> Any:
    # The models (and pydantic under them) load on first use: opening a store whose URL
    # and options are plain never needs them (see open_backend).
    if name in ("StoreURL", "BackendOptions"):
        from . import urlmodels

        return getattr(urlmodels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BAD_URL = (
    "{url!r} is not a store URL: expected scheme://location, for example "
    "file:///data/store, file://relative/store, oss://endpoint/bucket/prefix or https://host/prefix"
)


def parse_store_url(url: str) -> StoreURL:
    """Split ``url`` into scheme and location, or raise :class:`ConfigurationError`."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a string, got {type(url).__name__}")
    scheme, sep, location = url.strip().partition("://")
    if not sep:
        raise ConfigurationError(_BAD_URL.format(url=url))
    from pydantic import ValidationError

    from .urlmodels import StoreURL

    try:
        return StoreURL(raw=url, scheme=scheme, location=location)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid store URL {url!r}: {_describe(exc)}") from None


#: The scheme pattern of StoreURL (kara_core.urlmodels.SCHEME), without its module.
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def plain_store_url(url: Any) -> tuple[str, str] | None:
    """``(scheme, location)`` exactly as :func:`parse_store_url` gives them, without pydantic.

    Only for the plain common case: ``url`` an exact ``str`` whose scheme and location
    :class:`StoreURL` accepts unchanged (an ASCII scheme of letters, digits, ``+.-``
    starting with a letter; no NUL, CR or LF in the location). Anything else
    returns None, and the caller takes :func:`parse_store_url`, which raises the error.
    """
    if type(url) is not str:
        return None
    scheme, sep, location = url.strip().partition("://")
    if not sep or not scheme or not scheme[0].isascii() or not scheme[0].isalpha():
        return None
    if not _SCHEME_CHARS.issuperset(scheme) or "\x00" in location or "\r" in location or "\n" in location:
        return None
    return scheme.lower(), location


def _describe(exc: ValidationError) -> str:
    # Never echo input values: options may hold secrets.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "value"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown option {where!r}")
        else:
            parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def validate_options(scheme: str, model: type[BaseModel], options: dict[str, Any]) -> BaseModel:
    """Validate keyword options with a plugin's model; errors never echo the values."""
    from pydantic import ValidationError

    try:
        return model(**options)
    except ValidationError as exc:
        valid = ", ".join(sorted(model.model_fields)) or "none"
        raise ConfigurationError(
            f"bad options for {scheme}:// store: {_describe(exc)} (valid options: {valid})"
        ) from None


def open_backend(url: str, **options: Any) -> Backend:
    """Open the backend for ``url`` through the plugin that registered its scheme.

    The backend remembers how it was opened (:func:`opened_with`): it pickles as "open
    this URL with these options", so another process (a DataLoader worker) opens its
    own connections instead of receiving copies of this one's.
    """
    plain = plain_store_url(url)
    backend = None
    if plain is not None:
        # The fast path: the plugin opens a plain URL with plain options itself (no
        # pydantic), or returns None and the models below validate (and raise) as ever.
        spec = get_backend_spec(plain[0], url)
        if spec.open_plain is not None:
            backend = spec.open_plain(url, plain[1], options)
    if backend is None:
        parsed = parse_store_url(url)
        if plain is None:  # else the spec is the one found above: same scheme
            spec = get_backend_spec(parsed.scheme, url)
        validated = validate_options(parsed.scheme, spec.options_model, options)
        backend = spec.factory(parsed, validated)
    _remember(backend, OpenedWith(url, dict(options)))
    # copyreg is the standard library's table of pickling functions for types defined
    # elsewhere; pickle consults it before the object's own __reduce_ex__.
    copyreg.pickle(type(backend), _pickle_backend)
    return backend


@dataclass(frozen=True)
class OpenedWith:
    """The URL and keyword options a backend was opened with (enough to open it again)."""

    url: str
    options: dict[str, Any]

    def __repr__(self) -> str:
        # Option values may be secrets (app_secret, token): show their names only.
        return f"OpenedWith(url={self.url!r}, options={sorted(self.options)})"


#: id(backend) -> how it was opened, for the backends open_backend opened and that are
#: alive: keyed by identity (a backend may define __eq__), the entry is dropped when the
#: backend is collected, and nothing is stored on the backend itself.
_opened: dict[int, OpenedWith] = {}


def _remember(backend: Backend, opened: OpenedWith) -> None:
    _opened[id(backend)] = opened
    weakref.finalize(backend, _opened.pop, id(backend), None)


def opened_with(backend: Backend) -> OpenedWith | None:
    """Return how ``backend`` was opened by :func:`open_backend`, or None if built by hand."""
    return _opened.get(id(backend))


def reopen_backend(url: str, options: dict[str, Any]) -> Backend:
    """Open ``url`` again with ``options``: what an unpickled backend is."""
    return open_backend(url, **options)


def _pickle_backend(backend: Backend) -> Any:
    opened = opened_with(backend)
    if opened is None:
        # Built by hand (the same class can be both): pickle it as the class says.
        return backend.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
    return (reopen_backend, (opened.url, opened.options))
