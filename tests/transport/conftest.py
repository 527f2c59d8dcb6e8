"""Fixtures shared by the transport tests."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

Serve = Callable[[type[http.server.BaseHTTPRequestHandler]], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a threaded stdlib HTTP server on 127.0.0.1 for a handler class; returns its URL.

    Every server started in a test is shut down when the test ends."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handler: type[http.server.BaseHTTPRequestHandler]) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
