"""RowDataset: the kara-storage 2.x row dataset API over a snapshot (read) or a writer (write)."""

from __future__ import annotations

import atexit
import io
import logging
import operator
import sys
import threading
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from operator import length_hint
from typing import TYPE_CHECKING, Any

import orjson

from ..backend import Backend
from ..errors import (
    ConfigurationError,
    CorruptDatasetError,
    DatasetClosedError,
    EndOfDatasetError,
    KaraError,
    ModeError,
    RecordIndexError,
    SerializationError,
)
from ..serialization import (
    JSONSerializer,
    NoSerializer,
    PickleSerializer,
    Serializer,
    batch_deserializer,
    serializer_label,
)
from ..serialization.groups import split_group
from ..serialization.plain import native_decoder
from .groups import GroupRun, open_snapshot
from .layout import data_prefix, index_prefix, read_meta, resolve_version
from .snapshot import BATCH_BYTES, BATCH_RECORDS, Snapshot
from .workers import warn_if_in_dataloader_worker
from .writer import RowWriter

if TYPE_CHECKING:
    from .shard import RowShard

__all__ = ["RowDataset"]

_log = logging.getLogger(__name__)

#: Datasets opened for writing and not closed yet. At interpreter exit they are dropped
#: (closed and flushed, as 2.x's garbage collector did; parts abandoned) by an atexit
#: hook, while the interpreter still works: left to their finalizers during module
#: teardown, their writer locks could not be released (builtins are gone by then) and
#: stayed behind, making a writer on another host wait for the lock to expire.
_OPEN_WRITERS: weakref.WeakSet[RowDataset] = weakref.WeakSet()


@atexit.register
def _drop_open_writers() -> None:
    for dataset in list(_OPEN_WRITERS):
        if dataset.closed:
            continue
        try:
            dataset._drop()
        except Exception:  # noqa: BLE001 - one dataset's failure must not keep the others open
            _log.exception("closing %r at exit failed", dataset)


#: Records ``write_many`` serializes at a time (its first chunk; later ones by bytes).
DRAIN_RECORDS = 512
#: ``write`` queues serialized records of fewer than QUEUE_BYTES bytes without taking
#: the dataset's lock, and hands QUEUE_RECORDS of them to the writer at a time (under
#: the lock). Larger records go to the writer at once. So at most 64 KiB of records wait
#: to be freed together: too little for glibc to trim and regrow the heap (see
#: RowWriter.pending).
QUEUE_RECORDS = 64
QUEUE_BYTES = 1024
#: The bytes ``write_many`` aims a chunk at after the first, and the mean record size
#: from which it appends records directly instead of copying them.
MANY_BYTES = 1024 * 1024
DIRECT_MEAN = 16 * 1024
#: Records a sequential read decodes at a time with ``deserialize_many``.
DECODE_RECORDS = 32


#: Marks "no default given" for read(): None is a valid default.
_RAISE: Any = object()

#: Serializers known to return bytes (others are checked record by record).
_BUILTIN_SERIALIZE = (JSONSerializer.serialize, PickleSerializer.serialize, NoSerializer.serialize)

#: What names a dataset's records wherever it is opened again (its slices, its unpickled
#: copies): the first six arguments of RowDataset.
_Identity = tuple[Backend, str, str, str, Serializer, dict[str, int]]


def _codec(serializer: Serializer) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    # The built-in serializers' methods only forward to C functions (orjson, pickle,
    # bytes): calling those directly saves a Python call per record. Subclasses that
    # override a method keep it.
    serialize = serializer.serialize
    deserialize = native_decoder(serializer) or serializer.deserialize
    kind = type(serializer)
    if issubclass(kind, JSONSerializer) and kind.serialize is JSONSerializer.serialize:
        serialize = orjson.dumps
    if getattr(kind, "serialize", None) not in _BUILTIN_SERIALIZE:
        serialize = _checked(serialize, kind.__name__)
    return serialize, deserialize


