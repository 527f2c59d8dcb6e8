"""Local-disk direct I/O (kara_core.localdisk) and the file:// store's use of it.

Where the bytes went (page cache or not) is only observable on some filesystems and
kernels, so each test that looks asks for the capability it needs through a fixture
that probes the test's temporary folder and skips, saying what is missing, when it is
absent: ``observable_cache`` (RWF_NOWAIT reads tell cached pages from others),
``direct_bypasses_cache`` (O_DIRECT is accepted and keeps data out of the page cache: a
disk filesystem, not tmpfs), ``direct_alignment_enforced`` (a misaligned direct write
is refused) and ``kernel_cachestat`` (Linux 6.5+). Byte-for-byte results are checked
everywhere.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kara_file import FileBackend, FileOptions

from kara_core.errors import ConfigurationError
from kara_core.localdisk import _direct as directio
from kara_core.localdisk import write_file
from kara_core.localdisk._direct import (
    ALIGN,
    AUTO,
    DIRECT_MIN,
    copy_to_fd,
    direct_io_setting,
    memory_reader,
    set_direct,
)
from kara_core.url import open_backend

MiB = 1024 * 1024
#: Sizes around the alignment and direct-I/O thresholds.
BOUNDARY_SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, DIRECT_MIN - 1, DIRECT_MIN, DIRECT_MIN + 1, DIRECT_MIN + ALIGN + 7]


def _copy(path: Path, data: bytes, direct: bool | str, direct_min: int = DIRECT_MIN) -> int:
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


# -- capability probes ---------------------------------------------------------------


#: Probes of the page cache, each on a page written afresh, before concluding it cannot be
#: observed: on a busy host one read may miss a page just written (reclaimed at once,
#: or locked for writeback), which must not skip the tests that need the capability.
PROBES = 5


def _seen_on_a_fresh_page(probe: Path, seen: Callable[[Path], bool]) -> bool:
    """Whether ``seen(probe)`` holds for one of PROBES pages written afresh at ``probe``."""
    try:
        for _ in range(PROBES):
            probe.write_bytes(b"x" * ALIGN)
            if seen(probe):
                return True
        return False
    finally:
        probe.unlink(missing_ok=True)


def _why_the_cache_is_not_observable(folder: Path) -> str | None:
    try:
        if _seen_on_a_fresh_page(folder / ".probe-cache", _page_cached):
            return None
    except OSError as exc:
        return f"the filesystem of {folder} does not take RWF_NOWAIT reads ({exc.strerror})"
    return f"a page just written in {folder} is not reported cached by an RWF_NOWAIT read ({PROBES} tries)"


def _direct_write(folder: Path, name: str, offset_in_buffer: int) -> str | None:
    """Write one page with O_DIRECT from the aligned buffer shifted by ``offset_in_buffer``.

    Returns None when the write went through, else why not.
    """
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if not set_direct(fd, True):
            return f"the filesystem of {folder} refuses O_DIRECT"
        try:
            os.write(fd, directio.aligned_buffer()[offset_in_buffer : offset_in_buffer + ALIGN])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return f"the filesystem of {folder} refuses this direct write (EINVAL)"
    finally:
        os.close(fd)
    return None


@pytest.fixture
def observable_cache(tmp_path: Path) -> None:
    """Skip unless RWF_NOWAIT reads tell whether a page of ``tmp_path`` is cached."""
    reason = _why_the_cache_is_not_observable(tmp_path)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def direct_bypasses_cache(tmp_path: Path, observable_cache: None) -> None:
    """Skip unless O_DIRECT writes in ``tmp_path`` are accepted and leave no cached page."""
    reason = _direct_write(tmp_path, ".probe-direct", 0)
    try:
        if reason is None and _page_cached(tmp_path / ".probe-direct"):
            reason = f"direct writes in {tmp_path} land in the page cache anyway (a memory filesystem such as tmpfs)"
    finally:
        (tmp_path / ".probe-direct").unlink()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def direct_alignment_enforced(tmp_path: Path) -> None:
    """Skip unless ``tmp_path`` takes aligned direct writes and refuses misaligned ones."""
    reason = _direct_write(tmp_path, ".probe-aligned", 0)
    if reason is None and _direct_write(tmp_path, ".probe-misaligned", 1) is None:
        reason = f"the filesystem of {tmp_path} takes misaligned direct writes (it emulates O_DIRECT)"
    for name in (".probe-aligned", ".probe-misaligned"):
        (tmp_path / name).unlink(missing_ok=True)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def kernel_cachestat(tmp_path: Path, observable_cache: None) -> None:
    """Skip unless the kernel answers cachestat (Linux 6.5+) about a page just written."""

    def answered(probe: Path) -> bool:
        fd = os.open(probe, os.O_RDONLY)
        try:
            return bool(directio.cached(fd, 0, ALIGN))
        finally:
            os.close(fd)

    if not _seen_on_a_fresh_page(tmp_path / ".probe-cachestat", answered):
        pytest.skip("this kernel has no cachestat system call (Linux 6.5+) or it does not report a page just written")


@pytest.fixture
def o_direct_flag() -> None:
    """Skip unless this platform has the O_DIRECT flag at all (Linux, FreeBSD)."""
    if not directio._O_DIRECT:
        pytest.skip("this platform has no O_DIRECT flag")


# -- tests -----------------------------------------------------------------------------


@pytest.fixture
def slow_page_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffered write counts as slow: AUTO copies switch to direct at once."""
    monkeypatch.setattr(directio, "SLOW_BUFFERED", -1.0)


