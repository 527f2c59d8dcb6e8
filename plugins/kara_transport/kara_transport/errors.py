"""The errors of the transport; every one derives from :mod:`kara_core.errors` classes.

- :class:`TransportError`: the exchange failed in transit (connection refused or reset,
  a connect/read/write timeout, an answer cut short). Retried within the retry budget.
- :class:`MalformedResponseError` (a :class:`TransportError`): the server's answer
  broke HTTP/1.1: a bad status line, header line or ``Content-Length`` (non-ASCII
  digits, signs, underscores, conflicting values), ``Content-Length`` together with
  ``Transfer-Encoding``, a bad chunk size, oversized heads or trailers, a body that ends
  before its announced length. Retried like any transport failure (a proxy or a
  load balancer in between may be at fault), never a ``ValueError`` or a hang.
- :class:`UnsafeHeaderError`: a request header name or value that would change the
  request's meaning on the wire (CR, LF, NUL, or a name that is not an HTTP token).
  Raised before anything is sent; never retried.
"""

from __future__ import annotations

from kara_core.errors import BackendError, ConfigurationError

__all__ = ["MalformedResponseError", "TransportError", "UnsafeHeaderError"]


class TransportError(BackendError):
    """An HTTP exchange failed in transit (connection, timeout, or a broken answer)."""


class MalformedResponseError(TransportError):
    """The server's answer is not valid HTTP/1.1 (see the module docstring)."""


class UnsafeHeaderError(ConfigurationError):
    """A request header contains CR, LF or NUL, or its name is not an HTTP token."""
