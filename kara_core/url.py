"""Store URLs -> (scheme, location, options), validated with pydantic, routed to plugins.

``file:///abs/path``, ``file://relative/path`` (relative to the working directory, as in
kara-storage 2.x), ``oss://endpoint/bucket/prefix``, ``http(s)://host/prefix``: the core
only splits off the scheme and validates the shape; the plugin that registered the
scheme interprets ``location`` and validates the keyword options with its own model.

This module owns opening backends by URL (:func:`open_backend`) and opening them again
in another process: a backend it opened pickles as its URL and options
(:func:`reopen_backend` on the other side), registered with :mod:`copyreg` for the
backend's class, so nothing is stored on the backend object itself.
"""

from __future__ import annotations

import copyreg
import pickle
import re
import weakref
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .backend import Backend
from .errors import ConfigurationError
from .plugins import get_backend_spec

__all__ = [
    "BackendOptions",
    "OpenedWith",
    "StoreURL",
    "open_backend",
    "opened_with",
    "parse_store_url",
    "reopen_backend",
]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


class StoreURL(BaseModel):
    """A parsed store URL. ``location`` is everything after ``scheme://``."""

    model_config = ConfigDict(frozen=True)

    raw: str
    scheme: str
    location: str

    @field_validator("scheme")
    @classmethod
    def _scheme_is_valid(cls, value: str) -> str:
        if not _SCHEME.match(value):
            raise ValueError(f"invalid scheme {value!r}")
        return value.lower()

    @field_validator("location")
    @classmethod
    def _location_is_clean(cls, value: str) -> str:
        if any(ch in value for ch in "\x00\r\n"):
            raise ValueError("control characters are not allowed in a store URL")
        return value

    def __str__(self) -> str:
        return f"{self.scheme}://{self.location}"


class BackendOptions(BaseModel):
    """Base of every plugin's options model: unknown options are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def parse_store_url(url: str) -> StoreURL:
    """Split ``url`` into scheme and location, or raise :class:`ConfigurationError`."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a string, got {type(url).__name__}")
    scheme, sep, location = url.strip().partition("://")
    if not sep:
        raise ConfigurationError(
            f"{url!r} is not a store URL: expected scheme://location, for example "
            "file:///data/store, file://relative/store, oss://endpoint/bucket/prefix or https://host/prefix"
        )
    try:
        return StoreURL(raw=url, scheme=scheme, location=location)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid store URL {url!r}: {_describe(exc)}") from None


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
    parsed = parse_store_url(url)
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