@pytest.fixture
def cheap_page_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """No buffered write counts as slow: AUTO copies stay in the page cache."""
    monkeypatch.setattr(directio, "SLOW_BUFFERED", float("inf"))


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_direct_and_buffered_copies_are_byte_identical(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert _copy(tmp_path / "direct", data, direct=True) == size
    assert _copy(tmp_path / "buffered", data, direct=False) == size
    assert (tmp_path / "direct").read_bytes() == (tmp_path / "buffered").read_bytes() == data


@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 3 * DIRECT_MIN + 5 * MiB + 3])
@pytest.mark.parametrize("page_cache", ["slow_page_cache", "cheap_page_cache"])
def test_auto_copies_are_byte_identical(
    tmp_path: Path, size: int, page_cache: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(page_cache)
    data = os.urandom(size)
    assert _copy(tmp_path / "auto", data, direct=AUTO) == size
    assert (tmp_path / "auto").read_bytes() == data


def test_auto_writes_through_the_page_cache_while_it_is_cheap(
    tmp_path: Path, cheap_page_cache: None, observable_cache: None
) -> None:
    _copy(tmp_path / "big", os.urandom(2 * DIRECT_MIN + 100), direct=AUTO)
    assert all(_page_cached(tmp_path / "big", offset) for offset in (0, DIRECT_MIN, 2 * DIRECT_MIN))


def test_auto_goes_direct_from_the_first_slow_write_on(
    tmp_path: Path, slow_page_cache: None, direct_bypasses_cache: None
) -> None:
    _copy(tmp_path / "big", os.urandom(2 * DIRECT_MIN + 100), direct=AUTO)
    # The first megabyte was the (slow) buffered write; everything after it went direct.
    assert _page_cached(tmp_path / "big", 0)
    assert not any(_page_cached(tmp_path / "big", offset) for offset in (MiB, DIRECT_MIN, 2 * DIRECT_MIN - ALIGN))


def test_auto_measures_the_thread_cpu_time_of_each_megabyte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_bypasses_cache: None
) -> None:
    # Buffered writes that cost 0.5 ms each are cheap; the fourth costs 5 ms: from there
    # on the file goes direct.
    clock = iter([0.0, 0.0005, 1.0, 1.0005, 2.0, 2.0005, 3.0, 3.005])
    monkeypatch.setattr(directio.time, "thread_time", lambda: next(clock))
    data = os.urandom(DIRECT_MIN)
    _copy(tmp_path / "big", data, direct=AUTO)
    assert all(_page_cached(tmp_path / "big", offset) for offset in (0, MiB, 2 * MiB, 3 * MiB))
    assert not any(_page_cached(tmp_path / "big", offset) for offset in (4 * MiB, 7 * MiB))
    assert (tmp_path / "big").read_bytes() == data


