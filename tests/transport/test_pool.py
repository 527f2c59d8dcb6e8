"""kara_transport's connection pool: reuse, per-origin limits, dead idle connections,
fork safety and many threads, against real sockets on 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpcore
import pytest
from kara_transport import Transport, TransportError
from kara_transport.pool import ConnectionPool
from kara_transport.testing import CLOSE, RawServer


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


OK = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"ok"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with its own path, on keep-alive connections; notes client ports."""

    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the head (about 10 ms a request on 127.0.0.1).
    disable_nagle_algorithm = True
    ports: set[int] = set()

    def do_GET(self) -> None:
        self.ports.add(self.client_address[1])
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo(serve: Callable[..., str]) -> str:
    _EchoHandler.ports = set()
    return serve(_EchoHandler)


@pytest.mark.timeout(30)
def test_sequential_requests_reuse_one_connection(echo: str) -> None:
    transport = Transport()
    for i in range(20):
        assert transport.request("GET", f"{echo}/{i}").content == f"/{i}".encode()
    assert len(_EchoHandler.ports) == 1


@pytest.mark.timeout(60)
def test_many_threads_share_at_most_max_connections(echo: str) -> None:
    transport = Transport(max_connections=4)

    def get(i: int) -> bytes:
        return transport.request("GET", f"{echo}/item/{i}").content

    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(get, range(800)))
    assert bodies == [f"/item/{i}".encode() for i in range(800)]
    assert 1 <= len(_EchoHandler.ports) <= 4


@pytest.mark.timeout(30)
def test_the_limit_is_per_origin_and_a_full_origin_waits_for_a_release() -> None:
    body = head("HTTP/1.1 200 OK", "Content-Length: 10") + b"0123456789"
    transport = Transport(max_connections=2)
    with RawServer([body], keep_alive=True) as full, RawServer([OK], keep_alive=True) as other:
        held = [transport.request("GET", full.url + f"/held{i}") for i in range(2)]  # bodies unread: busy
        done = threading.Event()
        results: list[bytes] = []

        def third() -> None:
            results.append(transport.request("GET", full.url + "/third").content)
            done.set()

        waiter = threading.Thread(target=third, daemon=True)
        waiter.start()
        assert not done.wait(0.5)  # both connections to this origin are busy
        assert transport.request("GET", other.url + "/x").content == b"ok"  # another origin is not
        assert held[0].content == b"0123456789"  # read to its end: the connection goes back
        assert done.wait(5)
        waiter.join()
        held[1].close()
    assert results == [b"0123456789"]
    assert len(set(full.ports)) == 2  # the third request reused a released connection


@pytest.mark.timeout(30)
def test_waiting_for_a_connection_ends_after_read_timeout() -> None:
    body = head("HTTP/1.1 200 OK", "Content-Length: 10") + b"0123456789"
    transport = Transport(max_connections=1, read_timeout=0.5)
    with RawServer([body], keep_alive=True) as server:
        held = transport.request("GET", server.url + "/held")
        started = time.monotonic()
        with pytest.raises(TransportError, match="max_connections"):
            transport.request("GET", server.url + "/waits")
        assert 0.4 < time.monotonic() - started < 3
        held.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("method", "answer"),
    [("GET", OK), ("HEAD", head("HTTP/1.1 200 OK", "Content-Length: 2"))],
)
def test_a_get_or_head_on_a_reused_connection_the_server_closed_is_sent_again(method: str, answer: bytes) -> None:
    # The server reads the second request on the kept-alive connection and closes it
    # without a word, as a server closing an idle connection at that moment does.
    transport = Transport()
    with RawServer([answer, [CLOSE], answer], keep_alive=True) as server:
        first = transport.request(method, server.url + "/first")
        assert (first.status, first.content) == (200, b"ok" if method == "GET" else b"")
        second = transport.request(method, server.url + "/second")
        assert (second.status, second.content) == (200, b"ok" if method == "GET" else b"")
    assert [h.split(b" ")[1] for h in server.heads] == [b"/first", b"/second", b"/second"]
    assert server.ports[0] == server.ports[1] != server.ports[2]


@pytest.mark.timeout(30)
def test_a_post_on_a_dead_reused_connection_is_never_sent_again() -> None:
    transport = Transport()
    with RawServer([OK, [CLOSE]], keep_alive=True) as server:
        assert transport.request("GET", server.url + "/first").content == b"ok"
        with pytest.raises(TransportError):
            transport.request("POST", server.url + "/uploads", body=b"payload")
        time.sleep(0.2)
    assert len(server.heads) == 2 and server.bodies[1] == b"payload"


@pytest.mark.timeout(30)
def test_no_resend_on_a_new_connection_or_after_part_of_an_answer() -> None:
    transport = Transport()
    with RawServer([[CLOSE]]) as server:
        with pytest.raises(TransportError):
            transport.request("GET", server.url + "/new")
        time.sleep(0.2)
    assert len(server.heads) == 1
    with RawServer([OK, [b"HTTP/1.1 200 OK\r\nContent-", CLOSE]], keep_alive=True) as server:
        assert transport.request("GET", server.url + "/first").content == b"ok"
        with pytest.raises(TransportError):
            transport.request("GET", server.url + "/half")
        time.sleep(0.2)
    assert len(server.heads) == 2


def _get(pool: ConnectionPool, url: str) -> bytes:
    response = pool.handle_request(httpcore.Request("GET", url, headers=[(b"Host", b"127.0.0.1")]))
    try:
        return response.read()
    finally:
        response.close()


@pytest.mark.timeout(60)
def test_a_forked_child_neither_uses_nor_closes_the_parents_connections(echo: str) -> None:
    pool = ConnectionPool(ssl_context=None, max_connections=4, connect_timeout=5, read_timeout=5)
    assert _get(pool, echo + "/parent") == b"/parent"
    assert len(_EchoHandler.ports) == 1
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: it starts with no connections, closing the pool closes none of the parent's
        try:
            fresh = pool.connections() == {}
            pool.close()
            ok = _get(pool, echo + "/child") == b"/child"
            pool.close()
            os.write(writer, b"1" if fresh and ok else b"0")
        finally:
            os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"1"
    os.waitpid(pid, 0)
    assert _get(pool, echo + "/parent-again") == b"/parent-again"
    assert pool.connections()[echo] == (1, 1)
    assert len(_EchoHandler.ports) == 2  # the parent's one connection, and the child's own


@pytest.mark.timeout(30)
def test_close_drops_idle_connections_and_the_pool_still_serves(echo: str) -> None:
    pool = ConnectionPool(ssl_context=None, max_connections=2, connect_timeout=5, read_timeout=5)
    assert _get(pool, echo + "/a") == b"/a"
    pool.close()
    assert pool.connections()[echo] == (0, 0)
    assert _get(pool, echo + "/b") == b"/b"
    assert len(_EchoHandler.ports) == 2
