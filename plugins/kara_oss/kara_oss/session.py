"""An oss2 session that sends oss2's signed requests without requests' per-request work.

oss2 builds and signs every request, then hands it to ``requests.Session.request``,
which prepares it again (merging session settings, cookie jars and hooks, parsing and
re-quoting the URL, checking headers) and formats two DEBUG log lines eagerly whether or
not debug logging is on; urllib3 and http.client then spend as much again. For the many
small requests of a directory save or load that cost more client CPU than the HTTP
exchange itself (about 0.6 ms a request here, against about 0.2 ms now).

:class:`PooledSession` sends the same request line, headers and body:

- to ``http://`` endpoints through :mod:`kara_oss.wire` (keep-alive sockets, one send per
  request, its own parsing of the answer, which is still a ``urllib3.HTTPResponse``);
- to ``https://`` endpoints through the ``requests`` adapter's own urllib3 connection
  pool, so TLS verification and certificates are exactly requests'.

Failures become the ``requests`` exceptions ``HTTPAdapter.send`` raises (which oss2 turns
into ``RequestError`` as before). Requests it cannot send exactly as ``requests`` would
take ``requests``' path instead: proxies, bodies that are not bytes (file objects,
``SizedFileAdapter``, iterables), sessions with auth, cookies, certificates, hooks,
default parameters or environment lookups, adapters other than ``HTTPAdapter``, headers
that http.client would refuse, redirects, and everything while oss2's DEBUG logging is on
(so its log lines still appear when someone asks for them). Cookies set by a server are
not kept (OSS sets none).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import oss2
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util import Timeout

from .wire import Origin, WireError

__all__ = ["PooledSession"]

# requests follows these when the answer names a Location (Session.request's default).
_REDIRECTS = frozenset([301, 302, 303, 307, 308])


class _Response(oss2.http.Response):
    """``oss2.http.Response`` without the eager formatting of a DEBUG line per answer."""

    def __init__(self, response: requests.Response) -> None:
        # Not calling the base __init__ is the point: it formats all headers into a log
        # line even when DEBUG is off. These are the attributes it sets.
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.request_id = response.headers.get("x-oss-request-id", "")
        self._Response__all_read = False


class PooledSession(oss2.Session):
    """An ``oss2.Session`` whose plain requests skip ``requests``' per-request preparation.

    A drop-in for ``oss2.Session(pool_size=...)`` (pass it as ``oss2.Bucket(session=...)``);
    see the module docstring for what is sent how.
    """

    def __init__(self, pool_size: int) -> None:
        super().__init__(pool_size=pool_size)
        # Per origin ("http://host:port"): the adapter's pool and retry setting, or None
        # where requests' path is needed.
        self._pools: dict[str, tuple[HTTPConnectionPool, Any] | None] = {}
        # Plain-http origins, per (host, port, timeout): see kara_oss.wire.
        self._wires: dict[tuple[str, int | None, Any], Origin] = {}
        self._pool_size = pool_size
        self._lock = threading.Lock()

    def do_request(self, req: oss2.http.Request, timeout: Any) -> oss2.http.Response:
        """Send a signed oss2 request and return oss2's response wrapper."""
        data = req.data
        if (
            req.proxies
            or not (data is None or isinstance(data, bytes))
            or oss2.http.logger.isEnabledFor(logging.DEBUG)
            or not self._plain_session()
        ):
            return super().do_request(req, timeout)
        scheme, _, rest = req.url.partition("://")
        host, slash, path = rest.partition("/")
        origin = f"{scheme}://{host}"
        pooled = self._pools.get(origin, False)
        if pooled is False:
            pooled = self._pool_for(origin)
        if pooled is None:
            return super().do_request(req, timeout)
        pool, retries = pooled
        target = slash + path or "/"
        if req.params:
            # Exactly the query requests would build (its own encoder); the path is
            # already percent-encoded by oss2, which requests' re-quoting leaves as is.
            target += "?" + requests.models.RequestEncodingMixin._encode_params(req.params)
        headers = self._headers(req, data)
        wire = self._wire_for(pool, timeout) if scheme == "http" and _plain_headers(headers) else None
        try:
            if wire is not None:
                raw = wire.request(req.method, target, headers, data or None)
            else:
                raw = pool.urlopen(
                    req.method,
                    target,
                    body=data or None,
                    headers=headers,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                    retries=retries,
                    timeout=_timeout(timeout),
                    chunked=False,
                )
        except WireError as exc:
            raise oss2.exceptions.RequestError(_WIRE_ERRORS[exc.kind](str(exc))) from exc
        except (HTTPError, OSError) as exc:
            error = _as_requests_error(exc)
            if error is exc:
                raise
            raise oss2.exceptions.RequestError(error) from exc
        if raw.status in _REDIRECTS and "location" in raw.headers:
            # requests would follow it (and strip the signature for another host): let it.
            raw.drain_conn()
            raw.release_conn()
            return super().do_request(req, timeout)
        response = requests.Response()
        response.status_code = raw.status
        # As requests builds it (one entry per name, repeated fields joined), from pairs:
        # copying from the mapping would look every name up again.
        response.headers = CaseInsensitiveDict(raw.headers.itermerged())
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason
        response.url = origin + target
        return _Response(response)

    def _plain_session(self) -> bool:
        """True while the requests session adds nothing per request (no auth, cookies...)."""
        session = self.session
        return not (
            session.trust_env
            or session.proxies
            or session.auth
            or session.cert
            or session.params
            or len(session.cookies)
            or any(session.hooks.values())
        )

    def _pool_for(self, origin: str) -> tuple[HTTPConnectionPool, Any] | None:
        with self._lock:
            if origin not in self._pools:
                adapter = self.session.get_adapter(origin)
                pooled = None
                if type(adapter) is HTTPAdapter:
                    prepared = requests.Request("GET", origin + "/").prepare()
                    verify = self.session.verify
                    pool = adapter.get_connection_with_tls_context(prepared, verify)
                    # What requests does before every request (a no-op for http://).
                    adapter.cert_verify(pool, prepared.url, verify, None)
                    pooled = (pool, adapter.max_retries)
                self._pools[origin] = pooled
            return self._pools[origin]

    def _headers(self, req: oss2.http.Request, data: bytes | None) -> CaseInsensitiveDict[str]:
        """The session's headers merged with the request's, as requests merges them."""
        # Merged from (name, value) pairs: copying one mapping into another looks every
        # name up again, several times per request.
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(self.session.headers.items())
        merged.update(req.headers.items())
        for name in [name for name, value in merged.items() if value is None]:
            del merged[name]
        if data:
            merged["Content-Length"] = str(len(data))
        elif req.method not in ("GET", "HEAD") and "content-length" not in merged:
            merged["Content-Length"] = "0"
        return merged

    def _wire_for(self, pool: HTTPConnectionPool, timeout: Any) -> Origin:
        key = (pool.host, pool.port, timeout)
        wire = self._wires.get(key)
        if wire is None:
            limits = _timeout(timeout)
            with self._lock:
                wire = self._wires.setdefault(
                    key,
                    Origin(pool.host, pool.port or 80, limits.connect_timeout, limits.read_timeout, self._pool_size),
                )
        return wire

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            self._pools.clear()
            wires, self._wires = list(self._wires.values()), {}
        for wire in wires:
            wire.close()
        self.session.close()


