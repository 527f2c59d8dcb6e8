"""Parallel writes: parts from many processes, exactly once, one commit that moves blocks."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from array import array
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
import pytest

from kara_core import KaraStorage
from kara_core.errors import (
    ConfigurationError,
    CorruptDatasetError,
    DatasetClosedError,
    DatasetLockedError,
    DatasetNotFoundError,
    ParallelWriteError,
    VersionExistsError,
)
from kara_core.row.parallel import ParallelWrite
from kara_core.row.parts import attempt_prefix
from kara_core.row.parts import shift_ends as _shift

from .conftest import record, run_k215

READ_WITH_215 = """
import kara_storage
from kara_storage.serialization import JSONSerializer, NoSerializer, PickleSerializer
storage = kara_storage.KaraStorage(PARAMS["url"])
ser = {"json": JSONSerializer, "pickle": PickleSerializer, "raw": NoSerializer}[PARAMS["kind"]]()
ds = storage.open_dataset(PARAMS["namespace"], PARAMS["key"], "r", version=PARAMS["version"], serialization=ser)
show = (lambda r: r.hex()) if PARAMS["kind"] == "raw" else (lambda r: r)
rows = [show(r) for r in ds]
picked = [show(ds.pread(i)) for i in range(len(ds) - 1, -1, -3)]
print(json.dumps({"rows": rows, "picked": picked, "len": len(ds)}))
"""


def read_with_215(url: str, namespace: str, key: str, version: str, kind: str = "json") -> dict[str, Any]:
    """Every record of a version as kara-storage 2.1.5 reads it, sequentially and by pread."""
    params = {"url": url, "namespace": namespace, "key": key, "version": version, "kind": kind}
    return run_k215(READ_WITH_215, params)


def _kara_files(root: Path) -> list[str]:
    """What is left in kara's own folders: after a commit, only the version's sidecar."""
    return [path for path in _files(root) if ".kara" in path]


#: A committed version's kara-only files: its sidecar (the serializer), nothing staged.
SIDECAR_ONLY = ["row/corpus/docs/v1/.kara", "row/corpus/docs/v1/.kara/version.json"]


def _files(root: Path) -> list[str]:
    """Every file and folder under ``root`` (what a user would see with ls -R)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found.extend(os.path.relpath(os.path.join(dirpath, name), root) for name in dirnames + filenames)
    return sorted(found)


def _write_part(handle: ParallelWrite, part: int, count: int) -> str:
    # Runs in a spawned process: the handle arrives pickled.
    with handle.part(part) as writer:
        writer.write_many(record(part * 1000 + i) for i in range(count))
    return writer.attempt


def _expected(counts: list[int]) -> list[dict[str, Any]]:
    return [record(part * 1000 + i) for part, count in enumerate(counts) for i in range(count)]


def test_parts_written_by_other_processes_commit_in_order(store: KaraStorage, tmp_path: Path) -> None:
    counts = [300, 0, 120, 500, 7]
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=4096)
    assert len(pickle.dumps(handle)) < 2000  # a small description, not open files
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        # Submitted in reverse: the version's order is the parts' numbers, not finishing order.
        results = [pool.apply_async(_write_part, (handle, part, n)) for part, n in reversed(list(enumerate(counts)))]
        for result in results:
            result.get(timeout=120)
    report = handle.commit()
    blocks = list(store.backend.list("row/corpus/docs/v1/data/"))
    data_bytes = sum(len(store.backend.read(p)) for p in blocks)
    assert (report.records, report.parts, report.moved_by) == (sum(counts), len(counts), "rename")
    assert report.data_bytes_moved == data_bytes
    assert report.index_bytes_written == 8 * sum(counts)  # the only bytes the commit writes
    assert report.data_blocks == len(blocks) > 1  # moved block by block
    with store.open_dataset("corpus", "docs") as ds:
        assert ds.version == "v1"
        assert list(ds) == _expected(counts)
        assert ds[300] == record(2000)
    assert store.rows.verify("corpus", "docs") == []
    assert _kara_files(tmp_path / "store") == SIDECAR_ONLY  # staging removed
    result = read_with_215(store.url, "corpus", "docs", "v1")
    assert result["rows"] == _expected(counts)
    assert result["picked"] == _expected(counts)[::-1][::3]


