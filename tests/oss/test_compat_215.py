"""A store written by kara-storage 2.1.5, uploaded into the OSS test server, reads through kara-oss."""

from __future__ import annotations

import json
from pathlib import Path

import oss2
import pytest
from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.serialization import NoSerializer, PickleSerializer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kara-2.1.5"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def uploaded(oss_server: OSSTestServer) -> KaraStorage:
    bucket = oss2.Bucket(
        oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret),
        "http://" + oss_server.endpoint,
        oss_server.bucket,
    )
    root = FIXTURES / "store"
    for path in sorted(root.rglob("*")):
        if path.is_file():
            bucket.put_object("copied/store/" + path.relative_to(root).as_posix(), path.read_bytes())
    store = KaraStorage(oss_server.url("copied/store"), **oss_server.options)
    yield store
    store.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_json_rows_of_the_215_store_read_through_oss(uploaded: KaraStorage, version: str) -> None:
    with uploaded.open_dataset("demo", "json_rows", version=version) as ds:
        assert list(ds) == EXPECTED["json_rows"][version]
        assert [ds[i] for i in range(len(ds) - 1, -1, -1)] == EXPECTED["json_rows"][version][::-1]


def test_latest_version_of_the_215_store_through_oss(uploaded: KaraStorage) -> None:
    with uploaded.open_dataset("demo", "json_rows") as ds:
        assert ds.version == "v2"


def test_pickle_and_raw_rows_of_the_215_store_read_through_oss(uploaded: KaraStorage) -> None:
    with uploaded.open_dataset("demo", "pickle_rows", version=3, serialization=PickleSerializer()) as ds:
        assert list(ds) == [("tuple", i, b"\x00\x01" * i) for i in range(50)]
    with uploaded.open_dataset("demo", "raw_rows", version=0, serialization=NoSerializer) as ds:
        assert [raw.hex() for raw in ds] == EXPECTED["raw_rows_hex"]


def test_directory_versions_of_the_215_store_load_through_oss(uploaded: KaraStorage, tmp_path: Path) -> None:
    target = tmp_path / "loaded"
    uploaded.load_directory("demo", "ckpt", str(target), version="second", progress_bar=False)
    assert _files(target) == _files(FIXTURES / "tree")


def _files(root: Path) -> dict[str, bytes]:
    # .kara/ holds kara's own bookkeeping of what it loaded, not the user's files.
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != ".kara"
    }
