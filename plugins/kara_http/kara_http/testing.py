"""Real HTTP servers on 127.0.0.1 for tests and benchmarks.

- :class:`StaticServer`: a small asyncio web server (standard library only, HTTP or
  HTTPS) that serves a folder the way nginx serves a static mirror: ``GET``/``HEAD``,
  single ``Range`` requests, ``ETag``/``If-Range``, keep-alive and pipelining, cheaply
  (it shares the machine with the clients it serves). Its :class:`Faults` inject what
  real networks do: added latency, connections dropped mid-body, ``503`` with
  ``Retry-After``, stalled bodies, ``HEAD`` refused, ``Range`` ignored, redirects,
  forced statuses, idle connections closed.
- :class:`GatewayServer`: a ``kara serve`` gateway (uvicorn + starlette, the ``server``
  extra) running in a thread.

Both bind port 0 (the OS picks a free port) and are context managers.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import unquote

__all__ = ["Faults", "GatewayServer", "LoggedRequest", "StaticServer"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Bodies up to this size go out with the headers in one write; larger ones with
#: sendfile (the kernel copies them).
_INLINE_BODY = 256 * 1024
#: A request head larger than this is refused (431) and the connection closed.
_MAX_HEAD = 64 * 1024


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


class _Request(NamedTuple):
    method: str
    path: str
    #: Header names as sent (for the log) ...
    headers: dict[str, str]
    #: ... and in lower case (for lookups).
    fields: dict[str, str]
    keep_alive: bool


def _parse_head(head: bytes) -> _Request | None:
    """The request line and header fields of one request, or None if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        headers[name.strip()] = value.strip()
    fields = {name.lower(): value for name, value in headers.items()}
    connection = fields.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    path = target.partition("?")[0].partition("#")[0]
    return _Request(method, path, headers, fields, keep_alive)


