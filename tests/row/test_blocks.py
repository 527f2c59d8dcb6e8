"""Block streams: the N.blk files of a folder read and written as one byte stream."""

from __future__ import annotations

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
