"""A Backend keeping objects in a dict shared by every store of the same name."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from kara_core.backend import Backend, Capabilities, check_path
from kara_core.errors import ConfigurationError, NotFoundError

from .options import MemoryOptions

_STORES: dict[str, dict[str, bytes]] = {}
_LOCK = threading.Lock()


class MemoryAppender:
    """Appends to one in-memory object; every append is visible at once."""

    def __init__(self, backend: MemoryBackend, path: str) -> None:
        self._backend = backend
        self._path = path
        with _LOCK:
            self._position = len(backend._objects.setdefault(path, b""))

    @property
    def position(self) -> int:
        return self._position

    def append(self, data: bytes | bytearray | memoryview) -> None:
        with _LOCK:
            current = self._backend._objects.get(self._path, b"")
            self._backend._objects[self._path] = current + bytes(data)
            self._position = len(current) + len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryBackend(Backend):
    """All stores named ``NAME`` in one process share their objects."""

    capabilities = Capabilities(writable=True, appendable=True, atomic_create=True)

    def __init__(self, name: str, options: MemoryOptions | None = None) -> None:
        if not name:
            raise ConfigurationError("memory:// needs a store name: memory://NAME")
        self.url = "memory://" + name
        with _LOCK:
            self._objects = _STORES.setdefault(name, {})

    def size(self, path: str) -> int | None:
        data = self._objects.get(check_path(path))
        return None if data is None else len(data)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        data = self._objects.get(check_path(path))
        if data is None:
            raise NotFoundError(f"{self.url}/{path} does not exist")
        return data[start:end]

    def list(self, prefix: str) -> Iterator[str]:
        with _LOCK:
            paths = [p for p in self._objects if p.startswith(prefix)]
        yield from paths

    def open_append(self, path: str) -> MemoryAppender:
        return MemoryAppender(self, check_path(path))

    def put(self, path, data) -> None:  # type: ignore[no-untyped-def]
        check_path(path)
        payload = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        with _LOCK:
            self._objects[path] = payload

    def put_if_absent(self, path: str, data: bytes) -> bool:
        check_path(path)
        with _LOCK:
            if path in self._objects:
                return False
            self._objects[path] = bytes(data)
            return True

    def delete(self, path: str) -> None:
        check_path(path)
        with _LOCK:
            self._objects.pop(path, None)
