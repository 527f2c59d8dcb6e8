"""Fuzz: hostile HTTP answers, played byte for byte by a raw-socket server, to the
transport kara-http and kara-oss share. Every answer is read to its end or refused with
a kara TransportError; nothing else escapes, nothing hangs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_transport import Transport, TransportError
from kara_transport.testing import RawServer

_DIGITS = st.sampled_from(["0", "1", "2", "5", "10", "²", "٣", "1_0", "+3", "-1", " 4", "4 ", "0x4", "99999999999"])
_HEADER_NAMES = st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "X-A", "X A", "X:A", ""])
_HEADER_VALUES = st.one_of(
    _DIGITS,
    st.sampled_from(["chunked", "gzip, chunked", "chunked, chunked", "close", "keep-alive", "a\x00b", "a\rb"]),
    st.text(max_size=20),
)
_STATUS_LINES = st.one_of(
    st.sampled_from(
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.0 200 OK",
            "HTTP/1.1 204 No Content",
            "HTTP/1.1 304 Not Modified",
            "HTTP/1.1 100 Continue",
            "HTTP/2 200",
            "HTTP/1.1 2_00 OK",
            "HTTP/1.1 999 X",
            "HTTP/1.1 200",
            "200 OK",
            "",
        ]
    ),
    st.text(max_size=30),
)
_CHUNK_SIZES = st.one_of(
    st.sampled_from(["0", "1", "a", "A", "-2", "1_0", "+1", " 1", "1 ", "1;ext=x", "ffffffffffffffffffff1", "g"]),
    st.integers(0, 64).map(lambda n: format(n, "x")),
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    status = draw(_STATUS_LINES)
    headers = draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=5))
    head = status + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    raw = head.encode("utf-8", "surrogateescape")
    if draw(st.booleans()):
        pieces = []
        for size in draw(st.lists(_CHUNK_SIZES, max_size=4)):
            pieces.append(size.encode() + b"\r\n" + draw(st.binary(max_size=20)) + b"\r\n")
        if draw(st.booleans()):
            pieces.append(b"0\r\n" + draw(st.sampled_from([b"", b"X-T: 1\r\n", b"bad trailer\r\n"])) + b"\r\n")
        body = b"".join(pieces)
    else:
        body = draw(st.binary(max_size=64))
    cut = draw(st.integers(0, len(raw) + len(body)))
    return (raw + body)[: cut if draw(st.booleans()) else None]


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(answer=answers(), hold=st.booleans())
def test_any_answer_is_read_or_refused_with_a_transport_error(hard_timeout, answer: bytes, hold: bool) -> None:
    # The hold (1 s) outlasts the read timeout, so a cut answer ends by the timeout.
    transport = Transport(connect_timeout=2.0, read_timeout=0.25)
    with hard_timeout("http-answers"), RawServer([answer], hold=1.0 if hold else 0.0) as server:
        try:
            with transport.request("GET", server.url + "/fuzz") as response:
                response.read()
        except TransportError:
            pass
    transport.close()
