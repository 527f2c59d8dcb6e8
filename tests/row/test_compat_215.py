"""Byte compatibility with kara-storage 2.1.5, both ways.

2.1.5 runs in its own interpreter (``KARA_215_PYTHON``): importing it here would force
the multiprocessing start method of the test process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kara_core import KaraStorage
from kara_core.serialization import NoSerializer, PickleSerializer

from .conftest import FIXTURES, record, run_k215

EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def fixture_store() -> KaraStorage:
    return KaraStorage(f"file://{FIXTURES / 'store'}")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_reads_json_rows_written_by_215(fixture_store: KaraStorage, version: str) -> None:
    with fixture_store.open_dataset("demo", "json_rows", version=version) as ds:
        assert list(ds) == EXPECTED["json_rows"][version]
        assert [ds[i] for i in range(len(ds))] == EXPECTED["json_rows"][version]


def test_latest_of_the_215_store_is_its_last_written_version(fixture_store: KaraStorage) -> None:
    with fixture_store.open_dataset("demo", "json_rows") as ds:
        assert ds.version == "v2"
        assert list(ds) == EXPECTED["json_rows"]["v2"]


def test_reads_pickle_rows_written_by_215_with_an_int_version(fixture_store: KaraStorage) -> None:
    with fixture_store.open_dataset("demo", "pickle_rows", version=3, serialization=PickleSerializer()) as ds:
        assert list(ds) == [("tuple", i, b"\x00\x01" * i) for i in range(50)]


def test_reads_raw_rows_written_by_215(fixture_store: KaraStorage) -> None:
    with fixture_store.open_dataset("demo", "raw_rows", version=0, serialization=NoSerializer) as ds:
        assert [raw.hex() for raw in ds] == EXPECTED["raw_rows_hex"]
        assert ds[0] == b""


def test_fixture_store_verifies_healthy(fixture_store: KaraStorage) -> None:
    for key in ("json_rows", "pickle_rows", "raw_rows"):
        assert fixture_store.rows.verify("demo", key) == []


READ_WITH_215 = """
import kara_storage
from kara_storage.serialization import JSONSerializer, NoSerializer, PickleSerializer
storage = kara_storage.KaraStorage(PARAMS["url"])
out = {}
for key, version, kind in PARAMS["datasets"]:
    ser = {"json": JSONSerializer, "pickle": PickleSerializer, "raw": NoSerializer}[kind]()
    ds = storage.open_dataset("compat", key, "r", version=version, serialization=ser)
    rows = [r.hex() if kind == "raw" else repr(r) if kind == "pickle" else r for r in ds]
    picked = [ds.pread(i) for i in range(0, len(ds), 7)]
    picked = [r.hex() if kind == "raw" else repr(r) if kind == "pickle" else r for r in picked]
    out["%s/%s" % (key, version)] = {"rows": rows, "len": len(ds), "picked": picked}
out["latest"] = storage.get_row_meta("compat", "json")["latest"]
print(json.dumps(out))
"""


def test_store_written_by_kara_is_read_by_215(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}")
    expected: dict[str, list[object]] = {}
    # Several versions, small blocks (records span blocks), appends across reopen.
    for version in ("v1", "v2"):
        for part in range(2):
            with store.open_dataset("compat", "json", "w", version=version, max_file_size=1000) as ds:
                ds.write_many(record(i) for i in range(part * 100, part * 100 + 100 + len(version)))
    expected["json/v1"] = [record(i) for i in list(range(102)) + list(range(100, 202))]
    expected["json/v2"] = expected["json/v1"]
    with store.open_dataset("compat", "pickle", "w", version=3, serialization="pickle", max_file_size=333) as ds:
        for i in range(60):
            ds.write(("tuple", i, b"\xff" * i))
    expected["pickle/3"] = [repr(("tuple", i, b"\xff" * i)) for i in range(60)]
    with store.open_dataset("compat", "raw", "w", version=0, serialization="raw", max_file_size=64) as ds:
        for i in range(80):
            ds.write(bytes([i]) * i)
    expected["raw/0"] = [(bytes([i]) * i).hex() for i in range(80)]
    with store.open_dataset("compat", "json", "w", version="v1", max_file_size=1000) as ds:
        pass  # reopening v1 for writing makes it the latest again, as in 2.x

    datasets = [["json", "v1", "json"], ["json", "v2", "json"], ["pickle", "3", "pickle"], ["raw", "0", "raw"]]
    result = run_k215(READ_WITH_215, {"url": f"file://{tmp_path}", "datasets": datasets})
    for name, rows in expected.items():
        assert result[name]["rows"] == rows
        assert result[name]["len"] == len(rows)
        assert result[name]["picked"] == rows[::7]
    assert result["latest"] == "v1"


WRITE_WITH_215 = """
import kara_storage
storage = kara_storage.KaraStorage(PARAMS["url"])
for session in PARAMS["sessions"]:
    ds = storage.open_dataset("same", "bytes", "w", version=session["version"], max_file_size=PARAMS["max"])
    for rec in session["records"]:
        ds.write(rec)
    ds.close()
print("{}")
"""


def _tree(root: Path) -> dict[str, bytes]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".kara"]
        for name in filenames:
            path = Path(dirpath) / name
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def test_kara_writes_the_same_bytes_as_215(tmp_path: Path) -> None:
    sessions = [
        {"version": 1, "records": [record(i) for i in range(150)]},
        {"version": "b", "records": [record(i) for i in range(40)]},
        {"version": 1, "records": [record(i) for i in range(150, 230)]},
    ]
    run_k215(WRITE_WITH_215, {"url": f"file://{tmp_path}/old", "sessions": sessions, "max": 512})
    store = KaraStorage(f"file://{tmp_path}/new")
    for session in sessions:
        with store.open_dataset("same", "bytes", "w", version=session["version"], max_file_size=512) as ds:
            ds.write_many(session["records"])
    old, new = _tree(tmp_path / "old"), _tree(tmp_path / "new")
    assert len(old) > 20  # many blocks: rollover is compared too
    assert sorted(new) == sorted(old)
    assert new == old
