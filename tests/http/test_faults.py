"""Reads through a fault-injecting server return exactly the right bytes, or fail clearly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kara_http.testing import StaticServer
from kara_transport import parse_retry_after

from kara_core.backend import Backend
from kara_core.errors import BackendError
from kara_core.url import open_backend

SIZE = 1_000_003


@pytest.fixture
def blob(store_dir: Path) -> bytes:
    data = (bytes(range(251)) * (SIZE // 251 + 1))[:SIZE]
    (store_dir / "blob.bin").write_bytes(data)
    return data


def test_a_body_dropped_mid_transfer_resumes_from_the_last_byte(
    static: StaticServer, mirror: Backend, blob: bytes
) -> None:
    static.faults.drop_after = 300_000
    static.faults.drop_count = 2
    assert mirror.read("blob.bin") == blob
    ranges = [r.range for r in static.log if r.method == "GET"]
    assert ranges == [None, "bytes=300000-1000002", "bytes=600000-1000002"]


def test_a_dropped_ranged_read_resumes_inside_its_range(static: StaticServer, mirror: Backend, blob: bytes) -> None:
    static.faults.drop_after = 100_000
    static.faults.drop_count = 1
    assert mirror.read("blob.bin", 50_000, 450_000) == blob[50_000:450_000]
    assert [r.range for r in static.log] == ["bytes=50000-449999", "bytes=150000-449999"]


def test_an_object_replaced_before_a_resume_is_an_error_not_a_splice(
    static: StaticServer, mirror: Backend, blob: bytes
) -> None:
    static.faults.drop_after = 100_000
    static.faults.drop_count = 1
    static.faults.on_drop = lambda path: Path(path).write_bytes(b"new contents " * 100_000)
    with pytest.raises(BackendError, match="replaced while it was being read"):
        mirror.read("blob.bin")


def test_open_read_streams_through_dropped_connections(static: StaticServer, mirror: Backend, blob: bytes) -> None:
    static.faults.drop_after = 200_000
    static.faults.drop_count = 3
    with mirror.open_read("blob.bin", 10) as stream:
        chunks = []
        while chunk := stream.read(65_536):
            chunks.append(chunk)
    assert b"".join(chunks) == blob[10:]


def test_503_is_retried_after_the_retry_after_delay(static: StaticServer, mirror: Backend, blob: bytes) -> None:
    static.faults.unavailable_count = 1
    static.faults.retry_after = 1
    started = time.monotonic()
    assert mirror.read("blob.bin", 0, 100) == blob[:100]
    assert time.monotonic() - started >= 1.0
    assert mirror.size("blob.bin") == SIZE


def test_sizes_are_retried_on_503(static: StaticServer, mirror: Backend, blob: bytes) -> None:
    static.faults.unavailable_count = 3
    assert mirror.size("blob.bin") == SIZE
    assert len(static.log) == 4


def test_a_stalled_body_times_out_and_is_read_again(static: StaticServer, blob: bytes, fast: dict[str, Any]) -> None:
    static.faults.stall = 1.5
    static.faults.stall_count = 1
    backend = open_backend(static.url, **{**fast, "read_timeout": 0.5})
    try:
        assert backend.read("blob.bin", 1000, 900_000) == blob[1000:900_000]
    finally:
        backend.close()
    assert len(static.log) == 2


def test_slow_responses_still_return_the_right_bytes(static: StaticServer, mirror: Backend, blob: bytes) -> None:
    static.faults.latency = 0.05
    started = time.monotonic()
    assert mirror.read("blob.bin", 123, 4567) == blob[123:4567]
    assert time.monotonic() - started >= 0.05


def test_exhausted_retries_raise_backend_error_within_the_budget(
    static: StaticServer, blob: bytes, fast: dict[str, Any]
) -> None:
    static.faults.unavailable_count = 1_000
    backend = open_backend(static.url, **{**fast, "retry_budget": 1.0})
    started = time.monotonic()
    try:
        with pytest.raises(BackendError, match="HTTP 503") as info:
            backend.read("blob.bin")
    finally:
        backend.close()
    assert time.monotonic() - started < 2.0
    assert "retry_budget" in str(info.value)
    assert len(static.log) >= 3


def test_an_unreachable_server_raises_backend_error(static: StaticServer, fast: dict[str, Any]) -> None:
    url = static.url
    static.stop()
    backend = open_backend(url, **{**fast, "retry_budget": 0.5, "gateway": False})
    try:
        with pytest.raises(BackendError, match="Connection refused"):
            backend.size("anything")
    finally:
        backend.close()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_an_object_that_shrinks_before_a_resume_is_an_error_without_validators(
    static: StaticServer, mirror: Backend, blob: bytes
) -> None:
    static.faults.send_etag = False
    static.faults.drop_after = 100_000
    static.faults.drop_count = 1
    static.faults.on_drop = lambda path: Path(path).write_bytes(blob[:500_000])
    with pytest.raises(BackendError, match="got shorter while it was being read"):
        mirror.read("blob.bin")
