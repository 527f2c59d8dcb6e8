"""Direct I/O (``O_DIRECT``) for large local files, used where the page cache is not cheap.

Private to kara_core: the obj layer's loads use it directly; everything outside
kara_core goes through :func:`kara_core.localdisk.write_file`.

Why. A buffered write of a new file copies the data into page-cache pages, and the
kernel must first provide those pages. When it has free pages at hand, that costs about
what the copy does (0.1-0.3 ms per MiB). When it has to obtain them first, the writing
thread pays for it in system time, often several ms per MiB: direct reclaim under
memory pressure (evicting cache, or a cgroup at its ``memory.high``), or a virtual
machine whose free memory was returned to the host (balloon drivers, free page
reporting), where every new page faults back in through the hypervisor. Which of these
a host is in depends on its memory, its neighbours and the moment, so kara measures
rather than guesses. An ``O_DIRECT`` write from an aligned buffer needs no cache pages at
all: it costs the thread almost no CPU and waits for the device instead (as checkpoint
writers such as DeepSpeed's FastPersist do).

Policies (the ``direct`` argument of :func:`copy_to_fd`):

- :data:`AUTO` (what file:// stores do by default): a large file is written through the
  page cache, :data:`BUFFERED_CHUNK` (1 MiB) at a time, and each write's cost to the
  writing thread is measured as its CPU time (``time.thread_time``: user and system time
  of this thread only). Waiting does not count: neither the dirty-page throttling of a
  busy disk (the kernel puts the writer to sleep) nor being descheduled on a loaded host,
  so a slow disk or a busy machine does not trip it. Once one write costs more than
  :data:`SLOW_BUFFERED` (1 ms per MiB, several times the plain copy), the kernel is
  paying to provide pages, and the rest of the file goes direct. Where pages are cheap
  the file stays in the cache (a load right after a save reads it from memory); where
  they are not, the copy costs about what a direct one does. The decision is made per
  file, so a host whose memory state changes gets the right choice for each new file.
- ``True``: large files are written direct from :data:`DIRECT_MIN` bytes on (loads do
  this for the files they place: written once, not read back by kara).
- ``False``: everything through the page cache.

Only files of at least :data:`DIRECT_MIN` bytes go direct: a synchronous device write per
small file costs more than its few cache pages. Full aligned blocks are written direct;
the unaligned tail of a file is written through the cache after ``O_DIRECT`` is cleared
(``fcntl``). Where the filesystem refuses ``O_DIRECT`` (``EINVAL`` from ``fcntl`` or from
a write: ramfs, some network and FUSE filesystems) the copy goes on buffered. Direct I/O
changes nothing about durability: callers still fsync (or syncfs) before they publish.
:class:`DirectReader` reads what is cached from the cache and the rest direct, asking
the kernel which is which with ``cachestat`` (Linux 6.5+; without it every aligned read
goes direct).

``KARA_DIRECT_IO`` overrides every setting: ``0`` (or ``off``/``false``/``no``) turns
direct I/O off, ``1`` (``on``/``true``/``yes``/``always``) always writes large files
direct, ``auto`` selects :data:`AUTO`. file:// stores take the ``direct_io`` option
(``auto``, ``true`` or ``false``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no O_DIRECT there either
    fcntl = None  # type: ignore[assignment]

#: Files at least this large are written (and read from stores) with O_DIRECT.
DIRECT_MIN = 8 * 1024 * 1024
#: Size of each direct write: large enough that the device sees long sequential requests.
DIRECT_CHUNK = 8 * 1024 * 1024
#: Size of each write of a copy that does not go direct.
BUFFERED_CHUNK = 1024 * 1024
#: Largest single ``write`` through the page cache (:func:`write_all`). The kernel sizes
#: the cache folios of a buffered write by its length (large folios, up to 2 MiB on
#: ext4/xfs); a large folio takes a whole high-order block of free memory, which is just
#: what a virtual machine with free page reporting has handed back to its host, so
#: every such block faults in through the hypervisor. 2.5 MiB written in one call cost
#: 0.9-2.9 ms of system time per MiB here; the same bytes in 256 KiB writes 0.4-0.75
#: (512 MiB, 3 runs each, alternating, 3 s apart so freed pages were reported again).
BUFFERED_WRITE = 256 * 1024
#: Alignment of buffers, offsets and lengths of direct writes (the page size covers the
#: logical block size of every common device).
ALIGN = mmap.PAGESIZE

#: The ``direct`` setting that writes through the page cache while the kernel provides
#: cache pages cheaply, and switches a file to O_DIRECT once it does not.
AUTO = "auto"
#: Thread CPU time above which a buffered write of :data:`BUFFERED_CHUNK` bytes counts as
#: slow: several times what copying 1 MiB into cache pages at hand costs (0.1-0.3 ms),
#: below what obtaining the pages first costs (reclaim, pages returned to a hypervisor:
#: 2 ms per MiB and more). See the module docstring.
SLOW_BUFFERED = 0.001

_O_DIRECT = getattr(os, "O_DIRECT", 0) if fcntl is not None else 0
_OFF = {"0", "false", "off", "no"}
_ON = {"1", "true", "on", "yes", "always"}


def direct_io_allowed() -> bool:
    """False when ``KARA_DIRECT_IO`` turns direct I/O off (or the platform lacks it)."""
    return direct_io_setting(True) is not False


def direct_io_setting(option: bool | str = AUTO) -> bool | str:
    """The ``direct`` argument of :func:`copy_to_fd` for a store's ``direct_io`` option.

    ``KARA_DIRECT_IO`` overrides the option: ``0``/``off`` (never), ``1``/``on`` (always
    for large files) or ``auto``.
    """
    if not _O_DIRECT:
        return False
    env = os.environ.get("KARA_DIRECT_IO", "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    if env == AUTO:
        return AUTO
    return option


def set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; return False if the filesystem refuses it."""
    if not _O_DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    return True


