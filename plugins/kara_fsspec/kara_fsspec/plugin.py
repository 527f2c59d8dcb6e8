"""Entry point of kara-fsspec: the fallback backend for schemes fsspec knows (cheap to import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kara_core import hookimpl

if TYPE_CHECKING:
    from kara_core.url import StoreURL

    from .backend import FsspecBackend
    from .options import FsspecOptions


def _factory(url: StoreURL, options: FsspecOptions) -> FsspecBackend:
    from .backend import FsspecBackend

    return FsspecBackend.from_url(url, options)


def fsspec_knows(scheme: str) -> bool:
    """True if fsspec has an implementation registered for ``scheme`` (installed or not)."""
    from fsspec.registry import known_implementations, registry

    return scheme in known_implementations or scheme in registry


@hookimpl
def kara_register_backends(register: Callable[..., None]) -> None:
    """Register the fallback for every scheme fsspec knows and no kara plugin owns."""
    register(
        "*",
        _factory,
        "kara_fsspec.options:FsspecOptions",
        "any fsspec filesystem: s3://bucket/prefix, az://container/prefix, gs://bucket/prefix, ... "
        "(options: the filesystem's own)",
        claims=fsspec_knows,
    )
