"""Fuzz: hostile requests to a ``kara serve`` gateway (paths with every encoding trick,
methods, headers, bodies, Content-Length/Transfer-Encoding conflicts, cut-off requests).
The gateway answers each with a status below 500 (or closes the connection), never
writes outside its store, and keeps serving."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_http.testing import GatewayServer

TOKEN = "fuzz-token-0c1e"
_SEGMENTS = st.sampled_from(
    [
        "..",
        "%2e%2e",
        "%2E%2e",
        ".",
        "%2f",
        "%5c",
        "..%2f",
        "%00",
        "a",
        "row",
        ".kara",
        ".kara-gateway",
        "%c0%ae",
        "~",
        "a b",
        "%",
        "%zz",
        "",
        "\\..\\",
        "x" * 300,
    ]
)
PATHS = st.lists(_SEGMENTS, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
QUERIES = st.sampled_from(["", "?list=", "?list=..", "?append=0", "?append=-1", "?append=1_0", "?append=x"])
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "get", "G\x00T"])
FRAMINGS = st.sampled_from(
    [
        b"Content-Length: 3\r\n\r\nabc",
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n-2\r\nab",
        b"Content-Length: \xc2\xb2\r\n\r\nab",
        b"Content-Length: 10\r\n\r\nab",
        b"\r\n",
        b"Content-Length: 1_0\r\n\r\n0123456789",
        b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ]
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayServer, Path]]:
    root = tmp_path_factory.mktemp("gateway-fuzz")
    (root / "store").mkdir()
    with GatewayServer(f"file://{root / 'store'}", token=TOKEN, max_body_size=4096) as server:
        yield server, root


def _exchange(port: int, raw: bytes) -> bytes:
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(raw)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                # The server answered and closed before the whole request was sent (a
                # head over its limit): its answer may still be there to read.
                if exc.errno != errno.ENOTCONN:
                    raise
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionError, TimeoutError):
            pass
    return received


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(method=METHODS, path=PATHS, query=QUERIES, framing=FRAMINGS, auth=st.booleans())
def test_any_request_gets_a_client_error_or_an_answer(
    hard_timeout, gateway: tuple[GatewayServer, Path], method: str, path: str, query: str, framing: bytes, auth: bool
) -> None:
    server, root = gateway
    port = int(server.url.rsplit(":", 1)[1])
    head = f"{method} {path}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: Bearer {TOKEN}\r\n"
    with hard_timeout("gateway requests"):
        answer = _exchange(port, head.encode("latin-1") + framing)
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status < 500 or status == 503, answer[:200]
        assert sorted(p.name for p in root.iterdir()) == ["store"]
        assert _exchange(port, b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )
