"""Directory saves and loads with direct I/O on, off, and where the filesystem refuses it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from kara_file import FileBackend
from kara_file.testing import private_mounts_unavailable, run_with_private_mount

from kara_core.localdisk._direct import ALIGN, DIRECT_MIN
from kara_core.obj import ObjectStore
from kara_core.testing.obj import read_tree, write_tree

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + 1, DIRECT_MIN + ALIGN + 7]


@pytest.fixture(scope="module")
def boundary_files() -> dict[str, bytes]:
    return {f"sizes/{size}.bin": os.urandom(size) for size in SIZES}


def _round_trip(base: Path, files: dict[str, bytes]) -> tuple[dict[str, bytes], list[dict]]:
    source = write_tree(base / "source", files)
    objects = ObjectStore(FileBackend(str(base / "store")))
    objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(base / "out"), progress_bar=False)
    manifest = json.loads((base / "store/obj/ns/ckpt/vers/0.json").read_bytes())
    return read_tree(base / "out"), sorted(manifest, key=lambda e: e["path"])


def _hashes(manifest: list[dict]) -> list[tuple]:
    return [(e["path"], e["size"], e["file"], e["sha256"]) for e in manifest]


def test_direct_io_on_and_off_store_and_load_the_same_bytes(
    tmp_path: Path, boundary_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    direct_tree, direct_manifest = _round_trip(tmp_path / "direct", boundary_files)
    monkeypatch.setenv("KARA_DIRECT_IO", "0")
    buffered_tree, buffered_manifest = _round_trip(tmp_path / "buffered", boundary_files)
    assert direct_tree == buffered_tree == boundary_files
    assert _hashes(direct_manifest) == _hashes(buffered_manifest)
    blobs = tmp_path / "direct/store/obj/ns/ckpt/data"
    assert sorted(p.stat().st_size for p in blobs.iterdir()) == sorted(SIZES)


def test_a_store_and_a_folder_on_tmpfs_round_trip(boundary_files: dict[str, bytes]) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm to run on (a memory filesystem, where O_DIRECT is refused or emulated)")
    base = Path(tempfile.mkdtemp(prefix="kara-direct-", dir="/dev/shm"))
    try:
        tree, _ = _round_trip(base, boundary_files)
        assert tree == boundary_files
    finally:
        shutil.rmtree(base)


# Runs inside a private mount of ramfs, a filesystem that refuses O_DIRECT (EINVAL).
_RAMFS_CHILD = """
import json, os, sys
from pathlib import Path
from kara_file import FileBackend
from kara_file.testing import private_mounts_unavailable, run_with_private_mount
from kara_core.localdisk._direct import DIRECT_MIN, set_direct
from kara_core.obj import ObjectStore
from kara_core.testing.obj import read_tree, write_tree

base = Path(sys.argv[1])
probe = os.open(base / "probe", os.O_WRONLY | os.O_CREAT, 0o644)
refused = not set_direct(probe, True)
os.close(probe)
files = {f"f{size}.bin": os.urandom(size) for size in json.loads(sys.argv[2])}
objects = ObjectStore(FileBackend(str(base / "store")))
objects.save_directory("ns", "ckpt", str(write_tree(base / "source", files)), progress_bar=False)
objects.load_directory("ns", "ckpt", str(base / "out"), progress_bar=False)
print(json.dumps({"refused": refused, "identical": read_tree(base / "out") == files}))
"""


def test_a_filesystem_that_refuses_direct_io_gets_buffered_writes(tmp_path: Path) -> None:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    reason = private_mounts_unavailable(mount, "ramfs")
    if reason is not None:
        pytest.skip(f"no way to mount a ramfs without root: {reason}")
    sizes = [0, ALIGN + 1, DIRECT_MIN, DIRECT_MIN + ALIGN + 7]
    proc = run_with_private_mount(
        mount, "ramfs", "defaults", sys.executable, "-c", _RAMFS_CHILD, str(mount), json.dumps(sizes), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"refused": True, "identical": True}


@pytest.mark.parametrize("kind", ["bytes", "buffers"])
def test_buffered_writes_are_at_most_buffered_write_bytes_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Long buffered writes get large page-cache folios, expensive where free memory
    # was handed back to a hypervisor: every write through the cache is sliced.
    from kara_core.localdisk import Buffers, _direct, write_file

    calls: list[int] = []
    real_write, real_writev = os.write, os.writev

    def write(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    def writev(fd: int, buffers: list[memoryview]) -> int:
        calls.append(sum(len(b) for b in buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "writev", writev)
    limit = _direct.BUFFERED_WRITE
    head, body, tail = os.urandom(100), os.urandom(3 * limit + 5), os.urandom(3)
    data = head + body + tail
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        source = data if kind == "bytes" else Buffers([head, memoryview(body), tail])
        assert write_file(fd, source, direct_io=False) == len(data)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
    assert calls and max(calls) <= limit and sum(calls) == len(data)
    assert len(calls) <= len(data) // limit + 2
