"""Plain-HTTP/1.1 exchanges over pooled keep-alive sockets, for :class:`~kara_oss.session.PooledSession`.

urllib3 and http.client spend about 200 us of CPU on each small request (header
validation and formatting, the email package's header parser, a poll before every send
and receive because the socket has a timeout, a liveness poll before reusing a
connection); the exchange itself costs about 35 us. For ``http://`` endpoints without a
proxy, :class:`Origin` writes the request in one send and parses the answer itself;
the answer is handed out as a ``urllib3.HTTPResponse`` over :class:`Body`, so reading
it, streaming it and its failures (``ProtocolError`` on a broken body, ``ReadTimeoutError``)
are urllib3's as before.

Sockets are blocking with kernel timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``): one system
call per send or receive. A connection goes back to the pool once its answer has been
read to the end, unless the server said ``Connection: close``; one idle for more than
:data:`IDLE_CHECK` seconds is checked for a close by the server before it is reused. A
forked child process starts with no idle connections (they stay the parent's).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import struct
import threading
import time
import weakref
from collections.abc import Mapping

from urllib3 import HTTPHeaderDict, HTTPResponse

__all__ = ["IDLE_CHECK", "Body", "Origin", "WireError"]

#: Seconds a pooled connection may sit idle before it is checked for a close by the server.
IDLE_CHECK = 1.0
_RECV = 256 * 1024
_MAX_HEAD = 64 * 1024
# Bodies up to this size leave in the same send as the request line and headers.
_ONE_SEND = 256 * 1024
_NO_BODY_STATUS = frozenset([204, 304])


class WireError(Exception):
    """A failed exchange: ``kind`` is ``connect``, ``connect-timeout``, ``read-timeout`` or ``broken``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Connection:
    __slots__ = ("buffer", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""  # received bytes not consumed yet
        self.idle_since = 0.0

    def recv(self) -> bytes:
        try:
            data = self.sock.recv(_RECV)
        except BlockingIOError:
            # SO_RCVTIMEO expired (EAGAIN on a blocking socket).
            raise TimeoutError("timed out") from None
        return data

    def close(self) -> None:
        self.sock.close()


class Origin:
    """Keep-alive connections to one ``host:port`` and the exchanges over them."""

    def __init__(self, host: str, port: int, connect_timeout: float | None, read_timeout: float | None, size: int):
        self.host, self.port = host, port
        netloc = f"[{host}]" if ":" in host else host  # IPv6 literals are bracketed
        self.host_header = netloc if port == 80 else f"{netloc}:{port}"
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.size = size
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        _ORIGINS.add(self)

    def __repr__(self) -> str:
        return f"Origin({self.host_header})"

    # -- connections -----------------------------------------------------------------

    def _get(self) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if time.monotonic() - conn.idle_since < IDLE_CHECK or not _dropped(conn.sock):
                return conn
            conn.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise WireError(
                "connect-timeout", f"Connection to {self.host} timed out. (connect timeout={self.connect_timeout})"
            ) from exc
        except OSError as exc:
            raise WireError("connect", f"Failed to establish a new connection: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        if self.read_timeout is not None:
            seconds = int(self.read_timeout)
            timeval = struct.pack("ll", seconds, int((self.read_timeout - seconds) * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return _Connection(sock)

    def _put(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed and len(self._idle) < self.size:
                self._idle.append(conn)
                return
        conn.close()

    def _forget(self) -> None:
        # In a forked child: the sockets are the parent's too. Dropping them closes only
        # the child's descriptors; the parent's connections carry on.
        self._lock = threading.Lock()
        self._idle = []

    def close(self) -> None:
        """Close the idle connections; those in use close when their answer is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- exchanges -------------------------------------------------------------------

    def request(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> HTTPResponse:
        """Send one request and return its answer, the body not read yet.

        Raises :class:`WireError` if no answer arrives. ``headers`` must not contain
        ``Host`` (it is added) nor characters that would break the header block.
        """
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if "accept-encoding" not in headers:
            lines.append("Accept-Encoding: identity")  # what http.client adds
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn = self._get()
        try:
            try:
                if body and len(body) > _ONE_SEND:
                    conn.sock.sendall(head)
                    conn.sock.sendall(body)
                else:
                    conn.sock.sendall(head + body if body else head)
            except BlockingIOError:
                raise TimeoutError("timed out") from None
            status, reason, version, answer_headers = _read_head(conn)
        except TimeoutError as exc:
            conn.close()
            raise WireError("read-timeout", f"{self!r}: Read timed out. (read timeout={self.read_timeout})") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise WireError("broken", f"Connection aborted.: {exc!r}") from exc
        except BaseException:
            conn.close()
            raise
        reusable = version == "HTTP/1.1" and answer_headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            length: int | None = 0
            chunked = False
        else:
            chunked = "chunked" in answer_headers.get("transfer-encoding", "").lower()
            length = None if chunked else _content_length(answer_headers)
        if length is None and not chunked:
            reusable = False  # the body ends when the server closes the connection
        body_reader = Body(self, conn, length, chunked, reusable)
        return HTTPResponse(
            body=body_reader,
            headers=answer_headers,
            status=status,
            version=11 if version == "HTTP/1.1" else 10,
            version_string=version,
            reason=reason,
            preload_content=False,
            decode_content=False,
            original_response=body_reader,  # type: ignore[arg-type] - what urllib3 asks of it: close/isclosed
            request_method=method,
        )


class Body:
    """The body of one answer, read from its connection (``Content-Length`` or chunked).

    Once read to the end, the connection goes back to its pool (if reusable); closing it
    before the end closes the connection.
    """

    def __init__(self, origin: Origin, conn: _Connection, length: int | None, chunked: bool, reusable: bool) -> None:
        self._origin, self._conn = origin, conn
        self._remaining = length  # bytes left of the body, or of the current chunk when chunked
        self._chunked = chunked
        self._chunk_started = False
        self._reusable = reusable
        self._done = False
        if length == 0 and not chunked:
            self._finish()

    @property
    def closed(self) -> bool:
        """True once the body is read to the end or closed."""
        return self._conn is None

    def isclosed(self) -> bool:
        """Same as :attr:`closed` (what urllib3 asks of http.client's responses)."""
        return self._conn is None

    def readable(self) -> bool:
        """Bodies are read, never written."""
        return True

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        self._done = True
        if conn is not None:
            if self._reusable and not conn.buffer:
                self._origin._put(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Stop reading: the connection is closed unless the body was read to the end."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes of the body (all the rest if None); b"" at its end."""
        if self._conn is None or amt == 0:
            return b""
        if self._chunked:
            return self._read_chunked(amt)
        if self._remaining is None:  # until the server closes
            return self._read_until_close(amt)
        want = self._remaining if amt is None else min(amt, self._remaining)
        data = self._take(want, exact=amt is None)
        self._remaining -= len(data)
        if self._remaining == 0:
            self._finish()
        return data

    read1 = read

    def _take(self, want: int, exact: bool) -> bytes:
        """``want`` bytes, or (if not ``exact``) what is at hand up to that; IncompleteRead at EOF."""
        conn = self._conn
        assert conn is not None
        if not conn.buffer and (not exact or want <= _RECV):
            conn.buffer = conn.recv()
            if not conn.buffer:
                raise http.client.IncompleteRead(b"", want)
        if len(conn.buffer) >= want:
            data, conn.buffer = conn.buffer[:want], conn.buffer[want:]
            return data
        if not exact:
            data, conn.buffer = conn.buffer, b""
            return data
        # The rest of a large read: the kernel fills new bytes objects (MSG_WAITALL), with
        # the GIL released and no buffer zeroed first.
        pieces = [conn.buffer]
        have = len(conn.buffer)
        conn.buffer = b""
        while have < want:
            try:
                data = conn.sock.recv(want - have, socket.MSG_WAITALL)
            except BlockingIOError:
                raise TimeoutError("timed out") from None
            if not data:
                raise http.client.IncompleteRead(b"".join(pieces), want - have)
            pieces.append(data)
            have += len(data)
        return pieces[1] if len(pieces) == 2 and not pieces[0] else b"".join(pieces)

    def _read_until_close(self, amt: int | None) -> bytes:
        conn = self._conn
        assert conn is not None
        chunks = [conn.buffer]
        conn.buffer = b""
        size = len(chunks[0])
        while amt is None or size < amt:
            data = conn.recv()
            if not data:
                self._finish()
                break
            chunks.append(data)
            size += len(data)
        data = b"".join(chunks)
        if amt is not None and len(data) > amt:
            data, rest = data[:amt], data[amt:]
            if self._conn is not None:
                self._conn.buffer = rest
        return data

    def _line(self) -> bytes:
        conn = self._conn
        assert conn is not None
        while True:
            end = conn.buffer.find(b"\n")
            if end >= 0:
                line, conn.buffer = conn.buffer[: end + 1], conn.buffer[end + 1 :]
                return line
            if len(conn.buffer) > _MAX_HEAD:
                raise http.client.LineTooLong("chunk size")
            data = conn.recv()
            if not data:
                raise http.client.IncompleteRead(b"")
            conn.buffer += data

    def _read_chunked(self, amt: int | None) -> bytes:
        pieces: list[bytes] = []
        size = 0
        while amt is None or size < amt:
            if not self._remaining:
                if self._chunk_started:
                    self._line()  # the CRLF after a chunk's data
                self._chunk_started = True
                field = self._line().split(b";", 1)[0].strip()
                try:
                    self._remaining = int(field, 16)
                except ValueError:
                    raise http.client.IncompleteRead(b"".join(pieces)) from None
                if self._remaining == 0:
                    while self._line() not in (b"\r\n", b"\n"):
                        pass  # trailers
                    self._finish()
                    break
            want = self._remaining if amt is None else min(self._remaining, amt - size)
            data = self._take(want, exact=amt is None)
            self._remaining -= len(data)
            pieces.append(data)
            size += len(data)
        return b"".join(pieces)


def _read_head(conn: _Connection) -> tuple[int, str, str, HTTPHeaderDict]:
    """Read the status line and headers (skipping 100 Continue answers)."""
    while True:
        end = conn.buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(conn.buffer) > _MAX_HEAD:
                raise http.client.LineTooLong("header block")
            data = conn.recv()
            if not data:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            conn.buffer += data
            end = conn.buffer.find(b"\r\n\r\n", max(0, len(conn.buffer) - len(data) - 3))
        head, conn.buffer = conn.buffer[:end].decode("latin-1"), conn.buffer[end + 4 :]
        status_line, _, rest = head.partition("\r\n")
        version, _, status_reason = status_line.partition(" ")
        code, _, reason = status_reason.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise http.client.BadStatusLine(status_line)
        status = int(code)
        if status == 100:
            continue
        headers = HTTPHeaderDict()
        name = ""
        for line in rest.split("\r\n") if rest else ():
            if line[:1] in (" ", "\t") and name:
                headers.add(name, line.strip())  # an obsolete folded continuation
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise http.client.BadStatusLine(line)
            headers.add(name, value.strip(" \t"))
        return status, reason.strip(), version, headers


def _content_length(headers: HTTPHeaderDict) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        lengths = {int(v) for v in value.split(",")}
    except ValueError:
        return None
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    return length if length >= 0 else None


_ORIGINS: weakref.WeakSet[Origin] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for origin in list(_ORIGINS):
        origin._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _dropped(sock: socket.socket) -> bool:
    """True if an idle connection became readable: the server closed it (or sent junk)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
