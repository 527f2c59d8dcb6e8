"""The lean HTTP/1.1 client (kara_http.wire) against real sockets on 127.0.0.1.

Static mirrors frame bodies with Content-Length; other servers (proxies, application
servers) send ``chunked`` bodies, bodies ended by closing the connection, interim 1xx
answers, repeated fields. A canned server answers each request on a connection with
the next prepared response, byte for byte.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kara_http.testing import StaticServer
from kara_http.wire import WirePool

from kara_core.url import open_backend


class CannedServer:
    """Answers requests with prepared responses, in order; None closes the connection
    (right after the response before it, or instead of an answer)."""

    def __init__(self, responses: list[bytes | None]) -> None:
        self.responses = list(responses)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        pending = b""
        while self.responses:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            self.requests.append(head)
            response = self.responses.pop(0)
            if response is not None:
                conn.sendall(response)
            if response is None or self.responses[:1] == [None]:
                if self.responses:
                    self.responses.pop(0)
                return

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def canned() -> Iterator[type[CannedServer]]:
    yield CannedServer


def _pool(port: int) -> WirePool:
    return WirePool(
        "http", "127.0.0.1", port, headers={"User-Agent": "t"}, connect_timeout=2, read_timeout=2, maxsize=4
    )


def _get(pool: WirePool, path: str = "/x") -> bytes:
    return pool.request("GET", path, "http://127.0.0.1" + path, {}).content


OK_5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_a_chunked_body_is_decoded_and_the_connection_reused() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with CannedServer([chunked, OK_5]) as server:
        pool = _pool(server.port)
        assert _get(pool) == b"hello world"
        assert _get(pool) == b"hello"
        pool.close()
    assert server.connections == 1


def test_a_body_without_length_ends_with_the_connection_which_is_not_reused() -> None:
    with CannedServer([b"HTTP/1.1 200 OK\r\n\r\nuntil the end", None, OK_5]) as server:
        pool = _pool(server.port)
        response = pool.request("GET", "/x", "http://127.0.0.1/x", {})
        assert response.content == b"until the end"
        assert _get(pool) == b"hello"
        pool.close()
    assert server.connections == 2


def test_interim_1xx_answers_are_skipped() -> None:
    with CannedServer([b"HTTP/1.1 100 Continue\r\n\r\n" + OK_5]) as server:
        pool = _pool(server.port)
        response = pool.request("GET", "/x", "http://127.0.0.1/x", {})
        assert (response.status_code, response.content) == (200, b"hello")
        pool.close()


def test_header_lookups_ignore_case_and_repeated_fields_are_joined() -> None:
    head = b"HTTP/1.1 206 Partial Content\r\nX-Part: a\r\ncontent-range: bytes 0-4/9\r\nx-part: b\r\n"
    with CannedServer([head + b"Content-Length: 5\r\n\r\nhello"]) as server:
        pool = _pool(server.port)
        response = pool.request("GET", "/x", "http://127.0.0.1/x", {})
        assert response.headers.get("Content-Range") == "bytes 0-4/9"
        assert response.headers["X-PART"] == "a, b"
        assert "CONTENT-LENGTH" in response.headers
        assert response.reason == "Partial Content"
        response.close()
        pool.close()


def test_a_body_cut_short_raises_connection_error() -> None:
    with CannedServer([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhell", None]) as server:
        pool = _pool(server.port)
        response = pool.request("GET", "/x", "http://127.0.0.1/x", {})
        with pytest.raises(ConnectionError, match="6 bytes before the end"):
            response.content  # noqa: B018
        pool.close()


def test_request_headers_override_the_common_ones_and_every_line_is_sent() -> None:
    with CannedServer([OK_5]) as server:
        pool = _pool(server.port)
        pool.request("GET", "/a%20b?q=1", "http://127.0.0.1/a%20b?q=1", {"Range": "bytes=0-4", "user-agent": "mine"})
        pool.close()
        port = server.port
    lines = server.requests[0].decode().split("\r\n")
    assert lines[0] == "GET /a%20b?q=1 HTTP/1.1"
    assert sorted(lines[1:]) == sorted([f"Host: 127.0.0.1:{port}", "Range: bytes=0-4", "user-agent: mine"])


def test_a_request_body_is_sent_with_its_length() -> None:
    with CannedServer([b"HTTP/1.1 204 No Content\r\n\r\n", OK_5]) as server:
        pool = _pool(server.port)
        response = pool.request("PUT", "/x", "http://127.0.0.1/x", {}, b"12345")
        assert response.status_code == 204
        assert _get(pool) == b"hello"  # the 204 had no body: the connection is in step
        pool.close()
    assert b"Content-Length: 5" in server.requests[0]
    assert server.requests[1].startswith(b"12345GET /x")  # the body, then the next request


def test_an_idle_connection_the_server_closed_is_replaced_without_error(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"0123456789")
    with StaticServer(str(tmp_path)) as server:
        server.faults.idle_timeout = 0.1
        backend = open_backend(server.url, gateway=False, retry_budget=0)
        try:
            assert backend.read("f.bin", 0, 3) == b"012"
            time.sleep(0.5)  # the server has closed the kept-alive connection by now
            assert backend.read("f.bin", 3, 6) == b"345"
        finally:
            backend.close()
        log = server.log
    # No retry was needed (the budget is 0): the request went once, on a new connection.
    assert [r.range for r in log] == ["bytes=0-2", "bytes=3-5"]
    assert log[0].client_port != log[1].client_port
