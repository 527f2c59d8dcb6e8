"""kara's keep-alive pool of httpcore HTTP/1.1 connections, and the slow-server timeout.

:class:`ConnectionPool` keeps, per origin (scheme, host, port), a list of idle
``httpcore.HTTP11Connection`` objects (h11 parses every answer; the pool only decides
which connection a request uses). It replaced ``httpcore.ConnectionPool``, whose every
request takes the pool lock, scans every connection of every origin (an ``is_readable``
poll on each idle one) and walks the queue of waiting requests: with the 32 threads of a
folder load that bookkeeping cost more CPU than the HTTP itself (docs/transport.md,
"Profile"). Here a request pops one idle connection of its origin (most recently used
first) and checks only that one. What the pool guarantees:

- **Limits per origin**: at most ``max_connections`` connections to one origin, idle or
  busy; a request that finds none free waits up to ``pool_timeout`` for one to be
  released (then ``httpcore.PoolTimeout``).
- **Thread safety**: one lock guards the idle lists and counts; connecting, sending and
  receiving happen outside it.
- **Fork safety**: the pool remembers its process; in a forked child it forgets every
  inherited connection (never closing or using them: they belong to the parent) and
  makes a new lock, since the parent's may have been held by another thread at fork.
- **Dead idle connections**: a connection whose server closed it while idle is
  dropped when taken (httpcore's ``has_expired``: the socket reads as closed, or it idled
  past ``keepalive_expiry``). When the server closes it between that check and the
  request, a GET or HEAD (no body: nothing can have had an effect) is sent again once,
  at once, on a new connection, provided not one byte of the answer had arrived. Other
  methods never are: the caller's retry policy decides about them.

:class:`PatientStream` wraps each connection's socket stream with the **slow-server
timeout**: ``read_timeout`` bounds not only each socket read but the time spent waiting
for the answer as a whole, counted while the client is blocked on the socket (time the
caller spends between reads does not count). After each request is sent the server has
``read_timeout`` seconds of waiting to deliver 16 KiB (``MIN_PROGRESS``), or the rest of
the answer if that is shorter, then ``read_timeout`` more for each further 16 KiB. So a
head must arrive within ``read_timeout`` of the request, whatever it drips, and a body
must keep moving at 16 KiB per ``read_timeout`` (273 bytes/s with the default 60 s); a
server trickling one byte a second cannot hold a client forever. Both raise
``httpcore.ReadTimeout``, which the transport reports as its
:class:`~kara_transport.errors.TransportError`, retried by the retry logic.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
from httpcore import SOCKET_OPTION, NetworkBackend, NetworkStream, SyncBackend

__all__ = ["MIN_PROGRESS", "ConnectionPool", "PatientBackend", "PatientStream"]

#: Bytes an answer must deliver per ``read_timeout`` of waiting (see the module docstring).
MIN_PROGRESS = 16 * 1024
#: Methods resent once when a reused keep-alive connection turns out dead (never with a body).
_RESENDABLE = frozenset({b"GET", b"HEAD"})
#: What a dead reused connection raises before any byte of the answer arrived.
_DEAD_CONNECTION = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)


class PatientStream(NetworkStream):
    """A network stream whose reads share one patience budget per 16 KiB of answer.

    ``patience`` (the read timeout) is the waiting time allowed, summed over reads, between
    two points of progress: the end of a write (a request was sent) and each
    ``MIN_PROGRESS`` bytes received. ``received`` counts the answer's bytes since the
    last write (0: the server has said nothing yet).
    """

    def __init__(self, stream: NetworkStream, patience: float | None) -> None:
        self._stream = stream
        self.patience = patience
        self._waited = 0.0
        self._progress = 0
        self.received = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        patience = self.patience
        if patience is None:
            data = self._stream.read(max_bytes, timeout)
            self.received += len(data)
            return data
        left = patience - self._waited
        if left <= 0:
            raise httpcore.ReadTimeout(self._impatience())
        if timeout is not None and timeout < left:
            left = timeout
        started = time.monotonic()
        try:
            data = self._stream.read(max_bytes, left)
        except httpcore.ReadTimeout:
            self._waited += time.monotonic() - started
            raise httpcore.ReadTimeout(self._impatience()) from None
        self._waited += time.monotonic() - started
        count = len(data)
        self.received += count
        self._progress += count
        if self._progress >= MIN_PROGRESS:
            self._progress = 0
            self._waited = 0.0
        return data

    def _impatience(self) -> str:
        if not self.received:
            return f"no answer within read_timeout ({self.patience:g}s) after the request was sent"
        return (
            f"the server sent {self._progress} bytes in {self._waited:.3g}s of waiting "
            f"(less than {MIN_PROGRESS // 1024} KiB per read_timeout of {self.patience:g}s)"
        )

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)
        # A request (or part of one) went out: the answer's clock starts now.
        self._waited = 0.0
        self._progress = 0
        self.received = 0

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> NetworkStream:
        return PatientStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self.patience)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class PatientBackend(NetworkBackend):
    """httpcore's synchronous socket backend, handing out :class:`PatientStream` streams."""

    def __init__(self, patience: float | None, backend: NetworkBackend | None = None) -> None:
        self.patience = patience
        self._backend = backend or SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return PatientStream(stream, self.patience)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SOCKET_OPTION] | None = None
    ) -> NetworkStream:
        return PatientStream(self._backend.connect_unix_socket(path, timeout, socket_options), self.patience)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _Origin:
    """The connections of one origin: the idle ones, and how many are open in all."""

    __slots__ = ("idle", "open")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.open = 0