_buffers = threading.local()


def aligned_buffer() -> memoryview:
    """A page-aligned :data:`DIRECT_CHUNK` buffer owned by the calling thread, reused.

    Anonymous mmap memory is page aligned, as O_DIRECT requires; its pages are only
    allocated once touched.
    """
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(mmap.mmap(-1, DIRECT_CHUNK))
    return buf


def memory_reader(data: bytes | bytearray | memoryview) -> Callable[[memoryview], int]:
    """A ``readinto`` for :func:`copy_to_fd` that copies out of ``data``."""
    source = memoryview(data).cast("B")
    position = 0

    def readinto(buf: memoryview) -> int:
        nonlocal position
        n = min(len(buf), len(source) - position)
        buf[:n] = source[position : position + n]
        position += n
        return n

    return readinto


class DirectReader:
    """Reads a file from its start: what the page cache holds from there, the rest direct.

    Before each aligned read, :func:`cached` asks the kernel whether the range is in the
    page cache (``cachestat``, which reads nothing). A cached range is read from there
    (several GB/s); one that is not is read with O_DIRECT into the caller's aligned
    buffer: one device read, without filling cache pages and copying out of them (3x
    faster for cold data, measured on ext4). Where ``cachestat`` is missing (Linux before 6.5) every aligned read goes
    direct. Use :meth:`readinto` with aligned buffers (:func:`aligned_buffer`);
    unaligned buffers and the file's unaligned end are read through the cache.
    """

    def __init__(self, path: str, direct: bool) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self._direct_fd = -1
        self._position = 0
        #: The size when opened: what the cache is asked about stops there.
        self._size = os.fstat(self.fd).st_size
        if direct and _O_DIRECT:
            try:
                self._direct_fd = os.open(path, os.O_RDONLY | _O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    os.close(self.fd)
                    raise

    @property
    def direct(self) -> bool:
        """Whether ranges that are not cached are read with O_DIRECT."""
        return self._direct_fd >= 0

    def readinto(self, buf: memoryview) -> int:
        """Read the next bytes into ``buf``; return how many (0 at the end)."""
        n = self._read(buf)
        self._position += n
        return n

    def _read(self, buf: memoryview) -> int:
        left = self._size - self._position
        if (
            self._direct_fd >= 0
            and left > 0
            and len(buf) % ALIGN == 0
            and self._position % ALIGN == 0
            and not cached(self.fd, self._position, min(len(buf), left))
        ):
            try:
                return os.preadv(self._direct_fd, [buf], self._position)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._stop_direct()
        return os.preadv(self.fd, [buf], self._position)

    def _stop_direct(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1

    def close(self) -> None:
        """Close the file."""
        self._stop_direct()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CachestatRange(ctypes.Structure):
    _fields_ = (("off", ctypes.c_uint64), ("len", ctypes.c_uint64))


class _Cachestat(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_uint64)
        for name in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")
    )


#: cachestat(2) (Linux 6.5+; the same number on every architecture that has it).
_SYS_CACHESTAT = 451
_syscall: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _syscall = ctypes.CDLL(None, use_errno=True).syscall
_has_cachestat = _syscall is not None


def cached(fd: int, offset: int, length: int) -> bool:
    """Whether the ``length`` bytes of ``fd`` from ``offset`` are all in the page cache.

    Asks ``cachestat`` (no I/O: a probe by ``RWF_NOWAIT`` read would start readahead of
    what is missing). False where the kernel lacks it, and for a range past the end.
    """
    global _has_cachestat
    if not _has_cachestat or length <= 0:
        return False
    span = _CachestatRange(offset, length)
    stat = _Cachestat()
    # syscall() is variadic: every argument is passed as a full machine word.
    number, flags = ctypes.c_long(_SYS_CACHESTAT), ctypes.c_long(0)
    if _syscall(number, ctypes.c_long(fd), ctypes.byref(span), ctypes.byref(stat), flags) != 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
            _has_cachestat = False
        return False
    pages = (offset + length + ALIGN - 1) // ALIGN - offset // ALIGN
    return stat.nr_cache >= pages


def _fill(readinto: Callable[[memoryview], int | None], buf: memoryview) -> int:
    # Sources (sockets, pipes) may return less than asked before their end: a direct
    # write needs a full aligned chunk, so keep reading until the buffer is full or the
    # source is exhausted.
    got = 0
    while got < len(buf):
        n = readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _write_chunk(fd: int, view: memoryview, direct: bool) -> bool:
    """Write ``view`` at the file position; return whether ``fd`` is still direct."""
    done = 0
    if direct:
        aligned = len(view) - len(view) % ALIGN
        try:
            while done < aligned:
                done += os.write(fd, view[done:aligned])
        except OSError as exc:
            # EINVAL: this filesystem or this write cannot go direct (the failed call
            # wrote nothing); the rest goes through the page cache.
            if exc.errno != errno.EINVAL:
                raise
        if done < len(view):
            # The unaligned tail, or everything after a refused write.
            set_direct(fd, False)
            direct = False
    write_all(fd, view[done:])
    return direct


def _write_while_cheap(fd: int, chunk: memoryview) -> memoryview | None:
    """Write ``chunk`` through the page cache while that is cheap (see :data:`AUTO`).

    Returns None when all of it was written, else the part left once a buffered write
    of :data:`BUFFERED_CHUNK` bytes took more than :data:`SLOW_BUFFERED` seconds of the
    thread's CPU time (what it cost the kernel to provide cache pages; sleeping does not
    count). The part left starts at an aligned offset: the caller writes it direct.
    """
    done = 0
    while done < len(chunk):
        piece = chunk[done : done + BUFFERED_CHUNK]
        started = time.thread_time()
        write_all(fd, piece)
        done += len(piece)
        if len(piece) == BUFFERED_CHUNK and time.thread_time() - started > SLOW_BUFFERED:
            return chunk[done:]
    return None


def write_all(fd: int, view: memoryview) -> None:
    """Write all of ``view`` at the file position of ``fd`` through the page cache.

    At most :data:`BUFFERED_WRITE` bytes per ``write`` (``os.write`` may also write less).
    """
    while view:
        view = view[os.write(fd, view[:BUFFERED_WRITE]) :]


def copy_to_fd(
    fd: int,
    readinto: Callable[[memoryview], int | None],
    consume: Callable[[memoryview], None] | None = None,
    *,
    direct: bool | str,
    direct_min: int = DIRECT_MIN,
) -> int:
    """Copy a source to the new, empty file ``fd`` and return the number of bytes copied.

    ``readinto`` fills a buffer from the source and returns how many bytes it put there
    (0 or None at the end). ``consume`` sees every chunk before it is written (hashing,
    progress, cancellation). With ``direct=True``, a source of at least ``direct_min``
    bytes is written with O_DIRECT from there on; with ``direct=AUTO`` it goes on
    through the page cache while that is cheap and switches to O_DIRECT once it is not
    (see the module docstring). Smaller sources and the unaligned tail go through the
    page cache.
    """
    # Buffered copies need no long writes: a smaller slice of the buffer keeps the
    # memory each thread touches small (remote loads run 32 threads).
    buf = aligned_buffer() if direct else aligned_buffer()[:BUFFERED_CHUNK]
    total = 0
    # Decided once, at the first chunk that reaches direct_min (offsets before it are
    # whole chunks, so aligned).
    undecided = bool(direct)
    probing = False
    writing_direct = False
    while True:
        n = _fill(readinto, buf)
        if not n:
            break
        chunk = buf[:n]
        if consume is not None:
            consume(chunk)
        if undecided and total + n >= direct_min:
            undecided = False
            if direct == AUTO:
                probing = True
            else:
                writing_direct = set_direct(fd, True)
        if probing:
            rest = _write_while_cheap(fd, chunk)
            if rest is not None:
                # Cache pages got slow: the rest of the file goes direct.
                probing = False
                writing_direct = _write_chunk(fd, rest, set_direct(fd, True))
        else:
            writing_direct = _write_chunk(fd, chunk, writing_direct)
        total += n
        if n < len(buf):
            break
    return total
