"""Direct I/O (kara_core.directio) and the file:// store's use of it for large objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kara_file import FileBackend
from kara_file.backend import FileOptions

from kara_core import directio
from kara_core.directio import ALIGN, DIRECT_MIN, copy_to_fd, memory_reader, set_direct

MiB = 1024 * 1024
#: Sizes around the alignment and direct-I/O thresholds.
BOUNDARY_SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + 1, DIRECT_MIN + ALIGN + 7]


def _copy(path: Path, data: bytes, direct: bool, direct_min: int = DIRECT_MIN) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        return copy_to_fd(fd, memory_reader(data), direct=direct, direct_min=direct_min)
    finally:
        os.close(fd)


def _page_cached(path: Path, offset: int = 0) -> bool:
    # RWF_NOWAIT: a buffered read that fails rather than go to the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(1)], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_direct_and_buffered_copies_are_byte_identical(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert _copy(tmp_path / "direct", data, direct=True) == size
    assert _copy(tmp_path / "buffered", data, direct=False) == size
    assert (tmp_path / "direct").read_bytes() == (tmp_path / "buffered").read_bytes() == data


@pytest.mark.parametrize("size", [1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 5])
def test_small_files_forced_direct_keep_their_unaligned_tail(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    _copy(tmp_path / "f", data, direct=True, direct_min=0)
    assert (tmp_path / "f").read_bytes() == data


def test_a_large_copy_bypasses_the_page_cache(tmp_path: Path) -> None:
    # Needs a disk filesystem (the test's tmp folder): on tmpfs the cache is the storage.
    _copy(tmp_path / "big", os.urandom(DIRECT_MIN + 100), direct=True)
    assert not _page_cached(tmp_path / "big", 0)
    _copy(tmp_path / "small", os.urandom(DIRECT_MIN - 1), direct=True)
    assert _page_cached(tmp_path / "small", 0)


def test_a_write_the_kernel_refuses_to_do_direct_goes_on_buffered(tmp_path: Path) -> None:
    # A buffer one byte off its page: the kernel answers EINVAL to the direct write.
    buf = directio.aligned_buffer()
    data = os.urandom(2 * ALIGN)
    buf[1 : 1 + len(data)] = data
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert set_direct(fd, True)
        assert directio._write_chunk(fd, buf[1 : 1 + len(data)], direct=True) is False
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("size", [DIRECT_MIN - 1, DIRECT_MIN + ALIGN + 7])
def test_direct_reads_return_the_file_at_any_size(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    _copy(tmp_path / "f", data, direct=True)
    buf = directio.aligned_buffer()
    out = bytearray()
    with directio.DirectReader(str(tmp_path / "f"), direct=True) as reader:
        while n := reader.readinto(buf):
            out += buf[:n]
    assert out == data


@pytest.mark.parametrize("size", [DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + ALIGN + 7])
def test_file_store_puts_of_large_objects_round_trip(tmp_path: Path, size: int) -> None:
    backend = FileBackend(str(tmp_path / "store"))
    data = os.urandom(size)
    backend.put("bytes.bin", data)
    with open(tmp_path / "source", "wb") as fh:
        fh.write(data)
    with open(tmp_path / "source", "rb") as fh:
        backend.put("stream.bin", fh)
    with backend.open_batch() as batch:
        batch.put("batch.bin", data)
        batch.commit()
    for name in ("bytes.bin", "stream.bin", "batch.bin"):
        assert backend.read(name) == data


def test_file_store_writes_large_objects_around_the_page_cache(tmp_path: Path) -> None:
    backend = FileBackend(str(tmp_path / "store"))
    backend.put("big.bin", os.urandom(DIRECT_MIN))
    assert not _page_cached(tmp_path / "store" / "big.bin")


def test_the_direct_io_option_off_writes_through_the_page_cache(tmp_path: Path) -> None:
    backend = FileBackend(str(tmp_path / "store"), FileOptions(direct_io=False))
    backend.put("big.bin", os.urandom(DIRECT_MIN))
    assert _page_cached(tmp_path / "store" / "big.bin")


def test_kara_direct_io_0_turns_direct_io_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARA_DIRECT_IO", "0")
    assert not directio.direct_io_allowed()
    FileBackend(str(tmp_path / "store")).put("big.bin", os.urandom(DIRECT_MIN))
    assert _page_cached(tmp_path / "store" / "big.bin")
