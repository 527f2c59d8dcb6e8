"""kara_transport.Transport against real sockets on 127.0.0.1: framing, keep-alive,
redirects, credentials, proxies, fork safety, retries."""

from __future__ import annotations

import http.server
import os
import socket
import time
from collections.abc import Callable

import pytest
from kara_transport import RetryBudget, Transport, TransportError
from kara_transport.testing import RawServer

from kara_core.errors import BackendError


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


OK = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"ok"


@pytest.mark.timeout(30)
def test_a_chunked_body_is_decoded_and_the_connection_reused() -> None:
    chunked = head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    transport = Transport()
    with RawServer([chunked, OK], keep_alive=True) as server:
        assert transport.request("GET", server.url + "/a").content == b"abcde"
        assert transport.request("GET", server.url + "/b").content == b"ok"
    assert len(set(server.ports)) == 1


@pytest.mark.timeout(30)
def test_exactly_read_bodies_give_their_connection_back() -> None:
    transport = Transport()
    get = head("HTTP/1.1 200 OK", "Content-Length: 4") + b"abcd"
    with RawServer([get] * 5 + [head("HTTP/1.1 200 OK", "Content-Length: 4")], keep_alive=True) as server:
        for _ in range(5):
            response = transport.request("GET", server.url + "/a")
            buffer = bytearray(4)
            assert response.readinto(buffer) == 4
            response.release_conn()
        for _ in range(3):
            transport.request("HEAD", server.url + "/a").close()
    assert len(set(server.ports)) == 1


@pytest.mark.timeout(30)
def test_a_body_without_length_ends_with_the_connection() -> None:
    transport = Transport()
    with RawServer([head("HTTP/1.1 200 OK") + b"until the end"]) as server:
        assert transport.request("GET", server.url + "/a").content == b"until the end"


@pytest.mark.timeout(30)
def test_interim_1xx_answers_are_skipped() -> None:
    transport = Transport()
    with RawServer([b"HTTP/1.1 100 Continue\r\n\r\n" + OK]) as server:
        response = transport.request("GET", server.url + "/a")
        assert (response.status, response.content) == (200, b"ok")


@pytest.mark.timeout(30)
def test_header_lookups_ignore_case_and_repeated_fields_are_joined() -> None:
    transport = Transport()
    answer = head("HTTP/1.1 200 OK", "X-A: 1", "x-a: 2", 'ETag: "e"', "Content-Length: 0")
    with RawServer([answer]) as server:
        response = transport.request("GET", server.url + "/a")
    assert response.headers["X-A"] == "1, 2"
    assert response.headers.get("etag") == '"e"' and "ETAG" in response.headers


@pytest.mark.timeout(30)
def test_request_headers_override_the_common_ones_and_a_body_goes_with_its_length() -> None:
    transport = Transport(headers={"User-Agent": "kara", "X-Common": "1"})
    with RawServer([OK], keep_alive=True) as server:
        transport.request("PUT", server.url + "/a", headers={"user-agent": "mine"}, body=b"12345").close()
    lines = server.heads[0].decode().split("\r\n")
    assert lines[0] == "PUT /a HTTP/1.1"
    names = [line.split(":")[0].lower() for line in lines[1:]]
    assert names.count("user-agent") == 1 and "user-agent: mine" in [line.lower() for line in lines]
    assert "X-Common: 1" in lines and "Content-Length: 5" in lines
    assert server.bodies == [b"12345"]


@pytest.mark.timeout(30)
def test_a_file_body_is_sent_from_its_position_with_its_length(tmp_path) -> None:
    path = tmp_path / "body.bin"
    path.write_bytes(b"0123456789")
    transport = Transport()
    with RawServer([OK], keep_alive=True) as server, open(path, "rb") as body:
        body.seek(4)
        transport.request("PUT", server.url + "/a", body=body).close()
    assert server.bodies == [b"456789"]


@pytest.mark.timeout(60)
def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    # The first connection answers once and is closed by the server after a moment, as
    # servers close idle keep-alive connections; the next request must not fail.
    transport = Transport()
    answer = head("HTTP/1.1 200 OK", "Content-Length: 2") + b"ok"
    with RawServer([answer]) as server:
        assert transport.request("GET", server.url + "/a").content == b"ok"
        time.sleep(0.3)
        assert transport.request("GET", server.url + "/b").content == b"ok"
    assert len(set(server.ports)) == 2


