"""kara: versioned row datasets and directory versions for ML training data.

``import kara_core as kara_storage`` runs code written for kara-storage 2.1.5 unchanged.
This module imports nothing heavy: no pydantic, pluggy or entry points until a store is
opened or a plugin looked up, and storage plugins load their libraries lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors, serialization
from .backend import Backend, Capabilities
from .errors import KaraError
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
    "mix",
    "pack",
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


def mix(sources: Any, weights: Any, **kwargs: Any) -> Any:
    """Interleave ``sources`` (name -> row dataset, mixture or packed view) by ``weights``.

    Keyword arguments: ``seed=0``, ``exhausted="stop" | "cycle"``, ``samples=None``,
    ``shuffle=True``, ``with_source=False``. Returns a
    :class:`~kara_core.pipeline.mix.Mixture` (see docs/pipeline.md).
    """
    from .pipeline.mix import Mixture

    return Mixture(sources, weights, **kwargs)


def pack(dataset: Any, field: str | None = "tokens", seq_len: int = 2048, **kwargs: Any) -> Any:
    """Cut the token sequences of a row dataset into samples of exactly ``seq_len`` tokens.

    Keyword arguments: ``eos_id=None``, ``drop_remainder=True``. Returns a
    :class:`~kara_core.pipeline.pack.PackedView` (see docs/pipeline.md).
    """
    from .pipeline.pack import PackedView

    return PackedView(dataset, field, seq_len, **kwargs)


#: Submodules 2.x scripts reach as attributes right after ``import kara_storage``.
_2X_SUBMODULES = ("abc", "object", "pytorch", "row")


def __getattr__(name: str) -> Any:
    # RowDataset lives in the row package; load it on first use to keep import light.
    if name == "RowDataset":
        from .row import RowDataset

        return RowDataset
    # The plugin machinery (pluggy, entry points) loads on first use too.
    if name in ("hookimpl", "list_plugins"):
        from . import plugins

        return getattr(plugins, name)
    if name in _2X_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'kara_core' has no attribute {name!r}")
