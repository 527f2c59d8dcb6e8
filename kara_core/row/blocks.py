"""Block streams: the ``N.blk`` files of one folder read and written as one byte stream.

Readers come in two kinds, picked from the backend's capabilities:

- :class:`MappedBlocks` (``capabilities.local_path``): every block is mmapped read-only,
  so a record read is one slice of mapped memory (no system call, no request).
- :class:`RemoteBlocks` (everything else): ranged reads through the backend; sequential
  readers get large read-ahead windows with the next window prefetched by a background
  thread (as concurrent requests when ``capabilities.parallel_reads``); random access
  reads small ranges through a :class:`PageCache` bounded in bytes and shared by the
  index and data streams of one snapshot, so a random record costs one request or none.

Both only ever expose bytes ``[0, limit)`` of the stream: the part the index vouches for.
Anything past it (the torn tail of a crashed writer) is never read.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import sys
import threading
from bisect import bisect_right
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from ..backend import Appender, Backend, RangeFeed
from ..errors import CorruptDatasetError

__all__ = [
    "DATA_PAGE_SIZE",
    "DEFAULT_CACHE_SIZE",
    "INDEX_PAGE_SIZE",
    "LARGE_READ",
    "LITTLE_ENDIAN",
    "BlockReader",
    "BlockWriter",
    "MappedBlocks",
    "PageCache",
    "RemoteBlocks",
    "block_path",
    "open_blocks",
    "probe_blocks",
    "probe_streams",
    "truncate_stream",
]

#: Index entries are little-endian u64; on such a machine arrays of them need no byteswap.
LITTLE_ENDIAN = sys.byteorder == "little"
#: Bytes of one read-ahead window on remote stores (the next window is prefetched while
#: the reader works through this one). Large windows keep several requests in flight and
#: pay each request's latency once per 8 MiB.
READ_AHEAD = 32 * 1024 * 1024
#: Reads at least this large go through pread on local files: one copy, no page faults.
LARGE_READ = 256 * 1024
#: With ``capabilities.parallel_reads``, a read-ahead window is fetched as concurrent
#: ranged requests of this size (the part size object stores' own guidance gives for
#: parallel downloads), this many at a time.
PARALLEL_PART = 8 * 1024 * 1024
PARALLEL_REQUESTS = 4
#: With ``capabilities.streamed_reads``, a sequential reader streams each block it goes
#: through with one request (from where it starts reading to the block's end or the
#: stream's limit) and the next block's at the same time (``STREAMED_BLOCKS`` streams
#: at most): one request per block instead of one per ``PARALLEL_PART``, and records
#: are handed over while the rest of the block arrives. Each stream is handed over in
#: pieces of ``STREAM_PIECE`` bytes, at most ``READ_AHEAD`` bytes of it waiting.
STREAMED_BLOCKS = 2
STREAM_PIECE = 4 * 1024 * 1024
#: Page sizes of the remote random-access cache. On a store with real latency a request
#: for 64 KiB costs about what a request for one small record costs, and it brings the
#: neighbours along. An index page covers 32,768 records, so the index of a dataset of a
#: few hundred thousand records is a handful of requests, then cached.
DATA_PAGE_SIZE = 64 * 1024
INDEX_PAGE_SIZE = 256 * 1024
#: Default byte budget of one snapshot's page cache (index and data pages together).
DEFAULT_CACHE_SIZE = 64 * 1024 * 1024
#: Once the cache has had to evict, small reads keep going through it only while at
#: least 1 page lookup in ``REUSE_MIN`` hits (over the last ``REUSE_WINDOW`` or so):
#: when a dataset is far larger than the cache and reads are spread over all of it, a
#: page costs its transfer time and is rarely reused. One read in ``REUSE_PROBE`` still
#: goes through the cache then, so that renewed reuse is noticed.
REUSE_MIN = 8
REUSE_WINDOW = 256
REUSE_PROBE = 8


def block_path(prefix: str, number: int) -> str:
    """Path of block ``number`` in the folder ``prefix`` (which ends with ``/``)."""
    return f"{prefix}{number}.blk"


def probe_blocks(backend: Backend, prefix: str) -> list[int]:
    """Sizes of ``0.blk``, ``1.blk``, ... up to the first missing one (as 2.x finds them).

    On stores whose listings carry sizes (they override :meth:`Backend.list_sizes`:
    object stores) this is one listing of the folder, not one request per block; elsewhere
    (local files: a stat each) the blocks are asked for one by one.
    """
    return probe_streams(backend, [prefix])[0]


def probe_streams(backend: Backend, prefixes: list[str]) -> list[list[int]]:
    """:func:`probe_blocks` of several folders (a version's index and data): on stores
    whose listings carry sizes, one listing of the folder that holds them all."""
    if type(backend).list_sizes is Backend.list_sizes:
        return [_probe_one_by_one(backend, prefix) for prefix in prefixes]
    folders = [prefix[: prefix.rfind("/") + 1] for prefix in prefixes]
    common = posixpath.commonpath(folders) if all(folders) else ""
    listed = dict(backend.list_sizes(common + "/" if common else ""))
    found = []
    for prefix in prefixes:
        sizes: list[int] = []
        while (path := block_path(prefix, len(sizes))) in listed:
            size = listed[path]
            if size is None and (size := backend.size(path)) is None:
                break
            sizes.append(size)
        found.append(sizes)
    return found


def _probe_one_by_one(backend: Backend, prefix: str) -> list[int]:
    sizes: list[int] = []
    while (size := backend.size(block_path(prefix, len(sizes)))) is not None:
        sizes.append(size)
    return sizes


class BlockReader(Protocol):
    """Read access to bytes ``[0, limit)`` of a block stream; safe to share between threads."""

    limit: int

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, fetched exactly (random access)."""
        ...

    def read_ahead(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` for a reader moving forward: later ranges are prefetched."""
        ...

    def read_paged(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a small range, through a cache of fixed-size pages if any."""
        ...

    def read_small(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of a small range: paged while pages get reused, else exact."""
        ...

    def close(self) -> None:
        """Release maps, connections and threads."""
        ...


def _starts(sizes: list[int]) -> list[int]:
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    return starts


class MappedBlocks:
    """A block stream on local files: small reads slice mmapped memory, large ones pread."""

    def __init__(self, backend: Backend, prefix: str, sizes: list[int], limit: int) -> None:
        self.limit = limit
        self.prefix = prefix
        self._maps: list[mmap.mmap] = []
        self._fds: list[int] = []
        self._starts: list[int] = []
        for number, start in enumerate(_starts(sizes)):
            length = min(sizes[number], limit - start)
            if length <= 0:
                continue
            path = backend.local_path(block_path(prefix, number))
            assert path is not None
            fd = os.open(path, os.O_RDONLY)
            self._fds.append(fd)
            self._maps.append(mmap.mmap(fd, length, access=mmap.ACCESS_READ))
            self._starts.append(start)
        #: The single map holding the whole stream, when there is one (the common case).
        self.single: mmap.mmap | None = self._maps[0] if self._starts == [0] else None
        self._views: list[memoryview] | None = None

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.limit)
        if start >= end:
            return b""
        single = self.single
        if single is not None and end - start < LARGE_READ:
            return single[start:end]
        number = bisect_right(self._starts, start) - 1
        parts = []
        while start < end:
            base, block = self._starts[number], self._maps[number]
            stop = min(end, base + len(block))
            if stop - start < LARGE_READ:
                piece = block[start - base : stop - base]
            else:
                piece = os.pread(self._fds[number], stop - start, start - base)
                if len(piece) != stop - start:
                    raise CorruptDatasetError(
                        block_path(self.prefix, number), start - base, "the block file shrank while open"
                    )
            parts.append(piece)
            start = stop
            number += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    read_ahead = read
    read_paged = read
    read_small = read

    def view(self, start: int, end: int) -> memoryview | None:
        """A read-only view of bytes ``[start, end)`` in mapped memory (no copy), or None
        when the range crosses from one block into the next."""
        number = bisect_right(self._starts, start) - 1
        base, block = self._starts[number], self._maps[number]
        if end - base > len(block) or end > self.limit:
            return None
        views = self._views
        if views is None:
            views = self._views = [memoryview(mapped) for mapped in self._maps]
        return views[number][start - base : end - base]

    def close(self) -> None:
        if self._views is not None:
            for view in self._views:
                view.release()
            self._views = None
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:
                # A memoryview someone still holds keeps the map alive; the GC frees it.
                pass
        for fd in self._fds:
            os.close(fd)
        self._maps, self._fds = [], []
        self.single = None


class PageCache:
    """Least-recently-used pages of block streams, at most ``budget`` bytes; thread-safe.

    Keys are ``(stream prefix, page number)``. One cache belongs to one snapshot, whose
    streams never change below their limit, so a cached page never goes stale.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        #: Pages dropped so far to stay within the budget.
        self.evictions = 0
        self._pages: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        """The cached page, or None; a hit makes it the most recently used."""
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple[str, int], page: bytes) -> None:
        """Cache ``page``, evicting the least recently used pages beyond the budget."""
        if len(page) > self.budget:
            return
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._pages[key] = page
            self.size += len(page)
            while self.size > self.budget:
                self.size -= len(self._pages.popitem(last=False)[1])
                self.evictions += 1

    def clear(self) -> None:
        """Drop every page."""
        with self._lock:
            self._pages.clear()
            self.size = 0


class _Window:
    __slots__ = ("data", "end", "start")

    def __init__(self, start: int, data: bytes) -> None:
        self.start, self.data, self.end = start, data, start + len(data)


class RemoteBlocks:
    """A block stream on a remote store: ranged reads, read-ahead with prefetch, page cache."""

    def __init__(
        self,
        backend: Backend,
        prefix: str,
        sizes: list[int],
        limit: int,
        window: int = READ_AHEAD,
        cache: PageCache | None = None,
        page_size: int = DATA_PAGE_SIZE,
    ) -> None:
        self.limit = limit
        self.prefix = prefix
        self._backend = backend
        self._sizes = sizes
        self._starts = _starts(sizes)
        self._window_size = max(window, DATA_PAGE_SIZE)
        self._cache = cache
        self._page_size = page_size
        # Page lookups and hits of read_paged, halved now and then so they follow the
        # recent past; updated without a lock, as they only steer read_small.
        self._lookups = self._hits = self._bypassed = 0
        self._lock = threading.Lock()
        self._current: _Window | None = None
        self._next: tuple[int, int, Future[bytes]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._parts_pool: ThreadPoolExecutor | None = None
        self._parallel = backend.capabilities.parallel_reads
        self._streamed = backend.capabilities.streamed_reads
        #: Streams of consecutive blocks, the one being read first (streamed reads).
        self._feeds: list[RangeFeed] = []

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.limit)
        if start >= end:
            return b""
        number = bisect_right(self._starts, start) - 1
        parts = []
        position = start
        while position < end:
            base = self._starts[number]
            stop = min(end, base + self._sizes[number])
            path = block_path(self.prefix, number)
            piece = self._backend.read(path, position - base, stop - base)
            if len(piece) != stop - position:
                raise CorruptDatasetError(
                    f"{self._backend.url}/{path}",
                    position - base,
                    f"expected {stop - position} bytes, the store returned {len(piece)} (block shrank?)",
                )
            parts.append(piece)
            position = stop
            number += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _prefetch(self, start: int) -> None:
        end = min(self.limit, start + self._window_size)
        if start >= end:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kara-read-ahead")
        self._next = (start, end, self._pool.submit(self._fetch_window, start, end))

    def _fetch_window(self, start: int, end: int) -> bytes:
        # On stores where parallel ranged reads pay off (remote object stores), a window
        # is fetched as several concurrent requests.
        if not self._parallel or end - start < 2 * PARALLEL_PART:
            return self.read(start, end)
        if self._parts_pool is None:
            self._parts_pool = ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS, thread_name_prefix="kara-range")
        cuts = [*range(start, end, PARALLEL_PART), end]
        parts = self._parts_pool.map(self.read, cuts[:-1], cuts[1:])
        return b"".join(parts)

    def _streamed_window(self, start: int) -> _Window:
        # The piece of the block streams that starts at `start`: the next one of the
        # first stream when the reader goes on where it stopped; otherwise (a first read,
        # a jump) the streams start again at `start`.
        feeds = self._feeds
        if feeds and feeds[0].position == start == feeds[0].end:
            feeds.pop(0)
        if not feeds or feeds[0].position != start:
            for feed in feeds:
                feed.cancel()
            feeds.clear()
        position = feeds[-1].end if feeds else start
        while len(feeds) < STREAMED_BLOCKS and position < self.limit:
            number = bisect_right(self._starts, position) - 1
            base = self._starts[number]
            stop = min(self.limit, base + self._sizes[number])
            feeds.append(
                RangeFeed(
                    self._backend,
                    block_path(self.prefix, number),
                    position - base,
                    stop - base,
                    STREAM_PIECE,
                    READ_AHEAD,
                    offset=base,
                )
            )
            position = stop
        try:
            return _Window(*feeds[0].next_piece())
        except BaseException:
            for feed in feeds:
                feed.cancel()
            feeds.clear()
            raise

    def read_ahead(self, start: int, end: int) -> bytes:
        end = min(end, self.limit)
        if start >= end:
            return b""
        with self._lock:
            current = self._current
            missed = current is None or not (current.start <= start < current.end)
            if missed and self._streamed:
                current = self._current = self._streamed_window(start)
            elif missed:
                pending = self._next
                if pending is not None and pending[0] <= start < pending[1]:
                    current = _Window(pending[0], pending[2].result())
                else:
                    if pending is not None:
                        pending[2].cancel()
                    fetched_end = min(self.limit, max(end, start + self._window_size))
                    current = _Window(start, self._fetch_window(start, fetched_end))
                self._current = current
                self._prefetch(current.end)
            if end <= current.end:
                return current.data[start - current.start : end - current.start]
            # The range runs past this window: take its tail and continue in the next one.
            head = current.data[start - current.start :]
            self._current = None
        return head + self.read_ahead(current.end, end)

    def read_paged(self, start: int, end: int) -> bytes:
        end = min(end, self.limit)
        if start >= end:
            return b""
        cache, size, prefix = self._cache, self._page_size, self.prefix
        if cache is None or cache.budget < size:
            # Pages that could not be kept would only make each read larger.
            return self.read(start, end)
        first, last = start // size, (end - 1) // size
        pages = [cache.get((prefix, number)) for number in range(first, last + 1)]
        self._lookups += len(pages)
        self._hits += len(pages) - pages.count(None)
        if self._lookups >= 2 * REUSE_WINDOW:
            self._lookups //= 2
            self._hits //= 2
        number = first
        while number <= last:
            if pages[number - first] is not None:
                number += 1
                continue
            # Fetch each run of missing pages with one request.
            run_end = number
            while run_end < last and pages[run_end + 1 - first] is None:
                run_end += 1
            run_start = number * size
            fetched = self.read(run_start, min(self.limit, (run_end + 1) * size))
            for missing in range(number, run_end + 1):
                page = fetched[(missing - number) * size : (missing - number + 1) * size]
                pages[missing - first] = page
                cache.put((prefix, missing), page)
            number = run_end + 1
        joined = pages[0] if len(pages) == 1 else b"".join(pages)  # type: ignore[arg-type]
        offset = first * size
        return joined[start - offset : end - offset]  # type: ignore[index]

    def read_small(self, start: int, end: int) -> bytes:
        cache = self._cache
        if (
            cache is not None
            and cache.evictions
            and self._lookups >= REUSE_WINDOW
            and self._hits * REUSE_MIN < self._lookups
        ):
            self._bypassed += 1
            if self._bypassed % REUSE_PROBE:
                return self.read(start, end)
        return self.read_paged(start, end)

    def close(self) -> None:
        with self._lock:
            self._current = None
            self._next = None
            for feed in self._feeds:
                feed.cancel()
            self._feeds.clear()
            for pool in (self._pool, self._parts_pool):
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._parts_pool = None


def open_blocks(
    backend: Backend,
    prefix: str,
    sizes: list[int],
    limit: int,
    cache: PageCache | None = None,
    page_size: int = DATA_PAGE_SIZE,
) -> MappedBlocks | RemoteBlocks:
    """A reader of bytes ``[0, limit)`` of the block stream in ``prefix``: mmapped if local.

    On remote stores, :meth:`RemoteBlocks.read_paged` goes through ``cache`` in pages of
    ``page_size`` bytes (no cache: exact reads).
    """
    if backend.capabilities.local_path and backend.local_path(block_path(prefix, 0)) is not None:
        return MappedBlocks(backend, prefix, sizes, limit)
    return RemoteBlocks(backend, prefix, sizes, limit, cache=cache, page_size=page_size)


class BlockWriter:
    """Appends to a block stream, cutting blocks at exactly ``max_file_size`` bytes.

    Like 2.x, a writer continues the last block of the stream and creates the next
    (empty) block as soon as one is full, so what it leaves on storage is byte for byte
    what 2.x would have left.

    On stores without ``capabilities.native_appends`` a flushed block is never
    appended to again (that would upload it whole once more): a writer starts after
    the last non-empty block, and :meth:`flush` closes the block it wrote to, so later
    records go to a new one. Blocks are then shorter than ``max_file_size``; readers,
    2.x's included, take every block at its actual size.
    """

    def __init__(self, backend: Backend, prefix: str, sizes: list[int], max_file_size: int) -> None:
        self._backend = backend
        self._prefix = prefix
        self._max = max_file_size
        self._seal_on_flush = not backend.capabilities.native_appends
        self._number = max(len(sizes) - 1, 0)
        if self._seal_on_flush and sizes and sizes[-1]:
            self._number = len(sizes)
        # Full blocks are closed (flushed: fsynced on local files, uploaded on remote
        # stores) by a background thread while the writer fills the next block;
        # flush() waits for them, so they are durable before any index entry is.
        self._closing: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._appender: Appender = backend.open_append(block_path(prefix, self._number))
        self._position = self._appender.position
        self.total = sum(sizes[: self._number]) + self._position
        if self._position >= self._max:
            self._roll()

    def _roll(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kara-block-close")
        self._closing.append(self._pool.submit(self._appender.close))
        self._number += 1
        self._appender = self._backend.open_append(block_path(self._prefix, self._number))
        self._position = self._appender.position

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (not yet durable: see :meth:`flush`)."""
        # Every view is released explicitly, not when its last reference goes: a frame
        # kept alive by a reference cycle (an exception caught deeper down, in _roll's
        # open_append) would otherwise keep the caller's buffer exported, and the caller
        # (RowWriter's reused BytesIO) could not grow it again.
        with memoryview(data) as whole:
            size = len(whole)
            offset = 0
            while offset < size:
                take = min(size - offset, self._max - self._position)
                with whole[offset : offset + take] as part:
                    self._appender.append(part)
                self._position += take
                offset += take
                if self._position >= self._max:
                    self._roll()
        self.total += size

    def _wait_closing(self) -> None:
        while self._closing:
            self._closing.pop(0).result()

    def flush(self) -> None:
        """Make everything written so far durable and visible."""
        self._wait_closing()
        self._appender.flush()
        if self._seal_on_flush and self._position:
            self._appender.close()
            self._number += 1
            self._appender = self._backend.open_append(block_path(self._prefix, self._number))
            self._position = self._appender.position

    def close(self) -> None:
        """Flush and close the stream."""
        try:
            self._wait_closing()
            self._appender.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def truncate_stream(backend: Backend, prefix: str, sizes: list[int], new_total: int) -> list[int]:
    """Cut the block stream to ``new_total`` bytes and return the new block sizes.

    Blocks wholly past the cut are deleted (the highest first, so a crash half way never
    leaves a gap in the numbering); the block holding the cut is truncated in place on
    local files, or rewritten with its kept prefix through an atomic ``put`` on stores
    that cannot truncate.
    """
    starts = _starts(sizes)
    kept = list(sizes)
    for number in range(len(sizes) - 1, -1, -1):
        start = starts[number]
        path = block_path(prefix, number)
        if start >= new_total and number > 0:
            backend.delete(path)
            kept.pop()
        elif start + sizes[number] > new_total:
            keep = new_total - start
            local = backend.local_path(path) if backend.capabilities.local_path else None
            if local is not None:
                os.truncate(local, keep)
            else:
                backend.put(path, backend.read(path, 0, keep))
            kept[number] = keep
    return kept
