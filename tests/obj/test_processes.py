"""Real processes: killed and interrupted transfers, concurrent savers, kara-storage 2.1.5."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kara_file.backend import FileBackend

from kara_core.obj import ObjectStore
from kara_core.obj.load import target_lock
from kara_core.testing.obj import read_tree, write_tree

WORKER = str(Path(__file__).with_name("obj_worker.py"))
ROOT = Path(__file__).resolve().parents[2]
BIG = 2 * 1024 * 1024


def _tree() -> dict[str, bytes]:
    files = {f"big{i}.bin": hashlib.sha256(str(i).encode()).digest() * (BIG // 32) for i in range(4)}
    files.update({f"small/{i}.txt": f"small file {i}\n".encode() for i in range(20)})
    return files


def _start(action: str, store: Path, folder: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, action, str(store), "ns", "ckpt", str(folder), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"worker ended before the expected moment: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the expected moment never came")
        time.sleep(0.002)


def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def _save_caught_mid_upload(tmp_path: Path) -> tuple[Path, Path, subprocess.Popen[str]]:
    # A slow save of _tree(), returned (source, store, process) once its first blob is being
    # written under a temporary name.
    source = write_tree(tmp_path / "src", _tree())
    store = tmp_path / "store"
    proc = _start("save", store, source, "--slow")
    _wait_until(lambda: any(".kara-tmp-" in p.name for p in (store / "obj/ns/ckpt/data").glob("*")), proc)
    return source, store, proc


def _load_caught_mid_download(store: Path, out: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    # A slow load, returned with its staging folder once the first file is staged there.
    proc = _start("load", store, out, "--slow", *extra)
    staging = out / ".kara-staging"
    _wait_until(lambda: staging.exists() and any(p.is_file() for p in staging.rglob("*")), proc)
    return proc, staging


def _interrupt(proc: subprocess.Popen[str], what: str) -> None:
    # Ctrl+C: the worker must stop within 3 s and end with KeyboardInterrupt.
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - start < 3, f"Ctrl+C must stop the {what} promptly"
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, f"exit status {proc.returncode}, stderr: {err[-2000:]}"


def _nothing_published(store: Path) -> None:
    assert not (store / "obj/ns/ckpt/meta.json").exists()
    assert not list((store / "obj/ns/ckpt").glob("vers/*"))


def _blobs_are_complete(store: Path) -> None:
    # Every blob visible through the backend holds exactly the content its name promises.
    backend = FileBackend(str(store))
    for path in backend.list("obj/ns/ckpt/data/"):
        data = backend.read(path)
        name = path.rsplit("/", 1)[-1]
        assert name == f"{hashlib.md5(data).hexdigest()}_{hashlib.sha1(data).hexdigest()}", path


def test_a_save_killed_mid_upload_publishes_nothing_and_the_rerun_completes(tmp_path: Path) -> None:
    source, store, proc = _save_caught_mid_upload(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    objects = ObjectStore(FileBackend(str(store)))
    _nothing_published(store)
    _blobs_are_complete(store)

    assert objects.save_directory("ns", "ckpt", str(source), progress_bar=False) == "0"
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == _tree()


def test_gc_removes_the_temp_files_a_killed_save_left(tmp_path: Path) -> None:
    source, store, proc = _save_caught_mid_upload(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    objects = ObjectStore(FileBackend(str(store)))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    assert [p for p in store.rglob("*") if ".kara-tmp-" in p.name]

    report = objects.gc("ns", "ckpt", grace_period=0)
    assert report.leftovers_removed >= 1
    assert not [p for p in store.rglob("*") if ".kara-tmp-" in p.name]
    assert report.removed == []
    assert objects.verify("ns", "ckpt") == []
    visible = {
        p
        for p in FileBackend(str(store)).list("obj/ns/ckpt/")
        if not p.startswith(("obj/ns/ckpt/data/", "obj/ns/ckpt/kara-packs/"))
    }
    assert visible == {"obj/ns/ckpt/meta.json", "obj/ns/ckpt/vers/0.json", "obj/ns/ckpt/kara/0.json"}, (
        "no lease, lock or half-published object is left"
    )


def test_a_load_killed_mid_download_leaves_no_torn_file_and_the_rerun_completes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    objects = ObjectStore(FileBackend(str(store)))
    objects.save_directory(
        "ns", "ckpt", str(write_tree(tmp_path / "v0", {"big0.bin": b"old" * 1000})), progress_bar=False
    )
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "v1", _tree())), progress_bar=False)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)

    proc, _ = _load_caught_mid_download(store, out, "--version", "1")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Nothing of version 1 is visible yet: the old file is intact, no partial file outside staging.
    assert read_tree(out) == {"big0.bin": b"old" * 1000}

    assert objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False) == "1"
    assert read_tree(out) == _tree()
    assert _files_under(out) == sorted([*_tree(), ".kara/load.lock", ".kara/state.json"]), "no stray staging file"


def test_loads_into_one_folder_take_turns_and_none_returns_before_the_folder_holds_the_version(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    ObjectStore(FileBackend(str(store))).save_directory(
        "ns", "ckpt", str(write_tree(tmp_path / "v0", _tree())), progress_bar=False
    )
    out = tmp_path / "out"
    with target_lock(str(out)):  # a load of another rank, still running
        proc = _start("load", store, out)
        time.sleep(1.5)
        assert proc.poll() is None, "the second load waits for the first"
        assert _files_under(out) == [".kara/load.lock"]
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert read_tree(out) == _tree()


def test_every_local_rank_may_load_the_same_checkpoint_into_the_same_folder(tmp_path: Path) -> None:
    # Before loads took turns, 4 at once failed with FileNotFoundError in 2 runs of 3 (each
    # cleared the staging folder the others used) and once left 2 files with wrong bytes.
    store = tmp_path / "store"
    ObjectStore(FileBackend(str(store))).save_directory(
        "ns", "ckpt", str(write_tree(tmp_path / "v0", _tree())), progress_bar=False
    )
    out, go = tmp_path / "out", tmp_path / "go"
    procs = [_start("load", store, out, "--wait-for", str(go)) for _ in range(4)]
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert read_tree(out) == _tree()
    assert _files_under(out) == sorted([*_tree(), ".kara/load.lock", ".kara/state.json"])


def test_ctrl_c_during_a_save_stops_promptly_and_publishes_nothing(tmp_path: Path) -> None:
    source, store, proc = _save_caught_mid_upload(tmp_path)
    _interrupt(proc, "save")
    _nothing_published(store)
    assert not [p for p in (store / "obj/ns/ckpt/data").glob("*") if ".kara-tmp-" in p.name], "no half-written blob"
    assert not list((store / "obj/ns/ckpt").glob("kara-saves/*"))
    _blobs_are_complete(store)
    assert ObjectStore(FileBackend(str(store))).save_directory("ns", "ckpt", str(source), progress_bar=False) == "0"


def test_ctrl_c_during_a_load_leaves_the_folder_untouched_and_the_rerun_finishes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    objects = ObjectStore(FileBackend(str(store)))
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "v0", _tree())), progress_bar=False)
    out = tmp_path / "out"
    proc, staging = _load_caught_mid_download(store, out)
    _interrupt(proc, "load")
    assert read_tree(out) == {}
    # What is left is staged at its path under files/, complete and verified.
    for staged in (p for p in staging.rglob("*") if p.is_file()):
        assert staged.read_bytes() == _tree()[staged.relative_to(staging / "files").as_posix()], staged
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == _tree()
    assert not staging.exists()


def test_two_processes_saving_the_same_key_get_distinct_listed_versions(tmp_path: Path) -> None:
    store = tmp_path / "store"
    trees = [{"who.txt": f"process {i}\n".encode(), "shared.bin": b"same" * 5000} for i in range(2)]
    go = tmp_path / "go"
    procs = [
        _start("save", store, write_tree(tmp_path / f"src{i}", tree), "--wait-for", str(go))
        for i, tree in enumerate(trees)
    ]
    time.sleep(0.5)
    go.touch()
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        versions.append(out.strip())
    assert sorted(versions) == ["0", "1"]
    objects = ObjectStore(FileBackend(str(store)))
    assert sorted(objects.list_versions("ns", "ckpt")) == ["0", "1"]
    for version, tree in zip(versions, trees, strict=True):
        objects.load_directory("ns", "ckpt", str(tmp_path / f"out{version}"), version, progress_bar=False)
        assert read_tree(tmp_path / f"out{version}") == tree


def _k215_python() -> str:
    path = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(path):
        pytest.fail(f"kara-storage 2.1.5 is needed at {path} (set KARA_215_PYTHON or run scripts/test)")
    return path


def test_kara_storage_2_1_5_loads_a_version_kara_saved(tmp_path: Path) -> None:
    tree = {"a.txt": b"hello\n", "sub/b.bin": os.urandom(300_000), "sub/deeper/same.txt": b"hello\n", "e": b""}
    source = write_tree(tmp_path / "src", tree)
    (source / "run.sh").write_bytes(b"#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / "empty_dir").mkdir()
    (source / "link").symlink_to("a.txt")
    store = tmp_path / "store"
    version = ObjectStore(FileBackend(str(store))).save_directory("ns", "ckpt", str(source), progress_bar=False)
    code = (
        "import json, sys, kara_storage\n"
        "s = kara_storage.KaraStorage('file://' + sys.argv[1])\n"
        "print(json.dumps(s.load_directory('ns', 'ckpt', sys.argv[2], sys.argv[3], progress_bar=False)))\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [_k215_python(), "-c", code, str(store), str(out), version], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == version
    assert read_tree(out) == {**tree, "run.sh": b"#!/bin/sh\n"}