@pytest.mark.parametrize(
    ("env", "option", "expected"),
    [
        (None, AUTO, AUTO),
        (None, True, True),
        (None, False, False),
        ("0", AUTO, False),
        ("off", True, False),
        ("1", False, True),
        ("always", AUTO, True),
        ("auto", False, AUTO),
    ],
)
def test_kara_direct_io_overrides_the_store_option(
    monkeypatch: pytest.MonkeyPatch, env: str | None, option: bool | str, expected: bool | str, o_direct_flag: None
) -> None:
    if env is None:
        monkeypatch.delenv("KARA_DIRECT_IO", raising=False)
    else:
        monkeypatch.setenv("KARA_DIRECT_IO", env)
    assert direct_io_setting(option) == expected


@pytest.mark.parametrize("size", [1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 5])
def test_small_files_forced_direct_keep_their_unaligned_tail(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    _copy(tmp_path / "f", data, direct=True, direct_min=0)
    assert (tmp_path / "f").read_bytes() == data


def test_a_large_copy_bypasses_the_page_cache(tmp_path: Path, direct_bypasses_cache: None) -> None:
    _copy(tmp_path / "big", os.urandom(DIRECT_MIN + 100), direct=True)
    assert not _page_cached(tmp_path / "big", 0)
    _copy(tmp_path / "small", os.urandom(DIRECT_MIN - 1), direct=True)
    assert _page_cached(tmp_path / "small", 0)


def test_a_write_the_kernel_refuses_to_do_direct_goes_on_buffered(
    tmp_path: Path, direct_alignment_enforced: None
) -> None:
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


def test_direct_reads_take_cached_parts_from_the_cache_and_leave_the_rest_uncached(
    tmp_path: Path, direct_bypasses_cache: None, kernel_cachestat: None
) -> None:
    # The reader alone is under test: the file's cache state is set up explicitly (a
    # buffered write, then everything past the first MiB dropped from the cache) rather
    # than left to an AUTO copy, and is observed with cachestat, which does no I/O (an
    # RWF_NOWAIT probe of a missing page starts readahead). The first MiB and the rest
    # are two writes: the kernel caches files in large folios, and one folio holding
    # pages on both sides of the MiB would survive the drop.
    path = tmp_path / "f"
    data = os.urandom(2 * DIRECT_MIN + ALIGN + 7)
    with open(path, "wb", buffering=0) as fh:
        fh.write(data[:MiB])
        fh.write(data[MiB:])
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, MiB, 0, os.POSIX_FADV_DONTNEED)
        assert directio.cached(fd, 0, MiB), "the first MiB should still be cached"
        for offset in range(MiB, len(data), MiB):
            assert not directio.cached(fd, offset, ALIGN), f"the kernel kept the page at {offset} cached"
        buf = directio.aligned_buffer()[:MiB]
        out = bytearray()
        with directio.DirectReader(str(path), direct=True) as reader:
            assert reader.direct
            while n := reader.readinto(buf):
                out += buf[:n]
        assert out == data
        assert directio.cached(fd, 0, MiB)
        # Read direct: still not cached, anywhere past the first MiB.
        recached = [offset for offset in range(MiB, len(data) - ALIGN, ALIGN) if directio.cached(fd, offset, ALIGN)]
        assert recached == []
    finally:
        os.close(fd)


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


def test_the_direct_io_option_true_writes_large_objects_around_the_page_cache(
    tmp_path: Path, direct_bypasses_cache: None
) -> None:
    backend = FileBackend(str(tmp_path / "store"), FileOptions(direct_io=True))
    backend.put("big.bin", os.urandom(DIRECT_MIN))
    assert not _page_cached(tmp_path / "store" / "big.bin")


def test_file_stores_write_large_objects_auto_by_default(
    tmp_path: Path, slow_page_cache: None, direct_bypasses_cache: None
) -> None:
    backend = FileBackend(str(tmp_path / "store"))
    assert backend.options.direct_io == AUTO
    data = os.urandom(DIRECT_MIN + MiB)
    backend.put("big.bin", data)
    with backend.open_batch() as batch:
        batch.put("batch.bin", data)
        batch.commit()
    for name in ("big.bin", "batch.bin"):
        assert not _page_cached(tmp_path / "store" / name, 4 * MiB)
        assert backend.read(name) == data


