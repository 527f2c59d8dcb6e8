"""The parts of a parallel write: where they are staged and how one part attempt is written.

Everything of a pending parallel write lives under the version's ``.kara/parallel/``
folder, which kara-storage 2.x never opens::

    row/<ns>/<key>/<version>/.kara/parallel/write.json          the write: id, created
    .../.kara/parallel/plan.json                               the commit's chosen attempts
    .../.kara/parallel/parts/<part>.<attempt>.data.<n>.blk      data blocks of one attempt
    .../.kara/parallel/parts/<part>.<attempt>.index.<n>.blk     its index, relative to the part
    .../.kara/parallel/parts/<part>.<attempt>.done.json         written by close(): complete

A part attempt writes its blocks with ``put`` (whole objects, never appends), so on object
stores they are ordinary objects that a server-side copy can move into the version. Its
index holds end offsets relative to the part's own data: the commit shifts them by the
size of the parts before it. An attempt is complete only once ``done.json`` exists, and
only ``close()`` writes it: a task that failed, or a writer dropped without ``close()``,
leaves an incomplete attempt that the commit never takes.
"""

from __future__ import annotations

import io
import os
import re
import time
from array import array
from collections.abc import Callable, Iterable
from itertools import accumulate, islice
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..backend import Backend
from ..errors import ConfigurationError, CorruptDatasetError, WriterFailedError
from ..localdisk import Buffers
from .blocks import LITTLE_ENDIAN, block_path
from .dataset import RowDataset
from .layout import version_prefix
from .snapshot import ENTRY, ascending
from .writer import StopsAtFailure, serialize_into

__all__ = [
    "DATA_STEM",
    "INDEX_STEM",
    "CommitPlan",
    "PartDone",
    "PartWriter",
    "RowPart",
    "WriteMarker",
    "attempt_prefix",
    "check_attempt",
    "part_name",
    "parts_prefix",
    "read_done",
    "read_model",
    "shift_ends",
    "staging_prefix",
    "write_marker_path",
]

#: Digits of a part number in its folder name, so that listings sort parts in order.
PART_DIGITS = 8
#: Block names of an attempt, after its prefix (``data.0.blk``, ``index.0.blk``).
DATA_STEM = "data."
INDEX_STEM = "index."
_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Records that ``write_serialized`` hands to the part writer at a time.
SERIALIZED_CHUNK = 4096


def shift_ends(raw: bytes, offset: int) -> bytes:
    """Index bytes (little-endian 64-bit end offsets) with every end moved by ``offset``."""
    if not offset or not raw:
        return raw
    import numpy  # imported when first needed: it costs a fresh process ~60 ms

    return (numpy.frombuffer(raw, dtype="<u8") + numpy.uint64(offset)).tobytes()


def ends_bytes(ends: Any, size: int) -> bytes:
    """Validated end offsets of records joined in ``size`` bytes, as little-endian 64-bit ints.

    ``ends``: one end per record, relative to the joined bytes: non-decreasing, the last
    one ``size`` (a numpy integer array, an ``array('Q')`` or any sequence of ints).
    """
    import numpy

    if isinstance(ends, numpy.ndarray):
        if ends.ndim != 1 or ends.dtype.kind not in "iu":
            raise ConfigurationError(f"ends must be a 1-dimensional array of integers, got {ends.dtype} {ends.shape}")
        ordered = ascending(ends)
        last = int(ends[-1]) if len(ends) else 0
        raw = ends.astype("<u8", copy=False).tobytes() if ordered else b""
    else:
        try:
            values = array("Q", ends)
        except (OverflowError, TypeError) as exc:
            raise ConfigurationError(f"ends must be non-negative integers: {exc}") from None
        ordered = ascending(values)
        last = values[-1] if values else 0
        if not LITTLE_ENDIAN:
            values.byteswap()
        raw = values.tobytes()
    if not ordered:
        raise ConfigurationError("ends must be non-negative and never decrease (one end offset per record)")
    if last != size:
        raise ConfigurationError(f"the last end ({last}) must be the size of the joined records ({size} bytes)")
    return raw


def staging_prefix(namespace: str, key: str, version: str) -> str:
    """Folder of everything a pending parallel write of ``version`` has staged."""
    return version_prefix(namespace, key, version) + ".kara/parallel/"


def write_marker_path(namespace: str, key: str, version: str) -> str:
    """``write.json``: exists exactly while a parallel write of the version is pending."""
    return staging_prefix(namespace, key, version) + "write.json"


