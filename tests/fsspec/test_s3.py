"""kara-fsspec on S3 (moto's server, through the real s3fs): routing, options, credentials,
secrets, whole-block appends, conditional writes and the requests reads cost."""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
import warnings

import pytest
from kara_fsspec import FsspecBackend
from kara_fsspec.testing import S3TestServer

from kara_core import KaraStorage
from kara_core.backend import RangeFeed
from kara_core.errors import BackendError, ConfigurationError, CorruptDatasetError, DatasetLockedError
from kara_core.plugins import list_plugins
from kara_core.url import open_backend

RECORD = 2048


def _blocks(backend: FsspecBackend, folder: str) -> list[int]:
    sizes = []
    while (size := backend.size(f"{folder}/{len(sizes)}.blk")) is not None:
        sizes.append(size)
    return sizes


def test_s3_urls_open_through_the_fsspec_fallback(s3_server: S3TestServer, s3_bucket: str) -> None:
    backend = open_backend(s3_server.url(s3_bucket, "a/b"), **s3_server.options)
    assert isinstance(backend, FsspecBackend)
    assert backend.url == f"s3://{s3_bucket}/a/b"
    assert backend.capabilities.parallel_reads and not backend.capabilities.native_appends
    fsspec_plugin = next(p for p in list_plugins() if p.distribution == "kara-fsspec")
    assert fsspec_plugin.backends == ["*"]


