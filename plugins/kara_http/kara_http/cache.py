"""Recently fetched windows of append-only objects, shared by the threads of one store."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["WindowCache"]


class WindowCache:
    """An LRU of ``(path, window start) -> bytes``, bounded by its total size in bytes.

    Only for objects that are only ever appended to: bytes a window holds never change,
    so a hit is always right. A window shorter than ``window_size`` (the object ended
    there when it was fetched) serves only what it holds; a read past it misses and the
    caller fetches the window again.
    """

    def __init__(self, window_size: int, budget: int) -> None:
        self.window_size = window_size
        self.budget = budget
        self._windows: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def window_of(self, start: int, end: int) -> int | None:
        """Start of the window holding ``[start, end)``, or None if the range spans two."""
        first = start - start % self.window_size
        return first if end <= first + self.window_size else None

    def get(self, path: str, first: int, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` from the cached window at ``first``, or None on a miss."""
        with self._lock:
            data = self._windows.get((path, first))
            if data is None or end - first > len(data):
                return None
            self._windows.move_to_end((path, first))
        return data[start - first : end - first]

    def put(self, path: str, first: int, data: bytes) -> None:
        """Remember the window at ``first``, evicting the least recently used ones."""
        with self._lock:
            old = self._windows.pop((path, first), None)
            if old is not None:
                self._bytes -= len(old)
            self._windows[(path, first)] = data
            self._bytes += len(data)
            while self._bytes > self.budget and self._windows:
                _, evicted = self._windows.popitem(last=False)
                self._bytes -= len(evicted)