def test_a_retried_part_and_a_speculative_duplicate_count_once(store: KaraStorage, tmp_path: Path) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=1000)
    with pytest.raises(RuntimeError, match="task failed"):
        with handle.part(0) as failed:
            failed.write_many(record(i) for i in range(50))
            failed.flush()  # blocks of the failed attempt reach storage
            raise RuntimeError("task failed")
    with handle.part(0) as retried:
        retried.write_many(record(i) for i in range(100))
    for _ in range(2):  # two complete attempts of part 1 (a speculative copy of the task)
        with handle.part(1) as duplicate:
            duplicate.write_many(record(1000 + i) for i in range(80))
    dropped = handle.part(2)  # a writer that was never closed
    dropped.write_many(record(5) for _ in range(10))
    dropped.flush()
    del dropped
    with handle.part(2) as third:
        third.write(record(2000))
    staged = handle.attempts()
    assert [sorted(staged[p].values()) for p in range(3)] == [[False, True], [True, True], [False, True]]
    report = handle.commit()
    assert report.records == 100 + 80 + 1
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == _expected([100, 80, 1])
    assert _kara_files(tmp_path / "store") == SIDECAR_ONLY  # the other attempts are gone too


def test_the_engine_names_the_attempts_that_count(store: KaraStorage) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1")
    with handle.part(0, attempt="first") as first:
        first.write({"attempt": "first"})
    with handle.part(0, attempt="second") as second:
        second.write({"attempt": "second"})
    handle.commit({0: "second"})
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == [{"attempt": "second"}]


def test_a_part_that_never_closed_fails_the_commit_naming_it(store: KaraStorage, tmp_path: Path) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1")
    with handle.part(0) as writer:
        writer.write(record(0))
    unfinished = handle.part(1)
    unfinished.write(record(1))
    unfinished.flush()
    before = _files(tmp_path / "store")
    with pytest.raises(ParallelWriteError, match=r"part 1 never closed \(1 attempt\(s\), none closed\)"):
        handle.commit()
    with pytest.raises(ParallelWriteError, match=r"part 2 never closed \(no attempt was ever opened"):
        handle.commit(parts=3)
    with pytest.raises(ParallelWriteError, match="part 0: attempt 'nope' was not found"):
        handle.commit({0: "nope"})
    assert _files(tmp_path / "store") == before  # a refused commit changes nothing
    with pytest.raises(DatasetNotFoundError):
        store.open_dataset("corpus", "docs")
    unfinished.close()
    assert handle.commit().records == 2


def test_an_aborted_write_leaves_no_trace(store: KaraStorage, tmp_path: Path) -> None:
    with store.open_dataset("corpus", "docs", "w", version="old") as ds:
        ds.write(record(0))
    before = {p: store.backend.read(p) for p in store.backend.list("")}
    tree = _files(tmp_path / "store")
    handle = store.open_parallel_write("corpus", "docs", "new")
    for part in range(3):
        with handle.part(part) as writer:
            writer.write_many(record(i) for i in range(20))
    handle.abort()
    handle.abort()  # idempotent
    assert {p: store.backend.read(p) for p in store.backend.list("")} == before
    assert _files(tmp_path / "store") == tree
    with pytest.raises(ParallelWriteError, match="no longer pending"):
        handle.part(0)
    with pytest.raises(ParallelWriteError, match="no longer pending"):
        handle.commit()
    fresh = KaraStorage(f"file://{tmp_path}/fresh")
    other = fresh.open_parallel_write("new", "dataset", "v1")
    with other.part(0) as writer:
        writer.write(record(1))
    other.abort()
    assert _files(tmp_path / "fresh") == []


def test_pending_writes_and_existing_versions_are_refused(store: KaraStorage) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1", serialization="pickle")
    with pytest.raises(DatasetLockedError, match=r"pending since .*resume=True"):
        store.open_parallel_write("corpus", "docs", "v1")
    resumed = store.open_parallel_write("corpus", "docs", "v1", resume=True, serialization="pickle")
    assert resumed.write_id == handle.write_id
    with resumed.part(0) as writer:
        writer.write(("a", b"tuple"))
    handle.commit()
    assert handle.commit().already_committed
    with pytest.raises(VersionExistsError):
        store.open_parallel_write("corpus", "docs", "v1")
    with pytest.raises(VersionExistsError, match="already committed"):
        store.open_parallel_write("corpus", "docs", "v1", resume=True)
    with pytest.raises(ParallelWriteError, match="was committed"):
        handle.abort()
    with pytest.raises(ParallelWriteError, match="no parallel write"):
        store.open_parallel_write("corpus", "docs", "v2", resume=True)
    with pytest.raises(ConfigurationError):
        store.open_parallel_write("corpus", "docs", "latest")
    with pytest.raises(ConfigurationError):
        store.open_parallel_write("corpus", "docs", "v3", block_size=0)
    other = store.open_parallel_write("corpus", "docs", "v3")
    with pytest.raises(ConfigurationError):
        other.part(-1)
    with pytest.raises(ConfigurationError):
        other.part(0, attempt="../escape")
    with other.part(0, attempt="a1") as writer:
        writer.write(1)
    with pytest.raises(ParallelWriteError, match="already complete"):
        other.part(0, attempt="a1")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(other.part(1))