# What requests raises for each way a plain-http exchange can fail.
_WIRE_ERRORS: dict[str, type[requests.RequestException]] = {
    "connect": requests.exceptions.ConnectionError,
    "connect-timeout": requests.exceptions.ConnectTimeout,
    "read-timeout": requests.exceptions.ReadTimeout,
    "broken": requests.exceptions.ConnectionError,
}


def _plain_headers(headers: CaseInsensitiveDict[str]) -> bool:
    """True if the headers can be written as they are (no Host, no line breaks, all str)."""
    if "host" in headers:
        return False
    for name, value in headers.items():
        if not isinstance(value, str) or "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            return False
    return True


def _timeout(timeout: Any) -> Timeout:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return Timeout(connect=connect, read=read)
    if isinstance(timeout, Timeout):
        return timeout
    return Timeout(connect=timeout, read=timeout)


def _as_requests_error(exc: HTTPError | OSError) -> Exception:
    """The ``requests`` exception ``HTTPAdapter.send`` raises for a urllib3 failure."""
    errors = requests.exceptions
    if isinstance(exc, (ProtocolError, OSError, ClosedPoolError)):
        return errors.ConnectionError(exc)
    # Proxy and TLS failures map alike whether urllib3 raised them or gave up on them.
    cause = exc.reason if isinstance(exc, MaxRetryError) else exc
    if isinstance(cause, ProxyError):
        return errors.ProxyError(exc)
    if isinstance(cause, SSLError):
        return errors.SSLError(exc)
    if isinstance(exc, MaxRetryError):
        if isinstance(cause, ConnectTimeoutError) and not isinstance(cause, NewConnectionError):
            return errors.ConnectTimeout(exc)
        if isinstance(cause, ResponseError):
            return errors.RetryError(exc)
        return errors.ConnectionError(exc)
    if isinstance(exc, ReadTimeoutError):
        return errors.ReadTimeout(exc)
    if isinstance(exc, InvalidHeader):
        return errors.InvalidHeader(exc)
    return exc  # requests lets other urllib3 errors through unchanged
