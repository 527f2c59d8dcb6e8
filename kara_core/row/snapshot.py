"""The read side of one version: the records that were complete when it was opened.

A :class:`Snapshot` is immutable once built and shared (reference counted) by a dataset
and its slices; every method is safe to call from several threads at once.

Torn tails: a writer that crashed may have left an index whose last entries point past
the end of the data, or a partial 8-byte entry. The snapshot counts only the records
whose entry is complete and whose bytes are all present, so such a version opens and
reads as its last complete record.
"""

from __future__ import annotations

import struct
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable
from itertools import islice
from operator import le
from typing import Any

from ..backend import Backend
from ..errors import CorruptDatasetError
from .blocks import (
    DATA_PAGE_SIZE,
    DEFAULT_CACHE_SIZE,
    INDEX_PAGE_SIZE,
    LARGE_READ,
    MappedBlocks,
    PageCache,
    RemoteBlocks,
    block_path,
    open_blocks,
    probe_streams,
)

__all__ = ["ENTRY", "Snapshot", "ascending", "complete_extent", "decode_ends", "last_complete"]

#: Size of one index entry (the end offset of a record, unsigned 64-bit little-endian).
ENTRY = 8
_LITTLE = sys.byteorder == "little"
_PAIR = struct.Struct("<QQ")
_ONE = struct.Struct("<Q")
#: Records fetched per sequential refill, and the data bytes one refill aims at (kept
#: small: many large records alive at once make the allocator return and refault memory).
BATCH_RECORDS = 4096
BATCH_BYTES = 1024 * 1024
#: On remote stores an index of at most this many bytes (262,144 records) is read whole
#: when the version opens (one request per index block): the torn-tail check, every
#: sequential refill and every ``ds[i]`` then take record ends from memory, with no
#: index request of their own. Larger indexes (or larger than the snapshot's cache budget)
#: are read in pages and read-ahead windows.
SMALL_INDEX = 2 * 1024 * 1024


def decode_ends(raw: bytes) -> array[int]:
    """Decode index bytes into record end offsets."""
    ends = array("Q", raw)
    if not _LITTLE:
        ends.byteswap()
    return ends


def ascending(values: Any, floor: int = 0) -> bool:
    """Whether ``values`` (a numpy integer array or a sequence of ints), end offsets,
    start at ``floor`` or above and never decrease (with numpy: vector comparisons)."""
    if not len(values):
        return True
    if hasattr(values, "ndim"):
        return bool(values[0] >= floor and (values[1:] >= values[:-1]).all())
    return values[0] >= floor and all(map(le, values, islice(values, 1, None)))


def complete_extent(backend: Backend, index_prefix: str, index_sizes: list[int], data_bytes: int) -> tuple[int, int]:
    """How many records are complete, and where the last one ends in the data stream.

    A record is complete when its whole 8-byte index entry is stored and its end is within
    the ``data_bytes`` stored. End offsets never decrease, so when the last entry points
    past the data a binary search finds the last complete record in O(log n) reads. The
    entries are read with ranged reads, never mapped: a writer repairing this torn tail
    may be truncating those very bytes.
    """
    entries = sum(index_sizes) // ENTRY
    if not entries:
        return 0, 0
    reader = RemoteBlocks(backend, index_prefix, index_sizes, entries * ENTRY)
    try:

        def end_of(i: int) -> int:
            return _ONE.unpack(reader.read(i * ENTRY, (i + 1) * ENTRY))[0]

        return last_complete(entries, end_of, data_bytes)
    finally:
        reader.close()


def last_complete(entries: int, end_of: Callable[[int], int], data_bytes: int) -> tuple[int, int]:
    """How many of ``entries`` records end within ``data_bytes``, and where the last of them
    ends, given ``end_of(i)``, the end offset of record ``i`` (never decreasing): the last
    entry first, then a binary search (O(log n) calls)."""
    if not entries:
        return 0, 0
    last = end_of(entries - 1)
    if last <= data_bytes:
        return entries, last
    lo, hi = 0, entries - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if end_of(mid - 1) <= data_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo, end_of(lo - 1) if lo else 0


