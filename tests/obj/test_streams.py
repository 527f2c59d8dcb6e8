"""Single-file streams and versions written file by file (store.open_file / open_version)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest
from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

from kara_core import KaraStorage
from kara_core.errors import (
    BlobIntegrityError,
    ConfigurationError,
    CorruptDatasetError,
    DatasetNotFoundError,
    NotFoundError,
    UnsafePathError,
    VersionExistsError,
)
from kara_core.obj import ObjectStore, stream, upload
from kara_core.obj.manifest import KeyLayout
from kara_core.obj.stream import BlobReader
from kara_core.testing.obj import read_tree


def _write(objects: ObjectStore, path: str, chunks: list[bytes], version: str | None = None) -> str | None:
    with objects.open_file("ns", "ck", path, "wb", version=version) as fh:
        for chunk in chunks:
            fh.write(chunk)
    return fh.version


def test_a_written_file_is_an_ordinary_version_that_load_directory_reproduces(
    objects: ObjectStore, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    version = _write(objects, "sub/model.pt", [data[:1000], data[1000:]])
    assert version == "0"
    assert objects.list_versions("ns", "ck") == ["0"]
    objects.load_directory("ns", "ck", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == {"sub/model.pt": data}
    assert objects.verify("ns", "ck") == []


def test_rb_reads_seeks_and_reads_past_the_end_like_a_file(objects: ObjectStore) -> None:
    data = os.urandom(100_000)
    _write(objects, "a.bin", [data], version="v1")
    with objects.open_file("ns", "ck", "a.bin", "rb", version="v1") as fh:
        assert fh.seekable() and fh.read(10) == data[:10]
        assert fh.seek(-5, os.SEEK_END) == len(data) - 5
        assert fh.read() == data[-5:]
        assert fh.read(3) == b""
        fh.seek(50_000)
        assert fh.tell() == 50_000
        assert fh.read(7) == data[50_000:50_007]
    with objects.open_file("ns", "ck", "a.bin") as fh:
        assert fh.read() == data


def test_remote_reader_reads_ahead_in_windows_and_serves_random_access(
    objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(200_003)
    _write(objects, "a.bin", [data])
    monkeypatch.setattr(stream, "READ_AHEAD", 4096)
    requests: list[tuple[int, int | None]] = []
    backend = objects.backend

    class Remote(NoLocalFilesBackend):
        def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
            if "/data/" in path:
                requests.append((start, end))
            return super().read(path, start, end)

    remote = ObjectStore(Remote(backend.root))
    with remote.open_file("ns", "ck", "a.bin") as fh:
        assert isinstance(fh, BlobReader)
        parts = []
        while chunk := fh.read(1000):
            parts.append(chunk)
        assert b"".join(parts) == data
        # One request per window (plus the one read ahead past the last window at most).
        assert len(requests) <= len(data) // 4096 + 2
        fh.seek(123_456)
        assert fh.read(10_000) == data[123_456:133_456]


def test_an_exception_inside_with_publishes_nothing(objects: ObjectStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), objects.open_file("ns", "ck", "m.pt", "wb") as fh:
        fh.write(b"partial")
        raise RuntimeError("boom")
    with pytest.raises(DatasetNotFoundError):
        objects.list_versions("ns", "ck")
    _write(objects, "m.pt", [b"ok"], version="v1")
    with pytest.raises(RuntimeError), objects.open_file("ns", "ck", "m.pt", "wb", version="v2") as fh:
        fh.write(b"no")
        raise RuntimeError("boom")
    assert objects.list_versions("ns", "ck") == ["v1"]


def test_open_version_publishes_every_file_at_once_or_nothing(objects: ObjectStore, tmp_path: Path) -> None:
    with objects.open_version("ns", "ck", "both") as version:
        with version.open_file("model.pt") as fh:
            fh.write(b"model")
        rival = objects.open_version("ns", "ck", "both")
        rival.write_file("model.pt", b"rival")
        version.write_file("optim/state.pt", b"optim")
        # Nothing is visible before the block ends.
        with pytest.raises(DatasetNotFoundError):
            objects.list_versions("ns", "ck")
    assert version.version == "both"
    # A second writer of the same name loses the race at publish and changes nothing.
    with pytest.raises(VersionExistsError):
        rival.publish()
    objects.load_directory("ns", "ck", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == {"model.pt": b"model", "optim/state.pt": b"optim"}
    with pytest.raises(KeyError), objects.open_version("ns", "ck", "broken") as version:
        version.write_file("a", b"a")
        raise KeyError("stop")
    assert objects.list_versions("ns", "ck") == ["both"]


def test_existing_versions_are_refused_unless_overwrite(objects: ObjectStore) -> None:
    _write(objects, "m.pt", [b"one"], version="v1")
    with pytest.raises(VersionExistsError):
        objects.open_file("ns", "ck", "m.pt", "wb", version="v1")
    with objects.open_file("ns", "ck", "m.pt", "wb", version="v1", overwrite=True) as fh:
        fh.write(b"two")
    with objects.open_file("ns", "ck", "m.pt", version="v1") as fh:
        assert fh.read() == b"two"


def test_identical_content_is_uploaded_once(objects: ObjectStore) -> None:
    blob = os.urandom(50_000)
    with objects.open_version("ns", "ck", "a") as version:
        first = version.write_file("x", blob)
        second = version.write_file("y", blob)
    assert first.uploaded and not second.uploaded
    with objects.open_version("ns", "ck", "b") as version:
        again = version.write_file("z", blob)
    assert not again.uploaded
    assert version.sink.uploaded_blobs == 0 and version.sink.reused_blobs == 1
    assert len(list(objects.backend.list("obj/ns/ck/data/"))) == 1


class _NoNativeAppends(FileBackend):
    """A store whose appends would re-upload the object (S3-like): uploads spool instead."""

    capabilities = dataclasses.replace(FileBackend.capabilities, native_appends=False)


def test_without_native_appends_large_files_spill_to_disk_and_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "SPOOL_IN_MEMORY", 10_000)
    objects = ObjectStore(_NoNativeAppends(str(tmp_path / "s3-like")))
    data = os.urandom(1_000_000)
    _write(objects, "big.bin", [data[i : i + 65_536] for i in range(0, len(data), 65_536)])
    with objects.open_file("ns", "ck", "big.bin") as fh:
        assert fh.read() == data
    assert len(list(objects.backend.list("obj/ns/ck/data/"))) == 1


def test_a_large_file_streams_to_a_staging_object_with_bounded_memory(objects: ObjectStore) -> None:
    chunk = os.urandom(1024 * 1024)
    staged: list[tuple[str, int]] = []
    tracemalloc.start()
    try:
        with objects.open_file("ns", "ck", "big.bin", "wb", version="v1") as fh:
            for i in range(40):
                fh.write(chunk)
                fh.write(b"%d" % i)  # small writes are gathered
                if i == 20:
                    staged.extend((p, objects.backend.size(p) or 0) for p in objects.backend.list("obj/ns/ck/data/"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 40 MiB written; what Python held at any moment stayed a few chunks.
    assert peak < 4 * 1024 * 1024, peak
    # Mid-way the bytes were already in the store, under a staging name...
    assert len(staged) == 1 and staged[0][0].rsplit("/", 1)[1].startswith(upload.STAGING_PREFIX)
    assert staged[0][1] >= 20 * 1024 * 1024
    # ...and at the end only the content-named blob is left.
    names = [p.rsplit("/", 1)[1] for p in objects.backend.list("obj/ns/ck/data/")]
    expected = b"".join(chunk + b"%d" % i for i in range(40))
    assert names == [f"{hashlib.md5(expected).hexdigest()}_{hashlib.sha1(expected).hexdigest()}"]
    with objects.open_file("ns", "ck", "big.bin", version="v1") as fh:
        assert fh.read() == expected


def test_an_exception_while_streaming_leaves_no_staging_object(objects: ObjectStore) -> None:
    with pytest.raises(RuntimeError), objects.open_file("ns", "ck", "big.bin", "wb", version="v1") as fh:
        fh.write(os.urandom(3 * 1024 * 1024))
        raise RuntimeError("crash mid-way")
    assert list(objects.backend.list("obj/ns/ck/")) == []


def test_same_content_streamed_twice_is_stored_once(objects: ObjectStore) -> None:
    data = os.urandom(2 * 1024 * 1024)
    _write(objects, "a.bin", [data], version="v1")
    with objects.open_version("ns", "ck", "v2") as version:
        with version.open_file("b.bin") as fh:
            fh.write(data)
        assert version.sink.uploaded_blobs == 0 and version.sink.reused_blobs == 1
    assert len(list(objects.backend.list("obj/ns/ck/data/"))) == 1


def test_a_killed_upload_leaves_only_a_staging_object_that_gc_removes(objects: ObjectStore) -> None:
    _write(objects, "keep", [b"kept"], version="v1")
    sink = stream.BlobSink(objects.backend, KeyLayout("ns", "ck"))
    killed = upload.StreamedUpload(sink)
    killed.write(os.urandom(2 * 1024 * 1024))
    killed._drain()
    # The process dies here: no finish, no abort; its lease goes with it.
    sink.close()
    left = [p for p in objects.backend.list("obj/ns/ck/data/") if upload.STAGING_PREFIX in p]
    assert len(left) == 1
    assert objects.gc("ns", "ck", grace_period=3600).removed == []  # too young
    report = objects.gc("ns", "ck", grace_period=0)
    assert report.removed == [left[0].rsplit("/", 1)[1]]
    with objects.open_file("ns", "ck", "keep") as fh:
        assert fh.read() == b"kept"


def test_uncommitted_blobs_vanish_and_committed_orphans_are_collected_by_gc(objects: ObjectStore) -> None:
    with pytest.raises(RuntimeError), objects.open_file("ns", "ck", "gone", "wb", version="v0") as fh:
        fh.write(b"never committed")
        raise RuntimeError("crash")
    assert list(objects.backend.list("obj/ns/ck/data/")) == []
    _write(objects, "keep", [b"kept"], version="v1")
    with pytest.raises(RuntimeError), objects.open_version("ns", "ck", "v2") as version:
        with version.open_file("lost") as fh:
            fh.write(b"lost content")
        # Durable but never named by a manifest (a rank that finished before another crashed).
        version.sink.commit()
        raise RuntimeError("crash")
    assert len(list(objects.backend.list("obj/ns/ck/data/"))) == 2
    report = objects.gc("ns", "ck", grace_period=0)
    assert len(report.removed) == 1
    with objects.open_file("ns", "ck", "keep") as fh:
        assert fh.read() == b"kept"


def test_bad_paths_modes_and_open_files_are_refused(objects: ObjectStore) -> None:
    with pytest.raises(UnsafePathError):
        objects.open_file("ns", "ck", "../escape", "wb")
    with pytest.raises(UnsafePathError):
        objects.open_file("ns", "ck", ".kara/state", "wb")
    with pytest.raises(ConfigurationError):
        objects.open_file("ns", "ck", "a", "ab")
    _write(objects, "a", [b"a"], version="v1")
    with pytest.raises(NotFoundError):
        objects.open_file("ns", "ck", "missing")
    with pytest.raises(ConfigurationError, match="still open"), objects.open_version("ns", "ck", "v2") as version:
        handle = version.open_file("b")
        version.publish()
    handle.discard()
    with pytest.raises(ConfigurationError, match="twice"), objects.open_version("ns", "ck", "v3") as version:
        version.write_file("a", b"1")
        version.write_file("a", b"2")
    assert objects.list_versions("ns", "ck") == ["v1"]


def test_karastorage_exposes_open_file_and_open_version(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    with store.open_version("ns", "ck") as version:
        version.write_file("a", b"a")
    with store.open_file("ns", "ck", "b", "wb") as fh:
        fh.write(b"b")
    assert store.list_versions("ns", "ck", kind="obj") == ["0", "1"]
    with store.open_file("ns", "ck", "b") as fh:
        assert fh.read() == b"b"


def _hashed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bytes BlobSink hashes (every digest pass of stream.hash_views)."""
    counted: list[int] = []
    real = stream.hash_views

    def counting(names: list[str], views: list[memoryview]) -> list[str]:
        counted.append(sum(len(v) for v in views))
        return real(names, views)

    monkeypatch.setattr(stream, "hash_views", counting)
    return counted


