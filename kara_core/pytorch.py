"""``kara_storage.pytorch``, the 2.x module name of :func:`kara_core.make_torch_dataset`.

torch is imported by kara-torch when the function is called, never by this module.
"""

from __future__ import annotations

from . import make_torch_dataset
from .row import RowDataset

__all__ = ["RowDataset", "make_torch_dataset"]
