"""The file:// backend: atomic puts, durable appends, mmap-able local paths."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from kara_core.backend import Backend, Capabilities, check_path
from kara_core.errors import ConfigurationError, NotFoundError
from kara_core.url import BackendOptions, StoreURL

__all__ = ["FileAppender", "FileBackend", "FileOptions"]

_TMP_MARK = ".kara-tmp-"
_COPY_CHUNK = 8 * 1024 * 1024


class FileOptions(BackendOptions):
    """Options of ``file://`` stores.

    ``fsync``: make flushes, closes and puts durable with fsync (default True; turn it
    off only for scratch stores on tmpfs).
    """

    fsync: bool = True


class FileAppender:
    """Appends to one file; ``flush`` hands the bytes to the OS and fsyncs them."""

    def __init__(self, path: str, fsync: bool) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._position = os.fstat(self._fd).st_size
        self._fsync = fsync
        self._dirty = False
        self.path = path

    @property
    def position(self) -> int:
        return self._position

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd < 0:
            raise ValueError(f"append to closed file {self.path}")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._position += written
        self._dirty = True

    def flush(self) -> None:
        if self._fd >= 0 and self._dirty and self._fsync:
            os.fsync(self._fd)
        self._dirty = False

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)


class FileBackend(Backend):
    """A store rooted at a local directory."""

    capabilities = Capabilities(writable=True, appendable=True, atomic_create=True, local_path=True)

    def __init__(self, root: str, options: FileOptions | None = None) -> None:
        self.root = os.path.abspath(root)
        self.options = options or FileOptions()
        self.url = "file://" + self.root

    @classmethod
    def from_url(cls, url: StoreURL, options: FileOptions) -> FileBackend:
        """Build from ``file:///abs/path`` or ``file://relative/path`` (relative to the cwd)."""
        location = url.location
        if not location:
            raise ConfigurationError(f"{url.raw!r} names no directory: use file:///abs/path or file://relative/path")
        return cls(os.path.abspath(location), options)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    # -- reading -------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self._full(path)):
            return None
        return st.st_size

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        full = self._full(path)
        try:
            with open(full, "rb", buffering=0) as fh:
                if start:
                    fh.seek(start)
                if end is None:
                    return fh.read()
                return fh.read(max(0, end - start))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{self.url}/{path} does not exist") from None

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        try:
            fh = open(self._full(path), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"{self.url}/{path} does not exist") from None
        if start:
            fh.seek(start)
        return fh

    def local_path(self, path: str) -> str | None:
        return self._full(path)

    def list(self, prefix: str) -> Iterator[str]:
        folder, _, _ = prefix.rpartition("/")
        base = os.path.join(self.root, check_path(folder)) if folder else self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in sorted(filenames):
                if _TMP_MARK in name:
                    continue
                rel = rel_dir + name
                if rel.startswith(prefix):
                    yield rel

    # -- writing -------------------------------------------------------------------

    def open_append(self, path: str) -> FileAppender:
        return FileAppender(self._full(path), self.options.fsync)

    def _write_temp(self, full: str, data: bytes | bytearray | memoryview | BinaryIO) -> str:
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(full)}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    while chunk := data.read(_COPY_CHUNK):
                        out.write(chunk)
                out.flush()
                if self.options.fsync:
                    os.fsync(out.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def _sync_dir(self, full: str) -> None:
        if not self.options.fsync:
            return
        fd = os.open(os.path.dirname(full), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        full = self._full(path)
        tmp = self._write_temp(full, data)
        try:
            os.replace(tmp, full)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self._sync_dir(full)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        full = self._full(path)
        if os.path.exists(full):
            return False
        tmp = self._write_temp(full, data)
        try:
            # link() publishes the complete temp file under the final name, or fails if
            # the name exists: an atomic create-with-content.
            os.link(tmp, full)
        except FileExistsError:
            return False
        finally:
            _unlink_quietly(tmp)
        self._sync_dir(full)
        return True

    def delete(self, path: str) -> None:
        _unlink_quietly(self._full(path))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
