"""Test doubles built on the file backend, for kara's tests and plugins' own.

:class:`NoLocalFilesBackend` is a folder that kara must treat as a remote store: it
reports no local paths, so saves, loads, gc and readers take the code paths of object
stores (downloads to staging files, packs of small files, first-sighting ages, windowed
reads) while the bytes stay on the local disk where a test can damage or count them.
"""

from __future__ import annotations

from kara_core.backend import Capabilities

from .backend import FileBackend

__all__ = ["NoLocalFilesBackend"]


class NoLocalFilesBackend(FileBackend):
    """The file backend seen as a store without local files.

    Its capabilities are the defaults with ``local_path=False`` (no server-side copy, no
    parallel or streamed reads); a subclass sets ``capabilities`` to add those, and
    overrides ``read`` / ``open_read`` / ``open_range`` to count or damage what is read.
    """

    capabilities = Capabilities(local_path=False)

    def local_path(self, path: str) -> str | None:
        """None: nothing of this store is to be opened as a local file."""
        return None
