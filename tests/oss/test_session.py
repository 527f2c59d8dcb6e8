"""PooledSession: the same requests on the wire as oss2's requests path, answers and failures alike."""

from __future__ import annotations

import io
import logging
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import oss2
import pytest
import requests
import urllib3
from kara_oss import wire
from kara_oss.session import PooledSession
from kara_oss.testing import OSSTestServer


@dataclass
class Seen:
    """One request as it arrived: request line, headers in order, body."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_set(self) -> list[tuple[str, str]]:
        return sorted((name.lower(), value) for name, value in self.headers)


Answer = Callable[[Seen], tuple[bytes, bool]]  # the raw answer, and whether to close after it


def ok(body: bytes = b"fine", extra: str = "") -> Answer:
    def answer(_: Seen) -> tuple[bytes, bool]:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nx-oss-request-id: R1\r\n{extra}\r\n"
        return head.encode() + body, False

    return answer


@dataclass
class Capture:
    """A raw HTTP/1.1 server on 127.0.0.1 that records requests and plays ``answer``."""

    answer: Answer
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        capture = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                if capture.tls is not None:
                    self.request = capture.tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                capture.connections += 1
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    headers = []
                    while (raw := self.rfile.readline()) not in (b"\r\n", b""):
                        name, _, value = raw.decode("latin-1").partition(":")
                        headers.append((name, value.strip()))
                    length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
                    seen = Seen(line.decode("latin-1").rstrip("\r\n"), headers, self.rfile.read(length))
                    capture.seen.append(seen)
                    data, close = capture.answer(seen)
                    self.wfile.write(data)
                    if close:
                        return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture() -> Iterator[Callable[..., Capture]]:
    started: list[Capture] = []

    def start(answer: Answer, tls: ssl.SSLContext | None = None) -> Capture:
        server = Capture(answer, tls=tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def pooled() -> PooledSession:
    session = PooledSession(pool_size=4)
    session.session.trust_env = False  # as OSSBackend sets it: the fast path needs it
    return session


def stock() -> oss2.Session:
    session = oss2.Session(pool_size=4)
    session.session.trust_env = False
    return session


def request(port: int, method: str = "GET", data: bytes | None = None, params: dict | None = None) -> oss2.http.Request:
    """An oss2 request with what oss2 adds (User-Agent, no Accept-Encoding) and signed-looking headers."""
    headers = {"date": "Fri, 27 Nov 2026 10:00:00 GMT", "authorization": "OSS id:sig", "x-oss-meta-k": "v w"}
    return oss2.http.Request(
        method, f"http://127.0.0.1:{port}/bucket/dir/a%20b%2Bc~%C3%A9", data=data, params=params, headers=headers
    )


def test_requests_reach_the_wire_exactly_as_through_requests(capture: Callable[..., Capture]) -> None:
    server = capture(ok())
    params = {"append": "", "position": 5, "prefix": "a b/c~é+&=", "skipped": None}
    for method, data in [("GET", None), ("PUT", b"body bytes"), ("POST", b""), ("DELETE", None)]:
        for session in (stock(), pooled()):
            session.do_request(request(server.port, method, data, params), (5, 5)).read()
        ours, theirs = server.seen[-1], server.seen[-2]
        assert (ours.line, ours.header_set(), ours.body) == (theirs.line, theirs.header_set(), theirs.body)
    assert server.seen[-1].line.startswith("DELETE /bucket/dir/a%20b%2Bc~%C3%A9?append=&position=5&prefix=a+b%2Fc")


def test_answers_read_as_through_requests(capture: Callable[..., Capture]) -> None:
    def chunked(_: Seen) -> tuple[bytes, bool]:
        body = b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nTrailer: x\r\n\r\n"
        head = 'HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nx-oss-a: 1\r\nx-oss-a: 2\r\nETag:  "E"\r\n\r\n'
        return head.encode() + body, False

    server = capture(chunked)
    answers = [session.do_request(request(server.port), (5, 5)) for session in (stock(), pooled())]
    theirs, ours = ((a.status, dict(a.headers), a.request_id, a.read()) for a in answers)
    assert ours == theirs
    assert ours[0] == 404 and ours[3] == b"abcdefg"


def test_keep_alive_connections_are_reused(capture: Callable[..., Capture]) -> None:
    server = capture(ok(b"x" * 1000))
    session = pooled()
    for _ in range(20):
        assert session.do_request(request(server.port), (5, 5)).read() == b"x" * 1000
    assert server.connections == 1


def test_a_connection_close_answer_is_not_reused(capture: Callable[..., Capture]) -> None:
    server = capture(lambda seen: (ok(extra="Connection: close\r\n")(seen)[0], True))
    session = pooled()
    for _ in range(3):
        assert session.do_request(request(server.port), (5, 5)).read() == b"fine"
    assert server.connections == 3


def test_an_idle_connection_the_server_closed_is_replaced(
    capture: Callable[..., Capture], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "IDLE_CHECK", 0.0)
    server = capture(lambda seen: (ok()(seen)[0], True))  # closes without saying so
    session = pooled()
    for _ in range(3):
        assert session.do_request(request(server.port), (5, 5)).read() == b"fine"
        time.sleep(0.05)  # the server's FIN arrives
    assert server.connections == 3


def test_a_forked_child_opens_its_own_connections(capture: Callable[..., Capture]) -> None:
    server = capture(ok())
    session = pooled()
    assert session.do_request(request(server.port), (5, 5)).read() == b"fine"
    pid = os.fork()
    if pid == 0:  # the child: its exit status says whether its request worked
        worked = False
        try:
            worked = session.do_request(request(server.port), (5, 5)).read() == b"fine"
        finally:
            os._exit(0 if worked else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert session.do_request(request(server.port), (5, 5)).read() == b"fine"
    assert server.connections == 2  # the parent's, still in use, and the child's own


def test_a_slow_answer_is_a_requests_read_timeout(capture: Callable[..., Capture]) -> None:
    def slow(seen: Seen) -> tuple[bytes, bool]:
        time.sleep(0.5)
        return ok()(seen)

    server = capture(slow)
    with pytest.raises(oss2.exceptions.RequestError) as caught:
        pooled().do_request(request(server.port), (5, 0.1))
    assert isinstance(caught.value.exception, requests.exceptions.ReadTimeout)


def test_a_refused_connection_is_a_requests_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(oss2.exceptions.RequestError) as caught:
        pooled().do_request(request(port), (5, 5))
    assert isinstance(caught.value.exception, requests.exceptions.ConnectionError)


def test_a_connection_dropped_before_the_answer_is_a_requests_connection_error(
    capture: Callable[..., Capture],
) -> None:
    server = capture(lambda seen: (b"", True))
    with pytest.raises(oss2.exceptions.RequestError) as caught:
        pooled().do_request(request(server.port), (5, 5))
    assert isinstance(caught.value.exception, requests.exceptions.ConnectionError)


def test_a_body_cut_short_is_a_urllib3_protocol_error(capture: Callable[..., Capture]) -> None:
    server = capture(lambda seen: (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40, True))
    answer = pooled().do_request(request(server.port), (5, 5))
    with pytest.raises(urllib3.exceptions.ProtocolError):
        answer.response.raw.read()


def test_requests_through_a_proxy_go_through_requests(capture: Callable[..., Capture]) -> None:
    proxy = capture(ok())
    req = oss2.http.Request(
        "GET", "http://oss.example.invalid/bucket/key", proxies={"http": f"http://127.0.0.1:{proxy.port}"}
    )
    assert pooled().do_request(req, (5, 5)).read() == b"fine"
    assert proxy.seen[0].line == "GET http://oss.example.invalid/bucket/key HTTP/1.1"


def test_a_redirect_is_followed_as_requests_follows_it(capture: Callable[..., Capture]) -> None:
    def redirect(seen: Seen) -> tuple[bytes, bool]:
        if "/moved" in seen.line:
            return ok(b"moved here")(seen)
        return b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n", False

    server = capture(redirect)
    assert pooled().do_request(request(server.port), (5, 5)).read() == b"moved here"


def test_file_object_uploads_stream_and_arrive_whole(oss_server: OSSTestServer) -> None:
    auth = oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret)
    bucket = oss2.Bucket(auth, f"http://{oss_server.endpoint}", oss_server.bucket, session=pooled())
    data = bytes(range(256)) * 5000
    stream = io.BytesIO(b"skipped" + data)
    stream.seek(7)
    bucket.put_object("streamed", stream)
    assert bucket.get_object("streamed").read() == data


def test_oss2_debug_log_lines_still_appear_when_asked_for(
    capture: Callable[..., Capture], caplog: pytest.LogCaptureFixture
) -> None:
    server = capture(ok())
    with caplog.at_level(logging.DEBUG, logger="oss2"):
        pooled().do_request(request(server.port), (5, 5)).read()
    assert any("Send request" in record.getMessage() for record in caplog.records)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    return key, cert


def test_https_verifies_the_server_certificate(capture: Callable[..., Capture], certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = capture(ok(), tls=tls)
    url = f"https://127.0.0.1:{server.port}/bucket/key"
    untrusting = pooled()
    with pytest.raises(oss2.exceptions.RequestError) as caught:
        untrusting.do_request(oss2.http.Request("GET", url), (5, 5))
    assert isinstance(caught.value.exception, requests.exceptions.SSLError)
    trusting = pooled()
    trusting.session.verify = str(cert)
    assert trusting.do_request(oss2.http.Request("GET", url), (5, 5)).read() == b"fine"
