"""Writing local files fast: the one entry point of kara's local-disk I/O.

:func:`write_file` writes bytes or a stream into a new local file and lets files of
8 MiB and more bypass the page cache when the kernel makes cache pages expensive (see
the private module ``_direct`` for what it measures and why). kara-file's puts use it;
nothing else of the local-disk machinery is public. Inside kara_core, directory loads
use that machinery directly for the files they place and the file:// blobs they read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Literal

from ..errors import ConfigurationError
from ._direct import AUTO, DIRECT_MIN, copy_to_fd, direct_io_setting, memory_reader, write_all

__all__ = ["DirectIO", "write_file"]

#: The ``direct_io`` settings: ``"auto"``, ``True`` (large files always direct) or ``False``.
DirectIO = bool | Literal["auto"]


def write_file(fd: int, data: bytes | bytearray | memoryview | BinaryIO, *, direct_io: DirectIO = AUTO) -> int:
    """Write ``data`` into the new, empty local file ``fd``; return the bytes written.

    ``data`` is bytes or a binary stream read to its end. Files of 8 MiB and more follow
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
