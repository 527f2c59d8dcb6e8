"""moto's S3 server on 127.0.0.1 with a request counter, in a thread or its own process.

The counter lets tests and benchmarks show how many requests an operation cost on the
server side: ``GET /_kara/requests`` answers the count, ``DELETE /_kara/requests``
resets it. :func:`main` serves on a random port and prints
``PORT <n>`` (benchmarks run it apart so the server does not share the client's GIL), and
serves until its standard input ends.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["CountingApp", "make_s3_server"]

COUNTER_PATH = "/_kara/requests"


class CountingApp:
    """WSGI middleware: counts every request it passes to ``app``.

    With ``ignore_conditional_writes`` set it drops ``If-None-Match`` from requests, as
    S3-compatible servers without conditional writes do (tests of kara's fallback).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.count = 0
        #: (path, Range header or None) of every GET since the last reset.
        self.gets: list[tuple[str, str | None]] = []
        #: (method, path, query string) of every request since the last reset.
        self.log: list[tuple[str, str, str]] = []
        self.ignore_conditional_writes = False
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTER_PATH:
            if environ.get("REQUEST_METHOD") == "DELETE":
                with self._lock:
                    self.count = 0
                    self.gets = []
                    self.log = []
            body = str(self.count).encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        with self._lock:
            self.count += 1
            self.log.append(
                (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
            )
            if environ.get("REQUEST_METHOD") == "GET":
                self.gets.append((environ.get("PATH_INFO", ""), environ.get("HTTP_RANGE")))
        if self.ignore_conditional_writes:
            environ.pop("HTTP_IF_NONE_MATCH", None)
        return self.app(environ, start_response)


def make_s3_server(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, CountingApp]:
    """A threaded werkzeug server running moto's S3 (not started) and its counter."""
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    # One line per request on stderr would drown test and benchmark output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    return server, app


def main() -> None:
    """Serve until standard input ends (the parent closed it, or died); print the port first.

    A parent killed without the chance to stop its server (SIGKILL, an unhandled SIGTERM)
    leaves no server behind: its end of the pipe closes with it.
    """
    server, _ = make_s3_server()
    print(f"PORT {server.server_port}", flush=True)
    threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True).start()
    sys.stdin.buffer.read()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    sys.exit(main())