def parts_prefix(namespace: str, key: str, version: str) -> str:
    """Folder holding one sub-folder per part."""
    return staging_prefix(namespace, key, version) + "parts/"


def part_name(part: int) -> str:
    """The folder name of part ``part`` (zero-padded)."""
    return f"{part:0{PART_DIGITS}d}"


def attempt_prefix(namespace: str, key: str, version: str, part: int, attempt: str) -> str:
    """Name prefix of the objects of one attempt at writing one part (``<part>.<attempt>.``).

    All attempts share the ``parts/`` folder: a local store has no folders to create and
    remove per attempt.
    """
    return f"{parts_prefix(namespace, key, version)}{part_name(part)}.{check_attempt(attempt)}."


def check_attempt(attempt: str) -> str:
    """Validate an attempt id (letters, digits, ``_`` and ``-``) and return it."""
    if not isinstance(attempt, str) or not _ATTEMPT.fullmatch(attempt):
        raise ConfigurationError(f"an attempt id is 1-64 letters, digits, '_' or '-', got {attempt!r}")
    return attempt


class WriteMarker(BaseModel):
    """``write.json``: which parallel write of the version is pending, since when."""

    write: str
    created: float
    serializer: str = ""
    #: With ``sync_at_commit``, the registering process's ``Backend.sync_scope()`` (else
    #: empty): parts written in the same scope leave their durability to the commit.
    scope: str = ""


class PartDone(BaseModel):
    """``done.json`` of a complete part attempt: what the commit needs to place it."""

    part: int
    attempt: str
    records: int
    data_blocks: list[int]
    index_blocks: list[int]
    closed: float
    #: Empty: the blocks were durable when the part closed. Otherwise the sync scope
    #: (``Backend.sync_scope()``) whose cache holds them until the commit syncs them.
    unsynced: str = ""


class CommitPlan(BaseModel):
    """``plan.json``: the attempts a commit took, in part order (reruns follow it)."""

    write: str
    parts: list[PartDone]


_Sidecar = TypeVar("_Sidecar", bound=BaseModel)


def read_model(backend: Backend, path: str, model: type[_Sidecar]) -> _Sidecar | None:
    """The JSON object at ``path`` validated as ``model``; None if absent, CorruptDatasetError if bad."""
    raw = backend.read_if_exists(path)
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptDatasetError(f"{backend.url}/{path}", None, f"not a valid {model.__name__}") from exc


def read_done(backend: Backend, prefix: str) -> PartDone | None:
    """The ``done.json`` under an attempt's folder ``prefix``, or None if the attempt is incomplete."""
    done = read_model(backend, prefix + "done.json", PartDone)
    if done is not None and (
        sum(done.index_blocks) != done.records * ENTRY or min([done.records, *done.data_blocks, *done.index_blocks]) < 0
    ):
        detail = f"{done.records} records but index blocks of {done.index_blocks} bytes"
        raise CorruptDatasetError(f"{backend.url}/{prefix}done.json", None, detail)
    return done


