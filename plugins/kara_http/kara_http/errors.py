"""Errors specific to HTTP stores; all derive from :mod:`kara_core.errors` classes."""

from __future__ import annotations

from kara_core.errors import BackendError, KaraError

__all__ = ["ListingNotSupportedError", "RangeNotSupportedError"]


class RangeNotSupportedError(BackendError):
    """The server answered a ranged request with the whole object (it ignores ``Range``).

    kara refuses to continue: reading records would download whole block files once per
    record. Serve the store with a server that supports ``Range`` (nginx, Apache, OSS,
    S3, ``kara serve``, ``python -m http.server`` does not).
    """


class ListingNotSupportedError(KaraError, NotImplementedError):
    """Listing a folder was asked of a static web server, which cannot list.

    Row datasets never need it (blocks are found by probing ``0.blk``, ``1.blk``, ...);
    commands that enumerate namespaces or keys need a ``kara serve`` gateway or the
    underlying store's own URL.
    """
