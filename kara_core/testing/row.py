"""The row-dataset conformance suite: the row layer checked on top of any backend.

Subclass :class:`RowConformance` in your plugin's tests and override the ``backend``
fixture with a fresh, empty, writable (appendable) backend::

    from kara_core.testing.row import RowConformance

    class TestMyBackendRows(RowConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(...)

It checks what the row layer needs from a backend: writing and reading records, seek
and indexing, block rollover with records spanning blocks, appending across reopen,
recovery from a torn tail (simulated by appending partial bytes through the backend),
the writer lock, and meta listing.
"""

from __future__ import annotations

import pickle
import struct

import pytest

from ..backend import Backend
from ..errors import DatasetLockedError, VersionNotFoundError
from ..storage import KaraStorage

__all__ = ["RowConformance"]


def _record(i: int) -> dict[str, object]:
    return {"id": i, "text": f"row {i} " * (i % 7), "tokens": list(range(i % 13))}


class RowConformance:
    """Row datasets on the backend under test behave as on the reference file backend."""

    @pytest.fixture
    def backend(self) -> Backend:
        """Override: a fresh, empty, writable backend."""
        pytest.fail("override the `backend` fixture in your RowConformance subclass")

    @pytest.fixture
    def store(self, backend: Backend) -> KaraStorage:
        """The store under test."""
        return KaraStorage(backend)

    def _write(self, store: KaraStorage, n: int, version: str = "1", start: int = 0, **options: int) -> None:
        with store.open_dataset("conf", "rows", "w", version=version, **options) as ds:
            for i in range(start, start + n):
                ds.write(_record(i))

    def test_records_read_back_in_order(self, store: KaraStorage) -> None:
        self._write(store, 300)
        with store.open_dataset("conf", "rows") as ds:
            assert len(ds) == 300
            assert list(ds) == [_record(i) for i in range(300)]
            with pytest.raises(EOFError):
                ds.read()
            assert ds.read(default=None) is None

    def test_indexing_and_negative_indexing(self, store: KaraStorage) -> None:
        self._write(store, 50)
        with store.open_dataset("conf", "rows") as ds:
            assert ds[0] == _record(0)
            assert ds[37] == _record(37)
            assert ds[-1] == _record(49)
            with pytest.raises(IndexError):
                ds[50]

    def test_seek_from_start_current_and_end(self, store: KaraStorage) -> None:
        self._write(store, 20)
        with store.open_dataset("conf", "rows") as ds:
            assert ds.seek(5, 0) == 5
            assert ds.read() == _record(5)
            assert ds.seek(2, 1) == 8
            assert ds.read() == _record(8)
            assert ds.seek(3, 2) == 17
            assert ds.read() == _record(17)
            assert ds.seek(0, 2) == 20
            assert ds.read(None) is None

    def test_records_span_blocks_with_a_small_max_file_size(self, store: KaraStorage, backend: Backend) -> None:
        self._write(store, 200, max_file_size=512)
        assert backend.size("row/conf/rows/1/data/3.blk") == 512
        assert backend.size("row/conf/rows/1/index/2.blk") == 512
        with store.open_dataset("conf", "rows") as ds:
            assert list(ds) == [_record(i) for i in range(200)]
            assert [ds[i] for i in (199, 0, 64, 63, 100)] == [_record(i) for i in (199, 0, 64, 63, 100)]

    def test_append_across_reopen_continues_the_version(self, store: KaraStorage) -> None:
        self._write(store, 30, max_file_size=700)
        self._write(store, 30, start=30, max_file_size=700)
        with store.open_dataset("conf", "rows") as ds:
            assert list(ds) == [_record(i) for i in range(60)]

    def test_batch_raw_range_matches_single_reads(self, store: KaraStorage) -> None:
        self._write(store, 100, max_file_size=1000)
        with store.open_dataset("conf", "rows", serialization="json") as ds:
            raws = ds.read_raw_range(10, 60)
            assert [ds.serializer.deserialize(raw) for raw in raws] == [_record(i) for i in range(10, 60)]

    def test_torn_tail_reads_as_last_complete_record_and_append_continues(
        self, store: KaraStorage, backend: Backend
    ) -> None:
        self._write(store, 10)
        # A crashed writer: data that no entry covers, an entry pointing past the data,
        # and half of a further entry.
        data_size = backend.size("row/conf/rows/1/data/0.blk")
        assert data_size is not None
        data = backend.open_append("row/conf/rows/1/data/0.blk")
        data.append(b'{"torn": ')
        data.close()
        index = backend.open_append("row/conf/rows/1/index/0.blk")
        index.append(struct.pack("<Q", data_size + 1000) + b"\x01\x02\x03")
        index.close()
        with store.open_dataset("conf", "rows") as ds:
            assert list(ds) == [_record(i) for i in range(10)]
        assert store.rows.verify("conf", "rows")
        self._write(store, 5, start=10)
        with store.open_dataset("conf", "rows") as ds:
            assert list(ds) == [_record(i) for i in range(15)]
        assert store.rows.verify("conf", "rows") == []

    def test_compressed_records_in_groups_read_back_in_order_and_by_index(self, store: KaraStorage) -> None:
        # json+zstd: 16 records per frame, frames spanning blocks (max_file_size), a
        # group closed early by flush; read sequentially, by index, raw, and reopened.
        records = [_record(i) for i in range(300)]
        with store.open_dataset("conf", "packed", "w", version="1", serialization="json+zstd", max_file_size=512) as ds:
            ds.write_many(records[:100])
            ds.flush()
            ds.write_many(records[100:])
        with store.open_dataset("conf", "packed") as ds:
            assert ds.serializer.grouped
            assert list(ds) == records
            assert [ds[i] for i in range(299, -1, -13)] == records[::-13]
            assert ds.read_raw_range(95, 103) == [ds.serializer.serialize(r) for r in records[95:103]]
            again = pickle.loads(pickle.dumps(ds))
            try:
                assert again[150] == records[150] and again.read_range(290, 300) == records[290:]
            finally:
                again.close()

    def test_second_writer_is_refused_while_the_first_is_open(self, store: KaraStorage) -> None:
        with store.open_dataset("conf", "rows", "w", version="1") as first:
            first.write(_record(0))
            with pytest.raises(DatasetLockedError):
                store.open_dataset("conf", "rows", "w", version="1")
        self._write(store, 1, start=1)
        with store.open_dataset("conf", "rows") as ds:
            assert list(ds) == [_record(0), _record(1)]

    def test_meta_lists_versions_and_latest(self, store: KaraStorage) -> None:
        self._write(store, 3, version="a")
        self._write(store, 4, version="b")
        assert store.get_row_meta("conf", "rows") == {"latest": "b", "versions": ["a", "b"], "api": 2}
        assert store.list_namespaces() == ["conf"]
        assert store.list_keys("conf") == ["rows"]
        assert store.list_versions("conf", "rows") == ["a", "b"]
        with store.open_dataset("conf", "rows", version="a") as ds:
            assert len(ds) == 3
        with pytest.raises(VersionNotFoundError):
            store.open_dataset("conf", "rows", version="c")

    def test_reader_pickles_and_reopens(self, store: KaraStorage) -> None:
        self._write(store, 40)
        with store.open_dataset("conf", "rows") as ds:
            view = ds.slice(10, 5)
            copy = pickle.loads(pickle.dumps(view))
            assert list(copy) == [_record(i) for i in range(10, 15)]
            copy.close()
            view.close()

    def test_parallel_write_commits_parts_in_order_and_abort_leaves_nothing(
        self, store: KaraStorage, backend: Backend
    ) -> None:
        handle = pickle.loads(pickle.dumps(store.open_parallel_write("conf", "par", "v1", block_size=500)))
        with pytest.raises(RuntimeError):
            with handle.part(1) as failed:  # a task that fails once: its attempt never counts
                failed.write_many(_record(-i) for i in range(30))
                failed.flush()
                raise RuntimeError("task failed")
        for part in (2, 0, 1):
            with handle.part(part) as writer:
                writer.write_many(_record(part * 100 + i) for i in range(40))
        report = handle.commit()
        assert (report.records, report.parts, report.index_bytes_written) == (120, 3, 120 * 8)
        expected = [_record(part * 100 + i) for part in range(3) for i in range(40)]
        with store.open_dataset("conf", "par") as ds:
            assert list(ds) == expected
            assert [ds[i] for i in range(119, -1, -9)] == expected[::-9]
        assert store.rows.verify("conf", "par") == []
        committed = sorted(backend.list(""))
        # Nothing staged is left; the version's sidecar (its serializer) is, as for any writer.
        assert [path for path in committed if "/.kara/" in path] == ["row/conf/par/v1/.kara/version.json"]
        aborted = store.open_parallel_write("conf", "par", "v2")
        with aborted.part(0) as writer:
            writer.write_many(_record(i) for i in range(10))
        aborted.abort()
        assert sorted(backend.list("")) == committed
