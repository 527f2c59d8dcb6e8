"""kara-memory: an example backend plugin keeping objects in the process's memory."""

from .backend import MemoryBackend, MemoryOptions

__all__ = ["MemoryBackend", "MemoryOptions"]
