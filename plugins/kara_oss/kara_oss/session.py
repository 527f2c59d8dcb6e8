"""An ``oss2.Session`` that sends oss2's signed requests through kara's shared transport.

oss2 builds and signs every request and hands it to its session's ``do_request``
(the method ``oss2.Bucket`` calls; overriding it is how oss2 lets a caller choose the
transport). :class:`TransportSession` sends the request through
:class:`kara_transport.Transport` (httpcore pools, h11's strict parser, TLS, proxies,
timeouts, fork safety: see :mod:`kara_transport.transport`) and answers with the
``oss2.http.Response`` oss2 expects, wrapping a ``requests.Response`` whose ``raw`` body
is the transport's streamed answer. Nothing private of oss2 or requests is touched.

Failures before an answer arrives become ``oss2.exceptions.RequestError`` (as oss2's own
session raises them), with the :class:`~kara_transport.errors.TransportError` as its
cause; a body that breaks while it is read raises the ``TransportError`` itself. Headers
holding CR, LF or NUL raise :class:`~kara_transport.errors.UnsafeHeaderError` before
anything is sent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlencode

import oss2
import requests
from kara_transport import Transport, TransportError
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

__all__ = ["TransportSession"]


class TransportSession(oss2.Session):
    """An ``oss2.Session`` on a :class:`kara_transport.Transport`.

    Pass it as ``oss2.Bucket(session=...)``. The transport's timeouts, TLS settings and
    proxies (from the environment) apply; a request that names its own ``proxies``
    (``oss2.Bucket(proxies=...)``) goes through a transport for that proxy.
    """

    def __init__(self, transport: Transport) -> None:
        super().__init__(pool_size=1)
        self.transport = transport
        self._proxied: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def do_request(self, req: oss2.http.Request, timeout: Any) -> oss2.http.Response:
        """Send a signed oss2 request and return oss2's response wrapper."""
        if oss2.http.logger.isEnabledFor(logging.DEBUG):
            # The line oss2's own session logs (secrets in it are masked by kara_oss.backend).
            oss2.http.logger.debug(
                f"Send request, method: {req.method}, url: {req.url}, params: {req.params}, "
                f"headers: {req.headers}, timeout: {timeout}, proxies: {req.proxies}"
            )
        url = req.url
        if req.params:
            # What requests would send: parameters without a value (None) are left out.
            url += "?" + urlencode([(k, v) for k, v in req.params.items() if v is not None])
        headers = {str(name): str(value) for name, value in req.headers.items() if value is not None}
        try:
            answer = self._transport_for(req).request(req.method, url, headers=headers, body=req.data)
        except TransportError as exc:
            raise oss2.exceptions.RequestError(exc) from exc
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = CaseInsensitiveDict(answer.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = answer
        response.url = url
        return oss2.http.Response(response)

    def _transport_for(self, req: oss2.http.Request) -> Transport:
        proxy = (req.proxies or {}).get(req.url.partition(":")[0])
        if not proxy:
            return self.transport
        with self._lock:
            if proxy not in self._proxied:
                base = self.transport
                self._proxied[proxy] = Transport(
                    headers=base.headers,
                    verify=base.verify,
                    connect_timeout=base.connect_timeout,
                    read_timeout=base.read_timeout,
                    max_connections=base.max_connections,
                    proxy=proxy,
                )
            return self._proxied[proxy]

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            transports, self._proxied = [self.transport, *self._proxied.values()], {}
        for transport in transports:
            transport.close()
        self.session.close()
