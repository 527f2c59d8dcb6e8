"""Row datasets and directory versions read from a static web mirror of a file:// store."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kara_http.testing import StaticServer

from kara_core import KaraStorage


def _record(i: int) -> dict[str, Any]:
    return {"id": i, "text": f"record {i} " * (i % 9), "tokens": list(range(i % 17))}


@pytest.fixture
def written(store_dir: Path) -> int:
    """2,000 records in row/ns/ds version v1, in small blocks so records span blocks."""
    n = 2_000
    store = KaraStorage(f"file://{store_dir}", fsync=False)
    with store.open_dataset("ns", "ds", "w", version="v1", max_file_size=16_384) as ds:
        for i in range(n):
            ds.write(_record(i))
    return n


def test_a_row_dataset_iterates_in_order_through_the_mirror(static: StaticServer, written: int) -> None:
    with KaraStorage(static.url).open_dataset("ns", "ds") as ds:
        assert len(ds) == written
        assert list(ds) == [_record(i) for i in range(written)]


def test_random_access_reads_the_right_records(static: StaticServer, written: int) -> None:
    with KaraStorage(static.url).open_dataset("ns", "ds", version="v1") as ds:
        for i in (0, 1, 977, written - 1, 5, 1500):
            assert ds[i] == _record(i)
        ds.seek(1234)
        assert ds.read() == _record(1234)


def test_sequential_reads_use_large_ranges_not_one_request_per_record(static: StaticServer, written: int) -> None:
    with KaraStorage(static.url).open_dataset("ns", "ds") as ds:
        for _ in ds:
            pass
    data_gets = [r for r in static.log if r.method == "GET" and "/data/" in r.path]
    assert len(data_gets) < written / 20


def test_compressed_record_groups_read_through_the_mirror(static: StaticServer, store_dir: Path) -> None:
    # json+zstd (16 records per frame) over HTTP ranges: ds[i] walks back to its group's
    # first record through the paged index and reads that one frame; a sequential read
    # takes large ranges, as for plain records.
    records = [_record(i) for i in range(1000)]
    with KaraStorage(f"file://{store_dir}", fsync=False).open_dataset(
        "ns", "packed", "w", version="v1", serialization="json+zstd", max_file_size=4096
    ) as ds:
        ds.write_many(records)
    with KaraStorage(static.url).open_dataset("ns", "packed") as ds:
        assert ds.serializer.grouped
        assert [ds[i] for i in (999, 0, 17, 500, 15, 16, 31)] == [records[i] for i in (999, 0, 17, 500, 15, 16, 31)]
        del static.log[:]
        assert list(ds) == records
    data_gets = [r for r in static.log if r.method == "GET" and "/data/" in r.path]
    assert len(data_gets) < len(records) / 50


def test_the_215_fixture_store_reads_through_the_mirror(fixture_store: Path, expected: dict[str, Any]) -> None:
    with StaticServer(str(fixture_store)) as server:
        store = KaraStorage(server.url)
        for version, records in expected["json_rows"].items():
            with store.open_dataset("demo", "json_rows", version=version) as ds:
                assert list(ds) == records
        with store.open_dataset("demo", "json_rows") as ds:
            assert list(ds) == expected["json_rows"]["v2"]
        with store.open_dataset("demo", "raw_rows", serialization="raw") as ds:
            assert [bytes(r).hex() for r in ds] == expected["raw_rows_hex"]
        with store.open_dataset("demo", "pickle_rows", version=3, serialization="pickle") as ds:
            assert list(ds) == [("tuple", i, b"\x00\x01" * i) for i in range(50)]


def test_the_215_fixture_directory_versions_load_through_the_mirror(fixture_store: Path, tmp_path: Path) -> None:
    tree = Path(__file__).resolve().parents[1] / "fixtures" / "kara-2.1.5" / "tree"
    with StaticServer(str(fixture_store)) as server:
        store = KaraStorage(server.url)
        target = tmp_path / "loaded"
        assert store.load_directory("demo", "ckpt", str(target), progress_bar=False) == "second"
        assert _tree(target) == _tree(tree)
        store.load_directory("demo", "ckpt", str(target), version="0", progress_bar=False)
        assert (target / "a.txt").read_text() == "hello\n"


def test_directory_versions_saved_with_kara_load_through_the_mirror(
    static: StaticServer, store_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "big.bin").write_bytes(bytes(range(256)) * 20_000)
    (source / "small.txt").write_text("small")
    KaraStorage(f"file://{store_dir}", fsync=False).save_directory("ns", "dir", str(source), progress_bar=False)
    target = tmp_path / "dst"
    KaraStorage(static.url).load_directory("ns", "dir", str(target), progress_bar=False)
    assert _tree(target) == _tree(source)


def _tree(root: Path) -> dict[str, bytes]:
    # .kara/ is kara's own bookkeeping in a loaded folder, not part of the saved files.
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.relative_to(root).parts[0] != ".kara"}


def test_a_pickled_http_dataset_reopens_in_another_process(static: StaticServer, written: int) -> None:
    ds = KaraStorage(static.url).open_dataset("ns", "ds", version="v1")
    try:
        payload = pickle.dumps(ds)
    finally:
        ds.close()
    code = (
        "import pickle, sys, json\n"
        "ds = pickle.loads(sys.stdin.buffer.read())\n"
        "print(json.dumps([len(ds), ds[7], ds[1999]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(proc.stdout) == [written, _record(7), _record(1999)]
