"""Directory versions: save a folder as a version and load it back, on any backend.

The api-2 ``obj/`` layout of kara-storage 2.x (see docs/objects.md): content-addressed
blobs ``data/<md5>_<sha1>``, one manifest per version ``vers/<v>.json`` and
``meta.json``; kara adds a sidecar ``kara/<v>.json`` (symbolic links, empty folders)
that 2.x never opens.
"""

from __future__ import annotations

from .load import LoadPlan, UnmanagedFilesError
from .manifest import FileEntry, LinkEntry, Manifest
from .store import GCReport, ObjectStore

__all__ = ["FileEntry", "GCReport", "LinkEntry", "LoadPlan", "Manifest", "ObjectStore", "UnmanagedFilesError"]
