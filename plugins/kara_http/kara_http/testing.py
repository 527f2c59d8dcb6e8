"""Real HTTP servers on 127.0.0.1 for tests and benchmarks.

- :class:`StaticServer`: a web server on the standard library's :mod:`http.server`
  (HTTP or HTTPS) that serves a folder the way nginx serves a static mirror:
  ``GET``/``HEAD``, single ``Range`` requests, ``ETag``/``If-Range``, keep-alive and
  pipelining, bodies sent with ``sendfile``. Its :class:`Faults` inject what
  real networks do: added latency, connections dropped mid-body, ``503`` with
  ``Retry-After``, stalled bodies, ``HEAD`` refused, ``Range`` ignored, redirects,
  forced statuses, idle connections closed.
- :class:`GatewayServer`: a ``kara serve`` gateway (uvicorn + starlette, the ``server``
  extra) running in a thread.

Both bind port 0 (the OS picks a free port) and are context managers.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote

__all__ = ["Faults", "GatewayServer", "LoggedRequest", "StaticServer"]

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
#: Bodies up to this size go out with the headers in one write; larger ones with
#: sendfile (the kernel copies them).
_INLINE_BODY = 256 * 1024


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
    #: Close a kept-alive connection after this many idle seconds, without notice (as
    #: servers do; a client may already be sending its next request on it). 0: never.
    idle_timeout: float = 0.0
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


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET and HEAD from the served folder; the standard library parses requests."""

    protocol_version = "HTTP/1.1"
    server_version = "kara-static"
    sys_version = ""
    #: Answers are buffered, so a head and a small body leave in one send; larger
    #: bodies go out with sendfile after the buffer is flushed.
    wbufsize = _INLINE_BODY
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body may leave in two writes; without TCP_NODELAY, Nagle's
        # algorithm holds the body until the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.connections.discard(self.connection)

    def handle_one_request(self) -> None:
        # An idle keep-alive connection is closed after faults.idle_timeout seconds,
        # without notice, as servers do (http.server closes it when the read times out).
        self.connection.settimeout(self.server.faults.idle_timeout or None)
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: requests are in ``StaticServer.log``."""

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _refuse_other_method(self) -> None:
        self.close_connection = True  # its body, if any, is not read
        self._simple(501, {"Allow": "GET, HEAD"})

    do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _refuse_other_method

    # -- answering ---------------------------------------------------------------------

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _simple(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._head(status, {**(headers or {}), "Content-Length": "0"})

    def _serve(self, send_body: bool) -> None:
        if "transfer-encoding" in self.headers or not (self.headers.get("content-length") or "0").isdigit():
            self.close_connection = True
            self._simple(501 if "transfer-encoding" in self.headers else 400)
            return
        length = int(self.headers.get("content-length") or "0")
        if length:
            self.rfile.read(length)  # a body on GET/HEAD means nothing here: skip it
        path = self.path.partition("?")[0].partition("#")[0]
        server = self.server
        with server.lock:
            port = self.client_address[1]
            server.log.append(LoggedRequest(self.command, path, self.headers.get("range"), dict(self.headers), port))
        faults = server.faults
        if faults.latency:
            time.sleep(faults.latency)
        if path in faults.redirects:
            self._simple(302, {"Location": faults.redirects[path]})
            return
        if path in faults.status_for:
            self._simple(faults.status_for[path])
            return
        if faults.take("unavailable"):
            self._simple(503, {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {})
            return
        if not send_body and faults.head_not_allowed:
            self._simple(405, {"Allow": "GET"})
            return
        opened = server.open(path)
        if opened is None:
            self._simple(404)
            return
        fd, st, full = opened
        with open(fd, "rb", closefd=True) as fh:
            self._answer_file(send_body, fh, st, full)

    def _answer_file(self, send_body: bool, fh: BinaryIO, st: os.stat_result, full: str) -> None:
        faults = self.server.faults
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size, 200
        wanted = self.headers.get("range")
        if self.headers.get("if-range", etag) != etag:
            wanted = None  # the client's copy is outdated: send the whole current object
        if wanted and not faults.ignore_range:
            match = _RANGE.fullmatch(wanted.strip())
            if match is not None and match.groups() != ("", ""):
                first, last = match.groups()
                if first == "":
                    start, end = max(0, size - int(last)), size
                else:
                    start, end = int(first), size if last == "" else min(size, int(last) + 1)
            if match is None or match.groups() == ("", "") or start >= size:
                self._simple(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        headers = {"Content-Length": str(end - start), "Accept-Ranges": "bytes"}
        if faults.send_etag:
            headers["ETag"] = etag
        headers["Content-Type"] = "application/octet-stream"
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._head(status, headers)
        if not send_body:
            return
        stop = end
        if faults.drop_after and end - start > faults.drop_after and faults.take("drop"):
            stop = start + faults.drop_after
        if faults.stall and faults.take("stall"):
            self.wfile.flush()
            time.sleep(faults.stall)
        if stop - start <= _INLINE_BODY:
            self.wfile.write(os.pread(fh.fileno(), stop - start, start))
        else:
            # sendfile: the kernel copies the bytes (TLS sockets fall back to send).
            self.wfile.flush()
            self.connection.sendfile(fh, start, stop - start)
        if stop < end:
            # Drop the connection mid-body, as a crashed proxy or a reset does.
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            if faults.on_drop is not None:
                faults.on_drop(full)


class _Server(http.server.ThreadingHTTPServer):
    """The listening socket, a thread per connection, and the shared state."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, root: str, faults: Faults, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = os.path.realpath(root)
        self.tls = tls
        self.faults = faults
        self.log: list[LoggedRequest] = []
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the connection's own thread, on its first read.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, closed pools, dropped bodies) are routine here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def open(self, url_path: str) -> tuple[int, os.stat_result, str] | None:
        """An open descriptor, the stat and the path of the regular file at ``url_path``.

        Nothing outside ``root`` is served: ``..`` segments (also percent-encoded) and NUL
        bytes find nothing. The path is not resolved component by component (a lstat
        each), so symbolic links inside the folder are followed, as a web server does.
        """
        relative = unquote(url_path)
        if not relative.startswith("/") or "\x00" in relative or ".." in relative.split("/"):
            return None
        full = self.root + relative
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None
        return fd, st, full

    def drop_connections(self) -> None:
        """Shut every open connection down (the server is stopping)."""
        with self.lock:
            connections = list(self.connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StaticServer:
    """A static web server with Range support serving ``root`` on 127.0.0.1.

    ``with StaticServer(store_dir) as server: KaraStorage(server.url + "/")`` reads
    a file:// store's folder as an http:// mirror. ``server.faults`` changes behaviour
    on the fly; ``server.log`` lists every request received. With ``tls`` (a server
    context holding a certificate) it speaks HTTPS. Requests are parsed by the
    standard library's :mod:`http.server`, one thread per connection.
    """

    def __init__(self, root: str, faults: Faults | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.faults = faults or Faults()
        self._server = _Server(root, self.faults, tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kara-static-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The TCP port the OS gave the server."""
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with TLS): the URL of ``root``."""
        scheme = "https" if self._server.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log(self) -> list[LoggedRequest]:
        """Every request received so far (method, URL path, Range header)."""
        return self._server.log

    def start(self) -> StaticServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the listening socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.drop_connections()
        self._server.server_close()

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
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
