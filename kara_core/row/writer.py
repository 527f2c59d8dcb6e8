"""The write side of one version: lock, torn-tail repair, buffered appends in safe order.

Ordering is what makes a crash harmless. Records are buffered in memory (data bytes and
their index entries separately) and reach storage in large appends. Index entries are
only ever appended after the data they point at has been appended *and flushed*
(fsynced on local files), so whatever a crash cuts, the index never vouches for bytes
that are not there, except for the torn tail that :class:`~kara_core.row.snapshot.Snapshot`
ignores and the next writer cuts off (:func:`~kara_core.row.blocks.truncate_stream`).
"""

from __future__ import annotations

import contextlib
import io
import os
from array import array
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any

from ..backend import Backend
from ..errors import DatasetLockedError, WriterFailedError
from ..locks import LeaseLock
from .blocks import LITTLE_ENDIAN, BlockWriter, probe_streams, truncate_stream
from .layout import data_prefix, index_prefix, writer_lock_path
from .snapshot import ENTRY, complete_extent

__all__ = ["WRITER_LOCK_TTL", "RowWriter", "StopsAtFailure", "serialize_into"]

#: Seconds without a heartbeat after which another host may break a writer's lock.
WRITER_LOCK_TTL = 120.0
#: Index entries buffered before they (and the data under them) are appended.
INDEX_BATCH = 256 * 1024
#: Records of at least this many bytes are appended directly instead of buffered.
DIRECT_WRITE = 64 * 1024
#: A record buffer that grew past this many times the buffer size is not kept.
SPILL_KEEP = 2


def _repair(backend: Backend, ipath: str, dpath: str) -> tuple[list[int], list[int]]:
    """Cut a torn tail left by a crashed writer; return the index and data block sizes."""
    index_sizes, data_sizes = probe_streams(backend, [ipath, dpath])
    index_bytes, data_bytes = sum(index_sizes), sum(data_sizes)
    entries, valid_data = complete_extent(backend, ipath, index_sizes, data_bytes)
    if index_bytes != entries * ENTRY:
        index_sizes = truncate_stream(backend, ipath, index_sizes, entries * ENTRY)
    if data_bytes != valid_data:
        data_sizes = truncate_stream(backend, dpath, data_sizes, valid_data)
    return index_sizes, data_sizes


def serialize_into(pending: io.BytesIO, objs: list[Any], serialize: Callable[[Any], bytes]) -> list[int]:
    """Serialize ``objs`` into ``pending`` and return the records' sizes.

    One C-level loop: each record's bytes are copied as soon as they exist and freed
    before the next record is serialized, so the next one reuses their memory (holding
    a chunk of serialized records and freeing them together is what made glibc trim and
    regrow the heap, see :attr:`RowWriter.pending`). If one record fails to serialize,
    ``pending`` is rewound to where it was: none of ``objs`` is kept.
    """
    start = pending.tell()
    try:
        return list(map(pending.write, map(serialize, objs)))
    except BaseException:
        pending.seek(start)
        raise


class StopsAtFailure:
    """A writer that takes no more records once a write of it to storage failed.

    A write that fails may have left part of its bytes on storage, so the writer's
    buffers no longer match what is stored: every write to storage goes through
    :meth:`_storing`, which records the first failure in :attr:`failure`; from then on
    :meth:`_check_failure` raises :meth:`failed_error`, which says what became of the
    records.
    """

    #: What made a write to storage fail (None while none did).
    failure: BaseException | None = None

    def failed_error(self) -> WriterFailedError:
        raise NotImplementedError

    def _check_failure(self) -> None:
        if self.failure is not None:
            raise self.failed_error()

    @contextlib.contextmanager
    def _storing(self) -> Iterator[None]:
        self._check_failure()
        try:
            yield
        except BaseException as exc:
            self.failure = exc
            raise


