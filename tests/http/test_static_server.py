"""The static test server itself (kara_http.testing.StaticServer), spoken to over raw sockets."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from kara_http.testing import StaticServer


def _exchange(
    server: StaticServer, raw: bytes, responses: int = 1, heads: tuple[int, ...] = ()
) -> list[tuple[str, dict[str, str], bytes]]:
    """Send ``raw`` on one connection and read ``responses`` responses (status line,
    lower-case headers, body); the responses numbered in ``heads`` answer HEAD requests."""
    out = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        pending = b""
        for number in range(responses):
            while b"\r\n\r\n" not in pending:
                pending += sock.recv(65536)
            head, _, pending = pending.partition(b"\r\n\r\n")
            status, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            length = 0 if number in heads else int(headers.get("content-length", "0"))
            while len(pending) < length:
                pending += sock.recv(65536)
            out.append((status, headers, pending[:length]))
            pending = pending[length:]
    return out


@pytest.fixture
def served(tmp_path: Path) -> StaticServer:
    (tmp_path / "secret.txt").write_bytes(b"outside the served folder")
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.bin").write_bytes(b"0123456789")
    return StaticServer(str(root))


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/a.bin%00", "/"])
def test_nothing_outside_the_folder_or_but_a_file_is_served(served: StaticServer, path: str) -> None:
    with served:
        [(status, _, body)] = _exchange(served, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == "HTTP/1.1 404 Not Found"
    assert body == b""


def test_pipelined_requests_are_answered_in_order_on_one_connection(served: StaticServer) -> None:
    raw = b"GET /a.bin HTTP/1.1\r\nRange: bytes=2-3\r\n\r\nHEAD /a.bin HTTP/1.1\r\n\r\nGET /a.bin HTTP/1.1\r\n\r\n"
    with served:
        answers = _exchange(served, raw, responses=3, heads=(1,))
    assert [(status.split()[1], body) for status, _, body in answers] == [
        ("206", b"23"),
        ("200", b""),
        ("200", b"0123456789"),
    ]
    assert answers[1][1]["content-length"] == "10"
    assert len({r.client_port for r in served.log}) == 1


def test_connection_close_is_honoured(served: StaticServer) -> None:
    with served, socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /a.bin HTTP/1.1\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # ends: the server closed the connection
            received += chunk
    assert b"\r\nConnection: close\r\n" in received
    assert received.endswith(b"\r\n\r\n0123456789")


def test_other_methods_are_not_implemented(served: StaticServer) -> None:
    with served:
        [(status, headers, _)] = _exchange(served, b"PUT /a.bin HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert status == "HTTP/1.1 501 Not Implemented"
    assert headers["allow"] == "GET, HEAD"


def test_a_malformed_request_is_refused_and_the_connection_closed(served: StaticServer) -> None:
    with served, socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    # http.server answers a request line it cannot read as HTTP/0.9 (no head): an error page.
    assert b"400" in received and b"Bad request syntax" in received


def test_concurrent_requests_wait_their_added_latency_together_not_in_turn(served: StaticServer) -> None:
    served.faults.latency = 0.3
    with served:
        socks = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(8)]
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /a.bin HTTP/1.1\r\n\r\n")
        for sock in socks:
            assert sock.recv(65536).endswith(b"0123456789")
            sock.close()
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.3 * 8 / 2


def test_stop_closes_open_connections(served: StaticServer) -> None:
    with served:
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        _ = _exchange(served, b"GET /a.bin HTTP/1.1\r\n\r\n")
        sock.sendall(b"GET /a.bin HTTP/1.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"0123456789"):  # the whole answer: the connection is idle
            answer += sock.recv(65536)
    with sock:
        assert sock.recv(65536) == b""