class Snapshot:
    """Read access to records ``[0, count)`` of one version, as stored when it was opened.

    On remote stores, random access reads index entries and small records through one
    page cache of at most ``cache_size`` bytes (0: no cache, exact ranged reads).
    """

    def __init__(
        self, backend: Backend, index_prefix: str, data_prefix: str, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.backend = backend
        self.index_prefix = index_prefix
        self.data_prefix = data_prefix
        index_sizes, data_sizes = probe_streams(backend, [index_prefix, data_prefix])
        stored_data = sum(data_sizes)
        entries = sum(index_sizes) // ENTRY
        in_memory: array[int] | None = None
        local = backend.capabilities.local_path and backend.local_path(block_path(index_prefix, 0)) is not None
        if entries and not local and entries * ENTRY <= min(SMALL_INDEX, cache_size):
            whole = RemoteBlocks(backend, index_prefix, index_sizes, entries * ENTRY)
            try:
                in_memory = decode_ends(whole.read(0, entries * ENTRY))
            finally:
                whole.close()
            self.count, self.data_bytes = last_complete(entries, in_memory.__getitem__, stored_data)
        else:
            self.count, self.data_bytes = complete_extent(backend, index_prefix, index_sizes, stored_data)
        # Only the complete records are read: bytes past them may be cut by a writer. That
        # also keeps the page cache correct: below the limit the streams never change.
        self._cache = PageCache(cache_size)
        self.index = open_blocks(backend, index_prefix, index_sizes, self.count * ENTRY, self._cache, INDEX_PAGE_SIZE)
        self.index_blocks = len(index_sizes)
        self.data_blocks = len(data_sizes)
        self.stored_index_bytes = sum(index_sizes)
        self.stored_data_bytes = stored_data
        self._ends: memoryview | None = None
        if _LITTLE and isinstance(self.index, MappedBlocks) and self.index.single is not None:
            self._ends = memoryview(self.index.single).cast("Q")
        elif in_memory is not None:
            self._ends = memoryview(in_memory)[: self.count]
        self.data = open_blocks(backend, data_prefix, data_sizes, self.data_bytes, self._cache, DATA_PAGE_SIZE)
        self._single = self.data.single if isinstance(self.data, MappedBlocks) else None
        self._mapped = isinstance(self.data, MappedBlocks)
        self._refs = 1
        self._refs_lock = threading.Lock()

    # -- lifetime ------------------------------------------------------------------

    def share(self) -> Snapshot:
        """Take one more reference (a slice sharing this snapshot)."""
        with self._refs_lock:
            self._refs += 1
        return self

    def release(self) -> None:
        """Drop one reference; the last one unmaps files and stops read-ahead threads."""
        with self._refs_lock:
            self._refs -= 1
            if self._refs:
                return
        if self._ends is not None:
            self._ends.release()
            self._ends = None
        self.index.close()
        self.data.close()
        self._cache.clear()

    # -- index ---------------------------------------------------------------------

    def end(self, i: int) -> int:
        """End offset of record ``i`` in the data stream (``-1``: 0)."""
        if i < 0:
            return 0
        ends = self._ends
        if ends is not None:
            return ends[i]
        return _ONE.unpack(self.index.read_paged(i * ENTRY, (i + 1) * ENTRY))[0]

    def ends(self, start: int, stop: int, sequential: bool) -> memoryview | array[int]:
        """End offsets of records ``[start, stop)``."""
        ends = self._ends
        if ends is not None:
            return ends[start:stop]
        if sequential:
            read = self.index.read_ahead
        elif (stop - start) * ENTRY <= INDEX_PAGE_SIZE:
            read = self.index.read_paged
        else:
            read = self.index.read
        return decode_ends(read(start * ENTRY, stop * ENTRY))

    def _index_error(self, i: int, message: str) -> CorruptDatasetError:
        """The error for a damage found at record ``i``'s index entry (its block and offset)."""
        number, offset = self._index_location(i)
        return CorruptDatasetError(f"{self.backend.url}/{block_path(self.index_prefix, number)}", offset, message)

    def _corrupt(self, i: int, start: int, end: int) -> CorruptDatasetError:
        message = f"record {i} ends at data offset {end}, before it starts ({start}): the index is damaged"
        return self._index_error(i, message)

    def _unordered(self, start: int, first: int, ends: Any) -> CorruptDatasetError:
        # The error for end offsets of records ``start, start + 1, ...`` (after ``first``,
        # where record ``start`` begins) that are not ascending: at the first that decreases.
        bounds = [first, *(int(end) for end in ends)]
        bad = next(k for k in range(len(bounds) - 1) if bounds[k + 1] < bounds[k])
        return self._corrupt(start + bad, bounds[bad], bounds[bad + 1])

    def _block_location(self, prefix: str, blocks: int, offset: int) -> tuple[int, int]:
        """The block of stream ``prefix`` (of ``blocks`` blocks) holding byte ``offset`` of
        the stream, and the offset in it (past the last block: in the last one), for errors."""
        for number in range(blocks):
            size = self.backend.size(block_path(prefix, number)) or 0
            if offset < size:
                return number, offset
            offset -= size
        return blocks - 1, offset

    def _index_location(self, i: int) -> tuple[int, int]:
        return self._block_location(self.index_prefix, self.index_blocks, i * ENTRY)

    def record_location(self, i: int) -> str:
        """Where record ``i``'s bytes are stored (its data block and offset there), for errors."""
        start, end = self.end(i - 1), self.end(i)
        if not self.data_blocks:
            return f"its {end - start} bytes at offset {start} of the data of {self.backend.url}/{self.data_prefix}"
        number, offset = self._block_location(self.data_prefix, self.data_blocks, start)
        path = block_path(self.data_prefix, number)
        return f"its {end - start} bytes at offset {offset} of {self.backend.url}/{path}"

    # -- records -------------------------------------------------------------------

    def raw(self, i: int, view: bool = False) -> bytes:
        """The stored bytes of record ``i`` (the caller checked ``0 <= i < count``).

        With ``view``, a record in one mapped block comes as a read-only memoryview of
        the map (no copy).
        """
        ends = self._ends
        if ends is not None:
            start = ends[i - 1] if i else 0
            end = ends[i]
        elif i:
            start, end = _PAIR.unpack(self.index.read_paged((i - 1) * ENTRY, (i + 1) * ENTRY))
        else:
            start, end = 0, self.end(0)
        if end < start:
            raise self._corrupt(i, start, end)
        if view and self._mapped:
            mapped = self.data.view(start, end)  # type: ignore[attr-defined]
            if mapped is not None:
                return mapped  # type: ignore[return-value]
        single = self._single
        if single is not None and end - start < LARGE_READ:
            return single[start:end]
        if end - start < DATA_PAGE_SIZE:
            # On remote stores a miss costs one request, as an exact read would, and brings
            # the neighbouring records along; on local files this is a plain read.
            return self.data.read_small(start, end)
        return self.data.read(start, end)

    def raw_joined(self, start: int, stop: int) -> tuple[bytes, array[int]]:
        """The stored bytes of records ``[start, stop)`` back to back, and their end offsets.

        One index read and one data read; record ``start + k`` is
        ``data[ends[k - 1]:ends[k]]`` (from 0 for ``k == 0``). No object per record: the
        bulk accessor for readers that split the records with vector operations.
        """
        if start >= stop:
            return b"", array("Q")
        first = self.end(start - 1)
        ends = self.ends(start, stop, False)
        import numpy

        absolute = numpy.frombuffer(ends, dtype=numpy.uint64)
        if not ascending(absolute, first):
            raise self._unordered(start, first, absolute)
        relative = array("Q")
        relative.frombytes((absolute - numpy.uint64(first)).tobytes())
        return self.data.read(first, int(absolute[-1])), relative

    @property
    def mapped(self) -> bool:
        """True when the index and the data are each one mapped block (:meth:`raw_at` works)."""
        return self._ends is not None and self._single is not None and isinstance(self.index, MappedBlocks)

    def raw_at(self, indices: Any, view: bool = False) -> list[bytes] | None:
        """The stored bytes of the records at ``indices`` (an int64 numpy array of valid
        record numbers, any order, repeats allowed), or None unless :attr:`mapped`.

        Their bounds come from the mapped index with one vector lookup, then each record is
        one slice of the mapped data (with ``view``: a read-only memoryview, no copy).
        """
        if not self.mapped:
            return None
        import numpy

        ends = numpy.frombuffer(self._ends, dtype=numpy.uint64)  # type: ignore[arg-type]
        hi = ends[indices].astype(numpy.int64)
        lo = numpy.where(indices > 0, ends[indices - 1], 0).astype(numpy.int64)
        if (hi < lo).any():
            bad = int(numpy.flatnonzero(hi < lo)[0])
            raise self._corrupt(int(indices[bad]), int(lo[bad]), int(hi[bad]))
        data: Any = self._single
        if view:
            data = self.data.view(0, self.data_bytes)  # type: ignore[attr-defined]
        return [data[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]

    def group_run(self, start: int, stop: int, sequential: bool, budget: int | None = None) -> Any:
        """Records ``[start, stop)`` as the record groups that hold them (a
        :class:`~kara_core.row.groups.GroupRun`), or None: this layout stores records one
        by one (see GroupedSnapshot)."""
        return None

    def mapped_run(self, start: int, stop: int, budget: int) -> tuple[memoryview, Any] | None:
        """Records ``[start, stop)`` as one read-only view of mapped memory and their bounds.

        The range is cut short once it holds ``budget`` data bytes (at least one record
        is kept). Returns ``(view, bounds)``: record ``start + k`` is
        ``view[bounds[k]:bounds[k + 1]]`` (``bounds`` an int64 numpy array, ``bounds[0]``
        is 0). None when the records are not in one mapped block with the index mapped
        too (remote stores, a range crossing blocks): the caller reads them another way.
        No object per record: the sequential reader of array records decodes a run at once.
        """
        ends_view = self._ends
        if start >= stop or ends_view is None or not self._mapped:
            return None
        import numpy

        first = self.end(start - 1)
        ends = numpy.frombuffer(ends_view[start:stop], dtype=numpy.uint64).astype(numpy.int64)
        if ends[-1] - first > budget:
            ends = ends[: max(1, int(numpy.searchsorted(ends, first + budget, side="right")))]
        if not ascending(ends, first):
            raise self._unordered(start, first, ends)
        mapped = self.data.view(first, int(ends[-1]))  # type: ignore[attr-defined]
        if mapped is None:
            return None
        bounds = numpy.empty(len(ends) + 1, dtype=numpy.int64)
        bounds[0] = 0
        numpy.subtract(ends, first, out=bounds[1:])
        return mapped, bounds

    def raw_range(
        self, start: int, stop: int, sequential: bool, budget: int | None = None, view: bool = False
    ) -> list[bytes]:
        """The stored bytes of records ``[start, stop)``, from one index and one data read.

        With ``budget`` the range may be cut short once it holds ``budget`` data bytes
        (at least one record is always returned): sequential readers refill by it. With
        ``view``, records in one mapped block come as read-only memoryviews (no copy).
        """
        if start >= stop:
            return []
        if sequential and start and self._ends is None:
            # The previous record's end comes with this range's, from the index's
            # read-ahead window: no separate (paged) index request per refill.
            both = self.ends(start - 1, stop, True)
            first, ends = both[0], both[1:]
        else:
            first = self.end(start - 1)
            ends = self.ends(start, stop, sequential)
        if budget is not None and ends[-1] - first > budget:
            # Cut before decoding: a refill of a few large records decodes only theirs.
            ends = ends[: max(1, bisect_right(ends, first + budget))]
        bounds = [first, *ends.tolist()]
        starts, ends = bounds[:-1], bounds[1:]
        if not all(map(le, starts, ends)):
            bad = next(k for k, (a, b) in enumerate(zip(starts, ends, strict=True)) if b < a)
            raise self._corrupt(start + bad, starts[bad], ends[bad])
        last = bounds[-1]
        if view and self._mapped:
            mapped = self.data.view(first, last)  # type: ignore[attr-defined]
            if mapped is not None:
                return [mapped[a - first : b - first] for a, b in zip(starts, ends, strict=True)]
        single = self._single
        if single is not None and last - first < LARGE_READ * len(ends):
            return [single[a:b] for a, b in zip(starts, ends, strict=True)]
        if self._mapped:
            read = self.data.read
            return [read(a, b) for a, b in zip(starts, ends, strict=True)]
        buf = self._read_unmapped(first, last, sequential)
        return [buf[a - first : b - first] for a, b in zip(starts, ends, strict=True)]

    def _read_unmapped(self, first: int, last: int, sequential: bool) -> bytes:
        """Data bytes ``[first, last)`` of a stream that is not mapped (a remote store): by
        read-ahead for sequential readers, through the page cache when small, else exact."""
        if sequential:
            return self.data.read_ahead(first, last)
        if last - first < DATA_PAGE_SIZE:
            return self.data.read_small(first, last)
        return self.data.read(first, last)
