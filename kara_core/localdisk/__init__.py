"""Writing local files fast: the one entry point of kara's local-disk I/O.

:func:`write_file` writes bytes or a stream into a new local file and lets files of
8 MiB and more bypass the page cache when the kernel makes cache pages expensive (see
the private module ``_direct`` for what it measures and why). kara-file's puts use it;
:func:`disk_error` and :func:`raise_disk_error` turn the ``OSError`` of a full or
read-only disk into kara's error. Nothing else of the local-disk machinery is public.
Inside kara_core, directory loads use that machinery directly for the files they place
and the file:// blobs they read.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import mmap
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, Literal

from ..errors import ConfigurationError, KaraError, ReadOnlyStoreError, StorageFullError
from ._direct import AUTO, BUFFERED_WRITE, DIRECT_MIN, cached, copy_to_fd, direct_io_setting, memory_reader, write_all

__all__ = ["FULL_DISK", "Buffers", "DirectIO", "disk_error", "raise_disk_error", "same_as_cached_file", "write_file"]

#: The errnos of a disk with no room left: no free blocks or inodes, or the quota used up.
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})

#: The ``direct_io`` settings: ``"auto"``, ``True`` (large files always direct) or ``False``.
DirectIO = bool | Literal["auto"]


class Buffers(io.RawIOBase):
    """Content made of several buffers, readable as one binary stream, never joined.

    A ``torch.save`` archive is small headers around the tensor's own memory: handed over
    as ``Buffers``, a file store writes the parts with ``os.writev`` straight from where
    they are (:func:`write_file`), and every other store reads it like any stream. The
    buffers must stay unchanged until the write returns.
    """

    def __init__(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        super().__init__()
        self.parts = [view for view in (memoryview(p).cast("B") for p in parts) if len(view)]
        self.nbytes = sum(len(view) for view in self.parts)
        self._index, self._offset, self._position = 0, 0, 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._index < len(self.parts):
            part = self.parts[self._index]
            n = min(len(out) - done, len(part) - self._offset)
            out[done : done + n] = part[self._offset : self._offset + n]
            done += n
            self._offset += n
            if self._offset == len(part):
                self._index, self._offset = self._index + 1, 0
        self._position += done
        return done


#: Buffers per ``os.writev`` call (Linux's IOV_MAX is 1024).
_IOV_MAX = 1024


def _write_buffers(fd: int, parts: list[memoryview]) -> None:
    """Write ``parts`` in order: small ones gathered into one ``os.writev``, none longer
    than :data:`~kara_core.localdisk._direct.BUFFERED_WRITE` bytes per call (large
    page-cache folios are expensive on some hosts, see there)."""
    group: list[memoryview] = []
    size = 0
    for part in parts:
        for start in range(0, len(part), BUFFERED_WRITE):
            piece = part[start : start + BUFFERED_WRITE]
            if group and (size + len(piece) > BUFFERED_WRITE or len(group) == _IOV_MAX):
                _writev_all(fd, group)
                group, size = [], 0
            group.append(piece)
            size += len(piece)
    if group:
        _writev_all(fd, group)


def _writev_all(fd: int, pending: list[memoryview]) -> None:
    while pending:
        written = os.writev(fd, pending)
        while written and pending:
            if written >= len(pending[0]):
                written -= len(pending.pop(0))
            else:
                pending[0] = pending[0][written:]
                written = 0


def disk_error(exc: OSError, what: str, url: str) -> KaraError | None:
    """kara's error for the ``OSError`` of a disk that cannot take a write; else None.

    A full disk's (:data:`FULL_DISK`) is a :class:`~kara_core.errors.StorageFullError`
    saying what it stopped (``what``), a read-only one's (``EROFS``: a read-only mount,
    or ext4 remounted read-only after an I/O error) a
    :class:`~kara_core.errors.ReadOnlyStoreError` naming the store ``url``.
    """
    if isinstance(exc, KaraError):
        return None
    if exc.errno in FULL_DISK:
        return StorageFullError(exc.errno, f"{what}: no room left on the disk ({exc.strerror})")
    if exc.errno == errno.EROFS:
        return ReadOnlyStoreError(url, f"{what} (its disk is mounted read-only)")
    return None


def raise_disk_error(exc: OSError, what: str, url: str) -> None:
    """Raise :func:`disk_error` of ``exc`` if there is one; else return.

    Used as ``except OSError as exc: raise_disk_error(exc, "...", url); raise``.
    """
    error = disk_error(exc, what, url)
    if error is not None:
        raise error from None


def write_file(fd: int, data: bytes | bytearray | memoryview | BinaryIO, *, direct_io: DirectIO = AUTO) -> int:
    """Write ``data`` into the new, empty local file ``fd``; return the bytes written.

    ``data`` is bytes or a binary stream read to its end (:class:`Buffers` are written
    with ``os.writev``, without joining them, when they go through the page cache). Files of 8 MiB and more follow
    ``direct_io``: ``"auto"`` (default) writes through the page cache while that is
    cheap for the writing thread and directly (``O_DIRECT``) from the first expensive
    megabyte on; ``True`` writes them directly; ``False`` through the page cache.
    ``KARA_DIRECT_IO`` (``0``/``1``/``auto``) overrides it; filesystems that refuse
    ``O_DIRECT`` get buffered writes. The bytes are the same either way, and durability
    is the caller's as with any write: fsync before publishing.
    """
    if direct_io not in (AUTO, True, False):
        raise ConfigurationError(f"direct_io must be 'auto', True or False, got {direct_io!r}")
    direct = direct_io_setting(direct_io)
    if isinstance(data, Buffers) and data.tell() == 0 and not (direct and data.nbytes >= DIRECT_MIN):
        _write_buffers(fd, data.parts)
        return data.nbytes
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return copy_to_fd(fd, _readinto_of(data), direct=direct)
    if direct and len(data) >= DIRECT_MIN:
        return copy_to_fd(fd, memory_reader(data), direct=direct)
    view = memoryview(data).cast("B")
    write_all(fd, view)
    return len(view)


def _readinto_of(stream: BinaryIO) -> Callable[[memoryview], int | None]:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto

    def read_into(buf: memoryview) -> int:
        chunk = stream.read(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)

    return read_into


_memcmp: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _memcmp = ctypes.CDLL(None).memcmp
        _memcmp.restype = ctypes.c_int
        _memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]


def _address(view: memoryview) -> int:
    # numpy reads the address of read-only buffers too (ctypes' from_buffer does not);
    # imported here, not with the module, which every file:// store loads at open.
    import numpy

    return int(numpy.frombuffer(view, dtype=numpy.uint8).ctypes.data)


def same_as_cached_file(path: str, parts: Iterable[bytes | bytearray | memoryview]) -> bool | None:
    """Whether the local file at ``path`` holds exactly the concatenation of ``parts``.

    Compared byte for byte (``memcmp`` against the file's pages, mapped), and only when
    the whole file is in the page cache (``cachestat``), where that costs a fraction of
    hashing the parts (0.1-0.2 ms per MiB against sha1's 0.5): True if every byte and
    the size match, False at the first difference. None when it cannot be told without
    reading the disk or at all (the file is not wholly cached, missing or unreadable; no
    ``cachestat`` or ``memcmp`` here): the caller hashes instead.
    """
    if _memcmp is None:
        return None
    views = [view for view in (memoryview(p).cast("B") for p in parts) if len(view)]
    size = sum(len(view) for view in views)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size != size:
            return False
        if size == 0:
            return True
        if not cached(fd, 0, size):
            return None
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            stored = memoryview(mapped)
            try:
                base, position = _address(stored), 0
                for view in views:
                    if _memcmp(base + position, _address(view), len(view)) != 0:
                        return False
                    position += len(view)
                return True
            finally:
                stored.release()
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
