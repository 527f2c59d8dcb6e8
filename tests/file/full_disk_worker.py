"""Scenarios on a disk that fills up (or is read-only), run by test_full_disk.py inside a
private tmpfs mount.

    python full_disk_worker.py SCENARIO MOUNT [ELSEWHERE]

MOUNT is a small tmpfs (its size set by the test); ELSEWHERE a folder on another disk.
Each scenario asserts what it must and prints one JSON line of facts for the test.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

import kara_core as kara
from kara_core.errors import (
    DatasetNotFoundError,
    ParallelWriteError,
    ReadOnlyStoreError,
    StorageFullError,
    WriterFailedError,
)
from kara_core.obj import ObjectStore
from kara_core.testing.obj import read_tree, write_tree


def _filler(mount: Path, size: int) -> Path:
    path = mount / "filler"
    with open(path, "wb") as fh:
        fh.write(b"\0" * size)
    return path


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if "kara-tmp" in p.name]


def _fits(exc: BaseException, *words: str) -> None:
    assert isinstance(exc, StorageFullError), repr(exc)
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC, exc.errno
    for word in words:
        assert word in str(exc), (word, str(exc))


def rows(mount: Path, _: Path, scheme: str = "file") -> dict:
    """A row writer that fills the disk takes no more records and corrupts nothing."""
    filler = _filler(mount, 512 * 1024)
    storage = kara.KaraStorage(f"{scheme}://{mount}/store")
    ds = storage.open_dataset("ns", "k", "w", version="v1")
    durable = 0
    failure: BaseException | None = None
    for i in range(1_000_000):
        try:
            ds.write({"i": i, "pad": "x" * 100})
            if i % 1000 == 999:
                ds.flush()
                durable = i + 1
        except OSError as exc:
            failure = exc
            break
    assert failure is not None
    _fits(failure, "row/ns/k/v1/data/")
    for call in (lambda: ds.write({"i": -1}), ds.flush):
        try:
            call()
        except WriterFailedError as exc:
            assert "open it again with mode 'w'" in str(exc)
        else:
            raise AssertionError("a failed writer took more records")
    ds.close()  # does not raise again, and releases the lock
    filler.unlink()  # room again: the same writer would now append its buffers twice
    with storage.open_dataset("ns", "k", "w", version="v1") as again:
        kept = len(again)
        again.write_many({"i": i, "pad": "x" * 100} for i in range(kept, kept + 500))
    reader = storage.open_dataset("ns", "k", "r", version="v1")
    seen = [record["i"] for record in reader]
    assert seen == list(range(kept + 500)), (len(seen), kept)
    assert [reader[j]["i"] for j in range(0, len(reader), 997)] == list(range(0, len(reader), 997))
    return {"durable": durable, "kept": kept, "final": len(seen), "error": type(failure).__name__}


def rows_fsspec(mount: Path, elsewhere: Path) -> dict:
    """The same through kara-fsspec, on fsspec's local filesystem (``local://``)."""
    facts = rows(mount, elsewhere, "local")
    backend = kara.KaraStorage(f"local://{mount}/store").backend
    disk = os.statvfs(mount)
    _filler(mount, disk.f_bavail * disk.f_frsize)  # the whole disk
    try:
        backend.put("x/big", os.urandom(1024 * 1024))
    except OSError as exc:
        _fits(exc, "write x/big on local://")
    else:
        raise AssertionError("1 MiB put on a full disk")
    return facts


def read_only(mount: Path, elsewhere: Path) -> dict:
    """On a read-only mount every read works, and every write is a ReadOnlyStoreError."""
    storage = kara.KaraStorage(f"file://{mount}/store")
    with storage.open_dataset("ns", "k", "w", version="v1") as ds:
        ds.write_many({"i": i, "tokens": list(range(i % 7 + 1))} for i in range(5000))
    files = {f"f{n}": os.urandom(1000 * (n + 1)) for n in range(5)}
    source = write_tree(elsewhere / "source", files)
    storage.save_directory("ns", "ckpt", str(source), progress_bar=False)
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    storage = kara.KaraStorage(f"file://{mount}/store")
    reader = storage.open_dataset("ns", "k", "r")
    assert [record["i"] for record in reader] == list(range(5000))
    assert reader[4321]["i"] == 4321
    samples = sum(1 for _ in kara.pack(storage.open_dataset("ns", "k", "r"), seq_len=16))
    storage.load_directory("ns", "ckpt", str(elsewhere / "out"), progress_bar=False)
    assert read_tree(elsewhere / "out") == files
    assert storage.objects.verify("ns", "ckpt") == []
    refused = []
    writes = {
        "append": lambda: storage.open_dataset("ns", "k", "w"),
        "new version": lambda: storage.open_dataset("ns", "k", "w", version="v2"),
        "save": lambda: storage.save_directory("ns", "ckpt", str(source), progress_bar=False),
        "delete": lambda: storage.backend.delete("row/ns/k/meta.json"),
    }
    for name, write in writes.items():
        try:
            write()
        except ReadOnlyStoreError as exc:
            assert "read-only" in str(exc) and isinstance(exc, PermissionError)
            refused.append(name)
    return {"samples": samples, "refused": refused}


