"""The write side of one version: lock, torn-tail repair, buffered appends in safe order.

Ordering is what makes a crash harmless. Records are buffered in memory (data bytes and
their index entries separately) and reach storage in large appends. Index entries are
only ever appended after the data they point at has been appended *and flushed*
(fsynced on local files), so whatever a crash cuts, the index never vouches for bytes
that are not there, except for the torn tail that :class:`~kara_core.row.snapshot.Snapshot`
ignores and the next writer cuts off (:func:`~kara_core.row.blocks.truncate_stream`).
"""

from __future__ import annotations

import os
import sys
from array import array
from itertools import accumulate

from ..backend import Backend
from ..errors import DatasetLockedError
from ..locks import LeaseLock
from .blocks import BlockWriter, probe_blocks, truncate_stream
from .layout import data_prefix, index_prefix, writer_lock_path
from .snapshot import ENTRY, complete_extent

__all__ = ["WRITER_LOCK_TTL", "RowWriter"]

#: Seconds without a heartbeat after which another host may break a writer's lock.
WRITER_LOCK_TTL = 120.0
#: Index entries buffered before they (and the data under them) are appended.
INDEX_BATCH = 256 * 1024
#: Batches of at least this many bytes are appended directly instead of buffered.
DIRECT_WRITE = 64 * 1024
_LITTLE = sys.byteorder == "little"


def _repair(backend: Backend, ipath: str, dpath: str) -> tuple[list[int], list[int]]:
    """Cut a torn tail left by a crashed writer; return the index and data block sizes."""
    index_sizes = probe_blocks(backend, ipath)
    data_sizes = probe_blocks(backend, dpath)
    index_bytes, data_bytes = sum(index_sizes), sum(data_sizes)
    entries, valid_data = complete_extent(backend, ipath, index_sizes, data_bytes)
    if index_bytes != entries * ENTRY:
        index_sizes = truncate_stream(backend, ipath, index_sizes, entries * ENTRY)
    if data_bytes != valid_data:
        data_sizes = truncate_stream(backend, dpath, data_sizes, valid_data)
    return index_sizes, data_sizes


class RowWriter:
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
        self._buf = bytearray()
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

    def append(self, raws: list[bytes]) -> None:
        """Buffer serialized records (the caller batches them: one call per many records)."""
        if not raws:
            return
        joined = raws[0] if len(raws) == 1 else b"".join(raws)
        if len(joined) >= min(DIRECT_WRITE, self._buffer_size):
            # Large batches (large records) go straight to storage: no second copy.
            self._spill()
            self._data.write(joined)
        else:
            self._buf += joined
            if len(self._buf) >= self._buffer_size:
                self._spill()
        ends = accumulate(map(len, raws), initial=self.end)
        next(ends)  # the initial value: the end of the previous record
        self._ends.extend(ends)
        self.end = self._ends[-1]
        if len(self._ends) >= INDEX_BATCH:
            self._commit()

    def _spill(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._data.write(buf)

    def _commit(self) -> None:
        # Data appended and flushed first, then the index entries that point at it.
        self._spill()
        if not self._ends:
            return
        self._data.flush()
        ends, self._ends = self._ends, array("Q")
        self._committed += len(ends)
        if not _LITTLE:
            ends.byteswap()
        self._index.write(ends.tobytes())

    def flush(self) -> None:
        """Make every record appended so far durable and visible to new readers."""
        if self._lock.lost:
            raise DatasetLockedError(
                f"the writer lock of {self._lock.what} was taken over by another process "
                "(this writer was presumed dead); records written after that were not saved safely"
            )
        self._commit()
        self._index.flush()

    def close(self) -> None:
        """Flush, close the block streams and release the lock."""
        if self.closed:
            return
        self.closed = True
        if self.forked:
            # A forked copy of a writer: the parent owns the buffers, streams and lock.
            return
        try:
            self.flush()
        finally:
            try:
                self._data.close()
                self._index.close()
            finally:
                self._lock.release()

    def abandon(self) -> None:
        """Close without flushing buffered records (opening the dataset failed half way)."""
        self.closed = True
        try:
            self._data.close()
            self._index.close()
        finally:
            self._lock.release()
