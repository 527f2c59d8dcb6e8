"""A lean HTTP/1.1 client for one origin: the transport of every request without a proxy.

Directory loads and block probes make thousands of small requests; through urllib3 and
``http.client`` each costs about 300 Python calls (header objects, the ``email``
parser, timeouts, retry objects) and several system calls. Here a request is one
``sendall`` of the whole head (and body) and, for a small object, usually one
``recv_into`` that brings in the response head with the start of the body; the rest of
the body is received straight into the caller's buffer. Every read thread's system
call releases the GIL, so fewer of them also means fewer GIL hand-offs between threads.

It speaks plain HTTP/1.1 over TCP (or TLS): keep-alive, bodies framed by
``Content-Length``, ``chunked`` or the end of the connection, no redirects (the caller
follows them), no proxies (those requests go through requests' session).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import BinaryIO

__all__ = ["ResponseHeaders", "WirePool", "WireResponse"]

#: Bytes received per system call while reading a response head (and whatever part of
#: the body comes with it). Also the limit of one response head.
_BUFFER = 64 * 1024
#: Chunks in which a request body from a file is sent.
_SEND_CHUNK = 1024 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseHeaders(dict[str, str]):
    """Response header fields by lower-case name; lookups ignore case, as in HTTP.

    A field sent several times holds its values joined by ``", "`` (RFC 9110 5.3).
    """

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """The value of field ``name`` (any case), or ``default``."""
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Connection:
    """A socket with a receive buffer; the buffer holds bytes received but not consumed."""

    __slots__ = ("buffer", "fresh", "sock", "start", "stop", "view")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray(_BUFFER)
        self.view = memoryview(self.buffer)
        self.start = 0
        self.stop = 0
        #: True until a response has been read through it: a request that fails on a
        #: reused connection may have met a keep-alive timeout of the server.
        self.fresh = True

    def _fill(self) -> None:
        """Receive more bytes behind the unconsumed ones; EOF raises ConnectionError."""
        if self.start == self.stop:
            self.start = self.stop = 0
        elif self.stop == len(self.buffer):
            if self.start == 0:
                raise ConnectionError(f"response line or header larger than {_BUFFER} bytes")
            kept = bytes(self.view[self.start : self.stop])
            self.view[: len(kept)] = kept
            self.start, self.stop = 0, len(kept)
        count = self.sock.recv_into(self.view[self.stop :])
        if count == 0:
            raise ConnectionError("the server closed the connection")
        self.stop += count

    def read_until(self, marker: bytes) -> bytes:
        """The bytes up to ``marker`` (consumed, marker excluded)."""
        searched = self.start
        while True:
            found = self.buffer.find(marker, searched, self.stop)
            if found >= 0:
                data = bytes(self.view[self.start : found])
                self.start = found + len(marker)
                return data
            searched = max(self.start, self.stop - len(marker) + 1)
            offset = self.start
            self._fill()
            searched -= offset - self.start  # _fill may move the bytes to the front

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes: buffered ones first, else straight from the socket.

        Returns 0 at the end of the connection.
        """
        available = self.stop - self.start
        if available:
            count = min(available, len(view))
            view[:count] = self.view[self.start : self.start + count]
            self.start += count
            return count
        return self.sock.recv_into(view)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class WireResponse:
    """One response: status, reason, headers and the body, read as a stream or at once.

    It offers what kara-http uses of :class:`requests.Response` (``status_code``,
    ``reason``, ``headers``, ``content``, ``close``, ``url``) and, as ``raw``, what it
    uses of urllib3's raw response (``readinto``, ``release_conn``). The connection
    goes back to the pool as soon as the body has been read to its end.
    """

    def __init__(
        self,
        pool: WirePool,
        conn: _Connection,
        method: str,
        url: str,
        status: int,
        reason: str,
        headers: ResponseHeaders,
        keep_alive: bool,
    ) -> None:
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.url = url
        self._pool = pool
        self._conn: _Connection | None = conn
        self._keep_alive = keep_alive
        self._content: bytes | None = None
        #: Body bytes left (Content-Length framing), None otherwise.
        self._left: int | None = None
        self._chunked = False
        #: Bytes left in the current chunk; -1 before the first chunk's size line.
        self._chunk_left = -1
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            self._left = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        else:
            length = headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    conn.close()
                    raise ConnectionError(f"invalid Content-Length {length!r}")
                self._left = int(length)
            else:
                self._keep_alive = False  # the body ends where the connection ends
        if self._left == 0:
            self._finish()

    @property
    def raw(self) -> WireResponse:
        """The body stream (``readinto``/``release_conn``), as urllib3's raw response."""
        return self

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Read body bytes into ``buffer``; 0 at the end of the body.

        A connection that ends before the announced length raises ConnectionError.
        """
        conn = self._conn
        view = memoryview(buffer).cast("B")
        if conn is None or not view:
            return 0
        try:
            if self._chunked:
                return self._read_chunked(conn, view)
            if self._left is not None and len(view) > self._left:
                view = view[: self._left]
            count = conn.readinto(view)
        except BaseException:
            self.close()
            raise
        if count == 0:
            if self._left is None:
                self._finish()
                return 0
            self.close()
            raise ConnectionError(f"the connection ended {self._left} bytes before the end of the body")
        if self._left is not None:
            self._left -= count
            if self._left == 0:
                self._finish()
        return count

    def _read_chunked(self, conn: _Connection, view: memoryview) -> int:
        while self._chunk_left <= 0:
            if self._chunk_left == 0:
                conn.read_until(b"\r\n")  # the end of the previous chunk's data
            size_line = conn.read_until(b"\r\n").split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ConnectionError(f"invalid chunk size line {size_line[:40]!r}") from None
            if size == 0:
                while conn.read_until(b"\r\n"):
                    pass  # trailer fields, up to the empty line
                self._finish()
                return 0
            self._chunk_left = size
        count = conn.readinto(view[: self._chunk_left])
        if count == 0:
            raise ConnectionError("the connection ended inside a chunk")
        self._chunk_left -= count
        return count

    @property
    def content(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._content is None:
            if self._left is not None:
                out = bytearray(self._left)
                view = memoryview(out)
                filled = 0
                while filled < len(out):
                    filled += self.readinto(view[filled:])
                self._content = bytes(out)
            else:
                parts = []
                chunk = bytearray(_BUFFER)
                while count := self.readinto(chunk):
                    parts.append(bytes(chunk[:count]))
                self._content = b"".join(parts)
        return self._content

    def _finish(self) -> None:
        # The body was read to its end: the connection can serve the next request.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fresh = False
            if self._keep_alive:
                self._pool.release(conn)
            else:
                conn.close()

    def release_conn(self) -> None:
        """Done with this response: a fully read one already gave its connection back."""
        self.close()

    def close(self) -> None:
        """Done with this response; a connection with unread body bytes is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class WirePool:
    """Keep-alive connections to one origin, shared by threads; see the module docstring.

    ``headers`` are sent with every request (a request's own headers win). Up to
    ``maxsize`` idle connections are kept; more may be open at once.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        headers: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
        maxsize: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        default_port = 443 if scheme == "https" else 80
        self._address = (host, port)
        self._server_hostname = host
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._maxsize = maxsize
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        netloc = f"[{host}]" if ":" in host else host
        host_header = netloc if port == default_port else f"{netloc}:{port}"
        self._headers = {"Host": host_header, **headers}
        self._names = {name.lower() for name in self._headers}
        #: The header lines every request carries, encoded once.
        self._common = _header_lines(self._headers)

    def request(
        self, method: str, target: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None = None
    ) -> WireResponse:
        """Send one request and read the response head; the body is read from the result.

        ``target`` is the path and query; ``url`` the full URL (kept on the response).
        Transport failures raise OSError. A request that fails on a reused idle
        connection before any response byte came back is sent once more on a new one:
        the server may have closed the idle connection meanwhile.
        """
        head = self._head(method, target, headers, body)
        while True:
            conn = self._get()
            reused = not conn.fresh
            try:
                self._send(conn, head, body)
                return self._response(conn, method, url)
            except OSError:
                conn.close()
                if not reused or conn.stop > 0:
                    raise

    def _head(self, method: str, target: str, headers: dict[str, str], body: bytes | BinaryIO | None) -> bytes:
        fields = dict(headers)
        if body is not None:
            size = len(body) if isinstance(body, bytes) else body.seek(0, os.SEEK_END)
            fields["Content-Length"] = str(size)
        elif method in ("POST", "PUT"):
            fields["Content-Length"] = "0"
        common = self._common
        if fields and not self._names.isdisjoint(name.lower() for name in fields):
            own = {name.lower() for name in fields}
            common = _header_lines({k: v for k, v in self._headers.items() if k.lower() not in own})
        return f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + _header_lines(fields) + common + b"\r\n"

    def _send(self, conn: _Connection, head: bytes, body: bytes | BinaryIO | None) -> None:
        if body is None:
            conn.sock.sendall(head)
        elif isinstance(body, bytes):
            # One system call for a small request; a large body is not copied.
            if len(body) <= _BUFFER:
                conn.sock.sendall(head + body)
            else:
                conn.sock.sendall(head)
                conn.sock.sendall(body)
        else:
            conn.sock.sendall(head)
            body.seek(0)
            while chunk := body.read(_SEND_CHUNK):
                conn.sock.sendall(chunk)

    def _response(self, conn: _Connection, method: str, url: str) -> WireResponse:
        while True:
            lines = conn.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}")
            status = int(code)
            if status >= 200 or status == 101:
                break
            # 1xx interim responses (100 Continue, 103 Early Hints): the answer follows.
        headers = ResponseHeaders()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            old = dict.get(headers, key)
            dict.__setitem__(headers, key, value if old is None else f"{old}, {value}")
        connection = (dict.get(headers, "connection") or "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        return WireResponse(self, conn, method, url, status, reason, headers, keep_alive)

    def _get(self) -> _Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        try:
            # Requests are written in one piece; never wait for ACKs of earlier ones.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._read_timeout)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._server_hostname)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def release(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next request (or close it if the pool is full or closed)."""
        if conn.start == conn.stop:
            # Empty: a request that fails on it before any byte arrives can be resent.
            conn.start = conn.stop = 0
            with self._lock:
                if not self._closed and len(self._idle) < self._maxsize:
                    self._idle.append(conn)
                    return
        conn.close()  # bytes beyond the response: the connection is out of step

    def close(self) -> None:
        """Close the idle connections; connections in use close when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _header_lines(headers: dict[str, str]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")
