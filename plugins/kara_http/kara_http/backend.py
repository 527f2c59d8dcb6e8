"""The http:// and https:// backend: static mirrors read-only, ``kara serve`` gateways read-write."""

from __future__ import annotations

import base64
import errno
import io
import ipaddress
import os
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from kara_transport import RETRY_STATUSES, Response, RetryBudget, Transport, TransportError, parse_retry_after

from kara_core.backend import Backend, Capabilities, check_path
from kara_core.errors import BackendError, ConfigurationError, NotFoundError, PermissionDeniedError, StorageFullError
from kara_core.url import StoreURL

from .cache import WindowCache
from .errors import ListingNotSupportedError
from .options import HTTPOptions
from .protocol import DISCOVERY_NAME, SIZE_HEADER, GatewayInfo
from .stream import BodyStream

__all__ = ["GatewayAppender", "HTTPBackend", "Response"]

#: Objects the format only ever appends to (row blocks): their windows may be cached.
_APPEND_ONLY_SUFFIX = ".blk"
_STATIC = Capabilities(writable=False, appendable=False, atomic_create=False, parallel_reads=True)
#: Error bodies up to this size are read so the keep-alive connection can be reused.
_SMALL_BODY = 64 * 1024
#: Bytes an appender gathers before it sends them (``flush`` sends earlier).
_APPEND_BUFFER = 8 * 1024 * 1024
#: Stream bodies of ``put`` bigger than this are spooled to disk (retries resend them).
_SPOOL_IN_MEMORY = 16 * 1024 * 1024


def _user_agent() -> str:
    from kara_core import __version__

    return f"kara-http/{__version__}"