def test_empty_parts_and_an_empty_version_are_read_by_215(store: KaraStorage) -> None:
    handle = store.open_parallel_write("corpus", "empty", "v1")
    for part in range(2):
        handle.part(part).close()
    assert handle.commit().records == 0
    with store.open_dataset("corpus", "empty") as ds:
        assert len(ds) == 0 and list(ds) == []
    assert read_with_215(store.url, "corpus", "empty", "v1")["len"] == 0


@pytest.mark.parametrize("kind", ["pickle", "raw"])
def test_small_blocks_pickle_and_raw_are_read_by_215_and_appended_to(store: KaraStorage, kind: str) -> None:
    make = (lambda i: bytes([i % 256]) * (i % 300)) if kind == "raw" else (lambda i: {"i": i, "b": "x" * (i % 300)})
    handle = store.open_parallel_write("corpus", kind, "v1", serialization=kind, block_size=700, max_file_size=96)
    for part in range(4):
        with handle.part(part) as writer:
            writer.write_many(make(part * 100 + i) for i in range(100))
    report = handle.commit()
    assert report.data_blocks > 20
    assert len(list(store.backend.list(f"row/corpus/{kind}/v1/index/"))) == 400 * 8 // 96 + 1  # cut at max_file_size
    # A plain writer continues the committed version like any other.
    with store.open_dataset("corpus", kind, "w", version="v1", serialization=kind, max_file_size=96) as ds:
        ds.write_many(make(400 + i) for i in range(10))
    expected = [make(i) for i in range(410)]
    with store.open_dataset("corpus", kind, serialization=kind) as ds:
        assert list(ds) == expected
    assert store.rows.verify("corpus", kind) == []
    shown = [r.hex() for r in expected] if kind == "raw" else [repr(r) for r in expected]
    result = read_with_215(store.url, "corpus", kind, "v1", kind)
    if kind == "pickle":
        result["rows"] = [repr(r) for r in result["rows"]]
    assert len(result["rows"]) == 410
    assert result["rows"] == shown if kind == "raw" else result["rows"] == [repr(make(i)) for i in range(410)]


KILL_COMMIT = """
import os, pickle, signal, sys
from kara_core.row import parallel
from kara_core.row.store import RowStore

handle = pickle.loads(bytes.fromhex(sys.argv[1]))
point = sys.argv[2]
calls = {"n": 0}

def killing(original, after):
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper

if point == "data":
    parallel.ParallelWrite._rename = killing(parallel.ParallelWrite._rename, 2)
elif point == "index":
    parallel.ParallelWrite._write_index = killing(parallel.ParallelWrite._write_index, 1)
elif point == "meta":
    RowStore._register_version = killing(RowStore._register_version, 1)
elif point == "sync":
    type(handle.backend).sync = killing(type(handle.backend).sync, 1)
elif point == "cleanup":
    type(handle.backend).delete = killing(type(handle.backend).delete, 3)
handle.commit()
"""


