"""Row datasets over any Backend, in the kara-storage 2.x (api 2) layout.

:class:`RowStore` opens, lists, describes and verifies the datasets of a store;
:class:`RowDataset` is one opened version. See docs/rows.md for the design (crash
safety, locks, read paths and the bytes on storage).
"""

from __future__ import annotations

from .dataset import RowDataset
from .shard import RowShard
from .store import DEFAULT_BUFFER_SIZE, DEFAULT_MAX_FILE_SIZE, RowStore

__all__ = ["DEFAULT_BUFFER_SIZE", "DEFAULT_MAX_FILE_SIZE", "RowDataset", "RowShard", "RowStore"]
