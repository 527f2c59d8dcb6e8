"""kara-fsspec: every fsspec filesystem as a kara store (S3, Azure Blob, GCS, memory, ...).

``KaraStorage("s3://bucket/prefix", endpoint_url=..., key=..., secret=...)``: a URL whose
scheme no other kara plugin registered and that fsspec knows opens through this plugin,
with the filesystem's own options. :func:`open_fsspec` opens any fsspec URL directly,
even one whose scheme another plugin owns (``memory://`` when kara's example memory
plugin is installed). Importing this package is cheap: fsspec is imported when a store
is opened. :mod:`kara_fsspec.testing` starts moto's S3 server and Azurite for tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FsspecBackend", "FsspecOptions", "WholeObjectAppender", "open_fsspec"]


def __getattr__(name: str) -> Any:
    if name in ("FsspecBackend", "WholeObjectAppender", "open_fsspec"):
        from . import backend

        return getattr(backend, name)
    if name == "FsspecOptions":
        from .options import FsspecOptions

        return FsspecOptions
    raise AttributeError(name)
