"""kara-storage 2.x's ``kara_storage.abc`` names, as aliases of the kara classes.

Only aliases live here (no second class hierarchy): ``Serializer`` is
:class:`kara_core.serialization.Serializer`, ``Dataset`` is
:class:`kara_core.row.RowDataset`, ``KaraStorageBase`` is :class:`kara_core.KaraStorage`.
2.x's internal storage and iterator interfaces have no kara counterpart; asking for them
says what to use instead.
"""

from __future__ import annotations

from typing import Any

from ..serialization import Serializer

__all__ = ["Dataset", "KaraStorageBase", "Serializer"]

_REPLACED = {
    "StorageBase": "kara's storage interface is kara_core.backend.Backend (see docs/plugins.md)",
    "StorageFileBase": "kara backends return plain binary streams (Backend.open_read / open_append)",
    "DatasetIterator": "kara-torch orders records itself (make_torch_dataset(shuffle=..., seed=...))",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use: the row package and the storage facade are heavier than this module.
    if name == "Dataset":
        from ..row import RowDataset

        return RowDataset
    if name == "KaraStorageBase":
        from ..storage import KaraStorage

        return KaraStorage
    if name in _REPLACED:
        raise AttributeError(f"kara_core.abc has no {name}: {_REPLACED[name]}")
    raise AttributeError(f"module 'kara_core.abc' has no attribute {name!r}")
