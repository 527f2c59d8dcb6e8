"""kara-file: the file:// backend of kara."""

from .backend import FileBackend, FileOptions

__all__ = ["FileBackend", "FileOptions"]