def test_content_equal_to_a_cached_blob_it_is_like_is_reused_without_hashing(
    objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    head, body = os.urandom(300), os.urandom(200_000)
    layout = KeyLayout("ns", "ck")
    with stream.BlobSink(objects.backend, layout) as sink:
        first = sink.store_parts([head, body])
        sink.commit()
    hashed = _hashed_bytes(monkeypatch)
    with stream.BlobSink(objects.backend, layout) as sink:
        again = sink.store_parts([memoryview(head), memoryview(body)], like=first.digests)
        sink.commit()
        assert (sink.reused_blobs, sink.uploaded_blobs) == (1, 0)
    assert hashed == []
    assert (again.digests.md5, again.digests.sha1, again.size, again.uploaded) == (
        hashlib.md5(head + body).hexdigest(),
        hashlib.sha1(head + body).hexdigest(),
        len(head + body),
        False,
    )


@pytest.mark.parametrize("change", ["last byte", "one byte longer", "stored blob corrupted"])
def test_content_unlike_the_blob_it_is_like_is_hashed_and_named_by_its_own_bytes(
    objects: ObjectStore, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    data = os.urandom(150_000)
    layout = KeyLayout("ns", "ck")
    with stream.BlobSink(objects.backend, layout) as sink:
        first = sink.store_parts([data])
        sink.commit()
    new = data
    if change == "last byte":
        new = data[:-1] + bytes([data[-1] ^ 1])
    elif change == "one byte longer":
        new = data + b"x"
    else:
        # The stored blob no longer holds what its name says: a byte comparison with it
        # must not vouch for the content (the content is hashed instead).
        with open(objects.backend.local_path(layout.blob(first.digests.blob)), "r+b") as fh:
            fh.write(b"\0")
    hashed = _hashed_bytes(monkeypatch)
    with stream.BlobSink(objects.backend, layout) as sink:
        stored = sink.store_parts([new], like=first.digests)
        sink.commit()
    assert sum(hashed) >= len(new)
    assert (stored.digests.md5, stored.digests.sha1) == (hashlib.md5(new).hexdigest(), hashlib.sha1(new).hexdigest())
    if change != "stored blob corrupted":
        assert stored.uploaded
        assert objects.backend.read(layout.blob(stored.digests.blob)) == new


def test_same_as_cached_file_compares_bytes_only_when_the_file_is_cached(tmp_path: Path) -> None:
    from kara_core.localdisk import same_as_cached_file

    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    parts = [data[:10], memoryview(data)[10:2_000_000], data[2_000_000:]]
    assert same_as_cached_file(str(path), parts) is True
    assert same_as_cached_file(str(path), [data[:-1], b"\0" if data[-1] else b"\1"]) is False
    assert same_as_cached_file(str(path), [data, b"x"]) is False
    assert same_as_cached_file(str(tmp_path / "missing"), [data]) is None
    # Out of the page cache: unknown without reading the disk (the caller hashes).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert same_as_cached_file(str(path), parts) is None


def _damage(objects: ObjectStore, path: str, how: str) -> None:
    """Flip a byte of the blob of ``path`` in ns/ck (bit rot), or cut its last byte off."""
    (entry,) = [e for e in objects.read_manifest("ns", "ck", "0").files if e.relpath == path]
    blob = objects.backend.local_path(KeyLayout("ns", "ck").blob(entry.file))
    if how == "cut":
        os.truncate(blob, entry.size - 1)
        return
    with open(blob, "r+b") as fh:
        fh.seek(entry.size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 1]))


