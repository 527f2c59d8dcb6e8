"""kara-torch: row datasets as PyTorch IterableDatasets.

``kara_core.make_torch_dataset(ds, shuffle=True, ...)`` is the usual way in; this package
also exports :class:`KaraTorchDataset` and :func:`make_torch_dataset` directly. Importing
the package does not import torch (kara loads its entry point at start-up).
"""

from __future__ import annotations

from typing import Any

__all__ = ["KaraTorchDataset", "make_torch_dataset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'kara_torch' has no attribute {name!r}")
