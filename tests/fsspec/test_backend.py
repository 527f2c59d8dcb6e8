"""Details of the fsspec backend that the conformance suites do not reach."""

from __future__ import annotations

import gc
import io
import os

import pytest
from kara_fsspec import backend as fsspec_backend

from kara_core.backend import Backend
from kara_core.errors import BackendError


class _ShortReads(io.RawIOBase):
    """A stream that returns at most 700 bytes per read (as pipes and sockets may)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        n = 700 if n < 0 else min(n, 700)
        piece = self._data[self._at : self._at + n]
        self._at += len(piece)
        return piece


@pytest.mark.parametrize("kind", ["memory_backend", "local_backend", "s3_backend"])
def test_long_streams_are_written_through_the_filesystems_writer(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend: Backend = request.getfixturevalue(kind)
    monkeypatch.setattr(fsspec_backend, "WHOLE_PUT", 1000)
    data = os.urandom(50_000)
    backend.put("long/stream.bin", _ShortReads(data))  # type: ignore[arg-type]
    backend.put("long/short.bin", _ShortReads(data[:600]))  # type: ignore[arg-type]
    assert backend.read("long/stream.bin") == data
    assert backend.read("long/short.bin") == data[:600]
    assert sorted(backend.list("long/")) == ["long/short.bin", "long/stream.bin"]


def test_local_stores_map_files_and_append_in_place(local_backend: Backend) -> None:
    assert local_backend.capabilities.local_path and local_backend.capabilities.native_appends
    appender = local_backend.open_append("a/0.blk")
    appender.append(b"abc")
    appender.flush()
    appender.close()
    again = local_backend.open_append("a/0.blk")
    assert again.position == 3
    again.append(b"def")
    again.close()
    path = local_backend.local_path("a/0.blk")
    assert path is not None and open(path, "rb").read() == b"abcdef"


def test_cleanup_removes_old_temporary_objects_only(memory_backend: Backend) -> None:
    fs = memory_backend.fs  # type: ignore[attr-defined]
    root = memory_backend.root  # type: ignore[attr-defined]
    fs.pipe_file(f"{root}/k/obj{fsspec_backend.TMP_MARK}dead", b"left by a crash")
    memory_backend.put("k/obj", b"kept")
    assert list(memory_backend.list("k/")) == ["k/obj"]
    assert memory_backend.cleanup("k/", older_than=3600) == 0
    assert memory_backend.cleanup("k/", older_than=-1) == 1
    assert sorted(fs.find(f"{root}/k")) == [f"{root}/k/obj"]


def test_translated_errors_keep_no_frame_of_the_client_library_alive(
    memory_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client library's frame holding a view of the caller's buffer (as s3fs's request
    # frames hold bodies): once kara's error is raised, nothing may keep that frame, even
    # while the error itself is still referenced, and with the garbage collector off.
    buffer = bytearray(b"x" * 1000)

    def failing(*args: object, **kwargs: object) -> bytes:
        view = memoryview(buffer)  # noqa: F841 - the frame's buffer export is the point
        try:
            raise ConnectionResetError("first attempt")
        except ConnectionResetError:
            raise OSError("the connection broke") from None

    monkeypatch.setattr(memory_backend.fs, "cat_file", failing)  # type: ignore[attr-defined]
    gc.disable()
    try:
        with pytest.raises(BackendError, match="the connection broke") as info:
            memory_backend.read("some/object", 0, 10)
        assert info.value.__context__ is None and info.value.__cause__ is None
        buffer.extend(b"y")  # BufferError if the failing frame were still alive
    finally:
        gc.enable()