@pytest.mark.timeout(30)
def test_redirects_are_followed_and_credentials_stay_with_their_origin() -> None:
    transport = Transport(headers={"Authorization": "Bearer secret", "X-Cdn-Key": "k"}, secret_headers=["X-Cdn-Key"])
    with RawServer([OK]) as other:
        # Connection: close, as this server closes after each answer (no reuse race).
        same_origin = head("HTTP/1.1 302 Found", "Location: /moved", "Content-Length: 0", "Connection: close")
        elsewhere = head(
            "HTTP/1.1 307 Temporary Redirect", f"Location: {other.url}/there", "Content-Length: 0", "Connection: close"
        )
        with RawServer([same_origin, elsewhere]) as first:
            response = transport.request("GET", first.url + "/start")
            assert (response.status, response.content, response.url) == (200, b"ok", other.url + "/there")
    assert b"Bearer secret" in first.heads[1]  # same origin: kept
    assert b"secret" not in other.heads[0] and b"X-Cdn-Key" not in other.heads[0]


@pytest.mark.timeout(30)
def test_endless_redirects_end_in_a_transport_error() -> None:
    loop = head("HTTP/1.1 302 Found", "Location: /again", "Content-Length: 0", "Connection: close")
    with RawServer([loop]) as server, pytest.raises(TransportError, match="redirects"):
        Transport(max_redirects=3).request("GET", server.url + "/a")


@pytest.mark.timeout(30)
def test_writes_are_never_redirected() -> None:
    moved = head("HTTP/1.1 307 Temporary Redirect", "Location: /elsewhere", "Content-Length: 0")
    with RawServer([moved]) as server:
        assert Transport().request("PUT", server.url + "/a", body=b"x").status == 307


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"proxy")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(serve: Callable[..., str]) -> str:
    return serve(_ProxyHandler)


@pytest.mark.timeout(30)
def test_requests_go_through_the_environment_proxy(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    _ProxyHandler.seen.clear()
    assert Transport().request("GET", "http://kara.example.invalid/key").content == b"proxy"
    assert _ProxyHandler.seen == ["http://kara.example.invalid/key"]


@pytest.mark.timeout(30)
def test_no_proxy_exempts_hosts(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    _ProxyHandler.seen.clear()
    with RawServer([OK]) as server:
        assert Transport().request("GET", server.url + "/a").content == b"ok"
    assert _ProxyHandler.seen == []


@pytest.mark.timeout(60)
def test_a_forked_child_opens_its_own_connections() -> None:
    transport = Transport()
    with RawServer([OK], keep_alive=True) as server:
        assert transport.request("GET", server.url + "/parent").content == b"ok"
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one request, then report success through the pipe
            try:
                ok = transport.request("GET", server.url + "/child").content == b"ok"
                os.write(writer, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(writer)
        assert os.read(reader, 1) == b"1"
        os.waitpid(pid, 0)
        assert transport.request("GET", server.url + "/parent-again").content == b"ok"
    parent_ports = {port for head_, port in zip(server.heads, server.ports, strict=True) if b"/parent" in head_}
    child_port = next(port for head_, port in zip(server.heads, server.ports, strict=True) if b"/child" in head_)
    assert len(parent_ports) == 1 and child_port not in parent_ports


@pytest.mark.timeout(30)
def test_connect_timeout_applies_to_connecting() -> None:
    # A listening socket whose backlog is full never completes new handshakes.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(listener.getsockname())
            fillers.append(sock)
        transport = Transport(connect_timeout=0.5, read_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TransportError):
            transport.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/a").content  # noqa: B018
        assert time.monotonic() - started < 5
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_the_retry_budget_backs_off_and_gives_up_with_a_backend_error() -> None:
    budget = RetryBudget("GET x", budget=0.3, base=0.05, cap=0.1)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"failed after \d+ attempt"):
        while True:
            budget.wait("HTTP 503")
    assert 0.1 < time.monotonic() - started < 0.5 and budget.attempts >= 3