@pytest.mark.parametrize(("query", "expected"), [("auto", AUTO), ("true", True), ("false", False), (False, False)])
def test_the_direct_io_option_takes_auto_or_a_boolean(tmp_path: Path, query: str, expected: bool | str) -> None:
    assert open_backend(f"file://{tmp_path}", direct_io=query).options.direct_io == expected


def test_the_direct_io_option_off_writes_through_the_page_cache(tmp_path: Path, observable_cache: None) -> None:
    backend = FileBackend(str(tmp_path / "store"), FileOptions(direct_io=False))
    backend.put("big.bin", os.urandom(DIRECT_MIN))
    assert _page_cached(tmp_path / "store" / "big.bin")


def test_kara_direct_io_0_turns_direct_io_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, observable_cache: None
) -> None:
    monkeypatch.setenv("KARA_DIRECT_IO", "0")
    assert not directio.direct_io_allowed()
    FileBackend(str(tmp_path / "store")).put("big.bin", os.urandom(DIRECT_MIN))
    assert _page_cached(tmp_path / "store" / "big.bin")


def test_cached_tells_which_ranges_are_in_the_page_cache(
    tmp_path: Path, slow_page_cache: None, direct_bypasses_cache: None, kernel_cachestat: None
) -> None:
    _copy(tmp_path / "f", os.urandom(DIRECT_MIN + MiB), direct=AUTO)  # the first MiB cached
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert directio.cached(fd, 0, MiB)
        assert not directio.cached(fd, 0, 2 * MiB)
        assert not directio.cached(fd, 4 * MiB, MiB)
        assert not directio.cached(fd, 0, 0)
    finally:
        os.close(fd)


def test_a_cached_file_is_read_from_the_cache_to_its_end(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cheap_page_cache: None,
    direct_bypasses_cache: None,
    kernel_cachestat: None,
) -> None:
    # 10 MiB: the second 8 MiB read finds only 2 MiB, all of them cached.
    data = os.urandom(DIRECT_MIN + 2 * MiB)
    _copy(tmp_path / "f", data, direct=AUTO)
    direct_reads: list[int] = []
    real_preadv = os.preadv

    def preadv(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        if fd == reader._direct_fd:
            direct_reads.append(offset)
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(directio.os, "preadv", preadv)
    out = bytearray()
    buf = directio.aligned_buffer()
    with directio.DirectReader(str(tmp_path / "f"), direct=True) as reader:
        while n := reader.readinto(buf):
            out += buf[:n]
    assert out == data
    assert direct_reads == []


def test_without_cachestat_every_aligned_read_goes_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cheap_page_cache: None, direct_bypasses_cache: None
) -> None:
    data = os.urandom(DIRECT_MIN + ALIGN + 7)
    _copy(tmp_path / "f", data, direct=AUTO)  # all of it cached
    monkeypatch.setattr(directio, "_has_cachestat", False)
    reads: list[int] = []
    real_preadv = os.preadv
    direct_fds: set[int] = set()

    def preadv(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        reads.append(fd in direct_fds)
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(directio.os, "preadv", preadv)
    out = bytearray()
    buf = directio.aligned_buffer()
    with directio.DirectReader(str(tmp_path / "f"), direct=True) as reader:
        direct_fds.add(reader._direct_fd)
        while n := reader.readinto(buf):
            out += buf[:n]
    assert out == data
    # The first full chunk went direct, the unaligned end through the cache.
    assert reads[0] is True and reads[-1] is False


@pytest.mark.parametrize("size", [0, ALIGN + 1, DIRECT_MIN + ALIGN + 7])
@pytest.mark.parametrize("direct_io", [AUTO, True, False])
def test_write_file_writes_bytes_and_streams_whole(tmp_path: Path, size: int, direct_io: bool | str) -> None:
    data = os.urandom(size)
    (tmp_path / "source").write_bytes(data)
    for name, source in (("from-bytes", data), ("from-stream", open(tmp_path / "source", "rb"))):
        fd = os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            assert write_file(fd, source, direct_io=direct_io) == size
        finally:
            os.close(fd)
            if not isinstance(source, bytes):
                source.close()
        assert (tmp_path / name).read_bytes() == data


def test_write_file_refuses_an_unknown_direct_io_setting(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(ConfigurationError, match="direct_io must be 'auto', True or False"):
            write_file(fd, b"data", direct_io="sometimes")  # type: ignore[arg-type]
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b""
