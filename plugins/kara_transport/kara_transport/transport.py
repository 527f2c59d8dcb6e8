"""One HTTP/1.1 client transport: httpcore connection pools, h11's strict parser.

Every HTTP request kara makes (kara-http's stores and gateways, kara-oss's signed oss2
requests) goes through a :class:`Transport`. What it settles once for all of them:

- **Parsing** is h11's (through httpcore), which accepts only what RFC 9112 allows:
  ``Content-Length`` of ASCII digits only (no signs, underscores, other scripts'
  digits), one value or identical repeats; chunk sizes of 1-20 hex digits; status
  lines and header lines by the grammar; heads and trailers bounded in size. kara adds
  one rule h11 leaves to the caller: an answer with both ``Content-Length`` and
  ``Transfer-Encoding`` is refused (a smuggling signature). Every violation, and a body
  that ends early, raises :class:`~kara_transport.errors.MalformedResponseError`.
- **Request headers** are checked before anything is sent: names must be HTTP tokens,
  values free of CR, LF and NUL (:class:`~kara_transport.errors.UnsafeHeaderError`).
- **Timeouts** apply to every socket operation: ``connect_timeout`` to connecting (and
  the TLS handshake), ``read_timeout`` to each read and write and to waiting for a free
  connection of the pool.
- **TLS** verification against certifi's bundle, or ``verify`` (a CA file or folder,
  or False), or ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``/``SSL_CERT_FILE``.
- **Proxies** from the environment (``http_proxy``, ``https_proxy``, ``all_proxy``,
  ``no_proxy``), read once; ``https://`` through a proxy is tunnelled with CONNECT.
- **Keep-alive** pools (``max_connections`` per transport), idle connections checked
  before reuse by httpcore.
- **Redirects** of GET and HEAD are followed (at most ``max_redirects``); credentials
  (``Authorization``, ``Cookie``, and any header named in ``secret_headers``) are
  dropped when a redirect leaves the origin.
- **Fork safety**: a forked child process never uses its parent's connections; the
  first request in the child opens new pools.

Retries are not done here but by the caller, with :class:`~kara_transport.retry.RetryBudget`
(one policy for every client): a request may have side effects the transport cannot judge.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpcore

from .errors import MalformedResponseError, TransportError, UnsafeHeaderError
from .pool import ConnectionPool, PatientBackend

__all__ = ["Headers", "Response", "Transport", "check_headers"]

#: An HTTP token (RFC 9110 5.6.2): what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Headers that carry credentials: never sent to another origin after a redirect.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: Bytes of a file body read per send.
_SEND_CHUNK = 1024 * 1024
_NETWORK_ERRORS = (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProxyError, OSError)


def check_headers(headers: Mapping[str, str]) -> None:
    """Raise :class:`UnsafeHeaderError` unless every name is a token and no value holds CR, LF or NUL.

    The message names the header but never shows its value (it may be a credential).
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise UnsafeHeaderError(f"refusing to send header {name!r}: a header name must be an HTTP token")
        if not isinstance(value, str) or _UNSAFE_VALUE.search(value) or (not value.isascii() and not _latin1(value)):
            raise UnsafeHeaderError(
                f"refusing to send header {name}: its value contains CR, LF or NUL (or is not text), "
                "which would inject other headers into the request"
            )


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class Headers(dict[str, str]):
    """Response header fields by lower-case name; lookups ignore case, as in HTTP.

    A field sent several times holds its values joined by ``", "`` (RFC 9110 5.3).
    """

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Build from the (name, value) byte pairs of an answer."""
        headers = cls()
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            old = dict.get(headers, key)
            dict.__setitem__(headers, key, text if old is None else f"{old}, {text}")
        return headers

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """The value of field ``name`` (any case), or ``default``."""
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class Response:
    """One answer: ``status``, ``reason``, ``headers``, ``url`` and a streamed body.

    The body is read with :meth:`readinto`, :meth:`read` or :meth:`stream` (the names
    of urllib3's raw responses, so ``requests.Response.raw`` can be one), or at once as
    :attr:`content`. The connection returns to the pool when the body has been read to
    its end; :meth:`close` before that closes it.
    """

    def __init__(self, raw: httpcore.Response, url: str, method: str = "GET") -> None:
        self.status: int = raw.status
        self.reason: str = raw.extensions.get("reason_phrase", b"").decode("latin-1")
        self.headers = Headers.from_raw(raw.headers)
        self.url = url
        self._raw: httpcore.Response | None = raw
        self._chunks: Iterator[bytes] | None = iter(raw.stream)  # type: ignore[arg-type]
        self._pending = memoryview(b"")
        self._content: bytes | None = None
        self._length: int | None = None
        self._received = 0
        length = self.headers.get("content-length")
        if length is not None and "transfer-encoding" in self.headers:
            self.close()
            raise MalformedResponseError(
                f"{url}: the answer has both Content-Length and Transfer-Encoding (refused: a smuggling signature)"
            )
        #: Body bytes announced (None: chunked or until the connection ends) and received.
        #: Knowing both, the end of the body is seen without waiting for more bytes, so a
        #: caller that reads exactly the announced bytes hands the connection back.
        if method == "HEAD" or self.status in (204, 304):
            self._length = 0
        elif length is not None:
            self._length = int(length.partition(",")[0])  # h11 checked: ASCII digits, repeats equal

    def _next_chunk(self) -> bool:
        """Fetch the next piece of the body into ``_pending``; False at its end."""
        if self._chunks is None:
            return False
        try:
            chunk = next(self._chunks, None)
        except BaseException as exc:
            self.close()
            raise _translate(exc, self.url) from exc
        if chunk is None:
            self._finish()
            return False
        self._received += len(chunk)
        self._pending = memoryview(chunk)
        return True

    def _complete(self) -> bool:
        """True when every announced body byte has been received and consumed."""
        return self._length is not None and self._received >= self._length and not self._pending

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Read body bytes into ``buffer``; 0 at the end of the body."""
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        while not self._pending:
            if not self._next_chunk():
                return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        if self._complete():
            self._next_chunk()  # the end of the message: no I/O, frees the connection
        return count

    def read(self, amt: int | None = None, decode_content: bool = False) -> bytes:
        """Up to ``amt`` body bytes (all that is left if None); b"" at the end."""
        if amt is None:
            parts = [bytes(self._pending)]
            self._pending = memoryview(b"")
            while self._next_chunk():
                parts.append(bytes(self._pending))
                self._pending = memoryview(b"")
            return b"".join(parts)
        while not self._pending:
            if not self._next_chunk():
                return b""
        data = bytes(self._pending[:amt])
        self._pending = self._pending[amt:]
        if self._complete():
            self._next_chunk()  # the end of the message: no I/O, frees the connection
        return data

    def stream(self, amt: int = 65536, decode_content: bool = False) -> Iterator[bytes]:
        """The body in pieces of at most ``amt`` bytes (bodies are never decoded)."""
        while data := self.read(amt):
            yield data

    @property
    def content(self) -> bytes:
        """The whole body (read once, then kept)."""
        if self._content is None:
            self._content = self.read()
        return self._content

    def _finish(self) -> None:
        # The body was read to its end: closing the stream hands the connection back.
        raw, self._raw, self._chunks = self._raw, None, None
        if raw is not None:
            raw.close()

    def drain_conn(self) -> None:
        """Read and drop the rest of the body, so the connection can be reused."""
        while self._next_chunk():
            self._pending = memoryview(b"")

    def release_conn(self) -> None:
        """Done with this answer: a fully read one already gave its connection back."""
        self.close()

    def close(self) -> None:
        """Done with this answer; a connection with unread body bytes is closed."""
        if self._chunks is not None and self._complete():
            try:
                self._next_chunk()  # nothing left to read: keep the connection
            except TransportError:
                pass
        raw, self._raw, self._chunks = self._raw, None, None
        if raw is not None:
            # httpcore closes (rather than reuses) a connection whose body is unread.
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - closing a broken connection has nothing left to report
                pass

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _translate(exc: BaseException, url: str) -> BaseException:
    """The kara error for an httpcore failure (others pass unchanged)."""
    if isinstance(exc, httpcore.RemoteProtocolError):
        return MalformedResponseError(f"{url}: the server's answer is not valid HTTP/1.1 ({exc})")
    if isinstance(exc, httpcore.LocalProtocolError):
        return TransportError(f"{url}: the request could not be sent as HTTP/1.1 ({exc})")
    if isinstance(exc, httpcore.TimeoutException):
        detail = f": {exc}" if str(exc) and str(exc) != "timed out" else ""
        return TransportError(f"{url}: timed out ({type(exc).__name__}{detail})")
    if isinstance(exc, httpcore.UnsupportedProtocol):
        return TransportError(f"{url}: unsupported URL scheme")
    if isinstance(exc, _NETWORK_ERRORS):
        return TransportError(f"{url}: {type(exc).__name__} {exc}".rstrip())
    return exc


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not bundle:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (None when ``no_proxy`` exempts it)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    host = parts.hostname or ""
    if not proxies or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


class Transport:
    """Pooled keep-alive HTTP/1.1 connections, shared by threads; see the module docstring.

    ``headers`` go with every request (a request's own headers win). ``proxy``: a proxy
    URL, "" for none, None to read the environment once.
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_connections: int = 16,
        max_redirects: int = 5,
        proxy: str | None = None,
        secret_headers: Iterable[str] = (),
    ) -> None:
        self.headers = dict(headers or {})
        check_headers(self.headers)
        self.verify = verify
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.max_redirects = max_redirects
        self._proxy = proxy
        self._secret = _CREDENTIAL_HEADERS | {name.lower() for name in secret_headers}
        self._timeouts = {
            "connect": connect_timeout,
            "read": read_timeout,
            "write": read_timeout,
            "pool": read_timeout,
        }
        self._start_process_state()

    def _start_process_state(self) -> None:
        # Pools (sockets, locks) belong to one process: after a fork the child opens its own.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pools: dict[str | None, ConnectionPool | httpcore.HTTPProxy] = {}
        #: Per ``scheme://netloc``: its pool (direct or through a proxy) and Host header.
        self._routes: dict[str, tuple[ConnectionPool | httpcore.HTTPProxy, str]] = {}
        self._context: ssl.SSLContext | None = None

    def _route(self, url: str) -> tuple[ConnectionPool | httpcore.HTTPProxy, str]:
        """The pool for ``url`` and its Host header, worked out once per origin."""
        if self._pid != os.getpid():
            self._start_process_state()
        scheme, _, rest = url.partition("://")
        key = scheme + "://" + rest.partition("/")[0].partition("?")[0]
        route = self._routes.get(key)
        if route is None:
            with self._lock:
                route = self._routes.get(key)
                if route is None:
                    proxy = (self._proxy if self._proxy is not None else _environment_proxy(url)) or None
                    pool = self._pools.get(proxy)
                    if pool is None:
                        pool = self._pools[proxy] = self._new_pool(proxy)
                    route = self._routes[key] = (pool, urlsplit(key).netloc)
        return route

    def _new_pool(self, proxy: str | None) -> ConnectionPool | httpcore.HTTPProxy:
        if self._context is None:
            self._context = _ssl_context(self.verify)
            self._context.set_alpn_protocols(["http/1.1"])
        # Requests whose body leaves in a second write must not wait for the ACK of the
        # first (Nagle's algorithm against delayed ACKs: ~40 ms a request).
        options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        if proxy:
            return httpcore.HTTPProxy(
                proxy_url=proxy,
                ssl_context=self._context,
                max_connections=self.max_connections,
                retries=0,
                socket_options=options,
                network_backend=PatientBackend(self.read_timeout),
            )
        return ConnectionPool(
            ssl_context=self._context,
            max_connections=self.max_connections,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            socket_options=options,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes] | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Send one request and return the answer with its body unread.

        ``url`` is absolute and already percent-encoded. A file body is sent from its
        current position to its end. Transport failures raise
        :class:`~kara_transport.errors.TransportError`; bad headers
        :class:`~kara_transport.errors.UnsafeHeaderError` before anything is sent.
        """
        fields = self.headers
        if headers:
            check_headers(headers)
            own = {name.lower() for name in headers}
            fields = {name: value for name, value in fields.items() if name.lower() not in own}
            fields.update(headers)
        for _ in range(self.max_redirects + 1):
            response = self._send(method, url, fields, body)
            location = response.headers.get("location")
            if not (follow_redirects and response.status in _REDIRECTS and location and method in ("GET", "HEAD")):
                return response
            response.close()
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                fields = {name: value for name, value in fields.items() if name.lower() not in self._secret}
            url = target
        response.close()
        raise TransportError(f"{method} {url}: more than {self.max_redirects} redirects")

    def _send(self, method: str, url: str, fields: dict[str, str], body: Any) -> Response:
        content: Any
        if body is None:
            content = b""
            if method in ("POST", "PUT", "PATCH"):
                fields = {**fields, "Content-Length": "0"}
        elif isinstance(body, (bytes, bytearray, memoryview)):
            content = bytes(body)
            fields = {**fields, "Content-Length": str(len(content))}
        elif hasattr(body, "read"):
            length = _remaining(body)
            content = _file_chunks(body)
            if length is None:
                fields = {**fields, "Transfer-Encoding": "chunked"}
            else:
                fields = {**fields, "Content-Length": str(length)}
        else:
            content = (bytes(piece) for piece in body)
            fields = {**fields, "Transfer-Encoding": "chunked"}
        pool, host = self._route(url)
        if not any(name.lower() == "host" for name in fields):
            fields = {"Host": host, **fields}
        try:
            raw = pool.handle_request(
                httpcore.Request(
                    method,
                    url,
                    headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields.items()],
                    content=content,
                    extensions={"timeout": self._timeouts},
                )
            )
        except BaseException as exc:
            raise _translate(exc, url) from exc
        return Response(raw, url, method)

    def close(self) -> None:
        """Close every pooled connection (connections in use close when released)."""
        with self._lock:
            pools, self._pools, self._routes = list(self._pools.values()), {}, {}
        if self._pid == os.getpid():
            for pool in pools:
                pool.close()


def _origin(url: str) -> str:
    """``scheme://host:port`` of an absolute URL (the default port spelled out)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _remaining(body: Any) -> int | None:
    """Bytes from the current position of a file body to its end, if it can tell."""
    length = getattr(body, "len", None)
    if isinstance(length, int):
        return length
    try:
        here = body.tell()
        end = body.seek(0, os.SEEK_END)
        body.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return int(end - here)


def _file_chunks(body: Any) -> Iterator[bytes]:
    while chunk := body.read(_SEND_CHUNK):
        yield bytes(chunk)
