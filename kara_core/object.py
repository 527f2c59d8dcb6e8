"""``kara_storage.object``, the 2.x module name of the directory-version layer.

Its names are those of :mod:`kara_core.obj`. 2.x's ``ObjectDataset`` was an internal
uploader built on 2.x's storage classes; asking for it says what to use instead.
"""

from __future__ import annotations

from typing import Any

from .obj import FileEntry, GCReport, LinkEntry, LoadPlan, Manifest, ObjectStore, UnmanagedFilesError

__all__ = ["FileEntry", "GCReport", "LinkEntry", "LoadPlan", "Manifest", "ObjectStore", "UnmanagedFilesError"]


def __getattr__(name: str) -> Any:
    if name == "ObjectDataset":
        raise AttributeError(
            "kara_core.object has no ObjectDataset: save and load folders with "
            "KaraStorage.save_directory / load_directory (or KaraStorage(...).objects, an ObjectStore)"
        )
    raise AttributeError(f"module 'kara_core.object' has no attribute {name!r}")