def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order (keep-alive,
    pipelining); the added latency is a timer, so a waiting request costs no thread."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._loop = server.loop
        self._buffer = bytearray()
        self._busy = False
        self._closed = False
        self._transport: asyncio.Transport | None = None
        self._port = 0
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._port = transport.get_extra_info("peername")[1]
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._buffer += data
        if not self._busy:
            self._next()

    def abort(self) -> None:
        """Drop the connection now (the server is stopping)."""
        if self._transport is not None:
            self._transport.abort()

    def _next(self) -> None:
        if self._closed:
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                self._refuse(431)
            return
        request = _parse_head(bytes(self._buffer[:end]))
        if request is None or "transfer-encoding" in request.fields:
            self._refuse(400 if request is None else 501)
            return
        length = request.fields.get("content-length", "0")
        if not length.isdigit():
            self._refuse(400)
            return
        if len(self._buffer) < end + 4 + int(length):
            return  # the request body is still arriving (it is ignored: nothing is written)
        del self._buffer[: end + 4 + int(length)]
        self._busy = True
        self._server.log.append(
            LoggedRequest(request.method, request.path, request.fields.get("range"), request.headers, self._port)
        )
        latency = self._server.faults.latency
        if latency:
            self._loop.call_later(latency, self._respond, request)
        else:
            self._respond(request)

    def _refuse(self, status: int) -> None:
        assert self._transport is not None
        self._closed = True
        self._transport.write(_head(status, {"Content-Length": "0"}, keep_alive=False))
        self._transport.close()

    def _respond(self, request: _Request) -> None:
        if self._closed:
            return
        try:
            self._answer(request)
        except BaseException:
            # A bug here must not leave the client waiting for its read timeout; the
            # event loop reports the exception.
            self.abort()
            raise

    def _finish(self, keep_alive: bool) -> None:
        assert self._transport is not None
        if not keep_alive:
            self._closed = True
            self._transport.close()
            return
        self._busy = False
        self._next()
        idle_timeout = self._server.faults.idle_timeout
        if idle_timeout and not self._busy and not self._closed:
            self._idle = self._loop.call_later(idle_timeout, self._close_idle)

    def _close_idle(self) -> None:
        assert self._transport is not None
        self._closed = True
        self._transport.close()

    def _simple(self, request: _Request, status: int, headers: dict[str, str] | None = None) -> None:
        assert self._transport is not None
        self._transport.write(_head(status, {**(headers or {}), "Content-Length": "0"}, request.keep_alive))
        self._finish(request.keep_alive)

    def _answer(self, request: _Request) -> None:
        faults = self._server.faults
        path = request.path
        if path in faults.redirects:
            self._simple(request, 302, {"Location": faults.redirects[path]})
            return
        if path in faults.status_for:
            self._simple(request, faults.status_for[path])
            return
        if faults.take("unavailable"):
            headers = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            self._simple(request, 503, headers)
            return
        if request.method not in ("GET", "HEAD"):
            self._simple(request, 501, {"Allow": "GET, HEAD"})
            return
        send_body = request.method == "GET"
        if not send_body and faults.head_not_allowed:
            self._simple(request, 405, {"Allow": "GET"})
            return
        opened = self._server.open(path)
        if opened is None:
            self._simple(request, 404)
            return
        fd, st, full = opened
        try:
            self._answer_file(request, send_body, fd, st, full)
        except BaseException:
            os.close(fd)
            raise

    def _answer_file(self, request: _Request, send_body: bool, fd: int, st: os.stat_result, full: str) -> None:
        # Owns fd: closes it, or hands it to the body sender, which does.
        faults = self._server.faults
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size, 200
        wanted = request.fields.get("range")
        if request.fields.get("if-range", etag) != etag:
            wanted = None  # the client's copy is outdated: send the whole current object
        if wanted and not faults.ignore_range:
            match = _RANGE.match(wanted.strip())
            if match is not None and match.groups() != ("", ""):
                first, last = match.groups()
                if first == "":
                    start, end = max(0, size - int(last)), size
                else:
                    start, end = int(first), size if last == "" else min(size, int(last) + 1)
            if match is None or match.groups() == ("", "") or start >= size:
                os.close(fd)
                self._simple(request, 416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        headers = {"Content-Length": str(end - start), "Accept-Ranges": "bytes"}
        if faults.send_etag:
            headers["ETag"] = etag
        headers["Content-Type"] = "application/octet-stream"
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        head = _head(status, headers, request.keep_alive)
        assert self._transport is not None
        if not send_body:
            os.close(fd)
            self._transport.write(head)
            self._finish(request.keep_alive)
            return
        stop = end
        if faults.drop_after and end - start > faults.drop_after and faults.take("drop"):
            stop = start + faults.drop_after
        if faults.stall and faults.take("stall"):
            self._transport.write(head)
            self._loop.call_later(faults.stall, self._send_body, request, fd, full, b"", start, stop, end)
            return
        self._send_body(request, fd, full, head, start, stop, end)

    def _send_body(self, request: _Request, fd: int, full: str, head: bytes, start: int, stop: int, end: int) -> None:
        assert self._transport is not None
        if self._closed:
            os.close(fd)
            return
        if stop - start > _INLINE_BODY:
            if head:
                self._transport.write(head)
            self._loop.create_task(self._sendfile(request, fd, full, start, stop, end))
            return
        try:
            data = os.pread(fd, stop - start, start) if stop > start else b""
        finally:
            os.close(fd)
        # One write (usually one send) for the headers and a small body.
        self._transport.write(head + data)
        self._body_sent(request, full, stop < end)

    async def _sendfile(self, request: _Request, fd: int, full: str, start: int, stop: int, end: int) -> None:
        assert self._transport is not None
        with open(fd, "rb", closefd=True) as fh:
            try:
                # sendfile: the kernel copies the bytes, so the server's own CPU (shared
                # with the clients it serves in tests and benchmarks) is not what limits them.
                await self._loop.sendfile(self._transport, fh, start, stop - start)
            except (OSError, RuntimeError):
                # The client went away mid-body (a reader that stopped early).
                self.abort()
                return
        self._body_sent(request, full, stop < end)

    def _body_sent(self, request: _Request, full: str, dropped: bool) -> None:
        assert self._transport is not None
        if not dropped:
            self._finish(request.keep_alive)
            return
        # Drop the connection mid-body, the way a crashed proxy or a reset does: what was
        # written still goes out, then the connection closes.
        self._closed = True
        self._transport.close()
        on_drop = self._server.faults.on_drop
        if on_drop is not None:
            on_drop(full)


class _Server:
    """The listening socket, the event loop that serves it and the shared state."""

    def __init__(self, root: str, faults: Faults, tls: ssl.SSLContext | None) -> None:
        self.root = os.path.realpath(root)
        self.tls = tls
        self.faults = faults
        self.log: list[LoggedRequest] = []
        self.connections: set[_Connection] = set()
        # select() sleeps to the microsecond; epoll (the default) rounds every wait up to
        # a whole millisecond, which made the added latency up to 1 ms longer than asked
        # whenever other connections woke the loop in between. A test server holds far
        # fewer than FD_SETSIZE (1024) descriptors.
        self.loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self._stopped = self.loop.create_future()
        # Bound now, so the port is known before serving starts (early connections wait
        # in the backlog).
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=128)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

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

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (from any thread) or KeyboardInterrupt."""
        loop = self.loop
        server = loop.run_until_complete(loop.create_server(lambda: _Connection(self), sock=self.socket, ssl=self.tls))
        try:
            loop.run_until_complete(self._stopped)
        finally:
            server.close()
            for connection in list(self.connections):
                connection.abort()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            # One more turn of the loop: aborted transports close their sockets in
            # callbacks, and cancelled body transfers finish.
            loop.run_until_complete(_settle())
            loop.close()

    def stop(self) -> None:
        """Make :meth:`serve_forever` return (thread-safe)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(lambda: self._stopped.done() or self._stopped.set_result(None))


async def _settle() -> None:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*others, return_exceptions=True)
    await asyncio.sleep(0)


class StaticServer:
    """A static web server with Range support serving ``root`` on 127.0.0.1.

    ``with StaticServer(store_dir) as server: KaraStorage(server.url + "/")`` reads
    a file:// store's folder as an http:// mirror. ``server.faults`` changes behaviour
    on the fly; ``server.log`` lists every request received. With ``tls`` (a server
    context holding a certificate) it speaks HTTPS.

    One event loop thread answers every connection (the added latency is a timer, so
    waiting requests hold no thread): per request it costs a small fraction of a
    threaded standard-library server's CPU, which matters when it shares the machine
    with the clients it serves, as in tests and benchmarks.
    """

    def __init__(self, root: str, faults: Faults | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.faults = faults or Faults()
        self._server = _Server(root, self.faults, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kara-static-server", daemon=True)

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
            self._server.stop()
            self._thread.join(timeout=5)
        else:
            self._server.loop.close()
        self._server.socket.close()

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
        # The event loop runs in the main thread: no thread switch per request.
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.socket.close()


if __name__ == "__main__":
    main()
