"""kara: versioned row datasets and directory versions for ML training data.

``import kara_core as kara_storage`` runs code written for kara-storage 2.1.5 unchanged.
This module imports nothing heavy: storage plugins load their libraries lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors, serialization
from .backend import Backend, Capabilities
from .errors import KaraError
from .plugins import hookimpl, list_plugins
from .storage import KaraStorage
from .version import __version__, version

__all__ = [
    "Backend",
    "Capabilities",
    "KaraError",
    "KaraStorage",
    "RowDataset",
    "__version__",
    "errors",
    "hookimpl",
    "list_plugins",
    "make_torch_dataset",
    "serialization",
    "version",
]


def make_torch_dataset(ds: Any, shuffle: bool = False, auto_distributed: bool = True, **kwargs: Any) -> Any:
    """Wrap a row dataset as a ``torch.utils.data.IterableDataset`` (needs kara-torch).

    Extra arguments (``seed``, ``buffer_size``, ``shuffle_ratio``, ``begin``, ``end``,
    ...) are passed to the torch integration; see the kara-torch documentation.
    """
    from .plugins import get_integration

    return get_integration("torch").make_torch_dataset(ds, shuffle=shuffle, auto_distributed=auto_distributed, **kwargs)


#: Submodules 2.x scripts reach as attributes right after ``import kara_storage``.
_2X_SUBMODULES = ("abc", "object", "pytorch", "row")


def __getattr__(name: str) -> Any:
    # RowDataset lives in the row package; load it on first use to keep import light.
    if name == "RowDataset":
        from .row import RowDataset

        return RowDataset
    if name in _2X_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'kara_core' has no attribute {name!r}")