def _checked(serialize: Callable[[Any], bytes], name: str) -> Callable[[Any], bytes]:
    # A user serializer that returns something else than bytes is reported at the
    # write that caused it, not later when a batch of records is joined.
    def checked(obj: Any) -> bytes:
        raw = serialize(obj)
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise TypeError(f"{name}.serialize must return bytes, got {type(raw).__name__}")
        return raw

    return checked


class RowDataset:
    """One version of a row dataset, opened for reading (``"r"``) or appending (``"w"``).

    Get one from :meth:`KaraStorage.open_dataset`. A reader sees the records that were
    complete when it was opened. Every method is thread-safe; the read cursor
    (``read``/``seek``/``tell``/iteration) is shared by the threads using the object,
    while ``ds[i]``, ``pread`` and :meth:`read_raw_range` do not touch it.

    A dataset opened for reading pickles as a small description (backend, namespace,
    key, pinned version, serializer, slice bounds, cursor) and reopens itself when
    unpickled, so it can be handed to other processes (DataLoader workers).
    """

    namespace: str
    key: str
    version: str
    mode: str
    serializer: Serializer
    backend: Backend

    def __init__(
        self,
        backend: Backend,
        namespace: str,
        key: str,
        version: str,
        serializer: Serializer,
        options: dict[str, int],
        *,
        snapshot: Snapshot | None = None,
        writer: RowWriter | None = None,
        begin: int = 0,
        end: int | None = None,
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        self.key = key
        self.version = version
        self.serializer = serializer
        self.mode = "w" if writer is not None else "r"
        self._options = options
        self._serialize, self._deserialize = _codec(serializer)
        self._deserialize_many = batch_deserializer(serializer)
        # Serializers that read views (numpy) get mapped memory instead of copies.
        self._views = bool(getattr(serializer, "zero_copy", False))
        # Those with their own deserialize_joined decode a sequential refill at once, from
        # the mapped run (no object per record before decoding).
        joined = getattr(type(serializer), "deserialize_joined", Serializer.deserialize_joined)
        own = self._views and joined is not Serializer.deserialize_joined
        self._joined = serializer.deserialize_joined if own else None
        # Those with a stream decoder (json+zstd) decode sequential reads through it.
        stream = getattr(serializer, "stream_decoder", None)
        self._stream: Callable[[], Callable[[Iterator[bytes]], Iterator[Any]] | None] | None = stream
        self._lock = threading.Lock()
        self._closed = False
        self._snap = snapshot
        self._writer = writer
        if writer is not None:
            _OPEN_WRITERS.add(self)
        #: Serialized records ``write`` queued for the writer (None: not writable). Only
        #: ever appended to at its end, and emptied of a prefix under ``_lock``, so a
        #: record ``write`` appended is handed to the writer exactly once (see write).
        self._queue: list[bytes] | None = [] if writer is not None else None
        count = snapshot.count if snapshot is not None else 0
        self._begin = min(max(begin, 0), count)
        self._end = count if end is None else min(max(end, self._begin), count)
        self._pos = self._begin
        self._batch: list[Any] = []
        self._bpos = 0
        #: True when ``_batch`` holds decoded records (a run decoded by deserialize_joined).
        self._decoded = False
        # Counts cursor moves, so an interrupted iteration knows whether it may rewind.
        self._moves = 0

    # -- state and errors ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _unreadable(self) -> Exception:
        if self._closed:
            return DatasetClosedError(f"dataset {self._name()} is closed")
        return ModeError(f"dataset {self._name()} was opened for writing (mode 'w'); open it with mode 'r' to read")

    def _unwritable(self) -> Exception:
        if self._closed:
            return DatasetClosedError(f"dataset {self._name()} is closed")
        writer = self._writer
        if writer is not None and writer.failure is not None:
            return writer.failed_error()
        return ModeError(f"dataset {self._name()} was opened for reading (mode 'r'); open it with mode 'w' to append")

    def _name(self) -> str:
        return f"{self.namespace}/{self.key} version {self.version!r}"

    def _reader(self) -> Snapshot:
        snap = self._snap
        if snap is None:
            raise self._unreadable()
        return snap

    # -- writing ---------------------------------------------------------------------

    def write(self, obj: Any) -> bool:
        """Append one record (buffered until :meth:`flush` or :meth:`close`); return True."""
        raw = self._serialize(obj)
        queue = self._queue
        if queue is None:
            raise self._unwritable()
        if type(raw) is bytes and len(raw) < QUEUE_BYTES:
            # The lock-free path: one list append (atomic) per record. Only immutable
            # bytes are queued: a serializer's bytearray or view is copied at once.
            queue.append(raw)
            if len(queue) < QUEUE_RECORDS and self._queue is queue:
                return True
            self._hand_over(queue, raw)
            return True
        with self._lock:
            writer = self._writer
            if self._queue is None or writer is None:
                raise self._unwritable()
            self._drain()
            # Records of 64 KiB and more go straight to storage (RowWriter.append).
            self._to_writer(writer.append, [raw])
        return True

    def _hand_over(self, queue: list[bytes], raw: bytes) -> None:
        # The queue is full, or close() swapped it out after write() took it.
        with self._lock:
            if self._queue is queue:
                self._drain()
                return
            # close() took the queue first (it sets _queue to None, then drains what the
            # queue held): if ``raw`` was appended too late to be drained it is still
            # there, and the write is refused. An equal record of another thread that
            # is found instead is indistinguishable from it (same object).
            for i in range(len(queue) - 1, -1, -1):
                if queue[i] is raw:
                    del queue[i]
                    raise self._unwritable()

    def write_many(self, objs: Iterable[Any]) -> int:
        """Append every record of ``objs`` (faster than one ``write`` each); return the count.

        Records go in chunks of up to 512; if one fails to serialize, the records of
        earlier chunks are written and those of its chunk are not.
        """
        serialize = self._serialize
        source = iter(objs)
        total = 0
        # The first chunk as before: serialized, then appended (all of it or none).
        count = DRAIN_RECORDS
        direct = True
        while True:
            # Taken from the caller's iterable outside the lock (it may be slow, or read
            # this dataset's other versions), then serialized a chunk at a time.
            batch = list(islice(source, count))
            if not batch:
                return total
            if direct:
                # The first chunk, and large records: serialized outside the lock, then
                # appended (those of 64 KiB or more without a copy: RowWriter.append).
                raws = list(map(serialize, batch))
            with self._lock:
                writer = self._writer
                if self._queue is None or writer is None:
                    raise self._unwritable()
                self._drain()
                before = writer.end
                if direct:
                    self._to_writer(writer.append, raws)
                else:
                    self._to_writer(writer.serialize_into, batch, serialize)
                mean = (writer.end - before) // len(batch) + 1
            total += len(batch)
            # Chunks of about MANY_BYTES, so a chunk of large records never piles up in memory.
            direct = mean >= DIRECT_MEAN
            count = max(1, min(DRAIN_RECORDS, MANY_BYTES // mean))

    def _drain(self, queue: list[bytes] | None = None) -> None:
        # Hand the records queued by write() to the writer, in order (lock held). Only
        # the prefix taken is removed: records appended meanwhile stay for the next drain.
        if queue is None:
            queue = self._queue
        writer = self._writer
        if queue and writer is not None:
            count = len(queue)
            records = queue[:count]
            del queue[:count]
            self._to_writer(writer.append, records)

    def _to_writer(self, call: Callable[..., None], *args: Any) -> None:
        # A call on the writer (lock held). Once an append of the writer failed, write()
        # takes no record either: it finds no queue and raises the writer's error.
        try:
            call(*args)
        except BaseException:
            if self._writer is not None and self._writer.failure is not None:
                self._queue = None
            raise

    def flush(self) -> None:
        """Make every record written so far durable and visible to new readers."""
        with self._lock:
            if self._closed:
                raise DatasetClosedError(f"dataset {self._name()} is closed")
            if self._writer is not None:
                self._drain()
                self._to_writer(self._writer.flush)

    def close(self) -> None:
        """Flush (when writing), release files, threads and the writer lock. Idempotent."""
        writer = snap = None
        try:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                # The queue is taken away before it is drained: a write() that appends to
                # it afterwards finds it gone and checks whether its record made it
                # (_hand_over).
                queue, self._queue = self._queue, None
                writer, snap = self._writer, self._snap
                try:
                    if writer is not None and not writer.forked:
                        self._drain(queue)
                finally:
                    self._writer = self._snap = None
                    self._batch = []
                    self._bpos = 0
        finally:
            # Even when the drain failed: the writer closes (and releases its lock).
            try:
                if writer is not None:
                    writer.close()
            finally:
                if snap is not None:
                    snap.release()

    def __enter__(self) -> RowDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # As in 2.x, a dataset dropped without close() is closed (and flushed) here.
        if not getattr(self, "_closed", True):
            self._drop()

    def _drop(self) -> None:
        """What dropping this dataset without ``close()`` does: close it (a part: abandon it)."""
        self.close()

    # -- sequential reading ----------------------------------------------------------

    def _refill(self) -> bool:
        # Called with the lock held when the batch is used up; False at the end.
        snap = self._reader()
        if self._pos >= self._end:
            return False
        warn_if_in_dataloader_worker(self._name())
        stop = min(self._end, self._pos + BATCH_RECORDS)
        self._bpos = 0
        decoded = self._decode_run(snap, self._pos, stop, BATCH_BYTES)
        if decoded is not None:
            self._batch, self._decoded = decoded, True
            return True
        try:
            # Record groups the serializer decodes whole (json+zstd): a GroupRun, which
            # iteration decodes a group at a time (its items are the plain records).
            run = snap.group_run(self._pos, stop, True, BATCH_BYTES)
            self._batch = run if run is not None else snap.raw_range(self._pos, stop, True, BATCH_BYTES, self._views)
        except CorruptDatasetError:
            # The record at the cursor cannot be read (a damaged group of records): the
            # cursor moves past it, as past a record that fails to decode, so the next
            # read goes on with the next record instead of failing here forever.
            self._batch = []
            self._pos += 1
            self._moves += 1
            raise
        self._decoded = False
        return True

    def _next_raw(self) -> tuple[Any, bool, int] | None:
        # The next stored record, whether it is decoded already and its position in the
        # version, or None at the end.
        with self._lock:
            if self._bpos >= len(self._batch) and not self._refill():
                return None
            raw = self._batch[self._bpos]
            self._bpos += 1
            self._pos += 1
            self._moves += 1
            return raw, self._decoded, self._pos - 1

    def _undecodable(self, exc: Exception, position: int) -> SerializationError:
        """The error for stored record ``position`` (of the version) that its serializer cannot decode."""
        where = "its bytes"
        snap = self._snap
        if snap is not None:
            try:
                where = snap.record_location(position)
            except Exception:  # noqa: BLE001 - the record's own error matters more than where it is
                pass
        inside = f" (record {position - self._begin} of this slice)" if self._begin else ""
        return SerializationError(
            f"record {position}{inside} of dataset {self._name()} cannot be decoded by its "
            f"{serializer_label(self.serializer)!r} serializer ({type(exc).__name__}: {exc}): {where} are damaged, "
            "or were written with another serializer"
        )

    def _decode(self, raw: Any, position: int) -> Any:
        # One stored record decoded; what its serializer raises becomes a SerializationError
        # naming the record and where it is stored (kara's own errors stay as they are).
        try:
            return self._deserialize(raw)
        except KaraError:
            raise
        except Exception as exc:
            raise self._undecodable(exc, position) from exc

    def read(self, default: Any = _RAISE) -> Any:
        """Return the next record and move the cursor past it.

        At the end, raise :class:`~kara_core.errors.EndOfDatasetError` (an EOFError, as
        in 2.x), or return ``default`` when one is given (``ds.read(default=None)``).
        Iteration (``for record in ds``) stops cleanly at the end.
        """
        taken = self._next_raw()
        if taken is None:
            if default is _RAISE:
                raise EndOfDatasetError(f"end of dataset {self._name()}: all {len(self)} records were read")
            return default
        raw, decoded, position = taken
        if decoded:
            return raw
        try:  # _decode, inlined: one call less per record read
            return self._deserialize(raw)
        except KaraError:
            raise
        except Exception as exc:
            raise self._undecodable(exc, position) from exc

    def __iter__(self) -> Iterator[Any]:
        """Yield the records from the cursor to the end, moving the cursor along.

        The cursor moves a batch at a time while the loop runs (so ``tell()`` inside
        the loop may be ahead); leaving the loop early puts it right after the last
        record yielded, unless another read or seek moved it meanwhile.
        """
        deserialize, many = self._deserialize, self._deserialize_many
        # orjson.loads (or bytes, for raw records) mapped over the batch runs no Python
        # code per record; other serializers decode a few records at a time with
        # deserialize_many (few, so the fresh records are still in the CPU cache when
        # they are used).
        plain = deserialize is orjson.loads or deserialize is bytes
        # A serializer's stream decoder (zstd then orjson, mapped in C), made at the first
        # batch that needs it: this iteration's own (see Serializer.stream_decoder).
        stream: Callable[[Iterator[bytes]], Iterator[Any]] | None = None
        streams = self._stream is not None and not plain
        while True:
            with self._lock:
                if self._bpos >= len(self._batch) and not self._refill():
                    return
                batch = self._batch[self._bpos :] if self._bpos else self._batch
                ready = self._decoded
                self._batch, self._bpos = [], 0
                first = self._pos
                self._pos += len(batch)
                self._moves += 1
                moves = self._moves
            # `current` iterates over the records of batch[done:done + size]: what it
            # has not handed out yet goes back to the cursor when the loop is left.
            current: Iterator[Any] = iter(batch)
            done, size = 0, len(batch)
            try:
                if ready:
                    yield from current
                    continue
                if isinstance(batch, GroupRun):
                    # A group at a time: decoded whole where it can be (one call, no
                    # per-record bytes), else split and decoded record by record
                    # (which raises for a damaged one, the cursor right after it).
                    decode = batch.decode
                    for group, lo, hi in batch.pieces:
                        size, current = 0, iter(())  # nothing of this group handed out yet
                        values = decode(*group) if not isinstance(group, list) else None
                        size = hi - lo
                        if values is not None:
                            current = iter(values[lo:hi] if lo or hi < len(values) else values)
                            yield from current
                        else:
                            records = group if isinstance(group, list) else split_group(group[0])
                            current = iter(records[lo:hi])
                            yield from map(deserialize, current)
                        done += size
                    done, size, current = len(batch), 0, iter(())
                    continue
                if plain:
                    yield from map(deserialize, current)
                    continue
                if streams and stream is None:
                    stream = self._stream() if self._stream is not None else None
                    streams = stream is not None
                if stream is not None:
                    failed: Exception | None = None
                    try:
                        yield from stream(current)
                    except Exception as exc:  # noqa: BLE001 - redone with deserialize below
                        failed = exc
                    if failed is None:
                        continue
                    # `current` is right past the record the decoder was at: decoded
                    # alone, it raises its own error (the cursor stays right after it);
                    # if it decodes, the error came from elsewhere (thrown in).
                    deserialize(batch[len(batch) - length_hint(current) - 1])
                    raise failed
                for done in range(0, len(batch), DECODE_RECORDS):
                    chunk = batch[done : done + DECODE_RECORDS]
                    current, size = iter(chunk), len(chunk)
                    try:
                        decoded = many(chunk)
                    except Exception:  # noqa: BLE001 - any error of a user serializer: redone one by one below
                        # Record by record: the error comes from (and the cursor stops
                        # right after) the record that caused it, as with deserialize.
                        yield from map(deserialize, current)
                    else:
                        current = iter(decoded)
                        yield from current
                done, size, current = len(batch), 0, iter(())
            except Exception as exc:
                # A record that does not decode (the one `current` just passed) raises
                # what ds[i] raises for it, naming it and where it is stored; anything
                # else (thrown in, kara's own errors) goes on as it is.
                failing = first + done + size - length_hint(current) - 1
                snap = self._snap
                if ready or isinstance(exc, KaraError) or snap is None or not first <= failing < first + len(batch):
                    raise
                self._decode(snap.raw(failing, self._views), failing)
                raise
            finally:
                left = len(batch) - done - size + length_hint(current)
                if left:
                    with self._lock:
                        if self._moves == moves:
                            self._pos -= left
                            self._batch, self._bpos = batch, len(batch) - left
                            self._decoded = ready

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the cursor and return its new position (records from the start).

        ``whence`` 0: ``offset`` from the start; 1: from the cursor; 2: ``offset``
        records back from the end (``seek(0, 2)`` is the end). The result is clamped
        into ``[0, len(self)]``.
        """
        offset = operator.index(offset)
        with self._lock:
            self._reader()
            if whence == io.SEEK_SET:
                target = self._begin + offset
            elif whence == io.SEEK_CUR:
                target = self._pos + offset
            elif whence == io.SEEK_END:
                target = self._end - offset
            else:
                raise ConfigurationError(f"whence must be 0, 1 or 2, got {whence!r}")
            self._pos = min(max(target, self._begin), self._end)
            self._moves += 1
            self._batch = []
            self._bpos = 0
            return self._pos - self._begin

    def tell(self) -> int:
        """Position of the cursor (records from the start of this dataset or slice)."""
        with self._lock:
            self._reader()
            return self._pos - self._begin

    # -- random access ---------------------------------------------------------------

    def __getitem__(self, index: int) -> Any:
        """Record ``index`` (negative counts from the end).

        Out of range: :class:`~kara_core.errors.RecordIndexError`, both an IndexError
        and an EOFError (what 2.x raised for ``ds[i]`` and ``pread(i)``).
        """
        snap = self._snap
        if snap is None:
            raise self._unreadable()
        i = operator.index(index)
        length = self._end - self._begin
        if i < 0:
            i += length
        if not 0 <= i < length:
            raise RecordIndexError(f"record {index} is out of range for dataset {self._name()} of {length} records")
        raw = snap.raw(self._begin + i, self._views)
        try:  # _decode, inlined: one call less per record read
            return self._deserialize(raw)
        except KaraError:
            raise
        except Exception as exc:
            raise self._undecodable(exc, self._begin + i) from exc

    def pread(self, index: int) -> Any:
        """Record ``index`` without moving the cursor (same as ``ds[index]``)."""
        return self[index]

    def _clamped(self, start: int, stop: int) -> tuple[int, int]:
        # Records [start, stop) of this slice, clamped like a list slice, as record
        # numbers of the version.
        length = self._end - self._begin
        start = min(max(operator.index(start), 0), length)
        stop = min(max(operator.index(stop), start), length)
        return self._begin + start, self._begin + stop

    def read_raw_range(self, start: int, stop: int) -> list[bytes]:
        """The serialized bytes of records ``[start, stop)``, clamped like a list slice.

        One index read and one data read, whatever the number of records: the batch
        accessor for loaders that deserialize (or pass bytes on) themselves.
        """
        snap = self._reader()
        first, last = self._clamped(start, stop)
        return snap.raw_range(first, last, False, None, self._views)

    @property
    def mapped(self) -> bool:
        """True when this reader's records sit in mapped memory (local files): then
        :meth:`read_raw_at` costs one slice per record, with no read call."""
        snap = self._snap
        return snap is not None and snap.mapped

    def read_raw_at(self, positions: Any) -> list[bytes]:
        """The stored bytes of the records at ``positions`` (integers, any order, repeats
        allowed; negative ones count from the end), in that order.

        On local files (:attr:`mapped`) the bounds of all of them come from the mapped
        index with one vector lookup; elsewhere each is read as ``ds[i]`` reads it (use
        :meth:`read_raw_range` for neighbouring records).
        """
        import numpy as np

        snap = self._reader()
        given = np.asarray(positions).reshape(-1)
        length = self._end - self._begin
        if given.size and given.dtype.kind not in "iu":
            # As ds[0.5]: never truncated to an integer (nor True taken as 1).
            raise TypeError(f"record positions must be integers, got {given.dtype} ({given[0]!r})")
        if given.dtype.kind == "u" and given.size and int(given.max()) > np.iinfo(np.int64).max:
            # Would wrap around to a negative position (a record counted from the end).
            raise RecordIndexError(
                f"record {int(given.max())} is out of range for dataset {self._name()} of {length} records"
            )
        wanted = given.astype(np.int64)
        wanted = np.where(wanted < 0, wanted + length, wanted)
        if len(wanted) and (int(wanted.min()) < 0 or int(wanted.max()) >= length):
            bad = int(np.flatnonzero((wanted < 0) | (wanted >= length))[0])
            raise RecordIndexError(
                f"record {given[bad]} is out of range for dataset {self._name()} of {length} records"
            )
        absolute = wanted + self._begin
        got = snap.raw_at(absolute, self._views)
        if got is None:
            return [snap.raw(i, self._views) for i in absolute.tolist()]
        return got

    def read_range(self, start: int, stop: int) -> list[Any]:
        """The decoded records ``[start, stop)``, clamped like a list slice.

        One index read and one data read; serializers with their own
        ``deserialize_joined`` (numpy) decode the run at once from mapped memory.
        """
        snap = self._reader()
        first, last = self._clamped(start, stop)
        decoded = self._decode_run(snap, first, last, sys.maxsize)
        if decoded is not None:
            return decoded
        raws = snap.raw_range(first, last, False, None, self._views)
        try:
            return self._deserialize_many(raws)
        except Exception:  # noqa: BLE001 - redone one by one: the error names the record
            return [self._decode(raw, first + k) for k, raw in enumerate(raws)]

    def _decode_run(self, snap: Snapshot, start: int, stop: int, budget: int) -> list[Any] | None:
        # Records [start, stop) (fewer past ``budget`` bytes) decoded at once from mapped
        # memory by the serializer's own deserialize_joined; None where that does not
        # apply (no such hook, records not in one mapped block) or the hook fails: the
        # caller then reads and decodes them record by record, which raises what applies.
        if self._joined is None:
            return None
        run = snap.mapped_run(start, stop, budget)
        if run is None:
            return None
        try:
            return self._joined(*run)
        except Exception:  # noqa: BLE001 - any error of a user serializer: decoded one by one instead
            return None

    def read_raw_joined(self, start: int, stop: int) -> tuple[bytes, array[int]]:
        """Records ``[start, stop)`` (clamped like a list slice) as one buffer and their ends.

        ``(data, ends)``: the stored bytes of the records back to back, and an
        ``array('Q')`` whose ``ends[k]`` is where record ``start + k`` ends in ``data``
        (it starts where the previous one ends, the first at 0). One index read and one
        data read, and no Python object per record: for readers that split records with
        vector operations (Arrow, numpy), such as kara-ray's datasource.
        """
        snap = self._reader()
        first, last = self._clamped(start, stop)
        return snap.raw_joined(first, last)

    def raw_record_bounds(self, start: int, stop: int) -> list[int]:
        """Byte offsets, in the data stream, of records ``[start, stop)``: ``stop-start+1`` ints.

        Record ``start + k`` spans ``[bounds[k], bounds[k + 1])``; loaders use it to size
        batches by bytes before reading them.
        """
        snap = self._reader()
        first, last = self._clamped(start, stop)
        return [snap.end(first - 1), *snap.ends(first, last, False)]

    def _identity(self) -> _Identity:
        return (self.backend, self.namespace, self.key, self.version, self.serializer, self._options)

    def slice(self, start: int = 0, length: int | None = None) -> RowDataset:
        """A dataset over records ``[start, start + length)`` of this one, with its own cursor."""
        start = operator.index(start)
        if start < 0 or (length is not None and length < 0):
            raise ConfigurationError(f"slice start and length must be >= 0, got {start} and {length}")
        with self._lock:
            snap = self._reader()
            begin = min(self._begin + start, self._end)
            end = self._end if length is None else min(begin + length, self._end)
            return RowDataset(*self._identity(), snapshot=snap.share(), begin=begin, end=end)

    def shard(self, index: int, count: int) -> RowShard:
        """Records ``index::count`` of this dataset (or slice): one of ``count`` disjoint shards.

        Give shard ``info.id`` of ``info.num_workers`` to each DataLoader worker so that
        every record is read once (see :class:`~kara_core.row.shard.RowShard`).
        """
        from .shard import RowShard

        return RowShard(self.slice(), index, count)

    def slice_(self, start: int = 0, length: int | None = None) -> None:
        """Narrow this dataset in place to records ``[start, start + length)`` (2.x's ``slice_``).

        As in 2.x, ``start`` counts from the current start, ``length`` defaults to the
        rest of the current slice, bounds are clamped to the whole version (not to the
        current slice), and the cursor goes to the new start.
        """
        start = operator.index(start)
        if start < 0 or (length is not None and length < 0):
            raise ConfigurationError(f"slice start and length must be >= 0, got {start} and {length}")
        with self._lock:
            snap = self._reader()
            if length is None:
                length = max(self._end - self._begin - start, 0)
            self._begin = min(self._begin + start, snap.count)
            self._end = min(self._begin + length, snap.count)
            self._pos = self._begin
            self._moves += 1
            self._batch = []
            self._bpos = 0

    def as_raw(self) -> RowDataset:
        """A dataset over the same records (and slice) that returns their stored bytes."""
        with self._lock:
            snap = self._reader()
            backend, namespace, key, version, _, options = self._identity()
            return RowDataset(
                backend,
                namespace,
                key,
                version,
                NoSerializer(),
                options,
                snapshot=snap.share(),
                begin=self._begin,
                end=self._end,
            )

    # -- sizes -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of records (in this slice; when writing, in the version so far)."""
        if self._writer is not None:
            with self._lock:
                writer = self._writer
                if writer is not None:
                    return writer.count + len(self._queue or ())
        return self._end - self._begin

    def size(self) -> int:
        """Same as ``len(ds)`` (the 2.x name)."""
        return len(self)

    @property
    def start(self) -> int:
        """Index, in its version, of this dataset's first record (0 unless it is a slice)."""
        return self._begin

    def nbytes(self) -> int:
        """Bytes of serialized records in this dataset (or slice)."""
        if self._writer is not None:
            with self._lock:
                writer = self._writer
                if writer is not None:
                    return writer.end + sum(map(len, self._queue or ()))
        snap = self._reader()
        if self._end == self._begin:
            return 0
        return snap.end(self._end - 1) - snap.end(self._begin - 1)

    # -- pickling --------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        if self.mode != "r":
            raise TypeError(
                f"dataset {self._name()} is open for writing and cannot be pickled: only one process "
                "may write a version; close it and pickle a dataset opened with mode 'r'"
            )
        if self._closed:
            raise TypeError(f"dataset {self._name()} is closed and cannot be pickled")
        return (_reopen, (self._identity(), self._begin, self._end, self._pos))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} records"
        return f"<RowDataset {self._name()} mode={self.mode!r} {state} on {self.backend.url}>"


def _reopen(identity: _Identity, begin: int, end: int, position: int) -> RowDataset:
    # What RowStore.open_dataset does for mode "r", from the layout's functions: this
    # module sits below the store and never imports it.
    backend, namespace, key, version, serializer, options = identity
    version = resolve_version(namespace, key, read_meta(backend, namespace, key), version)
    snapshot = open_snapshot(
        backend,
        index_prefix(namespace, key, version),
        data_prefix(namespace, key, version),
        serializer,
        options["cache_size"],
    )
    view = RowDataset(backend, namespace, key, version, serializer, options, snapshot=snapshot, begin=begin, end=end)
    view.seek(position - begin)
    return view
