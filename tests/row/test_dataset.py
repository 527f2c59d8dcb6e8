"""The RowDataset API: 2.x semantics (read/seek/tell/index/slice) plus kara's additions."""

from __future__ import annotations

import pickle
import threading
from array import array
from itertools import accumulate
from pathlib import Path

import orjson
import pytest

import kara_core
from kara_core import KaraStorage
from kara_core.backend import Capabilities
from kara_core.errors import (
    ConfigurationError,
    CorruptDatasetError,
    DatasetClosedError,
    DatasetNotFoundError,
    EndOfDatasetError,
    ModeError,
    ReadOnlyStoreError,
    VersionNotFoundError,
)
from kara_core.serialization import NoSerializer, Serializer

from .conftest import record


def _fill(store: KaraStorage, n: int, version: object = "1", **options: int) -> None:
    with store.open_dataset("ns", "rows", "w", version=version, **options) as ds:
        ds.write_many(record(i) for i in range(n))


@pytest.fixture
def ds(store: KaraStorage):
    _fill(store, 100, max_file_size=2048)
    with store.open_dataset("ns", "rows") as opened:
        yield opened


def test_row_dataset_is_exported_from_the_package(ds) -> None:
    assert isinstance(ds, kara_core.RowDataset)
    assert (ds.namespace, ds.key, ds.version, ds.mode) == ("ns", "rows", "1", "r")


def test_read_returns_records_in_order_then_raises_eof_or_returns_the_default(ds) -> None:
    assert [ds.read() for _ in range(100)] == [record(i) for i in range(100)]
    with pytest.raises(EndOfDatasetError):
        ds.read()
    with pytest.raises(EOFError):
        ds.read()
    assert ds.read(default=None) is None
    assert ds.read("end") == "end"


def test_write_returns_true_and_write_many_returns_the_count(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        assert ds.write(record(0)) is True
        assert ds.write_many(record(i) for i in range(1, 10_001)) == 10_000
        assert len(ds) == 10_001
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(i) for i in range(10_001)]