@pytest.mark.parametrize("remote", [False, True], ids=["mapped", "ranged-reads"])
@pytest.mark.parametrize("how", ["flip", "cut"])
def test_a_verified_reader_refuses_a_damaged_file_before_any_read(
    objects: ObjectStore, monkeypatch: pytest.MonkeyPatch, remote: bool, how: str
) -> None:
    monkeypatch.setattr(stream, "READ_AHEAD", 4096)  # several windows: a streamed check
    data = os.urandom(50_001)
    _write(objects, "model.pt", [data], version="0")
    store = ObjectStore(NoLocalFilesBackend(objects.backend.root)) if remote else objects
    with store.open_file("ns", "ck", "model.pt", verify=True) as fh:
        assert fh.read() == data
    _damage(objects, "model.pt", how)
    with pytest.raises(
        BlobIntegrityError, match="'model.pt'.* does not match its " + ("sha1" if how == "flip" else "size")
    ):
        store.open_file("ns", "ck", "model.pt", verify=True)
    with store.open_file("ns", "ck", "model.pt") as fh:  # unchecked: sizes only
        if how == "flip":
            assert fh.read() != data and fh.tell() == len(data)
        else:
            fh.seek(len(data) - 5)
            with pytest.raises(CorruptDatasetError, match=f"'model.pt' ends before the {len(data)} bytes"):
                fh.read(10)  # a short read of the end
            fh.seek(0)
            with pytest.raises(CorruptDatasetError, match="at offset 50000"):
                fh.read()  # one large read
    with pytest.raises(ConfigurationError, match="verify must be True or False"):
        store.open_file("ns", "ck", "model.pt", verify=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="verify=True is for mode 'rb'"):
        store.open_file("ns", "ck", "other.pt", "wb", verify=True)