def refuse_plain_credentials(url: str) -> None:
    """Raise ConfigurationError if ``url`` is plain http:// to a host that is not loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"refusing to send credentials (token or username/password) over plain http:// to {host}: "
            "anyone on the network path could read them; use https:// (kara serve --tls-cert/--tls-key), "
            "or pass allow_insecure_credentials=True if the network is trusted"
        )


class HTTPBackend(Backend):
    """A store under an HTTP(S) URL prefix.

    On a static web server (nginx, a CDN, an OSS bucket with public read) the store is
    read-only: sizes come from ``HEAD`` (or a ``GET`` of byte 0 where ``HEAD`` is not
    allowed), every partial read is a ``Range`` request. On a ``kara serve`` gateway
    (discovered once, through ``<prefix>/.kara-gateway``) it is also writable with a
    token. One pooled keep-alive :class:`kara_transport.Transport` serves all threads.
    """

    def __init__(self, base_url: str, options: HTTPOptions | None = None) -> None:
        self.options = options or HTTPOptions()
        self.url = base_url.rstrip("/")
        self._base = self.url + "/"
        self._head_allowed = True
        self._gateway: GatewayInfo | None = None
        self._gateway_probed = self.options.gateway is False
        self._start_process_state()
        _OPEN_BACKENDS.add(self)

    def _start_process_state(self) -> None:
        # Connections, locks and cached windows belong to one process. A forked child
        # (a DataLoader worker under the fork start method) gets new ones: sharing the
        # parent's sockets would interleave two processes' responses, and a lock held by
        # another thread at fork time would never be released in the child.
        self._transport: Transport | None = None
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        opts = self.options
        self._windows: WindowCache | None = None
        if opts.window_cache:
            self._windows = WindowCache(opts.window_size, opts.window_cache)

    @classmethod
    def from_url(cls, url: StoreURL, options: HTTPOptions) -> HTTPBackend:
        """Build from ``http(s)://host[:port]/prefix``."""
        location = url.location
        host, _, prefix = location.partition("/")
        if not host:
            raise ConfigurationError(f"{url.scheme}:// store URL names no host: use {url.scheme}://host[:port]/prefix")
        if "@" in host:
            raise ConfigurationError(
                f"credentials in an {url.scheme}:// store URL are not allowed: pass username=/password= "
                "or token= as options (they are kept out of logs and error messages)"
            )
        if "?" in location or "#" in location:
            raise ConfigurationError(f"a store URL cannot have a query or fragment: {url.scheme}://{host}/...")
        prefix = prefix.strip("/")
        return cls(f"{url.scheme}://{host}/{prefix}" if prefix else f"{url.scheme}://{host}", options)

    # -- transport -------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        """The pooled transport (created on first use, so pickled copies open their own)."""
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = self._new_transport()
        return self._transport

    def _new_transport(self) -> Transport:
        opts = self.options
        if (opts.token is not None or opts.username is not None) and not opts.allow_insecure_credentials:
            refuse_plain_credentials(self.url)
        # identity: byte ranges must address the stored bytes, not a compressed rendition.
        headers = {"Accept-Encoding": "identity", "User-Agent": _user_agent(), **opts.headers}
        if opts.token is not None:
            headers["Authorization"] = "Bearer " + opts.token.get_secret_value()
        elif opts.username is not None:
            password = opts.password.get_secret_value() if opts.password is not None else ""
            pair = base64.b64encode(f"{opts.username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = "Basic " + pair
        return Transport(
            headers=headers,
            verify=opts.verify,
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            max_connections=opts.max_connections,
            secret_headers=opts.headers,
        )

    def retry_budget(self, what: str) -> RetryBudget:
        """A fresh retry budget for one operation, with this store's settings."""
        opts = self.options
        return RetryBudget(what, opts.retry_budget, opts.backoff_base, opts.backoff_max)

    def url_of(self, path: str) -> str:
        """The URL of the store-relative ``path`` (percent-encoded)."""
        return self._base + quote(path, safe="/")

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: bytes | BinaryIO | None = None,
        stream: bool = False,
        budget: RetryBudget | None = None,
    ) -> Response:
        """Send one request, retrying transport errors, 429 and 5xx within the retry budget.

        Returns the response for any other status (its body read unless ``stream``);
        401/403 raise :class:`PermissionDeniedError` (never retried: the credentials
        will not improve).
        """
        url = self.url_of(path)
        if params:
            url += "?" + urlencode(params)
        budget = budget or self.retry_budget(f"{method} {self.url}/{path}")
        while True:
            if data is not None and not isinstance(data, bytes):
                data.seek(0)
            try:
                response = self.transport.request(method, url, headers=headers, body=data)
                if not stream:
                    response.content  # noqa: B018 - read the body now, inside the retry loop
            except TransportError as exc:
                budget.wait(str(exc))
                continue
            status = response.status
            if status in RETRY_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self.discard(response)
                budget.wait(f"HTTP {status} {response.reason}", retry_after)
                continue
            if status in (401, 403):
                self.discard(response)
                raise PermissionDeniedError(
                    f"{method} {self.url}/{path}: HTTP {status} {response.reason}; the server refused the "
                    "credentials (check the token, username/password or headers options)"
                )
            return response

    @staticmethod
    def discard(response: Response) -> None:
        """Finish with a response whose body we do not need, keeping the connection if cheap."""
        length = response.headers.get("Content-Length")
        if length is not None and int(length) <= _SMALL_BODY:  # the transport checked its digits
            try:
                response.content  # noqa: B018 - reading the body lets the connection be reused
            except TransportError:
                pass
        response.close()

    # -- reading ---------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        check_path(path)
        if self._head_allowed:
            response = self.send("HEAD", path)
            if response.status not in (405, 501):
                return self._size_from(response, path, ranged_get=False)
            self._head_allowed = False
        response = self.send("GET", path, headers={"Range": "bytes=0-0"}, stream=True)
        return self._size_from(response, path, ranged_get=True)

    def _size_from(self, response: Response, path: str, ranged_get: bool) -> int | None:
        status = response.status
        try:
            if status in (404, 410):
                return None
            if status == 206:
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                if total.isdigit():
                    return int(total)
            elif status == 416:
                # bytes=0-0 of an empty object is unsatisfiable: the object exists, empty.
                return 0
            elif status == 200:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit():
                    return int(length)
                raise BackendError(f"{self.url}/{path}: the server sent no Content-Length, so the size is unknown")
            raise BackendError(f"size of {self.url}/{path}: unexpected HTTP {status} {response.reason}")
        finally:
            if status == 200 and ranged_get:
                # Never read this body for a size: the server ignored Range and sends it all.
                response.close()
            else:
                self.discard(response)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        check_path(path)
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"negative range [{start}, {end}) for {path}")
        if end is not None and end <= start:
            if self.size(path) is None:
                raise NotFoundError(f"{self.url}/{path} does not exist")
            return b""
        if self._windows is not None and end is not None and path.endswith(_APPEND_ONLY_SUFFIX):
            first = self._windows.window_of(start, end)
            if first is not None:
                return self._read_windowed(path, first, start, end)
        return self._fetch(path, start, end)

    def _fetch(self, path: str, start: int, end: int | None) -> bytes:
        with BodyStream(self, path, start, end) as stream:
            return stream.read_exactly()

    def _read_windowed(self, path: str, first: int, start: int, end: int) -> bytes:
        assert self._windows is not None
        hit = self._windows.get(path, first, start, end)
        if hit is not None:
            return hit
        window = self._fetch(path, first, first + self._windows.window_size)
        self._windows.put(path, first, window)
        return window[start - first : end - first]

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        check_path(path)
        return io.BufferedReader(BodyStream(self, path, start), buffer_size=1024 * 1024)  # type: ignore[return-value]

    def list(self, prefix: str) -> Iterator[str]:
        if prefix:
            check_path(prefix[:-1] if prefix.endswith("/") else prefix)
        gateway = self._gateway_info()
        if gateway is None:
            raise ListingNotSupportedError(
                f"cannot list {self.url}/{prefix}: a static web server cannot list folders; "
                "serve the store with `kara serve` or open the underlying store's own URL"
            )
        response = self.send("GET", DISCOVERY_NAME, params={"list": prefix})
        self._expect(response, 200, f"list {prefix!r}")
        # The gateway sends UTF-8 (paths may be any Unicode); no charset guessing needed.
        return iter([line for line in response.content.decode("utf-8").split("\n") if line])

    # -- gateway ---------------------------------------------------------------------

    def _gateway_info(self) -> GatewayInfo | None:
        if not self._gateway_probed:
            with self._probe_lock:
                if not self._gateway_probed:
                    self._gateway = self._probe_gateway()
                    self._gateway_probed = True
        return self._gateway

    def _probe_gateway(self) -> GatewayInfo | None:
        try:
            response = self.send("GET", DISCOVERY_NAME)
        except PermissionDeniedError:
            # Buckets and CDNs often answer 403 for any key they do not serve.
            response = None
        if response is not None:
            try:
                if response.status == 200:
                    try:
                        return GatewayInfo.model_validate_json(response.content)
                    except ValueError:
                        pass
            finally:
                response.close()
        if self.options.gateway:
            raise ConfigurationError(
                f"{self.url} is not a kara gateway (option gateway=True): start it with kara serve"
            )
        return None

    @property  # type: ignore[override]
    def capabilities(self) -> Capabilities:
        """Read-only on a static server; writable on a gateway when we hold a token it accepts."""
        gateway = self._gateway_info()
        if gateway is None or not self._can_write(gateway):
            return _STATIC
        return Capabilities(writable=True, appendable=True, atomic_create=True, parallel_reads=True)

    def _can_write(self, gateway: GatewayInfo) -> bool:
        return gateway.writable and (self.options.token is not None or not gateway.write_token_required)

    def _writable(self, what: str) -> GatewayInfo:
        gateway = self._gateway_info()
        if gateway is None:
            raise self._read_only(what + " (a static web server is read-only; `kara serve` makes a store writable)")
        if not gateway.writable:
            raise self._read_only(what + " (the gateway serves a read-only store)")
        if not self._can_write(gateway):
            raise self._read_only(what + " (the gateway needs a token for writes: pass token=...)")
        return gateway

    def _expect(self, response: Response, status: int | tuple[int, ...], what: str) -> None:
        allowed = (status,) if isinstance(status, int) else status
        if response.status in allowed:
            return
        body = response.content
        detail = body[:300].decode("utf-8", "replace") if len(body) <= _SMALL_BODY else ""
        response.close()
        if response.status == 413:
            raise BackendError(f"{what} on {self.url}: the gateway refused a body this large ({detail.strip()})")
        if response.status == 507:
            raise StorageFullError(errno.ENOSPC, f"{what} on {self.url}: the gateway's disk is full ({detail.strip()})")
        raise BackendError(f"{what} on {self.url}: HTTP {response.status} {response.reason} {detail.strip()}")

    def _body(self, gateway: GatewayInfo, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> Any:
        if isinstance(data, (bytes, bytearray, memoryview)):
            body: Any = bytes(data)
            size = len(body)
        else:
            body = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
            while chunk := data.read(1024 * 1024):
                body.write(chunk)
            size = body.tell()
        if size > gateway.max_body_size:
            if not isinstance(body, bytes):
                body.close()
            raise BackendError(
                f"cannot write {path} ({size} bytes) to {self.url}: the gateway accepts at most "
                f"{gateway.max_body_size} bytes per request (kara serve --max-body-size)"
            )
        return body

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        check_path(path)
        gateway = self._writable("write " + path)
        body = self._body(gateway, path, data)
        try:
            response = self.send("PUT", path, data=body)
        finally:
            if not isinstance(body, bytes):
                body.close()
        self._expect(response, (200, 201, 204), f"put {path}")
        response.close()

    def put_if_absent(self, path: str, data: bytes) -> bool:
        check_path(path)
        gateway = self._writable("create " + path)
        body = self._body(gateway, path, data)
        # The request id lets the gateway answer a retried request as it answered the
        # first, so a create whose response was lost is not reported as "already exists".
        headers = {"If-None-Match": "*", "X-Kara-Request-Id": uuid.uuid4().hex}
        response = self.send("PUT", path, data=body, headers=headers)
        if response.status == 412:
            self.discard(response)
            return False
        self._expect(response, (200, 201), f"create {path}")
        response.close()
        return True

    def delete(self, path: str) -> None:
        check_path(path)
        self._writable("delete " + path)
        response = self.send("DELETE", path)
        self._expect(response, (200, 204, 404), f"delete {path}")
        response.close()

    def open_append(self, path: str) -> GatewayAppender:
        check_path(path)
        self._writable("append to " + path)
        return GatewayAppender(self, path, self.size(path) or 0)

    def append_at(self, path: str, position: int, data: bytes) -> int:
        """Append ``data`` at byte ``position`` of ``path`` on the gateway; return the new size.

        Safe to retry: the gateway applies it once (see :mod:`kara_http.protocol`).
        """
        response = self.send("POST", path, params={"append": str(position)}, data=data)
        if response.status == 409:
            current = response.headers.get(SIZE_HEADER, "?")
            self.discard(response)
            raise BackendError(
                f"append to {self.url}/{path} at byte {position} refused: the object now has {current} bytes "
                "(another writer appended to it)"
            )
        self._expect(response, (200, 201, 204), f"append to {path}")
        response.close()
        return position + len(data)

    # -- lifecycle -------------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Built by hand: pickle as its URL and options (the transport, locks and cache stay
        # behind). Built by open_backend, kara_core.url pickles it before this is asked.
        return (type(self), (self.url, self.options))

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None


_OPEN_BACKENDS: weakref.WeakSet[HTTPBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_OPEN_BACKENDS):
        backend._start_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


class GatewayAppender:
    """Appends to one object on a gateway; bytes are sent in large batches or on flush."""

    def __init__(self, backend: HTTPBackend, path: str, position: int) -> None:
        self._backend = backend
        self._path = path
        self._stored = position
        self._buffer = bytearray()
        self._closed = False

    @property
    def position(self) -> int:
        """Size of the object including bytes appended but not sent yet."""
        return self._stored + len(self._buffer)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (sent once the buffer holds 8 MiB, or on flush/close)."""
        if self._closed:
            raise ValueError(f"append to closed appender of {self._path}")
        self._buffer += data
        if len(self._buffer) >= _APPEND_BUFFER:
            self.flush()

    def flush(self) -> None:
        """Send the buffered bytes; when it returns they are stored and visible."""
        if self._buffer:
            self._stored = self._backend.append_at(self._path, self._stored, bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        """Flush and stop accepting appends."""
        if not self._closed:
            self.flush()
            self._closed = True
