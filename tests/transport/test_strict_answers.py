"""The transport refuses malformed answers with MalformedResponseError, fast, and never hangs.

Each case is a bad answer played byte for byte by a raw-socket server that keeps the
connection open afterwards (``hold``): a client that waits for more bytes instead of
refusing would sit there until the test's hard timeout fails it. The read timeout is
far longer than the time each case is allowed, so a refusal by timeout fails too.
"""

from __future__ import annotations

import time

import pytest
from kara_transport import MalformedResponseError, Transport, TransportError, UnsafeHeaderError
from kara_transport.testing import RawServer

#: Seconds a refusal may take; the read timeout (30 s) is far beyond it.
FAST_REFUSAL = 3.0


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fetch(answer: bytes) -> tuple[BaseException | None, bytes]:
    """GET from a server that plays ``answer`` and holds the connection; the error and body."""
    transport = Transport(read_timeout=30.0, connect_timeout=5.0)
    started = time.monotonic()
    with RawServer([answer], hold=10.0) as server:
        try:
            with transport.request("GET", server.url + "/x") as response:
                body = response.read()
        except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
            error: BaseException | None = exc
            body = b""
        else:
            error = None
    transport.close()
    assert time.monotonic() - started < FAST_REFUSAL + 10.0
    return error, body


BAD_ANSWERS = {
    # kara_oss/wire.py took -2 with int(field, 16) and then spun forever without I/O.
    "negative chunk size": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"-2\r\nabc",
    "chunk size with underscore": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"1_0\r\n" + b"x" * 16,
    "chunk size not hex": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"zz\r\nab\r\n0\r\n\r\n",
    "chunk size with sign": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"+2\r\nab\r\n0\r\n\r\n",
    # kara_http/wire.py: '²'.isdigit() is True and int('²') raises ValueError.
    "superscript Content-Length": "HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\nab".encode(),
    "Arabic-Indic digits in Content-Length": "HTTP/1.1 200 OK\r\nContent-Length: ٢\r\n\r\nab".encode(),
    # kara_oss/wire.py accepted 1_0 as 10 (int() allows underscores).
    "Content-Length with underscore": head("HTTP/1.1 200 OK", "Content-Length: 1_0") + b"0123456789",
    "Content-Length with plus sign": head("HTTP/1.1 200 OK", "Content-Length: +2") + b"ab",
    "negative Content-Length": head("HTTP/1.1 200 OK", "Content-Length: -1") + b"ab",
    "conflicting Content-Length values": head("HTTP/1.1 200 OK", "Content-Length: 2, 3") + b"abc",
    "conflicting Content-Length fields": head("HTTP/1.1 200 OK", "Content-Length: 2", "Content-Length: 3") + b"abc",
    "Content-Length and Transfer-Encoding": head("HTTP/1.1 200 OK", "Content-Length: 2", "Transfer-Encoding: chunked")
    + b"2\r\nab\r\n0\r\n\r\n",
    "unknown Transfer-Encoding": head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip") + b"ab",
    "status line without version": b"200 OK\r\nContent-Length: 0\r\n\r\n",
    "status code of two digits": head("HTTP/1.1 20 OK", "Content-Length: 0"),
    "status code with underscore": head("HTTP/1.1 2_00 OK", "Content-Length: 0"),
    "header line without colon": head("HTTP/1.1 200 OK", "Content-Length 0"),
    "header name with space": head("HTTP/1.1 200 OK", "Content Length: 0"),
    "NUL in a header value": head("HTTP/1.1 200 OK", "Content-Length: 0", "X-A: a\x00b"),
    "endless header": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 200_000,
    # kara_http/wire.py read trailer lines in a loop without a bound.
    "endless trailers": head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
    + b"2\r\nab\r\n0\r\n"
    + b"X-T: t\r\n" * 20_000,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(BAD_ANSWERS))
def test_malformed_answer_is_refused(name: str) -> None:
    started = time.monotonic()
    error, _ = fetch(BAD_ANSWERS[name])
    assert isinstance(error, MalformedResponseError), (name, error)
    assert time.monotonic() - started < FAST_REFUSAL


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "framing,body",
    [("Content-Length: 10", b"abc"), ("Transfer-Encoding: chunked", b"a\r\nabc")],
    ids=["content-length", "chunked"],
)
def test_a_body_cut_short_is_refused(framing: str, body: bytes) -> None:
    answer = head("HTTP/1.1 200 OK", framing, "Connection: close") + body
    transport = Transport(read_timeout=30.0)
    with RawServer([answer]) as server, transport.request("GET", server.url + "/x") as response:
        with pytest.raises(MalformedResponseError):
            response.read()


@pytest.mark.timeout(30)
def test_silent_server_times_out_as_transport_error() -> None:
    transport = Transport(read_timeout=0.5)
    with RawServer([b""], hold=10.0) as server:
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            transport.request("GET", server.url + "/x")
    assert time.monotonic() - started < 5


@pytest.mark.timeout(30)
def test_good_answers_still_read() -> None:
    answers = [
        head("HTTP/1.1 200 OK", "Content-Length: 3") + b"abc",
        head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"3;ext=1\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\n",
        head("HTTP/1.1 200 OK", "Content-Length: 3, 3") + b"abc",
    ]
    transport = Transport(read_timeout=5.0)
    with RawServer(answers) as server:
        bodies = [transport.request("GET", server.url + "/x").content for _ in answers]
    assert bodies == [b"abc", b"abcd", b"abc"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["t\r\nX-Injected: 1", "t\nX-Injected: 1", "t\rX", "t\x00x", "t\r\n X-Folded: 1"])
def test_header_values_with_cr_lf_nul_are_refused_before_sending(value: str) -> None:
    transport = Transport(read_timeout=5.0)
    with RawServer([head("HTTP/1.1 200 OK", "Content-Length: 0")]) as server:
        with pytest.raises(UnsafeHeaderError) as caught:
            transport.request("GET", server.url + "/x", headers={"Authorization": "Bearer " + value})
        time.sleep(0.1)
        assert server.heads == []
    assert value not in str(caught.value)


@pytest.mark.timeout(30)
def test_header_names_must_be_tokens() -> None:
    with pytest.raises(UnsafeHeaderError):
        Transport(headers={"X A": "1"})
    with pytest.raises(UnsafeHeaderError):
        Transport(headers={"X-A:": "1"})
