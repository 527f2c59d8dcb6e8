"""The slow-server timeout: read_timeout bounds the whole answer, not each socket read.

A server that drips its answer a few bytes at a time never lets a single read time out;
these tests play such servers (kara_transport.testing.RawServer scripts) and require the
transport's documented error within a bounded time, while a slow but steady server, and
a caller that pauses between reads, still succeed.
"""

from __future__ import annotations

import time

import pytest
from kara_transport import Transport, TransportError
from kara_transport.pool import MIN_PROGRESS
from kara_transport.testing import CLOSE, RawServer, drip

from kara_core.errors import BackendError

READ_TIMEOUT = 0.5


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    fn()
    return time.monotonic() - started


@pytest.mark.timeout(30)
def test_a_head_dripped_byte_by_byte_times_out_within_read_timeout() -> None:
    # 50 bytes of head, one every 0.05 s: no read waits long, the head takes 2.5 s.
    answer = drip(head("HTTP/1.1 200 OK", "Content-Length: 2", "X-Pad: abcdefghij") + b"ok", 1, 0.05)
    transport = Transport(read_timeout=READ_TIMEOUT)
    with RawServer([answer]) as server:
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            transport.request("GET", server.url + "/a")
        elapsed = time.monotonic() - started
    assert READ_TIMEOUT * 0.9 < elapsed < READ_TIMEOUT + 1.0


@pytest.mark.timeout(30)
def test_a_body_dripped_below_16_kib_per_read_timeout_times_out() -> None:
    size = 200_000
    answer = [head("HTTP/1.1 200 OK", f"Content-Length: {size}"), *drip(b"x" * size, 200, 0.02)]
    transport = Transport(read_timeout=READ_TIMEOUT)
    with RawServer([answer]) as server:
        response = transport.request("GET", server.url + "/a")
        assert response.status == 200
        started = time.monotonic()
        with pytest.raises(TransportError, match=f"less than {MIN_PROGRESS // 1024} KiB per read_timeout of 0.5s"):
            response.content  # noqa: B018
        elapsed = time.monotonic() - started
    # 10 KB/s: the first 16 KiB would take 1.6 s; the client gives up after 0.5 s of waiting.
    assert READ_TIMEOUT * 0.9 < elapsed < READ_TIMEOUT + 1.0


@pytest.mark.timeout(30)
def test_a_stalled_body_times_out() -> None:
    answer = [head("HTTP/1.1 200 OK", "Content-Length: 100000"), b"y" * 30_000, 20.0]
    transport = Transport(read_timeout=READ_TIMEOUT)
    with RawServer([answer]) as server:
        response = transport.request("GET", server.url + "/a")
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            response.content  # noqa: B018
        assert time.monotonic() - started < READ_TIMEOUT + 1.0


@pytest.mark.timeout(30)
def test_a_slow_but_steady_body_is_read_whole() -> None:
    # 32 KiB every 0.2 s: the whole answer takes ~2.2 s, over four times read_timeout, but
    # every read_timeout of waiting brings more than 16 KiB.
    body = bytes(range(256)) * 1536
    answer = [head("HTTP/1.1 200 OK", f"Content-Length: {len(body)}"), *drip(body, 32 * 1024, 0.2)]
    transport = Transport(read_timeout=READ_TIMEOUT)
    with RawServer([answer]) as server:
        elapsed = timed(lambda: _expect(transport.request("GET", server.url + "/a").content, body))
    assert elapsed > 4 * READ_TIMEOUT


@pytest.mark.timeout(30)
def test_time_the_caller_spends_between_reads_does_not_count() -> None:
    body = b"z" * 40_000
    transport = Transport(read_timeout=READ_TIMEOUT)
    with RawServer([head("HTTP/1.1 200 OK", f"Content-Length: {len(body)}") + body]) as server:
        response = transport.request("GET", server.url + "/a")
        first = response.read(100)
        time.sleep(3 * READ_TIMEOUT)  # a consumer busy with what it read
        assert first + response.read() == body


@pytest.mark.timeout(30)
def test_a_short_answer_after_a_long_upload_gets_its_own_read_timeout() -> None:
    # The answer's clock starts when the request has been sent, not when it started.
    transport = Transport(read_timeout=READ_TIMEOUT)
    answer = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"ok"
    with RawServer([answer]) as server:
        assert transport.request("PUT", server.url + "/a", body=b"u" * 3_000_000).content == b"ok"
    assert server.bodies == [b"u" * 3_000_000]


@pytest.mark.timeout(60)
def test_a_dripping_server_is_retried_by_the_http_store() -> None:
    # kara-http's retry logic treats the timeout like any transport failure: the second
    # attempt gets a good answer.
    from kara_http.backend import HTTPBackend
    from kara_http.options import HTTPOptions

    good = head("HTTP/1.1 200 OK", "Content-Length: 5", "Connection: close") + b"hello"
    slow = [*drip(good, 1, 0.1), CLOSE]
    with RawServer([slow, good]) as server:
        store = HTTPBackend(server.url, HTTPOptions(gateway=False, read_timeout=READ_TIMEOUT, backoff_base=0.05))
        assert store.read("key") == b"hello"
    assert len(server.heads) == 2


@pytest.mark.timeout(60)
def test_a_dripping_server_exhausts_the_retry_budget_with_a_backend_error() -> None:
    from kara_http.backend import HTTPBackend
    from kara_http.options import HTTPOptions

    slow = drip(head("HTTP/1.1 200 OK", "Content-Length: 5") + b"hello", 1, 0.1)
    with RawServer([slow]) as server:
        store = HTTPBackend(
            server.url, HTTPOptions(gateway=False, read_timeout=READ_TIMEOUT, retry_budget=1.5, backoff_base=0.05)
        )
        started = time.monotonic()
        with pytest.raises(BackendError, match="retry budget"):
            store.read("key")
        assert time.monotonic() - started < 1.5 + READ_TIMEOUT + 1.0


def _expect(got: bytes, want: bytes) -> None:
    assert got == want
