"""Real HTTP servers on 127.0.0.1 for tests and benchmarks.

- :class:`StaticServer`: a small threaded web server (standard library only) that serves
  a folder the way nginx serves a static mirror: ``GET``/``HEAD``, single ``Range``
  requests, keep-alive. Its :class:`Faults` inject what real networks do: added latency,
  connections dropped mid-body, ``503`` with ``Retry-After``, stalled bodies, ``HEAD``
  refused, ``Range`` ignored, forced statuses.
- :class:`GatewayServer`: a ``kara serve`` gateway (uvicorn + starlette, the ``server``
  extra) running in a thread.

Both bind port 0 (the OS picks a free port) and are context managers.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["Faults", "GatewayServer", "LoggedRequest", "StaticServer"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Faults:
    """Faults a :class:`StaticServer` injects; change them while it runs.

    Counted faults (``drop_count``, ``unavailable_count``, ``stall_count``) apply to that
    many of the next matching responses, then stop.
    """

    #: Seconds added before every response (a far-away server).
    latency: float = 0.0
    #: Answer ranged GETs with ``200`` and the whole file, as some servers do.
    ignore_range: bool = False
    #: Answer ``HEAD`` with ``405 Method Not Allowed``.
    head_not_allowed: bool = False
    #: Break the connection after sending this many body bytes ...
    drop_after: int = 0
    #: ... for this many GET responses with a body longer than ``drop_after``.
    drop_count: int = 0
    #: Answer this many requests with ``503`` (and ``Retry-After`` if set).
    unavailable_count: int = 0
    retry_after: int | None = None
    #: Wait ``stall`` seconds after the headers of this many GET responses.
    stall: float = 0.0
    stall_count: int = 0
    #: Send an ETag (clients resume with If-Range); False: no validator at all.
    send_etag: bool = True
    #: Called (with the file path) right after a connection is dropped mid-body.
    on_drop: Callable[[str], None] | None = None
    #: Redirect a URL path elsewhere with ``302`` (as a CDN does): ``{"/a.bin": "/b.bin"}``.
    redirects: dict[str, str] = field(default_factory=dict)
    #: Force a status for a URL path (``{"/prefix/secret.bin": 403}``).
    status_for: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        """Consume one occurrence of the counted fault ``name`` (``"drop"``, ...)."""
        with self._lock:
            left = getattr(self, name + "_count")
            if left <= 0:
                return False
            setattr(self, name + "_count", left - 1)
            return True


@dataclass(frozen=True)
class LoggedRequest:
    """One request a :class:`StaticServer` received."""

    method: str
    path: str
    range: str | None
    #: The request headers (names as sent).
    headers: dict[str, str] = field(default_factory=dict)
    #: The client's TCP port: requests with the same port came over one connection.
    client_port: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle and delayed
        # ACKs add ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read :attr:`StaticServer.log` instead."""

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _simple(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file(self, url_path: str) -> str | None:
        relative = unquote(url_path).lstrip("/")
        root = self.server.root
        full = os.path.realpath(os.path.join(root, relative))
        if not (full == root or full.startswith(root + os.sep)) or not os.path.isfile(full):
            return None
        return full

    def _serve(self, send_body: bool) -> None:
        faults = self.server.faults
        url_path = urlsplit(self.path).path
        self.server.log.append(
            LoggedRequest(self.command, url_path, self.headers.get("Range"), dict(self.headers), self.client_address[1])
        )
        if faults.latency:
            time.sleep(faults.latency)
        if url_path in faults.redirects:
            self._simple(302, {"Location": faults.redirects[url_path]})
            return
        if url_path in faults.status_for:
            self._simple(faults.status_for[url_path])
            return
        if faults.take("unavailable"):
            headers = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            self._simple(503, headers)
            return
        if not send_body and faults.head_not_allowed:
            self._simple(405, {"Allow": "GET"})
            return
        full = self._file(url_path)
        if full is None:
            self._simple(404)
            return
        stat = os.stat(full)
        size = stat.st_size
        etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        if self.headers.get("If-Range", etag) != etag:
            wanted = None  # the client's copy is outdated: send the whole current object
        if wanted and not faults.ignore_range:
            match = _RANGE.match(wanted.strip())
            if match is None or match.groups() == ("", ""):
                self._simple(416, {"Content-Range": f"bytes */{size}"})
                return
            first, last = match.groups()
            if first == "":
                start, end = max(0, size - int(last)), size
            else:
                start, end = int(first), size if last == "" else min(size, int(last) + 1)
            if start >= size:
                self._simple(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if faults.send_etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if send_body:
            self._body(full, start, end)

    def _body(self, full: str, start: int, end: int) -> None:
        faults = self.server.faults
        stop = end
        if faults.drop_after and end - start > faults.drop_after and faults.take("drop"):
            stop = start + faults.drop_after
        if faults.stall and faults.take("stall"):
            self.wfile.flush()
            time.sleep(faults.stall)
        self.wfile.flush()
        if stop <= start:
            return
        with open(full, "rb") as fh:
            # sendfile: the kernel copies the bytes, so the server's own CPU (shared with
            # the clients it serves in tests and benchmarks) is not what limits them.
            self.connection.sendfile(fh, start, stop - start)
        if stop < end:
            # Drop the connection mid-body, the way a crashed proxy or a reset does.
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            if faults.on_drop is not None:
                faults.on_drop(full)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: str, faults: Faults) -> None:
        self.root = os.path.realpath(root)
        self.faults = faults
        self.log: list[LoggedRequest] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients close connections mid-body all the time (a reader that stops early,
        # a ranged reader that got enough): that is not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class StaticServer:
    """A static web server with Range support serving ``root`` on 127.0.0.1.

    ``with StaticServer(store_dir) as server: KaraStorage(server.url + "/")`` reads
    a file:// store's folder as an http:// mirror. ``server.faults`` changes behaviour
    on the fly; ``server.log`` lists every request received.
    """

    def __init__(self, root: str, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._server = _Server(root, self.faults)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kara-static-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The TCP port the OS gave the server."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the URL of ``root``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> list[LoggedRequest]:
        """Every request received so far (method, URL path, Range header)."""
        return self._server.log

    def start(self) -> StaticServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayServer:
    """A ``kara serve`` gateway for ``store_url`` on 127.0.0.1, run by uvicorn in a thread.

    Keyword arguments go to :func:`kara_http.gateway.create_app` (``token``,
    ``read_token_required``, ``max_body_size``, ``store_options``).
    """

    def __init__(self, store_url: str, **app_options: Any) -> None:
        import uvicorn

        from .gateway import create_app

        self.app = create_app(store_url, **app_options)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="kara-gateway", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        sockets = self._server.servers[0].sockets
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

    def start(self) -> GatewayServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the kara gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a folder as a static mirror until interrupted (benchmarks run it as a process).

    ``python -m kara_http.testing ROOT [--latency SECONDS] [--ignore-range]`` prints the
    server's URL on the first line of stdout.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kara_http.testing", description=main.__doc__)
    parser.add_argument("root", help="folder to serve")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every response")
    parser.add_argument("--ignore-range", action="store_true", help="answer ranged requests with the whole file")
    args = parser.parse_args(argv)
    server = StaticServer(args.root, Faults(latency=args.latency, ignore_range=args.ignore_range))
    print(server.url, flush=True)
    try:
        server._server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
