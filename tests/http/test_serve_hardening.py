"""``kara serve`` hardening: TLS, request smuggling, head size limit, connection cap, idle timeout."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kara_core import KaraStorage

TLS = Path(__file__).resolve().parent / "tls"
KARA = [sys.executable, "-m", "kara_core.cli"]
TOKEN = "hardening-token-51c2"


class Serve:
    """A ``kara serve`` process; ``port`` and ``url`` from its banner."""

    def __init__(self, store_dir: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*KARA, "serve", f"file://{store_dir}", "--port", "0", "--token", TOKEN, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        banner = self.process.stderr.readline()
        match = re.search(r"at (https?)://127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        self.scheme, self.port = match.group(1), int(match.group(2))
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "kara serve did not start"
                time.sleep(0.05)

    def raw(self, request: bytes, timeout: float = 5.0) -> bytes:
        """Send raw bytes; everything received until the server closes or goes quiet."""
        received = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(request)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except TimeoutError:
                pass
        return received

    def stop(self) -> str:
        """Stop the server; what it wrote to stderr after its banner."""
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()  # uvicorn waits for TLS handshakes that never come
            _, err = self.process.communicate(timeout=20)
        return err or ""


@pytest.fixture
def plain(store_dir: Path) -> Iterator[Serve]:
    server = Serve(store_dir, "--max-connections", "4", "--idle-timeout", "1")
    yield server
    server.stop()


@pytest.mark.timeout(60)
def test_tls_serves_https_and_clients_write_with_the_token(store_dir: Path) -> None:
    server = Serve(store_dir, "--tls-cert", str(TLS / "cert.pem"), "--tls-key", str(TLS / "key.pem"))
    try:
        assert server.scheme == "https"
        store = KaraStorage(server.url, token=TOKEN, verify=str(TLS / "cert.pem"))
        with store.open_dataset("ns", "tls", "w", version="1") as ds:
            ds.write({"over": "tls"})
        with store.open_dataset("ns", "tls") as ds:
            assert list(ds) == [{"over": "tls"}]
        store.close()
        # Plain HTTP to the TLS port gets no answer a client could take for HTTP.
        assert not server.raw(b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


def test_tls_cert_without_key_is_a_usage_error(store_dir: Path) -> None:
    result = subprocess.run(
        [*KARA, "serve", f"file://{store_dir}", "--tls-cert", str(TLS / "cert.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--tls-key" in result.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPUT /smuggled HTTP/1.1\r\n\r\n",
        b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"Content-Length: +4\r\n\r\nabcd",
        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_smuggling_framings_are_refused(plain: Serve, store_dir: Path, framing: bytes) -> None:
    head = f"PUT /row/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
    answer = plain.raw(head + framing)
    assert answer.startswith(b"HTTP/1.1 400") or answer == b"", answer[:80]
    assert not (store_dir / "row" / "x").exists() and not (store_dir / "smuggled").exists()


@pytest.mark.timeout(60)
def test_bodies_that_break_off_are_answered_without_an_application_error(store_dir: Path) -> None:
    # uvicorn answers a bad chunk header itself (400) while the gateway answers the same
    # request 401 (no token, body unread): h11 refused the second answer, and uvicorn
    # logged it as an exception of the application. A body cut short by the client ends
    # the gateway's read with a disconnect. Neither may leave a traceback or a file.
    server = Serve(store_dir)
    try:
        for _ in range(3):
            for token in ("", f"Authorization: Bearer {TOKEN}\r\n"):
                head = f"PUT /row/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{token}".encode()
                answer = server.raw(head + b"Transfer-Encoding: chunked\r\n\r\n-2\r\nab")
                assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 401")), answer[:80]
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                    sock.sendall(head + b"Content-Length: 10\r\n\r\nab")
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):  # whatever comes, until the server closes
                        pass
        assert server.raw(b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200"
        )
    finally:
        log = server.stop()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    assert not (store_dir / "row").exists()


@pytest.mark.timeout(60)
def test_an_oversized_request_head_is_refused(plain: Serve) -> None:
    answer = plain.raw(b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")) or answer == b""


@pytest.mark.timeout(60)
def test_connections_past_the_cap_are_answered_503(plain: Serve) -> None:
    held = [socket.create_connection(("127.0.0.1", plain.port), timeout=5) for _ in range(6)]
    try:
        time.sleep(0.5)
        statuses = []
        for sock in held:
            sock.sendall(b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(sock.recv(65536)[:12])
        assert b"HTTP/1.1 503" in statuses
    finally:
        for sock in held:
            sock.close()


@pytest.mark.timeout(60)
def test_an_idle_client_is_disconnected(plain: Serve) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=10) as sock:
        sock.sendall(b"GET /.kara-gateway HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 8
