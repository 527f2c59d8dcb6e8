"""kara-memory: an example backend plugin keeping objects in the process's memory.

Like every plugin, importing it stays cheap: the backend module loads on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MemoryBackend", "MemoryOptions"]


def __getattr__(name: str) -> Any:
    if name == "MemoryBackend":
        from .backend import MemoryBackend

        return MemoryBackend
    if name == "MemoryOptions":
        from .options import MemoryOptions

        return MemoryOptions
    raise AttributeError(f"module 'kara_memory' has no attribute {name!r}")