@pytest.mark.parametrize(
    ("point", "sync_at_commit"),
    [
        ("sync", True),
        ("data", True),
        ("data", False),
        ("index", True),
        ("index", False),
        ("meta", False),
        ("cleanup", True),
    ],
)
def test_a_commit_killed_mid_way_completes_when_run_again(
    store: KaraStorage, tmp_path: Path, point: str, sync_at_commit: bool
) -> None:
    counts = [40, 60, 30]
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=500, sync_at_commit=sync_at_commit)
    for part, count in enumerate(counts):
        with handle.part(part) as writer:
            writer.write_many(record(part * 1000 + i) for i in range(count))
        if part == 1:
            handle.part(part).write(record(-1))  # an incomplete attempt for gc to remove
    proc = subprocess.run(
        [sys.executable, "-c", KILL_COMMIT, pickle.dumps(handle).hex(), point], capture_output=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    if point in ("sync", "data", "index"):
        # Killed before meta.json names the version: nothing is visible.
        with pytest.raises(DatasetNotFoundError):
            store.open_dataset("corpus", "docs")
    else:
        with store.open_dataset("corpus", "docs") as ds:
            assert list(ds) == _expected(counts)
    report = store.open_parallel_write("corpus", "docs", "v1", resume=True).commit()
    assert report.already_committed == (point in ("meta", "cleanup"))
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == _expected(counts)
    assert store.rows.verify("corpus", "docs") == []
    assert _kara_files(tmp_path / "store") == SIDECAR_ONLY
    assert read_with_215(store.url, "corpus", "docs", "v1")["rows"] == _expected(counts)


def test_an_interrupted_commit_can_be_aborted_instead(store: KaraStorage, tmp_path: Path) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=300)
    for part in range(3):
        with handle.part(part) as writer:
            writer.write_many(record(i) for i in range(30))
    proc = subprocess.run(
        [sys.executable, "-c", KILL_COMMIT, pickle.dumps(handle).hex(), "index"], capture_output=True, timeout=120
    )
    assert proc.returncode == -9
    assert list(store.backend.list("row/corpus/docs/v1/data/"))  # blocks were moved in
    handle.abort()
    assert _files(tmp_path / "store") == []


def test_index_offsets_shift_across_every_byte_of_an_entry() -> None:
    ends = [0, 1, 255, 256, 2**32 - 1, 2**32, 2**40 + 12345, 2**56 - 1]
    raw = b"".join(end.to_bytes(8, "little") for end in ends)
    offset = 2**33 + 7
    shifted = _shift(raw, offset)
    assert [int.from_bytes(shifted[i : i + 8], "little") for i in range(0, len(raw), 8)] == [e + offset for e in ends]
    assert _shift(raw, 0) == raw and _shift(b"", offset) == b""


@pytest.mark.parametrize("numpy", [True, False])
def test_serialized_and_joined_records_mix_with_write_many(store: KaraStorage, numpy: bool) -> None:
    import numpy as np

    raws = [orjson.dumps(record(i)) for i in range(400)]
    data = b"".join(raws[100:300])
    ends = list(accumulate(map(len, raws[100:300])))
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=1000)
    with handle.part(1) as later:
        later.write_joined(memoryview(data), np.array(ends, dtype=np.int32) if numpy else array("Q", ends))
    with handle.part(0) as part:
        assert part.write_serialized(iter(raws[:50])) == 50
        part.write(record(50))  # buffered by write(), accounted before the next records
        part.write_many(record(i) for i in range(51, 100))
        assert part.write_joined(data, ends) == 200
        assert part.write_joined(b"", []) == 0
        assert part.write_serialized(bytearray(raw) for raw in raws[300:]) == 100
        assert len(part) == 400 and part.nbytes() == sum(map(len, raws))
    handle.commit()
    with store.open_dataset("corpus", "docs") as ds:
        assert ds.read_raw_range(0, 600) == raws + raws[100:300]
    assert read_with_215(store.url, "corpus", "docs", "v1")["rows"] == [
        record(i) for i in [*range(400), *range(100, 300)]
    ]


def test_bad_joined_or_serialized_records_are_refused_and_write_nothing(store: KaraStorage) -> None:
    import numpy as np

    handle = store.open_parallel_write("corpus", "docs", "v1")
    raws = [b'{"a":1}', b'{"b":22}']
    data, ends = b"".join(raws), [7, 15]
    with handle.part(0) as part:
        part.write_serialized(raws)
        for bad_ends, message in [
            ([8, 7, 15], "never decrease"),
            ([7, 14], "the last end \\(14\\)"),
            ([-1, 15], "non-negative"),
            (np.array([-1, 15]), "non-negative"),
            (np.array([[7, 15]]), "1-dimensional"),
            (np.array([7.0, 15.0]), "integers"),
            (["7", 15], "non-negative integers"),
            ([], "the last end \\(0\\)"),
        ]:
            with pytest.raises(ConfigurationError, match=message):
                part.write_joined(data, bad_ends)
        with pytest.raises(ConfigurationError, match="must be bytes, got str"):
            part.write_serialized([b"{}", "{}"])
        assert len(part) == 2
        part.write_joined(data, ends)
    handle.commit()
    with store.open_dataset("corpus", "docs") as ds:
        assert ds.read_raw_range(0, 10) == raws + raws
    with pytest.raises(DatasetClosedError):
        part.write_joined(data, ends)
    with pytest.raises(DatasetClosedError):
        part.write_serialized(raws)