def parts(mount: Path, _: Path) -> dict:
    """A part whose blocks stop fitting never counts; a new attempt of it commits whole."""
    storage = kara.KaraStorage(f"file://{mount}/store")
    handle = storage.open_parallel_write("ns", "k", "v1", block_size=64 * 1024)
    with handle.part(0) as first:
        first.write_many({"part": 0, "i": i} for i in range(1000))
    filler = _filler(mount, 2 * 1024 * 1024)
    failed = handle.part(1)
    failure: BaseException | None = None
    for i in range(1_000_000):
        try:
            failed.write({"part": 1, "i": i, "pad": "x" * 100})
        except OSError as exc:
            failure = exc
            break
    assert failure is not None
    _fits(failure, "/parts/")
    try:
        failed.write_many([{"part": 1, "i": -1}])
    except WriterFailedError as exc:
        assert "will not count" in str(exc)
    else:
        raise AssertionError("a failed part took more records")
    filler.unlink()  # room again: a close that put its last blocks now would count a part with a hole
    failed.close()
    try:
        handle.commit(parts=2)
    except ParallelWriteError as exc:
        refused = str(exc)
    else:
        raise AssertionError("a part whose put failed was committed")
    with handle.part(1) as again:
        again.write_many({"part": 1, "i": i} for i in range(3000))
    handle.commit(parts=2)
    records = list(storage.open_dataset("ns", "k", "r", version="v1"))
    assert records == [{"part": 0, "i": i} for i in range(1000)] + [{"part": 1, "i": i} for i in range(3000)]
    return {"refused": refused, "records": len(records)}


def append(mount: Path, _: Path) -> dict:
    """A file append that does not fit cuts its bytes off again: a retry appends once."""
    backend = FileBackend(str(mount / "store"))
    filler = _filler(mount, 1200 * 1024)
    first, second = os.urandom(100 * 1024), os.urandom(1024 * 1024)
    appender = backend.open_append("a/log.blk")
    appender.append(first)
    try:
        appender.append(second)
    except OSError as exc:
        _fits(exc, "a/log.blk")
    else:
        raise AssertionError("1 MiB appended to a disk with less room")
    size_after_failure = backend.size("a/log.blk")
    assert size_after_failure == len(first) == appender.position
    filler.unlink()
    appender.append(second)
    appender.close()
    assert backend.read("a/log.blk") == first + second
    return {"size_after_failure": size_after_failure}


def put(mount: Path, _: Path) -> dict:
    """Puts and batches that do not fit leave the old object and no temp file."""
    root = mount / "store"
    backend = FileBackend(str(root))
    old = os.urandom(10_000)
    backend.put("x/old", old)
    try:
        backend.put("x/old", os.urandom(2 * 1024 * 1024))
    except OSError as exc:
        _fits(exc, f"{backend.url}/x/old")
    else:
        raise AssertionError("2 MiB put on a 1 MiB disk")
    assert backend.read("x/old") == old
    try:
        with backend.open_batch() as batch:
            for n in range(4):
                batch.put(f"y/{n}", os.urandom(300 * 1024))
            batch.commit()
    except OSError as exc:
        _fits(exc, "y/")
    else:
        raise AssertionError("1.2 MB batch on a 1 MiB disk")
    assert list(backend.list("y/")) == []
    assert _temp_files(root) == []
    return {"listed": sorted(backend.list(""))}


def save(mount: Path, elsewhere: Path) -> dict:
    """A save that does not fit publishes nothing; a save once there is room is whole."""
    files = {f"small/{n}.txt": os.urandom(2000 + n) for n in range(20)}
    files.update({"a.bin": os.urandom(1024 * 1024), "b.bin": os.urandom(1024 * 1024), "c.bin": os.urandom(1536 * 1024)})
    source = write_tree(elsewhere / "source", files)
    objects = ObjectStore(FileBackend(str(mount / "store")))
    try:
        objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    except OSError as exc:
        _fits(exc, str(mount / "store"))
    else:
        raise AssertionError("3.5 MiB saved on a 3 MiB disk")
    try:
        versions = objects.list_versions("ns", "ckpt")
    except DatasetNotFoundError:
        versions = []
    assert versions == []
    # The save's blobs were one batch, dropped whole: the space is given back.
    assert [str(p) for p in (mount / "store").rglob("*") if p.is_file()] == []
    subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
    version = objects.save_directory("ns", "ckpt", str(source), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(elsewhere / "out"), progress_bar=False)
    assert read_tree(elsewhere / "out") == files
    assert objects.verify("ns", "ckpt") == []
    return {"version": version}


