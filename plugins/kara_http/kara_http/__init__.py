"""kara-http: read any kara store over HTTP(S), and serve one with ``kara serve``.

Importing this package stays cheap (no HTTP client library): the backend loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HTTPBackend", "HTTPOptions", "ListingNotSupportedError", "RangeNotSupportedError"]


def __getattr__(name: str) -> Any:
    if name == "HTTPBackend":
        from .backend import HTTPBackend

        return HTTPBackend
    if name == "HTTPOptions":
        from .options import HTTPOptions

        return HTTPOptions
    if name in ("ListingNotSupportedError", "RangeNotSupportedError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'kara_http' has no attribute {name!r}")