@pytest.mark.parametrize("max_file_size", [8 * 7, 1 << 20])
def test_the_committed_index_is_cut_at_max_file_size_and_shifted_per_part(
    store: KaraStorage, max_file_size: int
) -> None:
    # Every part's index is read into one array, shifted in place by the data of the
    # parts before it, and put in max_file_size pieces; the same version written by
    # one writer has the same index bytes.
    counts = [5, 0, 9, 3]
    indexes = []
    with store.open_dataset("corpus", "docs", "w", version="single", max_file_size=max_file_size) as single:
        single.write_many(_expected(counts))
    paths = sorted(store.backend.list("row/corpus/docs/single/index/"))
    single_index = b"".join(store.backend.read(path) for path in paths)
    for version in ("a", "b"):
        handle = store.open_parallel_write("corpus", "docs", version, block_size=64, max_file_size=max_file_size)
        for part, count in enumerate(counts):
            with handle.part(part) as writer:
                writer.write_many(record(part * 1000 + i) for i in range(count))
        report = handle.commit()
        assert set(report.phases) == {"plan", "move", "index", "publish", "clean"}
        assert sum(report.phases.values()) <= report.seconds
        paths = sorted(store.backend.list(f"row/corpus/docs/{version}/index/"))
        indexes.append([store.backend.read(path) for path in paths])
        with store.open_dataset("corpus", "docs", version=version) as ds:
            assert list(ds) == _expected(counts)
    assert indexes[0] == indexes[1]
    assert b"".join(indexes[0]) == single_index
    assert len(indexes[0]) == (3 if max_file_size == 56 else 1)  # 17 entries in 7-entry blocks
    assert all(len(block) == max_file_size for block in indexes[0][:-1])


def test_a_staged_index_block_of_the_wrong_size_fails_the_commit(store: KaraStorage) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1")
    with handle.part(0) as writer:
        writer.write_many(record(i) for i in range(10))
    index = next(p for p in store.backend.list("row/corpus/docs/v1/.kara/") if ".index." in p)
    store.backend.put(index, store.backend.read(index)[:-8])
    with pytest.raises(CorruptDatasetError, match=r"the index block holds 72 bytes, done\.json says 80"):
        handle.commit()
    assert not store.backend.exists("row/corpus/docs/meta.json")  # nothing published


