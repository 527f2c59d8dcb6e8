"""Saving and loading on the file:// backend: layout, cache, metadata, safe deletion."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

import kara_core.obj.load
import kara_core.obj.save
from kara_core.backend import Capabilities
from kara_core.errors import BlobIntegrityError, ConfigurationError, DatasetNotFoundError, VersionNotFoundError
from kara_core.obj import ObjectStore, UnmanagedFilesError
from kara_core.testing.obj import read_tree, write_tree

FIXTURE_STORE = Path(__file__).resolve().parents[1] / "fixtures" / "kara-2.1.5" / "store"
FIXTURE_TREE = Path(__file__).resolve().parents[1] / "fixtures" / "kara-2.1.5" / "tree"


def _manifest(store: Path, version: str) -> list[dict]:
    return json.loads((store / "obj/ns/ckpt/vers" / f"{version}.json").read_text())


def test_the_manifest_keeps_the_2x_fields_and_adds_sha256_mode_and_mtime(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    entry = next(e for e in _manifest(tmp_path / "store", "0") if e["path"] == ["sub", "b.bin"])
    data = (source / "sub" / "b.bin").read_bytes()
    assert entry["md5"] == hashlib.md5(data).hexdigest() and entry["sha1"] == hashlib.sha1(data).hexdigest()
    assert entry["file"] == f"{entry['md5']}_{entry['sha1']}" and entry["size"] == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["mode"] == (source / "sub" / "b.bin").stat().st_mode & 0o7777
    assert entry["mtime_ns"] == (source / "sub" / "b.bin").stat().st_mtime_ns
    meta = json.loads((tmp_path / "store/obj/ns/ckpt/meta.json").read_text())
    assert meta == {"latest": "0", "versions": ["0"], "api": 2}


def test_resaving_an_unchanged_folder_reads_no_file(
    objects: ObjectStore, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in source.rglob("*"):
        os.utime(path, ns=(1, 1_000_000_000))  # older than the racy-timestamp margin
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    hashed: list[str] = []
    read_small, hash_file = kara_core.obj.save._read_small, kara_core.obj.save.hash_file
    monkeypatch.setattr(kara_core.obj.save, "_read_small", lambda local: hashed.append(local.path) or read_small(local))
    monkeypatch.setattr(kara_core.obj.save, "hash_file", lambda path, *a: hashed.append(path) or hash_file(path, *a))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert hashed == []
    os.utime(source / "a.txt", ns=(2, 2_000_000_000))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert hashed == [str(source / "a.txt")]


def test_the_hash_cache_lives_outside_the_saved_folder(
    objects: ObjectStore, source: Path, private_hash_cache: Path
) -> None:
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert list((private_hash_cache / "hashes").glob("*.json"))


def test_a_fresh_save_lists_the_blobs_once_instead_of_asking_each_size(source: Path, tmp_path: Path) -> None:
    asked: list[str] = []

    class CountingBackend(FileBackend):
        def size(self, path: str) -> int | None:
            asked.append(path)
            return super().size(path)

    ObjectStore(CountingBackend(str(tmp_path / "store"))).save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert [path for path in asked if "/data/" in path] == []


def test_a_changed_file_is_saved_with_its_new_content(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    (source / "a.txt").write_bytes(b"HELLO\n")  # same size, new content, same second
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"HELLO\n"


def test_the_executable_bit_is_kept(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    (source / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (source / "run.sh").chmod(0o755)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert os.access(tmp_path / "out" / "run.sh", os.X_OK)
    assert not os.access(tmp_path / "out" / "a.txt", os.X_OK)


def test_empty_folders_and_relative_links_round_trip_through_the_sidecar(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    (source / "logs" / "empty").mkdir(parents=True)
    (source / "latest.txt").symlink_to("sub/c.txt")
    (source / "sub" / "up").symlink_to("../a.txt")
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    manifest_paths = {"/".join(e["path"]) for e in _manifest(tmp_path / "store", "0")}
    assert manifest_paths == {"a.txt", "sub/b.bin", "sub/c.txt", "d.txt"}, "2.x sees regular files only"
    sidecar = json.loads((tmp_path / "store/obj/ns/ckpt/kara/0.json").read_text())
    assert sidecar["dirs"] == [["logs", "empty"]]
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert (out / "logs" / "empty").is_dir()
    assert os.readlink(out / "latest.txt") == "sub/c.txt" and (out / "latest.txt").read_bytes() == b"c\n"
    assert os.readlink(out / "sub" / "up") == "../a.txt"


def test_a_link_leaving_the_folder_is_refused_at_save(objects: ObjectStore, source: Path) -> None:
    (source / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ConfigurationError, match="passwd"):
        objects.save_directory("ns", "ckpt", str(source), progress_bar=False)


def test_kara_state_in_a_loaded_folder_is_not_saved(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert (out / ".kara" / "state.json").exists()
    objects.save_directory("ns", "ckpt", str(out), progress_bar=False)
    assert all(e["path"][0] != ".kara" for e in _manifest(tmp_path / "store", "1"))


def test_reloading_an_unchanged_folder_writes_nothing(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    inodes = {p: p.stat().st_ino for p in out.rglob("*") if p.is_file() and ".kara" not in p.parts}
    plan = objects.plan_load("ns", "ckpt", str(out))
    assert plan.download == [] and plan.delete == [] and len(plan.keep) == 4
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert {p: p.stat().st_ino for p in inodes} == inodes


def test_files_kara_placed_and_the_next_version_drops_are_deleted(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    shutil.rmtree(source / "sub")
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)
    objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False)
    assert read_tree(out) == {"a.txt": b"hello\n", "d.txt": b"hello\n"}
    assert not (out / "sub").exists(), "the folder kara created is gone with its files"


def test_a_user_file_added_to_a_loaded_folder_blocks_the_next_load(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    (source / "d.txt").unlink()
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)
    (out / "sub" / "mine.txt").write_bytes(b"precious")
    with pytest.raises(UnmanagedFilesError) as err:
        objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False)
    assert err.value.paths == ["sub/mine.txt"]
    assert (out / "sub" / "mine.txt").read_bytes() == b"precious" and (out / "d.txt").exists()


def test_a_refused_load_into_a_folder_kara_never_loaded_into_leaves_it_as_it_was(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = write_tree(tmp_path / "mine", {"a.txt": b"not hello", "notes.txt": b"mine"})
    with pytest.raises(UnmanagedFilesError):
        objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    # Not even the lock of loads into it (.kara/load.lock) was made.
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.txt", "notes.txt"]


@pytest.mark.parametrize("delete", [False, True])
def test_a_load_never_follows_a_link_in_place_of_its_state_folder(
    objects: ObjectStore, source: Path, tmp_path: Path, delete: bool
) -> None:
    # <target>/.kara as a link (planted, or left by a tool) would have sent the load's
    # state.json and lock into the folder it points to.
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".kara").symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match=r"\.kara is a symbolic link .*remove the link"):
        objects.load_directory("ns", "ckpt", str(out), progress_bar=False, delete=delete)
    assert list(elsewhere.iterdir()) == []
    assert [p.name for p in out.iterdir()] == [".kara"]
    (out / ".kara").unlink()
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == read_tree(source)


def test_delete_true_replaces_files_kara_did_not_place(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = write_tree(tmp_path / "out", {"notes.txt": b"mine", "a.txt": b"not hello"})
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False, delete=True)
    assert read_tree(out) == read_tree(source)


def test_a_folder_already_holding_the_same_files_is_adopted_without_delete(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == read_tree(source)


def test_dry_run_plans_without_touching_anything(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = write_tree(tmp_path / "out", {"notes.txt": b"mine"})
    assert objects.load_directory("ns", "ckpt", str(out), progress_bar=False, dry_run=True) == "0"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    plan = objects.plan_load("ns", "ckpt", str(out))
    assert plan.unmanaged == ["notes.txt"] and plan.delete == ["notes.txt"]
    assert "notes.txt" in str(plan) and "needs delete=True" in str(plan)
    assert plan.as_dict()["bytes_to_download"] == plan.bytes_to_download == 2000 + 6 + 2 + 6


class _CorruptFirstRead(NoLocalFilesBackend):
    """A file store whose first read of each blob returns damaged bytes (a flaky network)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: dict[str, int] = {}

    def open_read(self, path: str, start: int = 0) -> io.BytesIO:  # type: ignore[override]
        self.reads[path] = self.reads.get(path, 0) + 1
        data = super().read(path, start)
        return io.BytesIO(b"X" + data[1:] if self.reads[path] == 1 and data else data)