class _Connection:
    __slots__ = ("generation", "http", "origin", "stream")

    def __init__(self, http: httpcore.HTTP11Connection, stream: PatientStream, origin: _Origin, generation: int):
        self.http = http
        self.stream = stream
        self.origin = origin
        self.generation = generation


class _PooledBody:
    """A response body that hands its connection back to the pool when closed."""

    __slots__ = ("_body", "_connection", "_pool")

    def __init__(self, body: Iterable[bytes], pool: ConnectionPool, connection: _Connection) -> None:
        self._body = body
        self._pool: ConnectionPool | None = pool
        self._connection = connection

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            self._body.close()  # type: ignore[attr-defined]
        finally:
            pool._release(self._connection)


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections, per origin; see the module docstring.

    Serves ``httpcore.Request`` objects through :meth:`handle_request` (as httpcore's own
    pools do), so the transport can use it and ``httpcore.HTTPProxy`` alike.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        connect_timeout: float | None,
        read_timeout: float | None,
        socket_options: Iterable[SOCKET_OPTION] = (),
        keepalive_expiry: float | None = None,
        network_backend: NetworkBackend | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._pool_timeout = read_timeout
        self._socket_options = list(socket_options)
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend or PatientBackend(read_timeout)
        self._start_process_state()

    def _start_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._origins: dict[tuple[bytes, bytes, int], _Origin] = {}
        self._generation = 0

    # -- requests ----------------------------------------------------------------------

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on a pooled connection; the answer's body is unread."""
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == b"https" else 80))
        connection, reused = self._acquire(key, fresh=False)
        try:
            response = connection.http.handle_request(request)
        except BaseException as exc:
            self._release(connection)  # httpcore closed it: it is only counted out
            resend = (
                reused
                and connection.stream.received == 0
                and isinstance(exc, _DEAD_CONNECTION)
                and request.method in _RESENDABLE
                and _empty_body(request)
            )
            if not resend:
                raise
            # The server closed the idle connection as we sent: nothing reached it.
            connection, _ = self._acquire(key, fresh=True)
            try:
                response = connection.http.handle_request(request)
            except BaseException:
                self._release(connection)
                raise
        response.stream = _PooledBody(response.stream, self, connection)  # type: ignore[arg-type]
        return response

    def _acquire(self, key: tuple[bytes, bytes, int], fresh: bool) -> tuple[_Connection, bool]:
        """An idle connection to ``key`` (True) or a new one (False), within the limit."""
        if self._pid != os.getpid():
            self._start_process_state()
        stale: list[_Connection] = []
        deadline = None
        with self._lock:
            origin = self._origins.get(key)
            if origin is None:
                origin = self._origins[key] = _Origin()
            while True:
                while origin.idle and not fresh:
                    connection = origin.idle.pop()
                    if connection.http.has_expired():
                        origin.open -= 1
                        stale.append(connection)
                        continue
                    _close_all(stale)
                    return connection, True
                if origin.open < self.max_connections:
                    origin.open += 1
                    generation = self._generation
                    break
                if fresh and origin.idle:
                    # A resend needs a new connection: make room by closing the oldest idle one.
                    stale.append(origin.idle.pop(0))
                    origin.open -= 1
                    continue
                if deadline is None and self._pool_timeout is not None:
                    deadline = time.monotonic() + self._pool_timeout
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    _close_all(stale)
                    raise httpcore.PoolTimeout(
                        f"all {self.max_connections} connections to this server stayed busy "
                        f"for {self._pool_timeout:g}s (option max_connections)"
                    )
                self._released.wait(left)
        _close_all(stale)
        try:
            stream = self._connect(key)
        except BaseException:
            with self._lock:
                origin.open -= 1
                self._released.notify()
            raise
        http = httpcore.HTTP11Connection(httpcore.Origin(*key), stream, keepalive_expiry=self._keepalive_expiry)
        return _Connection(http, stream, origin, generation), False

    def _connect(self, key: tuple[bytes, bytes, int]) -> PatientStream:
        scheme, host, port = key
        name = host.decode("ascii")
        stream = self._backend.connect_tcp(name, port, self._connect_timeout, None, self._socket_options)
        if scheme == b"https":
            context = self._ssl_context or ssl.create_default_context()
            stream = stream.start_tls(context, server_hostname=name, timeout=self._connect_timeout)
        assert isinstance(stream, PatientStream)
        return stream

    def _release(self, connection: _Connection) -> None:
        """Take back a connection whose answer is finished (idle) or broken (closed)."""
        if self._pid != os.getpid():
            return  # a connection of the parent process: not this pool's to reuse or close
        http = connection.http
        keep = http.is_idle() and connection.generation == self._generation
        with self._lock:
            if keep:
                connection.origin.idle.append(connection)
            else:
                connection.origin.open -= 1
            self._released.notify()
        if not keep:
            http.close()

    # -- introspection and shutdown ------------------------------------------------------

    def connections(self) -> dict[str, tuple[int, int]]:
        """Per origin ``scheme://host:port``: (open connections, idle ones)."""
        if self._pid != os.getpid():
            self._start_process_state()
        with self._lock:
            return {
                f"{scheme.decode()}://{host.decode()}:{port}": (origin.open, len(origin.idle))
                for (scheme, host, port), origin in self._origins.items()
            }

    def close(self) -> None:
        """Close every idle connection; busy ones close when their answer is done."""
        if self._pid != os.getpid():
            self._start_process_state()
            return
        with self._lock:
            self._generation += 1
            idle = [connection for origin in self._origins.values() for connection in origin.idle]
            for origin in self._origins.values():
                origin.open -= len(origin.idle)
                origin.idle.clear()
            self._released.notify_all()
        _close_all(idle)


def _empty_body(request: httpcore.Request) -> bool:
    """True if the request announces no body (no Transfer-Encoding, no length above 0)."""
    for name, value in request.headers:
        lower = name.lower()
        if lower == b"transfer-encoding" or (lower == b"content-length" and value.strip() != b"0"):
            return False
    return True


def _close_all(connections: list[_Connection]) -> None:
    for connection in connections:
        connection.http.close()
    connections.clear()
