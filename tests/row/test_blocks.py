"""Block streams: the N.blk files of a folder read and written as one byte stream."""

from __future__ import annotations

import io
import itertools
import random

import pytest

from kara_core.backend import Backend
from kara_core.errors import CorruptDatasetError
from kara_core.row.blocks import (
    BlockWriter,
    MappedBlocks,
    RemoteBlocks,
    open_blocks,
    probe_blocks,
    truncate_stream,
)
from kara_core.url import open_backend

_names = itertools.count()
PREFIX = "row/ns/key/1/data/"


@pytest.fixture(params=["file", "memory"])
def backend(request, tmp_path) -> Backend:
    if request.param == "file":
        return open_backend(f"file://{tmp_path}/store")
    return open_backend(f"memory://blocks-{next(_names)}")


def _stream(backend: Backend, size: int, block: int) -> bytes:
    data = random.Random(size).randbytes(size)
    writer = BlockWriter(backend, PREFIX, [], block)
    step = max(777, size // 40)  # odd-sized appends, not too many (memory:// copies on append)
    for start in range(0, size, step):
        writer.write(data[start : start + step])
    writer.close()
    return data


def test_writer_cuts_blocks_at_exactly_max_file_size(backend: Backend) -> None:
    _stream(backend, 10_000, 4096)
    # As 2.x: a full block is followed at once by the next (here empty) one.
    assert probe_blocks(backend, PREFIX) == [4096, 4096, 1808]
    _stream(backend, 0, 4096)


def test_writer_continues_the_last_block(backend: Backend) -> None:
    writer = BlockWriter(backend, PREFIX, [], 1000)
    writer.write(b"a" * 1500)
    writer.close()
    writer = BlockWriter(backend, PREFIX, probe_blocks(backend, PREFIX), 1000)
    assert writer.total == 1500
    writer.write(b"b" * 600)
    writer.close()
    assert probe_blocks(backend, PREFIX) == [1000, 1000, 100]
    assert backend.read(PREFIX + "1.blk") == b"a" * 500 + b"b" * 500


def test_reader_returns_exact_ranges_across_blocks(backend: Backend) -> None:
    data = _stream(backend, 50_000, 4096)
    reader = open_blocks(backend, PREFIX, probe_blocks(backend, PREFIX), len(data))
    rng = random.Random(1)
    try:
        for _ in range(300):
            start = rng.randrange(len(data))
            end = min(len(data), start + rng.choice([0, 1, 7, 4096, 9000, 30_000]))
            assert reader.read(start, end) == data[start:end]
            assert reader.read_paged(start, end) == data[start:end]
    finally:
        reader.close()


def test_sequential_read_ahead_across_windows_returns_exact_bytes(backend: Backend) -> None:
    data = _stream(backend, 200_000, 8192)
    reader = RemoteBlocks(backend, PREFIX, probe_blocks(backend, PREFIX), len(data), window=20_000)
    rng = random.Random(2)
    position = 0
    try:
        while position < len(data):
            end = min(len(data), position + rng.choice([1, 100, 5000, 19_999, 45_000]))
            assert reader.read_ahead(position, end) == data[position:end]
            position = end
        # Jumping backwards or far ahead falls back to a fresh window.
        assert reader.read_ahead(10, 50) == data[10:50]
        assert reader.read_ahead(150_000, 150_100) == data[150_000:150_100]
    finally:
        reader.close()


def test_reader_never_reads_past_its_limit(backend: Backend) -> None:
    data = _stream(backend, 10_000, 4096)
    reader = open_blocks(backend, PREFIX, probe_blocks(backend, PREFIX), 5000)
    try:
        assert reader.read(4000, 9000) == data[4000:5000]
    finally:
        reader.close()


def test_local_reader_maps_files_and_remote_reader_does_not(tmp_path) -> None:
    local = open_backend(f"file://{tmp_path}/store")
    _stream(local, 1000, 4096)
    reader = open_blocks(local, PREFIX, probe_blocks(local, PREFIX), 1000)
    assert isinstance(reader, MappedBlocks)
    assert reader.single is not None
    reader.close()
    remote = open_backend(f"memory://blocks-{next(_names)}")
    _stream(remote, 1000, 4096)
    assert isinstance(open_blocks(remote, PREFIX, [1000], 1000), RemoteBlocks)


def test_a_block_that_shrank_is_reported_with_its_path(backend: Backend) -> None:
    _stream(backend, 10_000, 4096)
    sizes = probe_blocks(backend, PREFIX)
    backend.put(PREFIX + "1.blk", b"short")
    reader = RemoteBlocks(backend, PREFIX, sizes, 10_000)
    with pytest.raises(CorruptDatasetError, match=r"1\.blk"):
        reader.read(4000, 9000)


@pytest.mark.parametrize("cut", [0, 100, 4096, 5000, 8192, 9999])
def test_truncate_stream_cuts_at_any_offset(backend: Backend, cut: int) -> None:
    data = _stream(backend, 10_000, 4096)
    sizes = truncate_stream(backend, PREFIX, probe_blocks(backend, PREFIX), cut)
    assert probe_blocks(backend, PREFIX) == sizes
    assert sum(sizes) == cut
    reader = open_blocks(backend, PREFIX, sizes, cut)
    try:
        assert reader.read(0, cut) == data[:cut]
    finally:
        reader.close()


def test_parallel_read_ahead_splits_windows_into_concurrent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from kara_core.row import blocks

    monkeypatch.setattr(blocks, "PARALLEL_PART", 2 * 1024 * 1024)  # 8 MiB parts: a 2 MiB stand-in
    backend = open_backend(f"memory://blocks-{next(_names)}")
    backend.capabilities = replace(backend.capabilities, parallel_reads=True)
    data = _stream(backend, 11 * 1024 * 1024 + 5, 4 * 1024 * 1024)
    reader = RemoteBlocks(backend, PREFIX, probe_blocks(backend, PREFIX), len(data), window=9 * 1024 * 1024)
    try:
        position = 0
        while position < len(data):
            end = min(len(data), position + 1_000_003)
            assert reader.read_ahead(position, end) == data[position:end]
            position = end
        assert reader._parts_pool is not None  # the windows were fetched in parts
    finally:
        reader.close()


def _streamed(monkeypatch: pytest.MonkeyPatch) -> tuple[Backend, list[tuple[str, int, int]]]:
    """A memory:// backend claiming streamed reads, recording its open_range calls, and
    pieces of 3,000 bytes (at most 3 waiting per stream)."""
    from dataclasses import replace

    from kara_core.row import blocks

    monkeypatch.setattr(blocks, "STREAM_PIECE", 3000)
    monkeypatch.setattr(blocks, "READ_AHEAD", 9000)
    backend = open_backend(f"memory://blocks-{next(_names)}")
    backend.capabilities = replace(backend.capabilities, streamed_reads=True, parallel_reads=True)
    opened: list[tuple[str, int, int]] = []
    read = backend.read

    def recording(path: str, start: int, end: int) -> io.BytesIO:
        opened.append((path, start, end))
        return io.BytesIO(read(path, start, end))

    def no_ranged_reads(*args: object) -> bytes:
        raise AssertionError(f"a sequential reader with streamed reads sent a ranged read {args}")

    monkeypatch.setattr(backend, "open_range", recording)
    monkeypatch.setattr(backend, "read", no_ranged_reads)
    return backend, opened


def test_streamed_read_ahead_opens_each_block_once_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, opened = _streamed(monkeypatch)
    data = random.Random(5).randbytes(50_000)
    for number, start in enumerate(range(0, len(data), 8192)):
        backend.put(f"{PREFIX}{number}.blk", data[start : start + 8192])
    sizes = [min(8192, len(data) - start) for start in range(0, len(data), 8192)]
    limit = 45_000  # inside block 5 (40,960-49,152): bytes past it are never asked for
    reader = RemoteBlocks(backend, PREFIX, sizes, limit)
    rng = random.Random(3)
    position = 0
    try:
        while position < limit:
            end = min(limit, position + rng.choice([1, 100, 2999, 3001, 7000, 20_000]))
            assert reader.read_ahead(position, end) == data[position:end]
            position = end
        assert reader.read_ahead(limit, limit + 10) == b""
    finally:
        reader.close()
    expected = [(f"{PREFIX}{n}.blk", 0, 8192) for n in range(5)] + [(f"{PREFIX}5.blk", 0, limit - 5 * 8192)]
    assert sorted(opened) == expected  # two blocks stream at once: their threads open them in either order


def test_a_streamed_reader_jumping_starts_the_streams_where_it_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, opened = _streamed(monkeypatch)
    data = random.Random(6).randbytes(40_000)
    for number, start in enumerate(range(0, len(data), 10_000)):
        backend.put(f"{PREFIX}{number}.blk", data[start : start + 10_000])
    reader = RemoteBlocks(backend, PREFIX, [10_000] * 4, len(data))
    try:
        assert reader.read_ahead(0, 100) == data[:100]
        assert reader.read_ahead(25_000, 26_000) == data[25_000:26_000]  # forward, two blocks on
        assert reader.read_ahead(5, 12_000) == data[5:12_000]  # backwards, across a block's end
    finally:
        reader.close()
    starts = [(path, start) for path, start, _ in opened]
    assert (f"{PREFIX}0.blk", 0) in starts
    assert (f"{PREFIX}2.blk", 5000) in starts  # the stream of block 2 starts where the reader landed
    assert (f"{PREFIX}0.blk", 5) in starts


def test_a_streamed_block_that_shrank_is_reported_with_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = _streamed(monkeypatch)
    data = random.Random(7).randbytes(20_000)
    backend.put(f"{PREFIX}0.blk", data[:10_000])
    backend.put(f"{PREFIX}1.blk", b"short")
    reader = RemoteBlocks(backend, PREFIX, [10_000, 10_000], 20_000)
    try:
        assert reader.read_ahead(0, 10_000) == data[:10_000]
        with pytest.raises(CorruptDatasetError, match=r"1\.blk"):
            reader.read_ahead(10_000, 20_000)
        # The failed streams are dropped: a retry asks again (and fails the same way).
        with pytest.raises(CorruptDatasetError, match=r"1\.blk"):
            reader.read_ahead(10_000, 20_000)
    finally:
        reader.close()


def test_closing_a_streamed_reader_stops_its_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = _streamed(monkeypatch)
    data = random.Random(8).randbytes(200_000)
    backend.put(f"{PREFIX}0.blk", data[:100_000])
    backend.put(f"{PREFIX}1.blk", data[100_000:])
    reader = RemoteBlocks(backend, PREFIX, [100_000, 100_000], len(data))
    assert reader.read_ahead(0, 10) == data[:10]
    feeds = list(reader._feeds)
    assert len(feeds) == 2  # this block's stream and the next one's, each waiting on a full queue
    reader.close()
    for feed in feeds:
        feed._thread.join(timeout=5)
        assert not feed._thread.is_alive()  # each stream's thread returned


def test_a_streamed_reader_never_closed_does_not_hold_up_the_interpreter_exit() -> None:
    # A reader dropped without close() at exit (a script's global dataset) leaves its
    # streams waiting for a consumer: their threads must not be joined at exit.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        from dataclasses import replace
        from kara_core.row import blocks
        from kara_core.row.blocks import RemoteBlocks
        from kara_core.url import open_backend

        blocks.STREAM_PIECE, blocks.READ_AHEAD = 1000, 3000
        backend = open_backend("memory://exit-hang")
        backend.capabilities = replace(backend.capabilities, streamed_reads=True, parallel_reads=True)
        backend.put("data/0.blk", bytes(100_000))
        reader = RemoteBlocks(backend, "data/", [100_000], 100_000)
        assert reader.read_ahead(0, 10) == bytes(10)
        print("read", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "read\n"
