"""Entry point of kara-torch: registers the ``torch`` integration (cheap to import: no torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl


class TorchIntegration:
    """What ``kara_core.make_torch_dataset`` calls; imports torch only when used."""

    def make_torch_dataset(self, ds: Any, shuffle: bool = False, auto_distributed: bool = True, **kwargs: Any) -> Any:
        """Wrap the row dataset ``ds`` as a :class:`kara_torch.KaraTorchDataset`."""
        from .dataset import make_torch_dataset

        return make_torch_dataset(ds, shuffle=shuffle, auto_distributed=auto_distributed, **kwargs)


@hookimpl
def kara_register_integrations(register: Callable[[str, Any], None]) -> None:
    register("torch", TorchIntegration())
