"""Injected faults: retried reads and writes return exactly the right bytes, nothing twice."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.backend import Backend
from kara_core.errors import BackendError, PermissionDeniedError
from kara_core.url import open_backend

from .conftest import FAST

DATA = bytes(range(256)) * 4096  # 1 MiB, position-dependent


@pytest.fixture
def small_parts(oss_server: OSSTestServer) -> Iterator[Backend]:
    """A backend that uploads anything above 100 KiB in 100 KiB parts."""
    backend = open_backend(
        oss_server.url("mp"), multipart_threshold=100 * 1024, part_size=100 * 1024, **oss_server.options, **FAST
    )
    yield backend
    backend.close()


def test_read_dropped_mid_body_is_retried_and_exact(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_backend.put("obj", DATA)
    fault = oss_server.inject("drop_mid_body", "GetObject", times=2)
    assert oss_backend.read("obj") == DATA
    assert oss_backend.read("obj", 1000, 300_000) == DATA[1000:300_000]
    assert fault.hits == 2


def test_open_read_resumes_where_the_connection_dropped(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_backend.put("obj", DATA)
    fault = oss_server.inject("drop_mid_body", "GetObject")
    with oss_backend.open_read("obj", 10) as stream:
        assert stream.read() == DATA[10:]
    assert fault.hits == 1
    assert oss_server.count("GetObject") == 2


def test_503_with_retry_after_is_waited_for_and_retried(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_backend.put("obj", b"payload")
    oss_server.inject("error", "GetObject", status=503, retry_after=0.3)
    start = time.monotonic()
    assert oss_backend.read("obj") == b"payload"
    assert time.monotonic() - start >= 0.3


def test_503_and_500_without_retry_after_are_retried(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_backend.put("obj", b"payload")
    oss_server.inject("error", "GetObjectMeta", times=2, status=503)
    oss_server.inject("error", "GetObjectMeta", status=500, code="InternalError")
    assert oss_backend.size("obj") == 7
    assert oss_server.count("GetObjectMeta") == 4


def test_slow_answer_times_out_and_is_retried(oss_server: OSSTestServer) -> None:
    backend = open_backend(oss_server.url("slow"), read_timeout=1.0, retry_budget=10, **oss_server.options)
    try:
        backend.put("obj", DATA)
        oss_server.inject("slow", "GetObject", delay=3.0)
        assert backend.read("obj", 5, 70_000) == DATA[5:70_000]
        assert oss_server.count("GetObject") == 2
    finally:
        backend.close()


def test_exhausted_retry_budget_raises_backend_error(oss_server: OSSTestServer) -> None:
    backend = open_backend(oss_server.url("x"), retry_budget=0.5, **oss_server.options)
    try:
        backend.put("obj", b"x")
        oss_server.inject("error", "GetObject", times=1000)
        start = time.monotonic()
        with pytest.raises(BackendError, match="retry budget"):
            backend.read("obj")
        assert time.monotonic() - start < 5
    finally:
        backend.close()


def test_append_whose_answer_was_lost_is_not_written_twice(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    appender = oss_backend.open_append("log.blk")
    appender.append(b"first,")
    fault = oss_server.inject("drop_after_apply", "AppendObject")
    appender.flush()
    appender.append(b"second")
    appender.close()
    assert fault.hits == 1
    assert oss_server.get("store/log.blk") == b"first,second"
    # The lost answer, the retry that found the bytes already there, the second append.
    assert oss_server.count("AppendObject") == 3


def test_append_dropped_before_it_applied_is_sent_again(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    appender = oss_backend.open_append("log.blk")
    appender.append(b"abc")
    appender.flush()
    oss_server.inject("drop", "AppendObject")
    oss_server.inject("error", "AppendObject", status=502, code="BadGateway")
    appender.append(b"def")
    appender.close()
    assert oss_server.get("store/log.blk") == b"abcdef"


def test_append_conflicting_with_another_writer_is_an_error(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    mine = oss_backend.open_append("log.blk")
    other = oss_backend.open_append("log.blk")
    other.append(b"theirs")
    other.close()
    mine.append(b"mine")
    with pytest.raises(BackendError, match="another writer"):
        mine.flush()
    assert oss_server.get("store/log.blk") == b"theirs"


def test_put_if_absent_whose_answer_was_lost_reports_created(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_server.inject("drop_after_apply", "PutObject", key="store/lock")
    assert oss_backend.put_if_absent("lock", b"token-1") is True
    assert oss_backend.put_if_absent("lock", b"token-2") is False
    assert oss_server.get("store/lock") == b"token-1"


def test_failed_parts_are_retried_and_the_object_is_exact(oss_server: OSSTestServer, small_parts: Backend) -> None:
    oss_server.inject("error", "UploadPart", times=3)
    oss_server.inject("drop", "UploadPart")
    small_parts.put("big", DATA)
    assert small_parts.read("big") == DATA
    assert oss_server.object_type("mp/big") == "Multipart"
    assert oss_server.count("UploadPart") == 11 + 4
    assert oss_server.pending_uploads() == 0


def test_lost_answer_of_complete_is_recognised(oss_server: OSSTestServer, small_parts: Backend) -> None:
    oss_server.inject("drop_after_apply", "CompleteMultipartUpload")
    small_parts.put("big", DATA)
    assert oss_server.get("mp/big") == DATA


def test_failed_multipart_upload_is_aborted(oss_server: OSSTestServer, small_parts: Backend) -> None:
    oss_server.inject("error", "UploadPart", key="mp/big", times=1000, status=403, code="AccessDenied")
    with pytest.raises(PermissionDeniedError):
        small_parts.put("big", DATA)
    assert oss_server.pending_uploads() == 0
    assert oss_server.get("mp/big") is None


def test_row_dataset_written_and_read_through_faults_is_exact(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    store = KaraStorage(oss_backend)
    records = [{"i": i, "text": "x" * (i % 50)} for i in range(2000)]
    oss_server.inject("drop_after_apply", "AppendObject", times=3)
    oss_server.inject("error", "AppendObject", times=2)
    with store.open_dataset("ns", "faulty", "w", version="1") as ds:
        for record in records:
            ds.write(record)
    oss_server.inject("drop_mid_body", "GetObject", times=3)
    oss_server.inject("error", "GetObject", times=2)
    with store.open_dataset("ns", "faulty", version="1") as ds:
        assert list(ds) == records
        assert [ds[i] for i in (1999, 0, 1234)] == [records[1999], records[0], records[1234]]


def test_corrupted_download_is_caught_by_crc64_and_read_again(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_backend.put("obj", DATA)
    fault = oss_server.inject("corrupt", "GetObject")
    assert oss_backend.read("obj") == DATA
    assert fault.hits == 1
    assert oss_server.count("GetObject") == 2


def test_corrupted_upload_is_caught_by_crc64_and_sent_again(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    oss_server.inject("corrupt", "PutObject")
    oss_backend.put("obj", DATA)
    assert oss_server.get("store/obj") == DATA
    assert oss_server.count("PutObject") == 2


def test_corrupted_part_is_caught_by_crc64_and_sent_again(oss_server: OSSTestServer, small_parts: Backend) -> None:
    oss_server.inject("corrupt", "UploadPart")
    small_parts.put("big", DATA)
    assert oss_server.get("mp/big") == DATA


def test_corrupted_append_is_reported_not_hidden(oss_server: OSSTestServer, oss_backend: Backend) -> None:
    appender = oss_backend.open_append("log.blk")
    appender.append(b"good")
    oss_server.inject("corrupt", "AppendObject")
    with pytest.raises(BackendError, match="CRC64 mismatch"):
        appender.flush()