def test_unknown_options_are_refused_naming_the_valid_ones(s3_server: S3TestServer, s3_bucket: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_backend(s3_server.url(s3_bucket), endpoint="http://x", secret="never-shown-secret")
    message = str(info.value)
    assert "'endpoint'" in message and "endpoint_url" in message
    assert "never-shown-secret" not in message


def test_a_url_without_a_bucket_is_refused(s3_server: S3TestServer) -> None:
    with pytest.raises(ConfigurationError, match="must name a bucket"):
        open_backend("s3://", **s3_server.options)


def test_credentials_and_endpoint_come_from_the_aws_environment(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-access-key")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    store = KaraStorage(s3_server.url(s3_bucket, "from-env"))
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write({"from": "env"})
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [{"from": "env"}]


def test_secrets_never_show_in_errors_logs_or_repr(
    s3_server: S3TestServer, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "do-not-print-this-secret-42"
    options = {**s3_server.options, "secret": secret}
    with caplog.at_level(logging.DEBUG):
        backend = open_backend(s3_server.url(s3_bucket, "s"), **options)
        backend.put("x", b"1")
        # A bucket that does not exist: the error names the store, not the credentials.
        missing = open_backend(s3_server.url("no-such-bucket-kara", "s"), **options)
        with pytest.raises(BackendError) as info:
            missing.put("x", b"1")
    assert secret not in str(info.value) and "no-such-bucket-kara" in str(info.value)
    assert secret not in repr(backend) and secret not in str(backend.url)
    assert secret not in caplog.text
    # A pickle is URL + options (a DataLoader worker must reopen the store with them).
    clone = pickle.loads(pickle.dumps(KaraStorage(backend)))
    assert clone.backend.read("x") == b"1"


def test_each_flush_closes_the_block_and_records_survive_reopening(s3_server: S3TestServer, s3_bucket: str) -> None:
    store = KaraStorage(s3_server.url(s3_bucket, "flushes"), **s3_server.options)
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(10))
        ds.flush()
        # Durable and visible to a new reader while the writer is still open.
        with store.open_dataset("ns", "k", version="1") as reader:
            assert len(reader) == 10
        ds.write_many({"i": i} for i in range(10, 25))
        ds.flush()
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(25, 30))
    backend = store.backend
    assert isinstance(backend, FsspecBackend)
    data = _blocks(backend, "row/ns/k/1/data")
    # One block per flush; a closing writer leaves an empty last block (as 2.x can), which
    # the next writer continues.
    assert len(data) == 4 and min(data[:3]) > 0 and data[3] == 0
    with store.open_dataset("ns", "k", version="1") as ds:
        assert [r["i"] for r in ds] == list(range(30))


def test_a_record_read_cold_costs_one_ranged_get(s3_server: S3TestServer, s3_bucket: str) -> None:
    store = KaraStorage(s3_server.url(s3_bucket, "random"), **s3_server.options)
    count = 3000
    with store.open_dataset("ns", "k", "w", version="1", serialization="raw", max_file_size=4 << 20) as ds:
        ds.write_many(bytes([i % 251]) * RECORD for i in range(count))
    picked = list(range(100, count, 300))  # 600 KB apart, none in the first page
    with store.open_dataset("ns", "k", version="1", serialization="raw") as ds:
        assert ds[0] == bytes([0]) * RECORD  # brings the index page in
        s3_server.reset_requests()
        for i in picked:
            assert ds[i] == bytes([i % 251]) * RECORD
        requests = s3_server.requests
        gets = list(s3_server.app.gets)
    assert requests == len(picked) == len(gets)
    for path, byte_range in gets:
        assert "/data/" in path and byte_range is not None
        first, last = map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", byte_range).groups())  # type: ignore[union-attr]
        assert last - first + 1 <= 128 * 1024  # a page or two, never a 4 MiB block


def test_sequential_reads_stream_each_block_with_one_get(s3_server: S3TestServer, s3_bucket: str) -> None:
    store = KaraStorage(s3_server.url(s3_bucket, "sequential"), **s3_server.options)
    count = 10_000
    with store.open_dataset("ns", "k", "w", version="1", serialization="raw", max_file_size=4 << 20) as ds:
        ds.write_many(bytes([i % 251]) * RECORD for i in range(count))
    assert store.backend.capabilities.streamed_reads
    sizes = _blocks(store.backend, "row/ns/k/1/data")
    with store.open_dataset("ns", "k", version="1", serialization="raw") as ds:
        s3_server.reset_requests()
        assert sum(len(r) for r in ds) == count * RECORD
        data_gets = [(path, r) for path, r in s3_server.app.gets if "/data/" in path]
        # A reader moved into block 2 streams block 2 from there.
        s3_server.reset_requests()
        start = (2 * (4 << 20) + 1000 * RECORD // 7) // RECORD + 1
        ds.seek(start)
        assert [ds.read()[0] for _ in range(3000)] == [i % 251 for i in range(start, start + 3000)]
        slice_gets = [(path, r) for path, r in s3_server.app.gets if "/data/" in path]
    # 20 MB of records in 4 MiB blocks: one GET per block, for the whole block, each once
    # (two blocks stream at a time, so the server may see them in either order).
    expected = [(f"data/{n}.blk", f"bytes=0-{size - 1}") for n, size in enumerate(sizes) if size]
    assert sorted((path.split("/1/")[1], r) for path, r in data_gets) == expected
    moved = {path.split("/1/")[1]: r for path, r in slice_gets}
    assert moved["data/2.blk"] == f"bytes={start * RECORD - 2 * (4 << 20)}-{sizes[2] - 1}"
    assert set(moved) <= {"data/2.blk", "data/3.blk", "data/4.blk"}


def test_a_streamed_range_that_breaks_off_resumes_where_it_stopped(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import ClientPayloadError
    from kara_fsspec import backend as fsspec_backend

    store = open_backend(s3_server.url(s3_bucket, "resume"), **s3_server.options)
    data = os.urandom(300_000)
    store.put("blob", data)
    read_exactly = fsspec_backend._read_exactly
    calls = []

    async def breaking_once(body: object, size: int) -> bytes:
        calls.append(size)
        if len(calls) == 2:
            raise ClientPayloadError("connection lost")
        return await read_exactly(body, size)

    monkeypatch.setattr(fsspec_backend, "_read_exactly", breaking_once)
    s3_server.reset_requests()
    with store.open_range("blob", 1000, 250_000) as stream:
        assert stream.read(4000) == data[1000:5000]
        assert stream.read() == data[5000:250_000]
        assert stream.read(10) == b""
    assert [r for _, r in s3_server.app.gets] == ["bytes=1000-249999", "bytes=5000-249999"]


def test_a_streamed_range_of_a_shorter_object_ends_where_the_object_does(
    s3_server: S3TestServer, s3_bucket: str
) -> None:
    # As Backend.open_range says: fewer bytes where the object ends, then b"" (RangeFeed
    # and the loads built on it call that corrupt).
    store = open_backend(s3_server.url(s3_bucket, "short"), **s3_server.options)
    store.put("blob", b"x" * 1000)
    with store.open_range("blob", 0, 900) as stream:
        assert stream.read() == b"x" * 900
    with store.open_range("blob", 500, 2000) as stream:
        assert stream.read(300) == b"x" * 300
        assert stream.read(1000) == b"x" * 200
        assert stream.read(10) == b""
    with store.open_range("blob", 1500, 2000) as stream:  # S3 answers 416
        assert stream.read() == b""
    feed = RangeFeed(store, "blob", 500, 2000, 256, 1024)
    pieces = [feed.next_piece()[1] for _ in range(2)]
    assert b"".join(pieces) == b"x" * 500
    with pytest.raises(CorruptDatasetError, match="ended before byte 2000"):
        feed.next_piece()
    feed.join()


def test_a_streamed_range_closed_early_closes_its_answer_on_the_event_loop(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer's connection belongs to s3fs's event loop (asyncio and aiohttp are not
    # thread-safe): a reader closing a range early (RangeFeed.cancel, a thread of its own)
    # must have it closed there, not from the reader's thread.
    import threading

    import aiohttp

    store = open_backend(s3_server.url(s3_bucket, "early"), **s3_server.options)
    store.put("blob", os.urandom(300_000))
    closed_in: list[threading.Thread] = []
    close = aiohttp.ClientResponse.close

    def recording(self: aiohttp.ClientResponse) -> None:
        closed_in.append(threading.current_thread())
        close(self)

    monkeypatch.setattr(aiohttp.ClientResponse, "close", recording)
    with store.open_range("blob", 0, 300_000) as stream:
        assert len(stream.read(1000)) == 1000
        closed_in.clear()
    assert closed_in and all(thread.name == "fsspecIO" for thread in closed_in), closed_in


def test_opening_a_version_lists_its_blocks_once_and_reads_a_small_index_whole(
    s3_server: S3TestServer, s3_bucket: str
) -> None:
    store = KaraStorage(s3_server.url(s3_bucket, "opening"), **s3_server.options)
    with store.open_dataset("ns", "k", "w", version="1", serialization="raw") as ds:
        for flush in range(5):  # a block per flush in each stream
            ds.write_many(bytes([flush]) * 100 for _ in range(200))
            ds.flush()
    s3_server.reset_requests()
    with store.open_dataset("ns", "k", version="1", serialization="raw") as ds:
        opening = list(s3_server.app.log)
        s3_server.reset_requests()
        assert [r[0] for r in ds] == [flush for flush in range(5) for _ in range(200)]
        assert ds[517] == bytes([2]) * 100
        reading = list(s3_server.app.log)
    listings = [q for method, _, q in opening if method == "GET" and "list-type" in q]
    assert len(listings) == 1  # index and data blocks: one listing of the version's folder
    assert not [path for method, path, _ in opening if method == "HEAD" and path.endswith(".blk")]
    index_gets = [path for method, path, _ in opening + reading if method == "GET" and "/index/" in path]
    assert len(index_gets) == 5  # each index block once, at open; every record end then comes from memory
    assert all("/data/" in path for _, path, _ in reading)


@pytest.mark.parametrize("plugin", ["fsspec", "obstore"])
def test_writer_lock_holds_on_s3(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    monkeypatch.setenv("KARA_PLUGIN_S3", plugin)  # through s3fs, and through obstore (kara-obstore)
    store = KaraStorage(s3_server.url(s3_bucket, "locks"), **s3_server.options)
    other = KaraStorage(s3_server.url(s3_bucket, "locks"), **s3_server.options)
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write({"i": 1})
        with pytest.raises(DatasetLockedError):
            other.open_dataset("ns", "k", "w", version="1")
    assert store.backend.capabilities.atomic_create


@pytest.mark.parametrize("plugin", ["fsspec", "obstore"])
def test_a_server_ignoring_conditional_writes_makes_creates_best_effort_and_says_so(
    s3_server: S3TestServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    monkeypatch.setenv("KARA_PLUGIN_S3", plugin)  # through s3fs, and through obstore (kara-obstore)
    backend = open_backend(s3_server.url(s3_bucket, "unconditional"), **s3_server.options)
    s3_server.app.ignore_conditional_writes = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert backend.put_if_absent("lock", b"mine") is True
            assert backend.put_if_absent("lock", b"theirs") is False
    finally:
        s3_server.app.ignore_conditional_writes = False
    assert not backend.capabilities.atomic_create
    assert backend.read("lock") == b"mine"
    assert any("best effort" in str(w.message) for w in caught)
    assert list(backend.list("")) == ["lock"]  # the probe left nothing behind


@pytest.mark.slow
def test_load_directory_downloads_a_large_blob_as_concurrent_streamed_ranges(
    s3_server: S3TestServer, s3_bucket: str, tmp_path
) -> None:

    source = tmp_path / "source"
    source.mkdir()
    big = os.urandom(40 * 1024 * 1024)
    (source / "big.bin").write_bytes(big)
    store = KaraStorage(s3_server.url(s3_bucket, "dirs"), **s3_server.options)
    store.save_directory("ns", "ckpt", str(source), progress_bar=False)
    s3_server.reset_requests()
    store.load_directory("ns", "ckpt", str(tmp_path / "loaded"), progress_bar=False)
    assert (tmp_path / "loaded" / "big.bin").read_bytes() == big
    ranged = sorted((r for path, r in s3_server.app.gets if "/data/" in path), key=lambda r: len(r or ""))
    # Ranges of at least 32 MiB, each one GET read as it arrives, all sent at once.
    assert ranged == ["bytes=0-33554431", "bytes=33554432-41943039"]


def test_a_folder_of_small_files_loads_with_one_get_per_pack(s3_server: S3TestServer, s3_bucket: str, tmp_path) -> None:
    rnd = random.Random(3)
    files = {f"shard/{i:04d}.json": rnd.randbytes(rnd.randint(1, 8192)) for i in range(400)}
    files["weights.bin"] = rnd.randbytes(512 * 1024)
    source = tmp_path / "source"
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    store = KaraStorage(s3_server.url(s3_bucket, "dirs"), **s3_server.options)
    store.save_directory("ns", "ckpt", str(source), progress_bar=False)
    manifest = store.objects.read_manifest("ns", "ckpt", "0")
    assert len(manifest.packs) == 1  # 1.6 MB of small files

    s3_server.reset_requests()
    store.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert {rel: (tmp_path / "out" / rel).read_bytes() for rel in files} == files
    blob_gets = [path for path, _ in s3_server.app.gets if "/data/" in path]
    pack_gets = [(path, r) for path, r in s3_server.app.gets if "/kara-packs/" in path]
    assert len(blob_gets) == 1  # weights.bin, too large for a pack
    assert len(pack_gets) == 1 and pack_gets[0][1] is not None  # 400 files, one ranged GET
    # Requests of the whole load: meta, manifest, sidecar, the pack and the large blob,
    # not 400 more.
    assert s3_server.requests < 15


@pytest.mark.parametrize("damage", ["corrupted small blob", "truncated large blob"])
def test_a_damaged_blob_on_s3_fails_the_load_and_leaves_no_partial_file(
    s3_server: S3TestServer, s3_bucket: str, tmp_path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    import hashlib

    import s3fs

    import kara_core.obj.load
    from kara_core.errors import BlobIntegrityError

    # A "large" blob of 3 MiB, fetched as concurrent streamed ranges as a 64 MiB one is.
    monkeypatch.setattr(kara_core.obj.load, "_RANGED_MIN", 1024 * 1024)
    monkeypatch.setattr(kara_core.obj.load, "_STREAMED_RANGE", 1024 * 1024)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    files = {f"sub/small{i}.bin": os.urandom(5000 + i) for i in range(5)}
    files["big.bin"] = os.urandom(3 * 1024 * 1024 + 7)
    for rel, data in files.items():
        (source / rel).write_bytes(data)
    store = KaraStorage(s3_server.url(s3_bucket, "dirs"), **s3_server.options)
    # Without packs: the blob is the only copy of the small file (test_packs covers both).
    store.save_directory("ns", "ckpt", str(source), progress_bar=False, pack_small_files=False)

    bad = "sub/small3.bin" if damage.startswith("corrupted") else "big.bin"
    data = files[bad]
    blob = f"{hashlib.md5(data).hexdigest()}_{hashlib.sha1(data).hexdigest()}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.options)
    key = f"{s3_bucket}/dirs/obj/ns/ckpt/data/{blob}"
    assert fs.cat_file(key) == data
    # Same size, one byte flipped (only the sha1 tells); or the last byte cut off.
    fs.pipe_file(key, data[:100] + bytes([data[100] ^ 1]) + data[101:] if bad != "big.bin" else data[:-1])

    out = tmp_path / "out"
    with pytest.raises(BlobIntegrityError, match=f"{blob} \\(for {bad}\\).*does not match its size and sha1"):
        store.load_directory("ns", "ckpt", str(out), progress_bar=False)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # Nothing placed, and no partial copy of the damaged file anywhere, staged or not.
    assert not [p for p in left if not p.startswith((".kara/", ".kara-staging/"))]
    assert not [p for p in left if p.rpartition("/")[2].startswith(bad.rpartition("/")[2])]

    fs.pipe_file(key, data)  # repaired: the same load now completes
    store.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert {rel: (out / rel).read_bytes() for rel in files} == files


def test_a_server_in_its_own_process_serves_counts_and_stops() -> None:
    server = S3TestServer(process=True).start()
    child = server._child
    try:
        bucket = server.create_bucket()
        server.reset_requests()
        with KaraStorage(server.url(bucket), **server.options) as store:
            with store.open_dataset("ns", "k", "w", version="v1") as ds:
                ds.write({"a": 1})
        assert server.requests > 0 and server.cpu_seconds > 0
    finally:
        server.stop()
    assert child is not None and child.poll() is not None


def test_a_server_in_its_own_process_dies_with_the_process_that_started_it() -> None:
    # A benchmark killed by a signal runs no cleanup: its moto child must not outlive it.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from kara_fsspec.testing import S3TestServer\n"
            "server = S3TestServer(process=True).start()\n"
            "print(server._child.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # serving
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("moto's server outlived the process that started it")