def test_joined_read_only_buffers_are_held_and_writable_ones_copied(store: KaraStorage) -> None:
    # Read-only buffers (bytes, Arrow's) are put from where they are; a writable one is
    # copied, so changing it after write_joined returns changes nothing. Blocks of 1000
    # bytes are cut across held buffers, copied records and the rest of a held buffer.
    raws = [orjson.dumps(record(i)) for i in range(300)]
    ends = list(accumulate(map(len, raws[100:200])))
    held, writable = b"".join(raws[:100]), bytearray(b"".join(raws[100:200]))
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=1000)
    with handle.part(0) as part:
        part.write_joined(memoryview(held), list(accumulate(map(len, raws[:100]))))
        part.write_joined(writable, ends)
        writable[:] = b"x" * len(writable)
        part.write_many(record(i) for i in range(200, 250))
        part.write_joined(b"".join(raws[250:]), list(accumulate(map(len, raws[250:]))))
    report = handle.commit()
    assert report.data_blocks == -(-sum(map(len, raws)) // 1000)  # full blocks, then the rest
    with store.open_dataset("corpus", "docs") as ds:
        assert ds.read_raw_range(0, 300) == raws


def test_a_local_index_block_read_in_short_pieces_still_commits(
    store: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One read() returns at most ~2 GiB on Linux, so a larger staged index block comes
    # back in pieces: the commit reads until the block is full, not once.
    import io

    import kara_core.row.parallel as parallel

    class ShortReads(io.FileIO):
        def readinto(self, buffer: Any) -> int:
            return super().readinto(memoryview(buffer)[:16])

    monkeypatch.setattr(parallel, "open", lambda path, *args, **kwargs: ShortReads(path, "rb"), raising=False)
    handle = store.open_parallel_write("corpus", "docs", "v1")
    for part in range(2):
        with handle.part(part) as writer:
            writer.write_many(record(part * 1000 + i) for i in range(20))
    handle.commit()
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == _expected([20, 20])


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, every ``os.fsync`` still syncs and appends its descriptor to the list returned."""
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    return fsyncs


def _done(store: KaraStorage, handle: ParallelWrite, part: int, attempt: str) -> dict[str, Any]:
    prefix = attempt_prefix(handle.namespace, handle.key, handle.version, part, attempt)
    return orjson.loads(store.backend.read(prefix + "done.json"))


def test_parts_closed_where_the_write_was_registered_are_synced_once_by_the_commit(
    store: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No fsync while the parts are written and closed: the commit makes every staged
    # block durable with one sync, before plan.json (its point of no return) exists.
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=700, sync_at_commit=True)
    fsyncs = _record_fsyncs(monkeypatch)
    counts, attempts = [40, 0, 25], {}
    for part, count in enumerate(counts):
        with handle.part(part) as writer:
            writer.write_many(record(part * 1000 + i) for i in range(count))
        attempts[part] = writer.attempt
    assert fsyncs == []
    scope = store.backend.sync_scope()
    assert scope and all(_done(store, handle, p, a)["unsynced"] == scope for p, a in attempts.items())
    synced: list[tuple[list[str], bool]] = []
    real_sync = type(store.backend).sync
    plan = "row/corpus/docs/v1/.kara/parallel/plan.json"

    def sync(self: Any, paths: list[str]) -> None:
        synced.append((sorted(paths), self.exists(plan)))
        real_sync(self, paths)

    expected = []
    for part, attempt in attempts.items():  # every block of every attempt the commit takes
        done, prefix = _done(store, handle, part, attempt), attempt_prefix("corpus", "docs", "v1", part, attempt)
        expected += [f"{prefix}data.{n}.blk" for n in range(len(done["data_blocks"]))]
        expected += [f"{prefix}index.{n}.blk" for n in range(len(done["index_blocks"]))]
    monkeypatch.setattr(type(store.backend), "sync", sync)
    handle.commit(attempts)
    assert len(synced) == 1 and synced[0][1] is False  # once, before the plan
    assert synced[0][0] == sorted(expected) and len(expected) > 6
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == _expected(counts)


def test_parts_closed_unsynced_before_a_restart_fail_the_commit_and_can_be_rewritten(
    store: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A restart changes the sync scope (the boot id): blocks that waited in the page cache
    # may be gone. The commit refuses those attempts, naming them, and changes nothing;
    # attempts written after the restart sync as they close, and commit.
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=500, sync_at_commit=True)
    for part in range(2):
        with handle.part(part) as writer:
            writer.write_many(record(part * 1000 + i) for i in range(30))
    first = handle.attempts()
    after = "another-boot:1"
    monkeypatch.setattr(type(store.backend), "sync_scope", lambda self: after)
    with pytest.raises(ParallelWriteError, match=r"part 0 \(attempt .*part 1 \(attempt .*write those parts again"):
        handle.commit()
    assert not store.backend.exists("row/corpus/docs/v1/.kara/parallel/plan.json")
    with pytest.raises(DatasetNotFoundError):
        store.open_dataset("corpus", "docs")
    fsyncs = _record_fsyncs(monkeypatch)
    attempts = {}
    for part in range(2):
        with handle.part(part) as writer:  # the write was registered in the old scope: synced puts
            writer.write_many(record(part * 1000 + i) for i in range(30))
        attempts[part] = writer.attempt
        assert _done(store, handle, part, writer.attempt)["unsynced"] == ""
        assert writer.attempt not in first[part]
    assert fsyncs  # each put synced its file and folder
    report = handle.commit(attempts)
    assert report.records == 60
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == _expected([30, 30])


def test_without_sync_at_commit_every_part_syncs_as_it_closes(store: KaraStorage, monkeypatch) -> None:
    handle = store.open_parallel_write("corpus", "docs", "v1")
    fsyncs = _record_fsyncs(monkeypatch)
    with handle.part(0) as writer:
        writer.write_many(record(i) for i in range(10))
    assert len(fsyncs) == 6  # data, index and done.json: each file and its folder
    assert _done(store, handle, 0, writer.attempt)["unsynced"] == ""
    monkeypatch.setattr(type(store.backend), "sync", lambda self, paths: pytest.fail("nothing to sync"))
    assert handle.commit().records == 10
