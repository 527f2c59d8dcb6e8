"""kara-file: the conformance suite, plus what only a local filesystem can show."""

from __future__ import annotations

import io
import os
import time

import pytest
from kara_file import FileBackend
from kara_file import backend as file_backend_module

from kara_core.backend import Backend
from kara_core.errors import ConfigurationError, NotFoundError, UnsafePathError
from kara_core.testing import BackendConformance
from kara_core.url import open_backend


class TestFileBackendConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path) -> Backend:
        return open_backend(f"file://{tmp_path}/store")


def test_relative_url_is_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = open_backend("file://my/database")
    assert isinstance(backend, FileBackend)
    assert backend.root == str(tmp_path / "my" / "database")


def test_absolute_url_keeps_its_path(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}/abs")
    assert backend.root == str(tmp_path / "abs")
    assert backend.url == f"file://{tmp_path}/abs"


def test_empty_location_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="names no directory"):
        open_backend("file://")


def test_local_path_points_at_the_real_file(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    backend.put("a/b.bin", b"data")
    path = backend.local_path("a/b.bin")
    assert path == str(tmp_path / "a" / "b.bin")
    with open(path, "rb") as fh:
        assert fh.read() == b"data"


def test_failed_put_leaves_the_old_object_and_no_temp_files(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    backend.put("obj", b"old")

    class Exploding:
        def read(self, n: int) -> bytes:
            raise RuntimeError("source failed mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        backend.put("obj", Exploding())  # type: ignore[arg-type]
    assert backend.read("obj") == b"old"
    assert os.listdir(tmp_path) == ["obj"]


def test_temp_files_of_an_interrupted_put_are_not_listed(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    backend.put("dir/real", b"x")
    (tmp_path / "dir" / ".real.kara-tmp-deadbeef").write_bytes(b"partial")
    assert list(backend.list("dir/")) == ["dir/real"]


def test_fsync_can_be_turned_off_for_scratch_stores(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}", fsync=False)
    assert backend.options.fsync is False
    appender = backend.open_append("x.blk")
    appender.append(b"abc")
    appender.close()
    assert backend.read("x.blk") == b"abc"


def test_locks_are_created_without_fsync_and_puts_with_it(tmp_path, monkeypatch) -> None:
    # A lock matters only while its holder runs (Backend.create_lock): no fsync of the
    # file or of its folder. put_if_absent still syncs both before it returns.
    backend = open_backend(f"file://{tmp_path}")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    assert backend.create_lock("d/writer.lock", b"me") is True
    assert backend.create_lock("d/writer.lock", b"you") is False
    assert synced == []
    assert backend.read("d/writer.lock") == b"me"
    assert _tree(tmp_path) == ["d/writer.lock"]
    assert backend.put_if_absent("d/meta.json", b"{}") is True
    assert len(synced) == 2


@pytest.mark.parametrize("fsync", [True, False])
def test_an_appender_syncs_its_data_at_flush_and_close_only_when_it_has_new_bytes(
    tmp_path, monkeypatch, fsync: bool
) -> None:
    backend = open_backend(f"file://{tmp_path}", fsync=fsync)
    synced: list[int] = []
    real = file_backend_module._fdatasync
    monkeypatch.setattr(file_backend_module, "_fdatasync", lambda fd: (synced.append(fd), real(fd)))
    appender = backend.open_append("x.blk")
    appender.append(b"abc")
    appender.flush()
    assert len(synced) == (1 if fsync else 0)
    appender.flush()
    appender.close()  # nothing new since the flush: no second sync
    assert len(synced) == (1 if fsync else 0)
    assert backend.read("x.blk") == b"abc"


def _tree(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_batch_objects_appear_under_their_names_only_at_commit(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    batch = backend.open_batch()
    batch.put("d/a", b"alpha")
    batch.put("d/e/b", io.BytesIO(b"beta"))
    # Written, not yet durable: hidden temp files, invisible to readers and to list.
    assert backend.size("d/a") is None
    assert list(backend.list("d/")) == []
    batch.commit()
    assert backend.read("d/a") == b"alpha"
    assert backend.read("d/e/b") == b"beta"
    assert _tree(tmp_path) == ["d/a", "d/e/b"]


def test_batch_puts_start_the_writeback_of_large_objects_only(tmp_path, monkeypatch) -> None:
    started: list[int] = []
    real = file_backend_module._start_writeback
    monkeypatch.setattr(
        file_backend_module, "_start_writeback", lambda fd, *a: (started.append(os.fstat(fd).st_size), real(fd, *a))
    )
    backend = open_backend(f"file://{tmp_path}")
    big = 2 * 1024 * 1024
    with backend.open_batch() as batch:
        batch.put("d/small", b"s" * 1000)
        batch.put("d/stream", io.BytesIO(b"t" * 1000))
        batch.put("d/big", b"b" * big)
        batch.put("d/big-stream", io.BytesIO(b"c" * big))
        batch.commit()
    # Small objects are written back by the commit's syncfs, large ones as soon as written.
    assert started == [big, big]
    assert backend.read("d/small") == b"s" * 1000 and backend.read("d/big-stream") == b"c" * big


def test_an_aborted_batch_removes_its_temp_files(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    backend.put("d/old", b"old")
    with pytest.raises(RuntimeError), backend.open_batch() as batch:
        batch.put("d/new", b"new")
        batch.put("d/old", b"replacement")
        raise RuntimeError("failed before commit")
    assert _tree(tmp_path) == ["d/old"]
    assert backend.read("d/old") == b"old"


def test_a_failed_stream_in_a_batch_leaves_no_temp_file(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")

    class Exploding:
        def read(self, n: int) -> bytes:
            raise RuntimeError("source failed mid-stream")

    batch = backend.open_batch()
    batch.put("d/good", b"good")
    with pytest.raises(RuntimeError, match="mid-stream"):
        batch.put("d/bad", Exploding())  # type: ignore[arg-type]
    batch.commit()
    assert _tree(tmp_path) == ["d/good"]


def _without_syncfs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Take syncfs(2) away (as on a platform without it) and return the list of the
    paths the file store then fsyncs one by one, which it fills as they are synced."""
    monkeypatch.setattr(file_backend_module, "_syncfs", None)
    synced: list[str] = []
    real_fsync = file_backend_module._fsync_path
    monkeypatch.setattr(file_backend_module, "_fsync_path", lambda path: (synced.append(path), real_fsync(path)))
    return synced


def test_batch_commit_without_syncfs_fsyncs_each_file(tmp_path, monkeypatch) -> None:
    # Where syncfs(2) is missing (not Linux), commit falls back to one fsync per file.
    synced = _without_syncfs(monkeypatch)
    backend = open_backend(f"file://{tmp_path}")
    batch = backend.open_batch()
    for i in range(5):
        batch.put(f"d/{i}", b"x" * i)
    batch.commit()
    assert len(synced) == 5
    assert all(".kara-tmp-" in os.path.basename(path) for path in synced)
    assert [backend.read(f"d/{i}") for i in range(5)] == [b"x" * i for i in range(5)]


def test_cleanup_removes_only_old_temp_files_under_the_prefix(tmp_path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    backend.put("k/data/blob", b"real")
    old = [tmp_path / "k" / "data" / ".blob.kara-tmp-old", tmp_path / "k" / ".meta.json.kara-tmp-old"]
    young = tmp_path / "k" / "data" / ".other.kara-tmp-young"
    elsewhere = tmp_path / "other" / ".x.kara-tmp-old"
    for path in [*old, young, elsewhere]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in [*old, elsewhere]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert backend.cleanup("k/", older_than=3600) == 2
    assert _tree(tmp_path) == ["k/data/.other.kara-tmp-young", "k/data/blob", "other/.x.kara-tmp-old"]


def test_unsynced_puts_skip_their_fsyncs_and_sync_makes_them_durable(tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    called: list[int] = []
    real_syncfs = file_backend_module._syncfs
    monkeypatch.setattr(file_backend_module, "_syncfs", lambda fd: (called.append(fd), real_syncfs(fd))[1])
    backend = open_backend(f"file://{tmp_path}")
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    assert backend.sync_scope() == f"{boot}:{os.stat(tmp_path).st_dev}"
    backend.put_unsynced("d/a", b"alpha")
    backend.put_unsynced("d/e/b", b"b" * (2 * 1024 * 1024))
    assert synced == [] and called == []
    assert backend.read("d/a") == b"alpha" and _tree(tmp_path) == ["d/a", "d/e/b"]  # atomic, visible
    backend.sync(["d/a", "d/e/b"])
    # One syncfs for the files, then each folder they are in.
    assert len(called) == 1
    assert sorted(synced) == [str(tmp_path / "d"), str(tmp_path / "d" / "e")]


def test_sync_without_syncfs_fsyncs_each_file_and_folder(tmp_path, monkeypatch) -> None:
    synced = _without_syncfs(monkeypatch)
    backend = open_backend(f"file://{tmp_path}")
    for i in range(3):
        backend.put_unsynced(f"d/{i}", b"x" * i)
    backend.sync([f"d/{i}" for i in range(3)])
    assert sorted(synced) == [str(tmp_path / "d" / str(i)) for i in range(3)]


def test_a_store_without_fsync_has_no_sync_scope(tmp_path) -> None:
    # Its puts are never synced: nothing for a later sync to do, nothing to defer.
    backend = open_backend(f"file://{tmp_path}", fsync=False)
    assert backend.sync_scope() is None


def test_names_too_long_for_the_file_system_are_refused_before_anything_is_written(tmp_path) -> None:
    backend = FileBackend(str(tmp_path / "store"))
    fits = "n" * (255 - len(".") - len(".kara-tmp-") - 32)  # with its temporary name: 255 bytes
    backend.put(f"ns/{fits}", b"ok")
    assert backend.read(f"ns/{fits}") == b"ok"
    for name in (fits + "n", "é" * 107, f"{'f' * 256}/a"):
        target = f"ns/{name}"
        for write in (
            lambda path: backend.put(path, b"x"),
            lambda path: backend.put_if_absent(path, b"x"),
            lambda path: backend.create_lock(path, b"x"),
            backend.open_append,
            lambda path: backend.copy(f"ns/{fits}", path),
            lambda path: backend.move(f"ns/{fits}", path),
        ):
            with pytest.raises(UnsafePathError, match="bytes"):
                write(target)
        with backend.open_batch() as batch, pytest.raises(UnsafePathError, match="bytes"):
            batch.put(target, b"x")
    # Reads of a name no file can have find nothing.
    for name in ("r" * 256, f"{'f' * 256}/a"):
        assert backend.size(name) is None
        with pytest.raises(NotFoundError):
            backend.read(name)
        with pytest.raises(NotFoundError):
            backend.open_read(name)
        backend.delete(name)
    with pytest.raises(UnsafePathError, match="4096 bytes"):
        backend.put("/".join(["d" * 200] * 21), b"x")
    assert sorted(p.name for p in (tmp_path / "store" / "ns").iterdir()) == [fits]


def test_a_file_where_a_folder_is_needed_and_a_folder_where_a_file_is_needed_are_refused(tmp_path) -> None:
    # Object stores hold "a/b" and "a/b/c" side by side; a folder of files cannot. The
    # gateway answered such writes 500 (found by the request fuzzer).
    backend = FileBackend(str(tmp_path / "store"))
    backend.put("a/b", b"file")
    backend.put("d/e/f", b"deep")
    for target, blocker in (("a/b/c", "'a/b' is a file"), ("a/b/c/d", "'a/b' is a file"), ("d/e", "is a folder")):
        for write in (
            lambda path: backend.put(path, b"x"),
            lambda path: backend.put_if_absent(path, b"x"),
            lambda path: backend.create_lock(path, b"x"),
            backend.open_append,
            lambda path: backend.copy("a/b", path),
            lambda path: backend.move("d/e/f", path),
        ):
            with pytest.raises(UnsafePathError, match=blocker):
                write(target)
        with pytest.raises(UnsafePathError, match=blocker), backend.open_batch() as batch:
            batch.put(target, b"x")
    # Nothing moved, nothing half-written, no temporary file left.
    assert backend.read("a/b") == b"file" and backend.read("d/e/f") == b"deep"
    assert sorted(backend.list("")) == ["a/b", "d/e/f"]
    assert not [p for p in (tmp_path / "store").rglob("*") if ".kara-tmp-" in p.name]
