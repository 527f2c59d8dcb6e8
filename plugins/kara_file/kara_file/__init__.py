"""kara-file: the file:// backend of kara.

Importing this package stays cheap: :class:`FileBackend` (and the local-disk I/O it
uses) and :class:`FileOptions` (pydantic) load on first access, so loading kara's
plugins imports only the wiring.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FileBackend", "FileOptions"]


def __getattr__(name: str) -> Any:
    if name == "FileBackend":
        from .backend import FileBackend

        return FileBackend
    if name == "FileOptions":
        from .options import FileOptions

        return FileOptions
    raise AttributeError(f"module 'kara_file' has no attribute {name!r}")