def test_iteration_yields_none_records_and_moves_the_cursor(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write_many([1, None, 3])
    with store.open_dataset("ns", "rows") as ds:
        assert ds.read() == 1
        assert list(ds) == [None, 3]
        assert ds.tell() == 3


def test_seek_whence_semantics_match_2x(ds) -> None:
    assert ds.seek(10) == 10
    assert ds.tell() == 10
    assert ds.seek(5, 1) == 15
    assert ds.read() == record(15)
    assert ds.seek(-3, 1) == 13
    assert ds.seek(1, 2) == 99
    assert ds.read() == record(99)
    assert ds.seek(0, 2) == 100
    assert ds.read(None) is None
    assert ds.seek(0, 0) == 0
    assert ds.read() == record(0)


def test_seek_clamps_into_range(ds) -> None:
    assert ds.seek(-5) == 0
    assert ds.seek(1000) == 100
    assert ds.seek(1000, 2) == 0
    assert ds.seek(-10, 2) == 100


def test_seek_with_a_bad_whence_is_a_configuration_error(ds) -> None:
    with pytest.raises(ConfigurationError):
        ds.seek(0, 3)


def test_indexing_supports_negative_indices_and_raises_index_error(ds) -> None:
    assert ds[0] == record(0)
    assert ds[-1] == record(99)
    assert ds[-100] == record(0)
    assert ds.pread(42) == record(42)
    for bad in (100, -101):
        with pytest.raises(IndexError):
            ds[bad]


def test_indexing_does_not_move_the_cursor(ds) -> None:
    ds.seek(7)
    assert ds[50] == record(50)
    assert ds.read() == record(7)


def test_slices_have_their_own_cursor_and_bounds(ds) -> None:
    part = ds.slice(10, 20)
    assert len(part) == 20
    assert part[0] == record(10)
    assert part[-1] == record(29)
    assert part.read() == record(10)
    assert ds.read() == record(0)
    assert part.seek(0, 2) == 20
    assert part.read(None) is None
    assert list(part.slice(15)) == [record(i) for i in range(25, 30)]
    assert len(ds.slice(90, 50)) == 10
    assert len(ds.slice(500)) == 0
    with pytest.raises(IndexError):
        part[20]


def test_closing_the_parent_leaves_slices_readable(ds) -> None:
    part = ds.slice(95)
    ds.close()
    assert list(part) == [record(i) for i in range(95, 100)]
    part.close()


def test_threads_reading_share_the_cursor_without_losing_records(store: KaraStorage) -> None:
    _fill(store, 20_000, max_file_size=50_000)
    with store.open_dataset("ns", "rows") as ds:
        seen: list[list[int]] = [[] for _ in range(4)]

        def drain(out: list[int]) -> None:
            while (rec := ds.read(None)) is not None:
                out.append(rec["id"])

        def index(out: list[int]) -> None:
            out.extend(ds[i]["id"] - i for i in range(0, 20_000, 3))

        threads = [threading.Thread(target=drain, args=(seen[k],)) for k in range(3)]
        threads.append(threading.Thread(target=index, args=(seen[3],)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seen[0] + seen[1] + seen[2]) == list(range(20_000))
        assert set(seen[3]) == {0}


def test_read_raw_range_returns_serialized_records_clamped(ds) -> None:
    raws = ds.read_raw_range(95, 120)
    assert [ds.serializer.deserialize(raw) for raw in raws] == [record(i) for i in range(95, 100)]
    part = ds.slice(10, 5)
    assert [ds.serializer.deserialize(raw) for raw in part.read_raw_range(-3, 2)] == [record(10), record(11)]
    bounds = part.raw_record_bounds(0, 5)
    assert [bounds[k + 1] - bounds[k] for k in range(5)] == [len(raw) for raw in part.read_raw_range(0, 5)]


def test_read_raw_joined_gives_the_records_back_to_back(ds) -> None:
    part = ds.slice(7, 80)  # records 7..86, across several data blocks of 2048 bytes
    for start, stop in [(0, 80), (3, 4), (10, 70), (-5, 2), (75, 500), (40, 40), (50, 10)]:
        data, ends = part.read_raw_joined(start, stop)
        raws = part.read_raw_range(start, stop)
        assert isinstance(ends, array) and ends.typecode == "Q"
        assert bytes(data) == b"".join(raws)
        assert list(ends) == list(accumulate(map(len, raws)))


def test_read_raw_joined_reports_a_damaged_index(store: KaraStorage, tmp_path: Path) -> None:
    _fill(store, 10)
    (index,) = (tmp_path / "store").rglob("index/0.blk")
    raw = bytearray(index.read_bytes())
    raw[5 * 8 : 6 * 8] = (1).to_bytes(8, "little")  # record 5 ends before it starts
    index.write_bytes(bytes(raw))
    with store.open_dataset("ns", "rows") as opened:
        assert opened.read_raw_joined(0, 5)[1][-1] == len(b"".join(opened.read_raw_range(0, 5)))
        with pytest.raises(CorruptDatasetError, match="record 5 ends at data offset 1"):
            opened.read_raw_joined(2, 9)


def test_nbytes_counts_the_serialized_records(ds) -> None:
    sizes = [len(raw) for raw in ds.read_raw_range(0, 100)]
    assert ds.nbytes() == sum(sizes)
    assert ds.slice(10, 10).nbytes() == sum(sizes[10:20])


def test_reader_pickles_as_a_description_and_reopens(ds) -> None:
    part = ds.slice(20, 30)
    part.seek(5)
    data = pickle.dumps(part)
    assert len(data) < 2000
    copy = pickle.loads(data)
    assert (copy.version, len(copy), copy.tell()) == ("1", 30, 5)
    assert copy.read() == record(25)
    copy.close()


def test_pickling_a_writer_is_a_type_error(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds, pytest.raises(TypeError, match="writing"):
        pickle.dumps(ds)


def test_raw_serializer_refuses_objects(store: KaraStorage) -> None:
    with store.open_dataset("ns", "raw", "w", version="1", serialization=NoSerializer()) as ds:
        ds.write(b"bytes are fine")
        with pytest.raises(TypeError, match="bytes only"):
            ds.write({"not": "bytes"})
    with store.open_dataset("ns", "raw", serialization="raw") as ds:
        assert list(ds) == [b"bytes are fine"]


def test_user_serializer_subclass_is_used(store: KaraStorage) -> None:
    class Upper(Serializer):
        def serialize(self, x: str) -> bytes:
            return x.upper().encode()

        def deserialize(self, x: bytes) -> str:
            return x.decode()

    with store.open_dataset("ns", "text", "w", version="1", serialization=Upper) as ds:
        ds.write("shout")
    with store.open_dataset("ns", "text", serialization=Upper()) as ds:
        assert ds.read() == "SHOUT"


def test_versions_are_strings_and_latest_is_the_last_opened_for_writing(store: KaraStorage) -> None:
    _fill(store, 3, version=3)
    _fill(store, 4, version="b")
    assert store.get_row_meta("ns", "rows") == {"latest": "b", "versions": ["3", "b"], "api": 2}
    with store.open_dataset("ns", "rows", "w", version=3):
        pass
    assert store.get_row_meta("ns", "rows")["latest"] == "3"
    with store.open_dataset("ns", "rows") as ds:
        assert (ds.version, len(ds)) == ("3", 3)


def test_writing_latest_appends_to_the_latest_version(store: KaraStorage) -> None:
    _fill(store, 3, version="a")
    with store.open_dataset("ns", "rows", "w") as ds:
        assert ds.version == "a"
        ds.write(record(3))
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(i) for i in range(4)]


def test_creating_a_dataset_without_a_version_is_an_error(store: KaraStorage) -> None:
    with pytest.raises(ConfigurationError, match="version="):
        store.open_dataset("ns", "new", "w")
    assert store.list_keys("ns") == []


def test_missing_dataset_and_version_raise_not_found(store: KaraStorage) -> None:
    with pytest.raises(DatasetNotFoundError):
        store.open_dataset("ns", "absent")
    _fill(store, 1)
    with pytest.raises(VersionNotFoundError, match="'1'"):
        store.open_dataset("ns", "rows", version="2")


def test_wrong_mode_operations_raise_mode_error(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as writer:
        for call in (writer.read, lambda: writer[0], lambda: writer.seek(0), writer.tell, writer.slice):
            with pytest.raises(ModeError):
                call()
    with store.open_dataset("ns", "rows") as reader:
        with pytest.raises(ModeError):
            reader.write(record(0))
        with pytest.raises(ModeError):
            reader.write_many([record(0)])


def test_operations_on_a_closed_dataset_raise_dataset_closed_error(store: KaraStorage) -> None:
    _fill(store, 5)
    ds = store.open_dataset("ns", "rows")
    ds.close()
    ds.close()
    assert ds.closed
    for call in (ds.read, lambda: ds[0], lambda: ds.seek(0), ds.flush, lambda: list(ds)):
        with pytest.raises(DatasetClosedError):
            call()
    writer = store.open_dataset("ns", "rows", "w", version="1")
    writer.close()
    with pytest.raises(DatasetClosedError):
        writer.write(record(0))


def test_bad_mode_and_unknown_options_are_configuration_errors(store: KaraStorage) -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        store.open_dataset("ns", "rows", "rw", version="1")
    with pytest.raises(ConfigurationError, match="trunk_size"):
        store.open_dataset("ns", "rows", "w", version="1", trunk_size=10)
    with pytest.raises(ConfigurationError, match="max_file_size"):
        store.open_dataset("ns", "rows", "w", version="1", max_file_size=0)


def test_writing_to_a_store_that_cannot_append_is_a_read_only_error(tmp_path: Path) -> None:
    from kara_file import FileBackend

    class NoAppend(FileBackend):
        capabilities = Capabilities(writable=True, appendable=False, local_path=True)

    with pytest.raises(ReadOnlyStoreError):
        KaraStorage(NoAppend(str(tmp_path))).open_dataset("ns", "rows", "w", version="1")


def test_records_written_are_visible_to_new_readers_after_flush(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as writer:
        writer.write_many(record(i) for i in range(10))
        writer.flush()
        with store.open_dataset("ns", "rows") as reader:
            assert len(reader) == 10
        writer.write(record(10))
    with store.open_dataset("ns", "rows") as reader:
        assert len(reader) == 11


def test_empty_version_reads_as_empty(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1"):
        pass
    with store.open_dataset("ns", "rows") as ds:
        assert (len(ds), ds.read(None), list(ds), ds.nbytes()) == (0, None, [], 0)


def test_large_records_round_trip_across_blocks(store: KaraStorage) -> None:
    blobs = [bytes([i]) * (300_000 + i) for i in range(8)]
    with store.open_dataset("ns", "big", "w", version="1", serialization="raw", max_file_size=1_000_000) as ds:
        for blob in blobs:
            ds.write(blob)
    with store.open_dataset("ns", "big", serialization="raw") as ds:
        assert list(ds) == blobs
        assert ds[5] == blobs[5]
        assert ds.read_raw_range(2, 6) == blobs[2:6]


def test_dataset_info_and_verify_describe_a_version(store: KaraStorage) -> None:
    _fill(store, 100, max_file_size=2048)
    info = store.rows.dataset_info("ns", "rows", "1")
    assert info["records"] == 100
    assert info["latest"] is True
    assert info["blocks"] > 1
    assert info["data_bytes"] == sum(len(r) for r in store.open_dataset("ns", "rows").read_raw_range(0, 100))
    assert store.rows.verify("ns", "rows") == []
    store.backend.delete("row/ns/rows/1/data/1.blk")
    problems = store.rows.verify("ns", "rows", "1")
    assert any("missing block row/ns/rows/1/data/1.blk" in p for p in problems)
    with store.open_dataset("ns", "rows") as ds:
        assert len(ds) < 100  # records past the gap are not readable, and opening still works


def test_verify_counts_only_the_blocks_kara_names(store: KaraStorage) -> None:
    # Objects that only look like blocks (a leading zero, non-ASCII digits, a line break
    # after the name, which object stores allow) are no blocks: 2.x and kara probe
    # 0.blk, 1.blk, ... and never read them, so they open no gap.
    _fill(store, 100, max_file_size=2048)
    for stray in ("07.blk", "\u0663.blk", "5.blk\n", "+9.blk"):
        store.backend.put(f"row/ns/rows/1/data/{stray}", b"x")
    assert store.rows.verify("ns", "rows", "1") == []
    assert len(store.open_dataset("ns", "rows")) == 100


def test_threads_writing_at_once_lose_no_record(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1", buffer_size=4096, max_file_size=10_000) as ds:

        def produce(k: int) -> None:
            for i in range(k * 10_000, k * 10_000 + 2_000):
                ds.write(record(i))
            ds.write_many(record(i) for i in range(k * 10_000 + 2_000, k * 10_000 + 5_000))

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with store.open_dataset("ns", "rows") as ds:
        ids = sorted(rec["id"] for rec in ds)
    assert ids == sorted(k * 10_000 + i for k in range(4) for i in range(5_000))


@pytest.mark.parametrize("close_before_append", [True, False])
def test_a_close_between_the_steps_of_a_write_keeps_the_record_only_if_write_returns(
    store: KaraStorage, close_before_append: bool
) -> None:
    # write() queues small records without the lock: it takes the queue, appends, then
    # checks the queue is still the dataset's. Another thread's close() can come between
    # those steps; the record is then kept if and only if write() returns True.
    ds = store.open_dataset("ns", "rows", "w", version="1")
    ds.write(record(0))

    class CloseMeanwhile(list):
        def append(self, raw: bytes) -> None:
            if close_before_append:
                ds.close()
            super().append(raw)
            if not close_before_append:
                ds.close()

    ds._queue = CloseMeanwhile(ds._queue)
    if close_before_append:
        with pytest.raises(DatasetClosedError):
            ds.write(record(1))
    else:
        assert ds.write(record(1)) is True
    with store.open_dataset("ns", "rows") as reader:
        assert list(reader) == [record(0)] if close_before_append else [record(0), record(1)]


def test_threads_writing_while_another_closes_keep_exactly_the_writes_that_returned(store: KaraStorage) -> None:
    ds = store.open_dataset("ns", "race", "w", version="1")
    kept: list[list[int]] = [[] for _ in range(3)]
    started = threading.Barrier(4)

    def produce(k: int) -> None:
        started.wait()
        for i in range(k * 1_000_000, k * 1_000_000 + 200_000):
            try:
                ds.write(record(i))
            except DatasetClosedError:
                return
            kept[k].append(i)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    while sum(map(len, kept)) < 1_000:
        pass
    ds.close()
    for thread in threads:
        thread.join()
    with store.open_dataset("ns", "race") as reader:
        ids = [rec["id"] for rec in reader]
    assert sorted(ids) == sorted(i for part in kept for i in part)
    for part in kept:  # each thread's records in the order it wrote them
        mine = set(part)
        assert [i for i in ids if i in mine] == part


def test_a_serializer_reusing_its_output_buffer_is_copied_at_each_write(store: KaraStorage) -> None:
    class Reused(Serializer):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def serialize(self, x: bytes) -> bytearray:  # type: ignore[override]
            self.buffer[:] = x
            return self.buffer

        def deserialize(self, raw: bytes) -> bytes:  # type: ignore[override]
            return bytes(raw)

    blobs = [bytes([i]) * (i + 1) for i in range(200)]
    with store.open_dataset("ns", "rows", "w", version="1", serialization=Reused()) as ds:
        for blob in blobs:
            ds.write(blob)
        assert len(ds) == 200
        assert ds.nbytes() == sum(map(len, blobs))
    with store.open_dataset("ns", "rows", serialization=Reused()) as ds:
        assert list(ds) == blobs


def test_len_and_nbytes_count_queued_records(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        for i in range(10):
            ds.write(record(i))
        assert len(ds) == 10
        assert ds.nbytes() == sum(len(orjson.dumps(record(i))) for i in range(10))
        ds.write_many(record(i) for i in range(10, 20))
        assert len(ds) == 20
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(i) for i in range(20)]


def test_a_record_that_fails_to_serialize_leaves_the_dataset_consistent(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write_many(record(i) for i in range(3))
        with pytest.raises(TypeError):
            ds.write_many([record(3), object()])
        with pytest.raises(TypeError):
            ds.write(object())
        ds.write(record(4))
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(0), record(1), record(2), record(4)]
        assert store.rows.verify("ns", "rows") == []


def test_a_user_serializer_returning_text_is_a_type_error_at_the_write(store: KaraStorage) -> None:
    class Text(Serializer):
        def serialize(self, x: str) -> str:  # type: ignore[override]
            return x

        def deserialize(self, x: bytes) -> str:
            return x.decode()

    with store.open_dataset("ns", "text", "w", version="1", serialization=Text) as ds:
        with pytest.raises(TypeError, match=r"Text\.serialize must return bytes, got str"):
            ds.write("not bytes")
        assert len(ds) == 0


def test_put_row_meta_replaces_meta_json_as_2x_writes_it(store: KaraStorage) -> None:
    _fill(store, 1, version="a")
    _fill(store, 1, version="b")
    store.put_row_meta("ns", "rows", {"latest": "a", "versions": ["a", "b"], "api": 2})
    assert store.backend.read("row/ns/rows/meta.json") == b'{"latest": "a", "versions": ["a", "b"], "api": 2}'
    with store.open_dataset("ns", "rows") as ds:
        assert ds.version == "a"
    assert not store.backend.exists("row/ns/rows/.kara/meta.lock")


def test_a_dataset_dropped_without_close_is_flushed(store: KaraStorage) -> None:
    ds = store.open_dataset("ns", "rows", "w", version="1")
    ds.write_many(record(i) for i in range(5))
    del ds
    with store.open_dataset("ns", "rows") as reader:
        assert list(reader) == [record(i) for i in range(5)]


def test_readers_opened_while_a_writer_appends_see_a_clean_prefix(store: KaraStorage) -> None:
    done = threading.Event()

    def append() -> None:
        with store.open_dataset("ns", "rows", "w", version="1", buffer_size=1000, max_file_size=3000) as ds:
            for start in range(0, 3000, 37):
                ds.write_many(record(i) for i in range(start, start + 37))
                ds.flush()
        done.set()

    _fill(store, 0)
    writer = threading.Thread(target=append)
    writer.start()
    seen = []
    while not done.is_set():
        with store.open_dataset("ns", "rows") as ds:
            n = len(ds)
            assert list(ds) == [record(i) for i in range(n)]
            seen.append(n)
    writer.join()
    assert len(set(seen)) > 2  # the readers really ran while the writer was appending


PICKLED_READER = """
import pickle, sys, json
ds = pickle.loads(sys.stdin.buffer.read())
print(json.dumps({"version": ds.version, "tell": ds.tell(), "rows": list(ds)}))
"""


def test_a_pickled_reader_reopens_in_another_process(store: KaraStorage) -> None:
    import json
    import subprocess
    import sys

    _fill(store, 50)
    with store.open_dataset("ns", "rows") as ds:
        part = ds.slice(10, 20)
        part.seek(15)
        data = pickle.dumps(part)
    proc = subprocess.run([sys.executable, "-c", PICKLED_READER], input=data, capture_output=True, check=True)
    result = json.loads(proc.stdout)
    assert result == {"version": "1", "tell": 15, "rows": [record(i) for i in range(25, 30)]}
