"""Options of fsspec stores: the filesystem's own keyword arguments, checked against its
signature, and the secrets among them (which must never show in errors or logs).

No fsspec import at module level: this module is loaded with the entry point.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import ConfigDict

from kara_core.errors import ConfigurationError, MissingPluginError
from kara_core.url import BackendOptions

__all__ = [
    "BASE_OPTIONS",
    "FsspecOptions",
    "accepted_options",
    "check_options",
    "filesystem_class",
    "missing_package",
]

#: Keyword arguments every fsspec filesystem takes (``AbstractFileSystem`` and
#: ``AsyncFileSystem`` read them from ``**kwargs``).
BASE_OPTIONS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache", "asynchronous", "loop"}
)


class FsspecOptions(BackendOptions):
    """Options of a store opened through fsspec: any keyword, checked by the factory.

    They are the filesystem's own (``endpoint_url``, ``key``, ``secret`` for s3fs;
    ``connection_string``, ``account_name``, ``account_key`` for adlfs; ``project``,
    ``token`` for gcsfs): :func:`check_options` refuses names the filesystem's
    signature does not take, when the signature says.
    """

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    def __repr__(self) -> str:
        # Values may be credentials: name the options, never show them.
        return f"FsspecOptions({', '.join(sorted(self.model_extra or {}))})"

    __str__ = __repr__


def missing_package(scheme: str, message: str, module: str) -> str:
    """The ``pip install`` argument for a filesystem whose package is missing.

    fsspec's registry says it in prose ("Install s3fs to access S3", 'requires "paramiko"
    to be installed'); the class's top-level module is the fallback guess.
    """
    quoted = re.findall(r'"([A-Za-z0-9_.\-\[\]]+)"', message)
    if quoted:
        return " ".join(quoted)
    named = re.search(r"install\s+([A-Za-z0-9_.\-\[\]]+)", message, re.I)
    if named:
        return named.group(1)
    return module.split(".")[0]


def filesystem_class(scheme: str) -> type:
    """The fsspec filesystem class of ``scheme``.

    Raises :class:`MissingPluginError` with the exact ``pip install`` when fsspec knows
    the scheme but its package is not installed.
    """
    import fsspec
    from fsspec.registry import known_implementations

    try:
        return fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        known = known_implementations.get(scheme, {})
        package = missing_package(scheme, known.get("err", str(exc)), known.get("class", scheme))
        raise MissingPluginError(f"filesystem for '{scheme}://'", package, [scheme + " (kara-fsspec)"]) from None
    except ValueError:
        raise ConfigurationError(f"fsspec has no filesystem for '{scheme}://'") from None


def accepted_options(cls: type) -> frozenset[str] | None:
    """Keyword names the constructor of ``cls`` accepts, or None if it takes any name.

    Follows ``**kwargs`` up the class hierarchy to fsspec's base classes (which forward
    them into :data:`BASE_OPTIONS`); a class whose ``**kwargs`` go elsewhere accepts
    anything as far as the signature can tell.
    """
    from fsspec import AbstractFileSystem
    from fsspec.asyn import AsyncFileSystem

    names: set[str] = set(BASE_OPTIONS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass in (AbstractFileSystem, AsyncFileSystem):
            return frozenset(names)
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return frozenset(names)
    return None


def check_options(scheme: str, cls: type, options: dict[str, Any]) -> None:
    """Raise :class:`ConfigurationError` naming options ``cls`` does not take (values never shown)."""
    accepted = accepted_options(cls)
    if accepted is None:
        return
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted - BASE_OPTIONS))
        raise ConfigurationError(
            f"bad options for {scheme}:// store: unknown option(s) {', '.join(map(repr, unknown))} "
            f"for {cls.__module__}.{cls.__qualname__} (valid options: {valid})"
        )
