"""Record groups in the 2.x layout: several records stored as one compressed frame.

A serializer with a :class:`~kara_core.serialization.base.GroupCodec` (``json+zstd``)
has its records stored a group at a time. The layout stays 2.x's, one index entry per
record: a group's first record holds the whole frame, and the group's other records are
empty (their entries repeat the first one's end). A reader finds record ``i``'s group by
walking back over empty entries to the non-empty one, at most ``codec.records - 1``
entries; the frame decodes to the group's records
(:func:`~kara_core.serialization.groups.split_group`), of which record ``i`` is number
``i - first``.

A writer killed between the index entries of one group leaves the group with fewer
entries than the frame holds records: the records without an entry are not part of the
version, exactly as ungrouped records whose entries were cut, and the next group starts
with the next non-empty entry. So the frame may hold more records than its entries, never
fewer.

:class:`GroupingWriter` wraps a row writer (:class:`~kara_core.row.writer.RowWriter` or a
part writer) and :class:`GroupedSnapshot` is the :class:`~kara_core.row.snapshot.Snapshot`
that reads such versions: above them, the records' bytes are the plain ones the
serializer's ``deserialize`` takes.
"""

from __future__ import annotations

import io
from array import array
from bisect import bisect_right
from itertools import accumulate, pairwise
from operator import le
from typing import Any, cast

from ..backend import Backend
from ..errors import CorruptDatasetError, SerializationError
from ..serialization import Serializer
from ..serialization.base import GroupCodec
from ..serialization.groups import join_group, lines_group_size, split_group
from .blocks import LITTLE_ENDIAN
from .snapshot import DEFAULT_CACHE_SIZE, Snapshot
from .writer import serialize_into

__all__ = ["GroupRun", "GroupedSnapshot", "GroupingWriter", "grouping_writer", "open_snapshot"]


def open_snapshot(
    backend: Backend, index_prefix: str, data_prefix: str, serializer: Serializer, cache_size: int = DEFAULT_CACHE_SIZE
) -> Snapshot:
    """The snapshot that reads a version whose records ``serializer`` stored."""
    codec = _codec_of(serializer)
    if codec is None:
        return Snapshot(backend, index_prefix, data_prefix, cache_size)
    return GroupedSnapshot(backend, index_prefix, data_prefix, codec, cache_size)


def grouping_writer(writer: Any, serializer: Serializer) -> Any:
    """``writer`` itself, or wrapped in a :class:`GroupingWriter` if ``serializer`` groups."""
    codec = _codec_of(serializer)
    return writer if codec is None else GroupingWriter(writer, codec)


def _codec_of(serializer: Serializer) -> GroupCodec | None:
    # Objects that only have serialize/deserialize (accepted as serializers) never group.
    groups = getattr(serializer, "record_groups", None)
    return groups() if groups is not None else None


