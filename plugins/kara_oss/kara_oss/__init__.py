"""kara-oss: the oss:// backend of kara (Aliyun OSS, through oss2).

``KaraStorage("oss://ENDPOINT/BUCKET/prefix", app_key=..., app_secret=...)``. Importing
this package is cheap: oss2 is imported when a store is opened (``OSSBackend`` is loaded
on first access). :mod:`kara_oss.testing` has an OSS-protocol server for offline tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OSSAppender", "OSSBackend", "OSSOptions"]


def __getattr__(name: str) -> Any:
    if name in ("OSSBackend", "OSSAppender"):
        from . import backend

        return getattr(backend, name)
    if name == "OSSOptions":
        from .options import OSSOptions

        return OSSOptions
    raise AttributeError(name)
