"""What mixtures, packed views and the torch integration read from: record views.

A *record view* is a fixed-length sequence read in batches of positions:

- ``len(view)``: the number of records (the same in every epoch);
- ``view.fetch(positions, epoch)``: the records at ``positions`` (an int64 array, any
  order, repeats allowed), decoded, as a list in the same order;
- ``view.order_identity()``: JSON-compatible description of what the records at each
  position depend on (the dataset version, the view's parameters), kept in resume states;
- ``view.self_ordered``: True when the view orders its records itself (a mixture), so
  readers take its positions in order instead of shuffling them.

:class:`RowView` adapts a row dataset opened for reading; :func:`as_view` accepts either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigurationError, ModeError
from ..serialization import Serializer, batch_deserializer, serializer_label
from ..serialization.base import recorded_options

__all__ = ["Decoder", "RecordView", "RowView", "as_view", "encoded", "name_undecodable", "pick", "sorted_unique"]

#: Turns a list of encoded records into the records (``Serializer.deserialize_many``).
Decoder = Callable[[list[Any]], list[Any]]

#: Records read together (at most; fewer when they are large), and the bytes of them a
#: view keeps for later calls.
CHUNK_RECORDS = 64
CHUNK_BYTES = 64 * 1024
CACHE_BYTES = 32 * 1024 * 1024
#: At most this many records are cached per view (8 bytes of pool each), and sources of
#: up to DIRECT_CHUNKS chunks find their cached chunks through an array (8 bytes each).
CACHE_SLOTS = 1 << 20
DIRECT_CHUNKS = 1 << 20
#: When the cache can hold a whole source, a missing chunk is read with the missing
#: chunks of its aligned group of this many (one read call instead of one per chunk:
#: they stay cached until their records are asked for).
GROUP_CHUNKS = 16


@runtime_checkable
class RecordView(Protocol):
    """A fixed-length sequence of records read in batches of positions (see the module doc)."""

    self_ordered: bool

    def __len__(self) -> int: ...

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[Any]: ...

    def order_identity(self) -> dict[str, Any]: ...


class RowView:
    """A row dataset (mode ``"r"``) as a record view: batched, grouped ranged reads."""

    self_ordered = False

    def __init__(self, rows: Any) -> None:
        if getattr(rows, "mode", "r") != "r":
            raise ModeError("a mixture or packed view needs row datasets opened with mode 'r'")
        self.rows = rows
        count = len(rows)
        mean = max(1, rows.nbytes() // count) if count else 1
        #: Records per chunk (the unit of reading and caching), and chunks kept.
        self.chunk = max(1, min(CHUNK_RECORDS, CHUNK_BYTES // mean))
        self.cached_chunks = max(4, min(CACHE_BYTES // (self.chunk * mean), CACHE_SLOTS // self.chunk))
        self._many = batch_deserializer(rows.serializer)
        self._decoded = _decodes_runs(rows)
        self._reset_cache()

    @property
    def _direct_reads(self) -> bool:
        # Records in mapped memory (local files) are sliced straight from the map when they
        # are asked for: no chunk reads, no cache, and fresh bytes right before decoding.
        return not self._decoded and bool(getattr(self.rows, "mapped", False)) and hasattr(self.rows, "read_raw_at")

    def _reset_cache(self) -> None:
        # The cache is a pool of `cached_chunks` slots of `chunk` records (an object
        # array); `_slots` maps the chunks held to their slot, oldest read first, and
        # `_direct` does the same as an array indexed by chunk (for sources of up to
        # DIRECT_CHUNKS chunks), so a batch of positions finds its records with numpy alone.
        chunks = -(-len(self.rows) // self.chunk)
        self._chunks = chunks
        self._pool = np.empty(self.cached_chunks * self.chunk, dtype=object)
        self._free = list(range(self.cached_chunks))
        self._slots: OrderedDict[int, int] = OrderedDict()
        self._direct = np.full(chunks, -1, dtype=np.int64) if chunks <= DIRECT_CHUNKS else None

    def __len__(self) -> int:
        return len(self.rows)

    def raws(self, positions: np.ndarray) -> list[bytes]:
        """The stored bytes of the records at ``positions``, in order (see :meth:`raw_items`)."""
        return self.raw_items(positions).tolist()

    def raw_items(self, positions: np.ndarray) -> np.ndarray:
        """The stored bytes of the records at ``positions``, in order, as an object array.

        Records are read in aligned chunks of neighbouring records (consecutive missing
        chunks in one ranged read) kept in a small cache (about CACHE_BYTES): shuffled
        orders take the records of a block over several calls, and packed samples share
        records at their edges. The cached records sit in one object array, so those
        asked for are gathered with one numpy indexing, not a Python step per record.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return np.empty(0, dtype=object)
        if self._direct_reads:
            raws = self.rows.read_raw_at(positions)
            return np.fromiter(raws, dtype=object, count=len(raws))
        size, direct = self.chunk, self._direct
        chunks = positions // size
        if direct is not None:
            slots = direct[chunks]
            if (slots < 0).any():
                self._load(sorted_unique(chunks[slots < 0]).tolist(), chunks)
                slots = direct[chunks]
        else:
            wanted, inverse = np.unique(chunks, return_inverse=True)
            names = wanted.tolist()
            absent = [chunk for chunk in names if chunk not in self._slots]
            if absent:
                self._load(absent, chunks)
            held = self._slots
            slots = np.array([held[chunk] for chunk in names], dtype=np.int64)[inverse.ravel()]
        return self._pool[slots * size + (positions - chunks * size)]

    def _load(self, absent: list[int], chunks: np.ndarray) -> None:
        """Read the chunks ``absent`` (ascending) into free slots; ``chunks`` are the ones
        the current call needs, which are not evicted."""
        if self.cached_chunks >= self._chunks and len(absent) < self._chunks:
            absent = self._grouped(absent)
        if len(absent) > len(self._free):
            self._evict(len(absent) - len(self._free), chunks)
        start = 0
        for end in range(1, len(absent) + 1):
            if end == len(absent) or absent[end] != absent[end - 1] + 1:
                self._read_chunks(absent[start], absent[end - 1] + 1)
                start = end

    def _grouped(self, absent: list[int]) -> list[int]:
        """``absent`` and the other chunks missing from their groups of GROUP_CHUNKS, ascending."""
        held, direct, total = self._slots, self._direct, self._chunks
        out: list[int] = []
        for group in sorted({chunk // GROUP_CHUNKS for chunk in absent}):
            first = group * GROUP_CHUNKS
            members = range(first, min(first + GROUP_CHUNKS, total))
            if direct is not None:
                out.extend((np.flatnonzero(direct[members.start : members.stop] < 0) + first).tolist())
            else:
                out.extend(chunk for chunk in members if chunk not in held)
        return out

    def _evict(self, count: int, chunks: np.ndarray) -> None:
        # Oldest read first out (readers move forward through their sources), sparing the
        # chunks of the current call; when those alone need more slots, the pool grows.
        keep = set(sorted_unique(chunks).tolist())
        size, held, pool, direct = self.chunk, self._slots, self._pool, self._direct
        for chunk in [chunk for chunk in held if chunk not in keep][:count]:
            slot = held.pop(chunk)
            pool[slot * size : (slot + 1) * size] = None
            if direct is not None:
                direct[chunk] = -1
            self._free.append(slot)
            count -= 1
        if count > 0:
            more = self.cached_chunks + count
            self._pool = np.concatenate((pool, np.empty(count * size, dtype=object)))
            self._free.extend(range(self.cached_chunks, more))
            self.cached_chunks = more

    def _read_chunks(self, first: int, stop: int) -> None:
        size, pool, direct = self.chunk, self._pool, self._direct
        # Serializers that decode a run at once (numpy) have their records cached decoded.
        read = self.rows.read_range if self._decoded else self.rows.read_raw_range
        raws = read(first * size, stop * size)
        # fromiter keeps each record as it is (numpy unpacks memoryviews given as a list).
        run = np.fromiter(raws, dtype=object, count=len(raws))
        for chunk in range(first, stop):
            slot = self._free.pop()
            records = run[(chunk - first) * size : (chunk - first + 1) * size]
            pool[slot * size : slot * size + len(records)] = records
            self._slots[chunk] = slot
            if direct is not None:
                direct[chunk] = slot

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[Any]:
        """The decoded records at ``positions`` (each occurrence decoded on its own, unless
        the serializer decodes runs: then the cached records are read-only arrays, shared)."""
        if self._decoded:
            return self.raws(positions)
        try:
            return self._many(self.raws(positions))
        except Exception:
            name_undecodable(self.rows, positions.tolist())
            raise

    def fetch_encoded(self, positions: np.ndarray, epoch: int = 0) -> tuple[np.ndarray, Decoder | None]:
        """The records at ``positions`` still encoded, and what decodes a list of them.

        Readers that use the records a few at a time decode them a few at a time (the
        fresh objects are then still in the CPU cache when used).
        """
        return self.raw_items(positions), None if self._decoded else self._many

    def decoding(self) -> Any:
        """What identifies how this view decodes (views with equal ones share a decoder)."""
        serializer = self.rows.serializer
        kind = type(serializer)
        if not kind.__module__.startswith("kara_core.serialization."):
            return self  # only itself: a user serializer may be configured in any way
        inner = getattr(serializer, "inner", None)
        if inner is not None and not type(inner).__module__.startswith("kara_core.serialization."):
            return self
        return (serializer_label(serializer), repr(sorted(recorded_options(serializer).items())))

    def order_identity(self) -> dict[str, Any]:
        """The dataset version and the slice (what a position means)."""
        rows = self.rows
        return {
            "kind": "rows",
            "namespace": getattr(rows, "namespace", None),
            "key": getattr(rows, "key", None),
            "version": getattr(rows, "version", None),
            "start": getattr(rows, "start", 0),
            "records": len(rows),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_many", "_pool", "_free", "_slots", "_direct"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._many = batch_deserializer(self.rows.serializer)
        self._decoded = _decodes_runs(self.rows)
        self._reset_cache()

    def __repr__(self) -> str:
        return f"RowView({self.rows!r})"


def _decodes_runs(rows: Any) -> bool:
    """Whether ``rows`` decodes runs of records at once (``read_range`` with a zero-copy
    serializer that has its own ``deserialize_joined``)."""
    serializer = rows.serializer
    joined = getattr(type(serializer), "deserialize_joined", Serializer.deserialize_joined)
    own = getattr(serializer, "zero_copy", False) and joined is not Serializer.deserialize_joined
    return bool(own) and hasattr(rows, "read_range")


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-D array: its distinct values, ascending.

    np.unique imports numpy.ma on its first call (about 20 ms), and every forked
    DataLoader worker paid that again in its first batch.
    """
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def pick(values: list[Any], indices: np.ndarray) -> list[Any]:
    """``[values[i] for i in indices]``, without a Python step per item."""
    if len(indices) == 1:
        return [values[int(indices[0])]]
    return list(itemgetter(*indices.tolist())(values))


def name_undecodable(rows: Any, indices: Iterable[int]) -> None:
    """After a batch of records of ``rows`` failed to decode, read them again one by one:
    the first that does not decode alone raises the dataset's own error, which names it
    and where it is stored. Returns if each one decodes (the batch failed for another
    reason, which the caller raises)."""
    for index in indices:
        rows[int(index)]


def encoded(view: Any, positions: np.ndarray, epoch: int = 0) -> tuple[np.ndarray, Decoder | None]:
    """``view.fetch_encoded(positions, epoch)`` when the view has it: the samples still
    encoded (an object array) and their decoder; else its fetched samples and None."""
    fetch_encoded = getattr(view, "fetch_encoded", None)
    if fetch_encoded is not None:
        return fetch_encoded(positions, epoch)
    samples = view.fetch(positions, epoch)
    return np.fromiter(samples, dtype=object, count=len(samples)), None


def as_view(source: Any, what: str = "source") -> Any:
    """``source`` as a record view: a view is returned as it is, a row dataset is wrapped."""
    if isinstance(source, RecordView):
        return source
    if hasattr(source, "read_raw_range") and hasattr(source, "serializer"):
        return RowView(source)
    raise ConfigurationError(
        f"{what} must be a row dataset opened with mode 'r', a mixture or a packed view, got {type(source).__name__}"
    )