class GroupingWriter:
    """Joins the records handed to a row writer into groups and hands it the frames.

    It offers what :class:`~kara_core.row.dataset.RowDataset` asks of a writer
    (``append``, ``serialize_into`` / ``pending`` / ``took``, ``flush``, ``close``,
    ``count``, ``end``) and passes everything else to the writer it wraps. The records of
    the open group wait in :attr:`pending`; ``flush`` and ``close`` close it, so a
    flushed record is in a frame on storage like any other.
    """

    def __init__(self, writer: Any, codec: GroupCodec) -> None:
        self._writer = writer
        self._codec = codec
        #: The open group's records back to back (RowDataset.write_many serializes into it).
        self.pending = io.BytesIO()
        self._sizes: list[int] = []
        #: Bytes of records appended (before compression), the open group's included.
        self.end = writer.end

    def __getattr__(self, name: str) -> Any:
        # part / attempt / discard / forked / closed ... of the wrapped writer.
        return getattr(self._writer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("discard",):
            setattr(self._writer, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def count(self) -> int:
        """Records appended, the open group's included."""
        return self._writer.count + len(self._sizes)

    def append(self, raws: list[bytes]) -> None:
        """Add serialized records to the open group (closing groups as they fill)."""
        if raws:
            self.pending.writelines(raws)
            self.took(list(map(len, raws)))

    def serialize_into(self, objs: list[Any], serialize: Any) -> None:
        """Serialize ``objs`` into :attr:`pending` and account for them (all or none)."""
        self.took(serialize_into(self.pending, objs, serialize))

    def append_joined(self, data: Any, ends: bytes) -> None:
        """Records joined in ``data`` with their ends (a part writer's bulk append)."""
        bounds = array("Q")
        bounds.frombytes(bytes(ends))
        if not LITTLE_ENDIAN:
            bounds.byteswap()
        if not bounds:
            return
        with memoryview(data).cast("B") as view:
            self.pending.write(view[: bounds[-1]])
        self.took([b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)])

    def took(self, sizes: list[int]) -> None:
        """Account for records of these sizes written into :attr:`pending`."""
        if not sizes:
            return
        self._sizes.extend(sizes)
        self.end += sum(sizes)
        codec = self._codec
        if len(self._sizes) >= codec.records or self.pending.tell() >= codec.nbytes:
            self._cut(final=False)

    def _cut(self, final: bool) -> None:
        # Closes the full groups of the open records (all of them when ``final``) and
        # hands their frames to the writer; the records of a group not yet full stay.
        codec, sizes = self._codec, self._sizes
        if not sizes:
            return
        whole = self.pending.getbuffer()
        try:
            frames: list[bytes] = []
            start = first = 0
            taken = 0
            for k, size in enumerate(sizes):
                taken += size
                if k + 1 - first >= codec.records or taken >= codec.nbytes:
                    frames.append(self._frame(whole, start, sizes[first : k + 1]))
                    frames.extend([b""] * (k - first))
                    start += taken
                    taken, first = 0, k + 1
            if final and first < len(sizes):
                frames.append(self._frame(whole, start, sizes[first:]))
                frames.extend([b""] * (len(sizes) - first - 1))
                start += taken
                first = len(sizes)
            rest = bytes(whole[start : self.pending.tell()])
        finally:
            whole.release()
        self._writer.append(frames)
        del sizes[:first]
        # Rewound, not truncated: the buffer keeps its memory (see RowWriter.pending).
        self.pending.seek(0)
        self.pending.write(rest)

    def _frame(self, whole: memoryview, start: int, sizes: list[int]) -> bytes:
        bounds = list(accumulate(sizes, initial=start))
        records = [whole[a:b] for a, b in pairwise(bounds)]
        try:
            return self._codec.encode(join_group(records, self._codec.lines))
        finally:
            for record in records:
                record.release()

    def flush(self) -> None:
        """Close the open group, then make every record durable (the writer's flush)."""
        self._cut(final=True)
        self._writer.flush()

    def close(self) -> None:
        """Close the open group and the writer (a part left incomplete drops it)."""
        writer = self._writer
        if writer.closed:
            return
        try:
            if not writer.forked and not getattr(writer, "discard", False):
                self._cut(final=True)
        finally:
            writer.close()

    def abandon(self) -> None:
        """Drop the open group and abandon the writer."""
        self._sizes.clear()
        self._writer.abandon()


class GroupedSnapshot(Snapshot):
    """A :class:`Snapshot` of a version whose records are stored in groups.

    Every accessor returns the records' plain bytes (what the group's frame holds), never
    views of mapped memory; the last group decoded is kept, so neighbouring ``ds[i]``
    decode it once.
    """

    def __init__(
        self,
        backend: Backend,
        index_prefix: str,
        data_prefix: str,
        codec: GroupCodec,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        super().__init__(backend, index_prefix, data_prefix, cache_size)
        self._codec = codec
        #: (first record, its group's records) of the group decoded last.
        self._last: tuple[int, list[bytes]] = (-1, [])

    @property
    def mapped(self) -> bool:
        return False  # records are decoded from frames, never sliced from the map

    def raw_at(self, indices: Any, view: bool = False) -> list[bytes] | None:
        return None

    def mapped_run(self, start: int, stop: int, budget: int) -> tuple[memoryview, Any] | None:
        return None

    def _first_of(self, i: int) -> int:
        """The first record of record ``i``'s group (the one whose entry is not empty)."""
        span = self._codec.records
        low = max(0, i - span + 1)
        ends = self.ends(low, i + 1, False).tolist()
        end = ends[-1]
        before = self.end(low - 1)
        bounds = [before, *ends]
        for k in range(len(ends) - 1, -1, -1):
            if bounds[k] != end:
                if bounds[k] > end:
                    raise self._corrupt(low + k, bounds[k], end)
                return low + k
        message = f"record {i} is stored in a group, but no record of the {span} before it starts one"
        raise self._index_error(i, f"{message}: the index is damaged")

    def _plain(self, first: int, frame: bytes | memoryview, split: bool) -> tuple[bytes, int] | list[bytes]:
        # The group starting at record ``first``: its records, split and checked; or, when
        # not ``split`` and it is in the newline form, its plain bytes and record count.
        try:
            plain = self._codec.decode(bytes(frame))
            held = None if split else lines_group_size(plain)
            return (plain, held) if held is not None else split_group(plain)
        except SerializationError as exc:
            raise self._index_error(
                first, f"the group of records starting at record {first} cannot be decoded: {exc}"
            ) from None

    def _group(self, first: int, frame: bytes | memoryview | None = None) -> list[bytes]:
        last = self._last
        if last[0] == first:
            return last[1]
        records = cast(list[bytes], self._plain(first, super().raw(first) if frame is None else frame, True))
        self._last = (first, records)
        return records

    def _beyond(self, held: int, first: int, i: int) -> CorruptDatasetError:
        return self._index_error(
            i,
            f"record {i} is number {i - first} of the group starting at record {first}, "
            f"which holds {held} records: the index is damaged",
        )

    def record_location(self, i: int) -> str:
        """Where record ``i`` is stored: in the frame of its group (for errors)."""
        first = self._first_of(i)
        return f"{super().record_location(first)}, the group of records starting at record {first} that holds it,"

    def raw(self, i: int, view: bool = False) -> bytes:
        first = self._first_of(i)
        records = self._group(first)
        if i - first >= len(records):
            raise self._beyond(len(records), first, i)
        return records[i - first]

    def raw_range(
        self, start: int, stop: int, sequential: bool, budget: int | None = None, view: bool = False
    ) -> list[bytes]:
        out: list[bytes] = []
        for piece, lo, hi in self._pieces(start, stop, sequential, budget, False):
            out.extend(piece[lo:hi] if lo or hi < len(piece) else piece)
        return out

    def group_run(self, start: int, stop: int, sequential: bool, budget: int | None = None) -> GroupRun | None:
        """Records ``[start, stop)`` (cut as :meth:`raw_range` cuts) as the plain groups
        that hold them, for a sequential read that decodes a group at a time with the
        codec's ``decode_values``; None when the codec has none."""
        decode = self._codec.decode_values
        if decode is None:
            return None
        return GroupRun(self._pieces(start, stop, sequential, budget, True), decode)

    def _pieces(
        self, start: int, stop: int, sequential: bool, budget: int | None, plain: bool
    ) -> list[tuple[Any, int, int]]:
        # The groups of records [start, stop) as (group, lo, hi): records lo..hi of the
        # group are in the range. A group is its records (split), or with ``plain``
        # (plain bytes, records) where it is in the newline form (split later, or
        # decoded at once).
        if start >= stop:
            return []
        first = self._first_of(start)
        low = self.end(first - 1)
        ends = self.ends(first, stop, sequential).tolist()
        if budget is not None and ends[-1] - low > budget:
            # Cut by stored bytes, keeping at least the records up to ``start``.
            ends = ends[: max(start - first + 1, bisect_right(ends, low + budget))]
        bounds = [low, *ends]
        if not all(map(le, bounds[:-1], ends)):
            raise self._unordered(first, low, ends)
        data = self._stored(low, ends[-1], sequential)
        out: list[tuple[Any, int, int]] = []
        count = len(ends)
        k = 0
        while k < count:
            # Record first + k starts a group: its frame, then the entries that end where
            # it ends (bisect, ends ascend) are the group's other records.
            # (bisect_right skipped every entry equal to the last group's end, so this
            # one is not empty; nor is the first, found by _first_of.)
            head, tail = bounds[k], bounds[k + 1]
            following = bisect_right(ends, tail, k + 1)
            frame = data[head - low : tail - low]
            try:
                group = self._plain(first + k, frame, False) if plain else self._group(first + k, frame)
            except CorruptDatasetError:
                if first + k <= start:
                    raise  # the group of record ``start``: as ds[start] would raise
                break  # the records before it are good: the next read starts at the damage
            held = len(group) if isinstance(group, list) else group[1]
            lo = start - first - k if k == 0 else 0
            if following - k > held:
                # The index gives the group more records than its frame holds: those
                # past the frame raise, as ds[i] does, once the reads reach them.
                if first + k + held <= start:
                    raise self._beyond(held, first + k, start)
                out.append((group, lo, held))
                break
            out.append((group, lo, following - k))
            k = following
        return out

    def _stored(self, start: int, end: int, sequential: bool) -> bytes | memoryview:
        # The stored bytes [start, end) of the data stream, read as Snapshot.raw_range does.
        single = self._single
        if single is not None:
            return single[start:end]
        if self._mapped:
            return self.data.read(start, end)
        return self._read_unmapped(start, end, sequential)

    def raw_joined(self, start: int, stop: int) -> tuple[bytes, array[int]]:
        records = self.raw_range(start, stop, False)
        ends = array("Q", accumulate(map(len, records)))
        return b"".join(records), ends


class GroupRun:
    """Records of a grouped version held as the plain groups they are in: the batch of a
    sequential read (see RowDataset.__iter__), which decodes a group at a time.

    :attr:`pieces` are ``(group, lo, hi)``: records ``lo..hi`` of ``group`` (``(plain
    bytes, records)`` for a group in the newline form, or its records split) are in the
    run, in order.
    ``run[i]`` is the plain bytes of the run's record ``i`` (what ``raw_range`` gives),
    ``run[k:]`` the run from record ``k`` on; :attr:`decode` decodes a plain group whole
    (``GroupCodec.decode_values``).
    """

    __slots__ = ("_split", "_starts", "decode", "pieces")

    def __init__(self, pieces: list[tuple[Any, int, int]], decode: Any) -> None:
        self.pieces = pieces
        self.decode = decode
        self._starts = list(accumulate((hi - lo for _, lo, hi in pieces), initial=0))
        self._split: tuple[int, list[bytes]] = (-1, [])

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: Any) -> Any:
        length = self._starts[-1]
        if isinstance(index, slice):
            begin, end, step = index.indices(length)
            if step != 1 or end != length:
                raise ValueError("a GroupRun slices as run[k:] only")
            if begin >= length:
                return GroupRun([], self.decode)
            n = bisect_right(self._starts, begin) - 1
            group, lo, hi = self.pieces[n]
            return GroupRun([(group, lo + begin - self._starts[n], hi), *self.pieces[n + 1 :]], self.decode)
        if not 0 <= index < length:
            raise IndexError(f"record {index} of a run of {length}")
        n = bisect_right(self._starts, index) - 1
        group, lo, _ = self.pieces[n]
        if self._split[0] != n:
            self._split = (n, group if isinstance(group, list) else split_group(group[0]))
        return self._split[1][lo + index - self._starts[n]]
