"""The options model of ``memory://`` stores: what the entry point needs to register it."""

from __future__ import annotations

from kara_core.url import BackendOptions

__all__ = ["MemoryOptions"]


class MemoryOptions(BackendOptions):
    """``memory://`` takes no options."""