class PartWriter(StopsAtFailure):
    """Writes one part attempt: the writer a :class:`RowPart` hands its records to.

    It offers what :class:`RowDataset` asks of a writer (``append``, ``flush``,
    ``close``, ``count``, ``end``, ``forked``). Records are buffered and put as whole
    blocks of about ``block_size`` bytes; the index is put in blocks of the same size.
    With ``unsynced`` (a sync scope, see :meth:`Backend.sync_scope`) the blocks and
    ``done.json`` are put without a sync (:meth:`Backend.put_unsynced`) and ``done.json``
    names the scope: the commit makes them durable, all parts at once.
    """

    def __init__(
        self, backend: Backend, prefix: str, part: int, attempt: str, block_size: int, unsynced: str = ""
    ) -> None:
        self._backend = backend
        self._unsynced = unsynced
        self._put = backend.put_unsynced if unsynced else backend.put
        self._prefix = prefix
        self._pid = os.getpid()
        self._block_size = block_size
        self._entries_per_block = max(1, block_size // ENTRY)
        #: The bytes of the next blocks, in order: bytearrays that records were copied
        #: into, and read-only buffers held as they are (:meth:`append_joined`).
        self._segments: list[bytearray | memoryview] = []
        self._buffered = 0
        #: Where RowDataset.write_many copies records (as into RowWriter.pending); moved
        #: into the block buffer by :meth:`took`, and kept for the writer's lifetime.
        self.pending = io.BytesIO()
        self._ends = array("Q")
        self._data_sizes: list[int] = []
        self._index_sizes: list[int] = []
        self._count = 0
        self.part = part
        self.attempt = attempt
        #: End offset, relative to the part, of the last record appended.
        self.end = 0
        self.closed = False
        #: Set when the records must not count (an exception in the ``with`` block): close
        #: then leaves the attempt incomplete.
        self.discard = False

    def failed_error(self) -> WriterFailedError:
        """The error for a record handed to this attempt after a put of its blocks failed
        (:attr:`failure`): it never completes."""
        return WriterFailedError(
            f"part {self.part} (attempt {self.attempt}) takes no more records: a put of its blocks failed "
            f"({type(self.failure).__name__}: {self.failure}). This attempt will not count: write the part "
            "again (a new attempt)"
        )

    @property
    def forked(self) -> bool:
        """True in a child process that inherited this writer with fork (it must not write)."""
        return os.getpid() != self._pid

    @property
    def count(self) -> int:
        """Records appended to this part so far."""
        return self._count

    def append(self, raws: list[bytes]) -> None:
        """Buffer serialized records; full blocks are put as they fill."""
        self._check_failure()
        if not raws:
            return
        self._copy(raws[0] if len(raws) == 1 else b"".join(raws))
        self._account(list(map(len, raws)))

    def serialize_into(self, objs: list[Any], serialize: Callable[[Any], bytes]) -> None:
        """Serialize ``objs`` into :attr:`pending` and account for them (all or none)."""
        self._check_failure()
        self.took(serialize_into(self.pending, objs, serialize))

    def append_joined(self, data: Any, ends: bytes) -> None:
        """Buffer records joined in ``data``; ``ends``: their ends in it, from :func:`ends_bytes`.

        A read-only ``data`` (bytes, an Arrow buffer) is held as it is until its block is
        put, without a copy; a writable one is copied (its owner may change it).
        """
        self._check_failure()
        if not ends:
            return
        view = memoryview(data).cast("B")
        if view.readonly:
            self._segments.append(view)
            self._buffered += len(view)
        else:
            self._copy(view)
        added = array("Q")
        added.frombytes(shift_ends(ends, self.end))
        if not LITTLE_ENDIAN:
            added.byteswap()
        self._ends += added
        self.end = self._ends[-1]
        self._count += len(ends) // ENTRY
        self._put_full()

    def took(self, sizes: list[int]) -> None:
        """Account for records of these sizes that the caller wrote into :attr:`pending`."""
        if not sizes:
            return
        pending = self.pending
        with pending.getbuffer() as whole, whole[: pending.tell()] as view:
            self._copy(view)
        pending.seek(0)
        self._account(sizes)

    def _account(self, sizes: list[int]) -> None:
        # The records of these sizes are in the block buffer: index them, put full blocks.
        ends = accumulate(sizes, initial=self.end)
        next(ends)  # the initial value: the end of the previous record
        self._ends.extend(ends)
        self.end = self._ends[-1]
        self._count += len(sizes)
        self._put_full()

    def _copy(self, data: Any) -> None:
        last = self._segments[-1] if self._segments else None
        if isinstance(last, bytearray):
            last += data
        else:
            self._segments.append(bytearray(data))
        self._buffered += len(data) if not isinstance(data, memoryview) else data.nbytes

    def _put_full(self) -> None:
        if self._buffered < self._block_size and len(self._ends) < self._entries_per_block:
            return
        with self._storing():
            while self._buffered >= self._block_size:
                self._put_data(self._block_size)
            while len(self._ends) >= self._entries_per_block:
                self._put_index(self._entries_per_block)

    def _put_data(self, size: int) -> None:
        # Blocks are cut at exactly ``size`` bytes (a record may continue in the next one),
        # put from the segments where they are (os.writev on local stores).
        size = min(size, self._buffered)
        if not size:
            return
        views: list[memoryview] = []
        need = size
        while need:
            segment = memoryview(self._segments[0])
            if len(segment) <= need:
                self._segments.pop(0)
                views.append(segment)
                need -= len(segment)
            else:
                views.append(segment[:need])
                self._segments[0] = segment[need:]  # the rest: a view, never appended to
                need = 0
        self._put(
            block_path(self._prefix + DATA_STEM, len(self._data_sizes)), views[0] if len(views) == 1 else Buffers(views)
        )
        self._data_sizes.append(size)
        self._buffered -= size

    def _put_index(self, entries: int) -> None:
        # Index blocks hold whole entries: the commit shifts each block on its own.
        if self._ends:
            ends = self._ends[:entries]
            del self._ends[:entries]
            if not LITTLE_ENDIAN:
                ends.byteswap()
            raw = ends.tobytes()
            self._put(block_path(self._prefix + INDEX_STEM, len(self._index_sizes)), raw)
            self._index_sizes.append(len(raw))

    def flush(self) -> None:
        """Put the buffered records as blocks (they count only once the part is closed)."""
        with self._storing():
            self._put_data(self._buffered)
            self._put_index(len(self._ends))

    def close(self) -> None:
        """Put the last blocks and ``done.json``: from then on the attempt is complete."""
        if self.closed:
            return
        self.closed = True
        if self.forked or self.discard or self.failure is not None:
            return
        self.flush()
        done = PartDone(
            part=self.part,
            attempt=self.attempt,
            records=self._count,
            data_blocks=self._data_sizes,
            index_blocks=self._index_sizes,
            closed=time.time(),
            unsynced=self._unsynced,
        )
        self._put(self._prefix + "done.json", done.model_dump_json().encode())

    def abandon(self) -> None:
        """Give up without completing the attempt."""
        self.discard = True
        self.closed = True


class RowPart(RowDataset):
    """One part of a parallel write: ``write``/``write_many``/``flush``/``close`` as a dataset.

    Get it from :meth:`ParallelWrite.part`. The part counts once :meth:`close` returns;
    leaving a ``with`` block by an exception, or dropping the object without closing it,
    leaves the attempt incomplete (the commit takes another attempt of the part, or fails
    naming it).
    """

    def __init__(self, writer: PartWriter, *dataset: Any) -> None:
        # ``dataset``: RowDataset's identity (backend, namespace, key, version, serializer, options).
        super().__init__(*dataset, writer=writer)  # type: ignore[arg-type]
        self._part_writer = writer

    @property
    def part(self) -> int:
        """The part number (its place in the version)."""
        return self._part_writer.part

    @property
    def attempt(self) -> str:
        """The id of this attempt at writing the part."""
        return self._part_writer.attempt

    @property
    def records(self) -> int:
        """Records written to this part (buffered ones included while it is open)."""
        return len(self) if not self.closed else self._part_writer.count

    def write_serialized(self, raws: Iterable[bytes]) -> int:
        """Append records already serialized (the bytes stored as they are); return the count.

        For engines that encode records themselves (kara-ray's Arrow JSON encoder): the
        bytes must be what the write's serializer would produce, as they are read back
        with it. Nothing is checked but that each record is bytes.
        """
        source = iter(raws)
        total = 0
        while chunk := list(islice(source, SERIALIZED_CHUNK)):
            if not all(isinstance(raw, (bytes, bytearray)) for raw in chunk):
                bad = next(raw for raw in chunk if not isinstance(raw, (bytes, bytearray)))
                raise ConfigurationError(f"serialized records must be bytes, got {type(bad).__name__}")
            with self._lock:
                if self._queue is None or self._writer is None:
                    raise self._unwritable()
                self._drain()
                self._to_writer(self._part_writer.append, chunk)
            total += len(chunk)
        return total

    def write_joined(self, data: Any, ends: Any) -> int:
        """Append serialized records stored back to back in ``data``; return their count.

        ``ends``: the end offset of each record in ``data`` (non-decreasing, the last one
        ``len(data)``), as a numpy integer array or a sequence of ints. No Python object
        per record: the fastest way in for records encoded in bulk (an Arrow string
        array's data and offsets). A read-only ``data`` (bytes, an Arrow buffer) is kept
        by reference until its block is written, without a copy (it must not change
        meanwhile); a writable one is copied into the part's block buffer. Bad ``ends``
        raise :class:`ConfigurationError` and write nothing.
        """
        with memoryview(data) as outer, outer.cast("B") as view:
            raw_ends = ends_bytes(ends, view.nbytes)
            with self._lock:
                if self._queue is None or self._writer is None:
                    raise self._unwritable()
                self._drain()
                self._to_writer(self._part_writer.append_joined, data, raw_ends)
        return len(raw_ends) // ENTRY

    def abandon(self) -> None:
        """Stop writing without completing the attempt (its records will not count)."""
        self._part_writer.discard = True
        super().close()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            self.abandon()
        else:
            self.close()

    def _drop(self) -> None:
        # Unlike a plain dataset, a part dropped without close() does not count.
        self._part_writer.discard = True
        super()._drop()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} records"
        return f"<RowPart {self.part} attempt {self.attempt} of {self._name()} {state} on {self.backend.url}>"
