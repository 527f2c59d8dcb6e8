"""kara-transport: the one HTTP/1.1 client transport of kara's HTTP-speaking plugins.

:class:`Transport` (pooled connections on httpcore and h11's strict parser, TLS,
proxies, redirects, timeouts, fork safety), :class:`RetryBudget` (backoff with jitter
within a time budget) and the errors they raise. See :mod:`kara_transport.transport`.
"""

from __future__ import annotations

from .errors import MalformedResponseError, TransportError, UnsafeHeaderError
from .retry import RETRY_STATUSES, RetryBudget, parse_retry_after
from .transport import Headers, Response, Transport, check_headers

__all__ = [
    "RETRY_STATUSES",
    "Headers",
    "MalformedResponseError",
    "Response",
    "RetryBudget",
    "Transport",
    "TransportError",
    "UnsafeHeaderError",
    "check_headers",
    "parse_retry_after",
]