class RowWriter(StopsAtFailure):
    """Appends records to one version while holding its writer lock."""

    def __init__(
        self, backend: Backend, namespace: str, key: str, version: str, max_file_size: int, buffer_size: int
    ) -> None:
        self._pid = os.getpid()
        self._lock = LeaseLock(
            backend,
            writer_lock_path(namespace, key, version),
            f"dataset {namespace}/{key} version {version!r}",
            WRITER_LOCK_TTL,
            heartbeat=True,
        )
        self._lock.acquire()
        try:
            ipath, dpath = index_prefix(namespace, key, version), data_prefix(namespace, key, version)
            index_sizes, data_sizes = _repair(backend, ipath, dpath)
            # Data first: a version whose index exists always has its data folder too.
            self._data = BlockWriter(backend, dpath, data_sizes, max_file_size)
            self._index = BlockWriter(backend, ipath, index_sizes, max_file_size)
        except BaseException:
            self._lock.release()
            raise
        self._buffer_size = buffer_size
        #: Where serialized records are copied as they are written, kept for the writer's
        #: lifetime (rewound, never freed, after each spill). Records die right after
        #: their copy, so writing never frees a batch of records at once: glibc would
        #: hand that memory back to the kernel (heap trim) and fault it in again for the
        #: next batch, which cost a fresh process 90,000 page faults per 200,000 records.
        self.pending = io.BytesIO()
        self._ends = array("Q")
        self._committed = self._index.total // ENTRY
        #: End offset (in the data stream) of the last record appended.
        self.end = self._data.total
        self.closed = False

    @property
    def forked(self) -> bool:
        """True in a child process that inherited this writer with fork (it must not write)."""
        return os.getpid() != self._pid

    @property
    def count(self) -> int:
        """Records in the version, the buffered ones included."""
        return self._committed + len(self._ends)

    def failed_error(self) -> WriterFailedError:
        """The error for a record handed to this writer after :attr:`failure`."""
        return WriterFailedError(
            f"{self._lock.what} takes no more records: an earlier append to storage failed "
            f"({type(self.failure).__name__}: {self.failure}). The version keeps the records flushed "
            "before that; open it again with mode 'w' to go on from there (len() tells how many it kept)"
        )

    def append(self, raws: list[bytes]) -> None:
        """Buffer serialized records (the caller batches them: one call per many records)."""
        self._check_failure()
        if not raws:
            return
        sizes = list(map(len, raws))
        if max(sizes) < DIRECT_WRITE:
            self.pending.writelines(raws)
        else:
            for raw, size in zip(raws, sizes, strict=True):
                if size < DIRECT_WRITE:
                    self.pending.write(raw)
                else:
                    # A large record goes straight to storage: no copy into the buffer.
                    with self._storing():
                        self._spill()
                        self._data.write(raw)
        self.took(sizes)

    def serialize_into(self, objs: list[Any], serialize: Callable[[Any], bytes]) -> None:
        """Serialize ``objs`` straight into :attr:`pending`, then account for them (see
        :func:`serialize_into`); if one record fails, none of ``objs`` is kept."""
        self._check_failure()
        self.took(serialize_into(self.pending, objs, serialize))

    def took(self, sizes: list[int]) -> None:
        """Account for records of these sizes that the caller wrote into :attr:`pending`."""
        if not sizes:
            return
        ends = accumulate(sizes, initial=self.end)
        next(ends)  # the initial value: the end of the previous record
        self._ends.extend(ends)
        self.end = self._ends[-1]
        if self.pending.tell() >= self._buffer_size or len(self._ends) >= INDEX_BATCH:
            with self._storing():
                if self.pending.tell() >= self._buffer_size:
                    self._spill()
                if len(self._ends) >= INDEX_BATCH:
                    self._commit()

    def _spill(self) -> None:
        pending = self.pending
        size = pending.tell()
        if not size:
            return
        with pending.getbuffer() as whole, whole[:size] as view:
            self._data.write(view)
        if size > SPILL_KEEP * max(self._buffer_size, DIRECT_WRITE):
            # An unusually large spill (a batch of big records): do not keep its memory.
            self.pending = io.BytesIO()
        else:
            pending.seek(0)

    def _commit(self) -> None:
        # Data appended and flushed first, then the index entries that point at it.
        self._spill()
        if not self._ends:
            return
        self._data.flush()
        ends = self._ends
        if not LITTLE_ENDIAN:
            ends = array("Q", ends)
            ends.byteswap()
        self._index.write(ends.tobytes())
        self._committed += len(self._ends)
        self._ends = array("Q")

    def flush(self) -> None:
        """Make every record appended so far durable and visible to new readers."""
        if self._lock.lost:
            raise DatasetLockedError(
                f"the writer lock of {self._lock.what} was taken over by another process "
                "(this writer was presumed dead); records written after that were not saved safely"
            )
        with self._storing():  # which first refuses a failed writer
            self._commit()
            self._index.flush()

    def close(self) -> None:
        """Flush, close the block streams and release the lock.

        A writer whose append failed (see :class:`~kara_core.errors.WriterFailedError`)
        writes nothing more: it closes its streams, ignoring their errors, and releases
        the lock without raising again; the next writer of the version cuts off what
        the failed append left.
        """
        if self.closed:
            return
        self.closed = True
        if self.forked:
            # A forked copy of a writer: the parent owns the buffers, streams and lock.
            return
        try:
            if self.failure is None:
                self.flush()
        finally:
            try:
                if self.failure is None:
                    self._data.close()
                    self._index.close()
                else:
                    self._close_quietly()
            finally:
                self._lock.release()

    def _close_quietly(self) -> None:
        for stream in (self._data, self._index):
            with contextlib.suppress(Exception):
                stream.close()

    def abandon(self) -> None:
        """Close without flushing buffered records (opening the dataset failed half way)."""
        self.closed = True
        try:
            self._data.close()
            self._index.close()
        finally:
            self._lock.release()
