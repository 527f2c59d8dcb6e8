"""Listing, version details, deleting versions, garbage collection and verification."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

from kara_core.errors import DatasetNotFoundError, VersionNotFoundError
from kara_core.obj import ObjectStore
from kara_core.obj.manifest import KeyLayout
from kara_core.obj.save import Lease
from kara_core.testing.obj import write_tree


def _blobs(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "store/obj/ns/ckpt/data").iterdir()}


def _age_blobs(tmp_path: Path, seconds: float) -> None:
    old = time.time() - seconds
    for blob in (tmp_path / "store/obj/ns/ckpt/data").iterdir():
        os.utime(blob, (old, old))


def _orphan_one_blob(objects: ObjectStore, source: Path) -> None:
    # Version 1 rewrites a.txt and d.txt to the same new content; deleting version 0 then
    # leaves exactly one blob (their old 6-byte content) that no version references.
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    (source / "a.txt").write_bytes(b"v2\n")
    (source / "d.txt").write_bytes(b"v2\n")
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.delete_version("ns", "ckpt", "0")


def test_namespaces_keys_and_versions_are_listed(objects: ObjectStore, source: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.save_directory("ns", "other", str(source), "v1", progress_bar=False)
    objects.save_directory("ns2", "ckpt", str(source), progress_bar=False)
    assert objects.list_namespaces() == ["ns", "ns2"]
    assert objects.list_keys("ns") == ["ckpt", "other"]
    assert objects.list_versions("ns", "other") == ["v1"]


def test_version_info_reports_files_bytes_and_latest(objects: ObjectStore, source: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    info = objects.version_info("ns", "ckpt", "0")
    assert info["version"] == "0" and info["files"] == 4 and info["bytes"] == 6 + 2000 + 2 + 6
    assert info["blobs"] == 3 and info["latest"] is False
    assert objects.version_info("ns", "ckpt", "latest")["latest"] is True


def test_get_meta_of_a_missing_object_raises_dataset_not_found(objects: ObjectStore) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        objects.get_meta("ns", "missing")
    assert err.value.kind == "obj"


def test_deleting_the_latest_version_moves_latest_back(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.delete_version("ns", "ckpt", "1")
    assert objects.get_meta("ns", "ckpt") == {"latest": "0", "versions": ["0"], "api": 2}
    assert not (tmp_path / "store/obj/ns/ckpt/vers/1.json").exists()
    with pytest.raises(VersionNotFoundError):
        objects.load_directory("ns", "ckpt", str(tmp_path / "out"), "1", progress_bar=False)


def test_gc_keeps_unreferenced_blobs_younger_than_the_grace_period(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    _orphan_one_blob(objects, source)
    before = _blobs(tmp_path)
    report = objects.gc("ns", "ckpt", grace_period=3600)
    assert report.removed == [] and len(report.kept_recent) == 1 and _blobs(tmp_path) == before


def test_gc_removes_unreferenced_blobs_older_than_the_grace_period(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    _orphan_one_blob(objects, source)
    _age_blobs(tmp_path, 7200)
    report = objects.gc("ns", "ckpt", grace_period=3600)
    assert len(report.removed) == 1 and report.bytes_freed == 6
    assert report.as_dict()["bytes_freed"] == 6
    assert objects.verify("ns", "ckpt") == [], "every blob of the remaining version is still there"


def test_gc_deletes_nothing_while_a_save_of_the_key_is_running(
    objects: ObjectStore, backend: FileBackend, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.delete_version("ns", "ckpt", "0")
    _age_blobs(tmp_path, 7200)
    lease = Lease(backend, KeyLayout("ns", "ckpt"))
    try:
        report = objects.gc("ns", "ckpt", grace_period=0)
    finally:
        lease.release()
    assert report.deferred and report.removed == [] and len(_blobs(tmp_path)) == 3
    assert len(objects.gc("ns", "ckpt", grace_period=0).removed) == 3


def test_gc_on_a_store_without_local_files_counts_age_from_the_first_sighting(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = ObjectStore(NoLocalFilesBackend(str(tmp_path / "store")))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.delete_version("ns", "ckpt", "0")
    assert objects.gc("ns", "ckpt", grace_period=60).removed == []
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert len(objects.gc("ns", "ckpt", grace_period=60).removed) == 3 + 1  # 3 blobs and the pack of all 3


def test_verify_reports_missing_resized_and_corrupted_blobs(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert objects.verify("ns", "ckpt") == []
    data = tmp_path / "store/obj/ns/ckpt/data"
    by_content = {p.read_bytes(): p for p in data.iterdir()}
    by_content[b"hello\n"].write_bytes(b"HELLO\n")
    by_content[b"c\n"].write_bytes(b"longer\n")
    by_content[b"\x00\x01" * 1000].unlink()
    problems = objects.verify("ns", "ckpt", "0")
    assert len(problems) == 3
    assert any("missing" in p for p in problems) and any("bytes, expected" in p for p in problems)
    assert any("does not match" in p for p in problems)


def test_threads_saving_at_once_each_get_a_listed_version(tmp_path: Path) -> None:
    store = FileBackend(str(tmp_path / "store"))
    results: list[str] = []
    folders = [write_tree(tmp_path / f"src{i}", {"i.txt": str(i).encode()}) for i in range(6)]
    threads = [
        threading.Thread(
            target=lambda f=f: results.append(ObjectStore(store).save_directory("ns", "k", str(f), progress_bar=False))
        )
        for f in folders
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [str(i) for i in range(6)]
    assert sorted(ObjectStore(store).list_versions("ns", "k")) == sorted(results)