def _two_versions(elsewhere: Path) -> tuple[ObjectStore, dict, dict]:
    v1 = {f"f{n}.bin": os.urandom(100 * 1024) for n in range(4)}
    v2 = {
        **{f"f{n}.bin": os.urandom(300 * 1024) for n in range(6)},
        "same/a": b"twice" * 1000,
        "same/b": b"twice" * 1000,
    }
    objects = ObjectStore(FileBackend(str(elsewhere / "store")))
    objects.save_directory("ns", "ckpt", str(write_tree(elsewhere / "v1", v1)), version="1", progress_bar=False)
    objects.save_directory("ns", "ckpt", str(write_tree(elsewhere / "v2", v2)), version="2", progress_bar=False)
    return objects, v1, v2


def load_refused(mount: Path, elsewhere: Path) -> dict:
    """A load that cannot fit is refused before anything is written."""
    objects, v1, _ = _two_versions(elsewhere)
    target = mount / "target"
    objects.load_directory("ns", "ckpt", str(target), version="1", progress_bar=False)
    before = sorted(p.name for p in target.iterdir())
    messages = []
    for folder in (target, mount / "fresh"):
        try:
            objects.load_directory("ns", "ckpt", str(folder), version="2", progress_bar=False)
        except OSError as exc:
            _fits(exc, "needs", "nothing was written")
            messages.append(str(exc))
        else:
            raise AssertionError("1.8 MB loaded on a disk with less room")
    assert read_tree(target) == v1
    assert sorted(p.name for p in target.iterdir()) == before
    assert not (mount / "fresh").exists()
    return {"messages": messages}


class _FillsTheDisk(NoLocalFilesBackend):
    """A store seen as remote, while someone else fills the disk of ``mount`` as the
    first blob is streamed (``open_read``: blobs; manifests and packs come by ``read``)."""

    def __init__(self, root: str, mount: Path) -> None:
        super().__init__(root)
        self.mount = mount
        self.filled = False

    def _fill_once(self) -> None:
        if not self.filled:
            self.filled = True
            disk = os.statvfs(self.mount)
            _filler(self.mount, disk.f_bavail * disk.f_frsize - 64 * 1024)

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        self._fill_once()
        return super().open_read(path, start)


def load_midway(mount: Path, elsewhere: Path) -> dict:
    """A load the disk fills under leaves the folder as it was and gives the space back."""
    objects, v1, v2 = _two_versions(elsewhere)
    target = mount / "target"
    objects.load_directory("ns", "ckpt", str(target), version="1", progress_bar=False)
    filling = ObjectStore(_FillsTheDisk(str(elsewhere / "store"), mount))
    try:
        filling.load_directory("ns", "ckpt", str(target), version="2", progress_bar=False, workers=1)
    except OSError as exc:
        _fits(exc, "ran out of disk", "holds what it held before")
    else:
        raise AssertionError("the load fit on a full disk")
    assert read_tree(target) == v1
    assert not (target / ".kara-staging").exists()
    (mount / "filler").unlink()
    filling.load_directory("ns", "ckpt", str(target), version="2", progress_bar=False)
    assert read_tree(target) == v2
    return {"loaded": sorted(v2)}


def gateway(mount: Path, _: Path) -> dict:
    """A gateway whose disk is full answers 507, which the client raises as StorageFullError."""
    from kara_http.testing import GatewayServer

    from kara_core.url import open_backend

    with GatewayServer(f"file://{mount}/store", token="t", store_options={"fsync": False}) as server:
        remote = open_backend(server.url, token="t", retry_budget=5.0, backoff_base=0.05)
        remote.put("x/small", b"fits")
        try:
            remote.put("x/big", os.urandom(1536 * 1024))
        except OSError as exc:
            _fits(exc, "gateway's disk is full", "x/big")
        else:
            raise AssertionError("1.5 MiB put through a gateway on a 1 MiB disk")
        filler = _filler(mount, 700 * 1024)
        appender = remote.open_append("x/log")
        appender.append(b"a" * 1000)
        appender.flush()
        try:
            appender.append(os.urandom(400 * 1024))
            appender.flush()
        except OSError as exc:
            _fits(exc, "x/log")
        else:
            raise AssertionError("400 KiB appended to a disk with less room")
        filler.unlink()
        again = remote.open_append("x/log")
        position = again.position
        assert position == 1000, position
        again.append(b"b" * 1000)
        again.close()
        assert remote.read("x/log") == b"a" * 1000 + b"b" * 1000
        assert remote.read("x/small") == b"fits"
        remote.close()
    return {"position_after_failure": position}


if __name__ == "__main__":
    scenario, mount = sys.argv[1], Path(sys.argv[2])
    elsewhere = Path(sys.argv[3]) if len(sys.argv) > 3 else mount
    print(json.dumps(globals()[scenario](mount, elsewhere)))