def test_a_damaged_download_is_retried(source: Path, tmp_path: Path) -> None:
    backend = _CorruptFirstRead(str(tmp_path / "store"))
    objects = ObjectStore(backend)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False, pack_small_files=False)
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(source)
    assert max(backend.reads.values()) == 2


def test_a_missing_blob_is_named_in_the_error(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    blob = next(e["file"] for e in _manifest(tmp_path / "store", "0") if e["path"] == ["sub", "c.txt"])
    (tmp_path / "store/obj/ns/ckpt/data" / blob).unlink()
    with pytest.raises(BlobIntegrityError, match=blob):
        objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == {}


def test_unknown_objects_and_versions_raise_not_found(objects: ObjectStore, source: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        objects.load_directory("ns", "nothing", str(tmp_path / "out"), progress_bar=False)
    assert err.value.kind == "obj"
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    with pytest.raises(VersionNotFoundError):
        objects.load_directory("ns", "ckpt", str(tmp_path / "out"), "7", progress_bar=False)


@pytest.mark.parametrize(("version", "tree"), [("0", None), ("second", FIXTURE_TREE)])
def test_kara_loads_the_versions_kara_storage_2_1_5_saved(version: str, tree: Path | None, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(FIXTURE_STORE, store)
    out = tmp_path / "out"
    objects = ObjectStore(FileBackend(str(store)))
    assert objects.load_directory("demo", "ckpt", str(out), version, progress_bar=False) == version
    if tree is None:
        assert (out / "a.txt").read_bytes() == b"hello\n"
        assert sorted(read_tree(out)) == ["a.txt", "empty.dat", "sub/b.bin", "sub/deeper/same_as_a.txt"]
    else:
        assert read_tree(out) == read_tree(tree)
    assert objects.verify("demo", "ckpt") == []


class _RemoteLike(NoLocalFilesBackend):
    """A file store that presents itself as a remote one: no local paths, parallel reads pay off."""

    capabilities = Capabilities(local_path=False, parallel_reads=True)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.ranges: list[tuple[int, int | None]] = []

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        self.ranges.append((start, end))
        return super().read(path, start, end)


def test_big_blobs_from_remote_stores_arrive_as_parallel_ranged_reads(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kara_core.obj.load, "_RANGED_MIN", 1024 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_RANGE", 256 * 1024)
    (source / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    backend = _RemoteLike(str(tmp_path / "store"))
    objects = ObjectStore(backend)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(source)
    assert len([r for r in backend.ranges if r[1] is not None and r[1] - r[0] == 256 * 1024]) == 12


class _FlakyRanges(_RemoteLike):
    """A remote-like store whose ranged reads come back with a flipped byte ``bad_reads`` times."""

    def __init__(self, root: str, bad_reads: int) -> None:
        super().__init__(root)
        self.bad_reads = bad_reads

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().read(path, start, end)
        if end is not None and start > 0 and self.bad_reads > 0:
            self.bad_reads -= 1
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data


@pytest.mark.parametrize("bad_reads", [1, 1000])
def test_a_corrupted_range_is_downloaded_again_or_refused(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad_reads: int
) -> None:
    monkeypatch.setattr(kara_core.obj.load, "_RANGED_MIN", 1024 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_RANGE", 256 * 1024)
    (source / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    backend = _FlakyRanges(str(tmp_path / "store"), 0)
    objects = ObjectStore(backend)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    backend.bad_reads = bad_reads
    out = tmp_path / "out"
    if bad_reads == 1:
        objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
        assert read_tree(out) == read_tree(source)
        return
    with pytest.raises(BlobIntegrityError, match="does not match"):
        objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert not (out / "big.bin").exists()


class _StreamedLike(_RemoteLike):
    """A remote-like store with streamed reads: records each open_range; ``shorten`` cuts
    the answers of ranges starting past 0 by one byte (a blob that shrank)."""

    capabilities = Capabilities(local_path=False, parallel_reads=True, streamed_reads=True)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.opened: list[tuple[int, int]] = []
        self.shorten = 0

    def open_range(self, path: str, start: int, end: int) -> io.BytesIO:  # type: ignore[override]
        self.opened.append((start, end))
        data = FileBackend.read(self, path, start, end)
        if start and self.shorten:
            self.shorten -= 1
            data = data[:-1]
        return io.BytesIO(data)


@pytest.mark.parametrize("shortened", [0, 1, 1000])
def test_big_blobs_from_streamed_stores_arrive_as_a_few_concurrent_streamed_ranges(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shortened: int
) -> None:
    monkeypatch.setattr(kara_core.obj.load, "_RANGED_MIN", 1024 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_STREAMED_RANGE", 512 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_STREAM_PIECE", 64 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_STREAM_BUFFER", 128 * 1024)
    size = 3 * 1024 * 1024 + 5
    (source / "big.bin").write_bytes(os.urandom(size))
    backend = _StreamedLike(str(tmp_path / "store"))
    objects = ObjectStore(backend)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    backend.shorten = shortened
    out = tmp_path / "out"
    if shortened > 1:
        with pytest.raises(BlobIntegrityError, match="does not match"):
            objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
        assert not (out / "big.bin").exists()
        return
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == read_tree(source)
    # 4 ranges of a quarter each (above the 512 KiB floor), no 8 MiB-style ranged reads.
    part = -(-size // 4)
    expected = [(start, min(size, start + part)) for start in range(0, size, part)]
    assert sorted(backend.opened) == sorted(expected * (1 + shortened))
    assert not [r for r in backend.ranges if r[0] > 0]


def test_a_folder_kara_created_may_become_a_file_in_the_next_version(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    shutil.rmtree(source / "sub")
    (source / "sub").write_bytes(b"now a file\n")
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)
    objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False)
    assert read_tree(out) == read_tree(source)


def test_a_file_kara_placed_may_become_a_folder_in_the_next_version(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    (source / "a.txt").unlink()
    (source / "a.txt").mkdir()
    (source / "a.txt" / "inner.txt").write_bytes(b"inside\n")
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)
    objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False)
    assert read_tree(out) == read_tree(source)


def test_saving_a_missing_folder_raises_not_found(objects: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        objects.save_directory("ns", "ckpt", str(tmp_path / "nowhere"), progress_bar=False)
    assert objects.list_namespaces() == []


def test_an_empty_folder_round_trips(objects: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert objects.save_directory("ns", "ckpt", str(tmp_path / "empty"), progress_bar=False) == "0"
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert (tmp_path / "out").is_dir() and read_tree(tmp_path / "out") == {}


@pytest.mark.parametrize("change", [b"extra", None])
def test_a_local_blob_of_the_wrong_length_is_refused(
    objects: ObjectStore, source: Path, tmp_path: Path, change: bytes | None
) -> None:
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    blob = next(e["file"] for e in _manifest(tmp_path / "store", "0") if e["path"] == ["sub", "c.txt"])
    path = tmp_path / "store/obj/ns/ckpt/data" / blob
    content = path.read_bytes()
    # Longer (the right bytes and more), or shorter (the right bytes, cut).
    path.write_bytes(content + change if change else content[:-1])
    with pytest.raises(BlobIntegrityError, match=blob):
        objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == {}


def test_a_reload_without_the_hash_cache_checks_local_files_by_size_and_sha1_alone(
    objects: ObjectStore, source: Path, tmp_path: Path, private_hash_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in source.rglob("*"):
        os.utime(path, ns=(1, 1_000_000_000))  # older than the racy-timestamp margin (loads keep it)
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    shutil.rmtree(private_hash_cache)  # the cache is lost (another machine, a cleaned home)
    # Same size, one byte different: only its sha1 tells it apart.
    (out / "sub" / "b.bin").write_bytes(b"\x00\x02" + b"\x00\x01" * 999)
    os.utime(out / "sub" / "b.bin", ns=(1, 1_000_000_000))
    md5s: list[bytes] = []
    real_md5 = hashlib.md5
    monkeypatch.setattr(hashlib, "md5", lambda *args, **kw: md5s.append(b"") or real_md5(*args, **kw))
    plan = objects.plan_load("ns", "ckpt", str(out))
    assert [e.relpath for e in plan.download] == ["sub/b.bin"]
    assert sorted(plan.keep) == ["a.txt", "d.txt", "sub/c.txt"]
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == read_tree(source)
    assert md5s == []  # the check read each file once, for its sha1
    # The files that matched are cached with the manifest's hashes: the next check reads none.
    sha1s: list[str] = []
    sha1_file = kara_core.obj.load.sha1_file
    monkeypatch.setattr(kara_core.obj.load, "sha1_file", lambda path, *a: sha1s.append(path) or sha1_file(path, *a))
    assert sorted(objects.plan_load("ns", "ckpt", str(out)).keep) == ["a.txt", "d.txt", "sub/b.bin", "sub/c.txt"]
    assert sha1s == []


def _age(folder: Path) -> None:
    for path in folder.rglob("*"):
        os.utime(path, ns=(1, 1_000_000_000))  # older than the racy-timestamp margin


def test_a_file_rewritten_in_place_with_its_mtime_restored_is_hashed_again(
    objects: ObjectStore, source: Path, tmp_path: Path
) -> None:
    # Same inode, size and mtime (rsync --inplace -t, touch -r, a restored backup): only the
    # ctime, which nothing but the kernel sets, tells that the bytes changed.
    big = source / "sub" / "big.bin"
    big.write_bytes(b"\x01" * (kara_core.obj.save.SMALL_FILE + 10))
    _age(source)
    objects.save_directory("ns", "ckpt", str(source), version="1", progress_bar=False)
    for path, byte in ((source / "a.txt", b"J"), (big, b"\x02")):
        before = path.stat()
        with open(path, "r+b") as fh:
            fh.write(byte)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    objects.save_directory("ns", "ckpt", str(source), version="2", progress_bar=False)
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), version="2", progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(source)
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"Jello\n"


@pytest.mark.parametrize("size", [7, kara_core.obj.save.SMALL_FILE + 10], ids=["small", "large"])
def test_a_hash_cache_that_names_other_content_never_stores_a_blob_under_a_wrong_name(
    source: Path, tmp_path: Path, private_hash_cache: Path, size: int
) -> None:
    # A cache shared by two machines (a home folder on NFS) may hold, for this path and
    # stat, the hashes of another machine's file: an upload must not trust it.
    (source / "x.bin").write_bytes(b"\x07" * size)
    _age(source)
    ObjectStore(FileBackend(str(tmp_path / "first"))).save_directory("ns", "ckpt", str(source), progress_bar=False)
    (cache_file,) = (private_hash_cache / "hashes").glob("*.json")
    cache = json.loads(cache_file.read_text())
    other = b"another machine's file"
    cache["files"]["x.bin"][5:] = [hashlib.md5(other).hexdigest(), hashlib.sha1(other).hexdigest(), None]
    cache_file.write_text(json.dumps(cache))
    fresh = ObjectStore(FileBackend(str(tmp_path / "second")))
    fresh.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert fresh.verify("ns", "ckpt") == []
    fresh.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(source)
    entry = json.loads(cache_file.read_text())["files"]["x.bin"]
    assert entry[6] == hashlib.sha1(b"\x07" * size).hexdigest()  # the entry was put right


_GOOD_HASHES = ["a" * 32, "b" * 40, None]


@pytest.mark.parametrize(
    "damage",
    [
        lambda same: "not a list",
        lambda same: [1, 2, 3],
        lambda same: ["size", "mtime", "ino", "ctime", "when", *_GOOD_HASHES],
        lambda same: [*same, None, *_GOOD_HASHES],
        lambda same: [*same, 10**19, "A" * 32, "b" * 40, None],
        lambda same: [*same, 10**19, "../" * 10 + "ab", "b" * 40, None],
        lambda same: [*same, 10**19, "a" * 32, "b" * 40, "x"],
        lambda same: [*same, 10**19, "a" * 32, "b" * 40, 7],
        lambda same: [*same[:3], 10**19, *_GOOD_HASHES],  # an older kara's entry, without the ctime
    ],
    ids=["text", "short", "texts", "no-time", "upper-md5", "path-md5", "bad-sha256", "int-sha256", "no-ctime"],
)
def test_a_damaged_hash_cache_entry_is_ignored(
    objects: ObjectStore, source: Path, tmp_path: Path, private_hash_cache: Path, damage: Any
) -> None:
    _age(source)
    objects.save_directory("ns", "ckpt", str(source), version="1", progress_bar=False)
    (cache_file,) = (private_hash_cache / "hashes").glob("*.json")
    cache = json.loads(cache_file.read_text())
    same = cache["files"]["a.txt"][:4]  # the file's own size, mtime, inode and ctime
    cache["files"]["a.txt"] = damage(same)
    cache_file.write_text(json.dumps(cache))
    fresh = ObjectStore(FileBackend(str(tmp_path / "fresh")))  # every blob is uploaded
    fresh.save_directory("ns", "ckpt", str(source), progress_bar=False)
    fresh.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(source) and fresh.verify("ns", "ckpt") == []
    assert json.loads(cache_file.read_text())["files"]["a.txt"][5:] == cache["files"]["d.txt"][5:]  # hashed again