class _CountingReads(NoLocalFilesBackend):
    """The store seen as remote, counting the bytes of every read."""

    read_bytes = 0

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().read(path, start, end)
        type(self).read_bytes += len(data)
        return data


def test_a_verified_remote_reader_downloads_once_and_serves_the_bytes_it_checked(
    objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "READ_AHEAD", 4096)  # several ranged reads
    monkeypatch.setattr(_CountingReads, "read_bytes", 0)
    data = os.urandom(50_001)
    _write(objects, "model.pt", [data], version="0")
    remote = _CountingReads(objects.backend.root)
    store = ObjectStore(remote)
    manifest_bytes = _CountingReads.read_bytes
    with store.open_file("ns", "ck", "model.pt", verify=True) as fh:
        checked = _CountingReads.read_bytes
        # Damaged after the check: the reader still serves what it checked.
        _damage(objects, "model.pt", "flip")
        assert fh.read() == data
        fh.seek(123)
        assert fh.read(1000) == data[123:1123]
    assert _CountingReads.read_bytes == checked  # no read of the blob after the check
    assert 0 < checked - manifest_bytes - len(data) < 10_000  # the blob once, plus manifest and meta
    with pytest.raises(BlobIntegrityError, match="does not match its sha1"):
        store.open_file("ns", "ck", "model.pt", verify=True)
