"""Retries for OSS calls, and the translation of OSS failures into kara errors.

Connection errors, timeouts, truncated bodies, CRC mismatches, throttling and 5xx
answers are retried with exponential backoff and jitter until a time budget runs out;
everything else fails at once with a kara error that says what to fix.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TypeVar

import oss2
from kara_transport import RetryBudget, TransportError

from kara_core.errors import BackendError, ConfigurationError, KaraError, NotFoundError, PermissionDeniedError

__all__ = ["Retrier", "ShortReadError"]

log = logging.getLogger("kara_oss")

T = TypeVar("T")

_BASE_DELAY = 0.05
_MAX_DELAY = 5.0
_THROTTLING = frozenset(["Throttling", "SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"])
_CREDENTIAL_CODES = frozenset(
    [
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidSecurityToken",
        "SecurityTokenExpired",
        "RequestTimeTooSkewed",
    ]
)
_UNRESOLVABLE = ("NameResolutionError", "Name or service not known", "nodename nor servname", "getaddrinfo failed")


class ShortReadError(Exception):
    """A response body ended before its Content-Length: the connection dropped."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, oss2.exceptions.ServerError):
        return f"HTTP {exc.status} {exc.code or ''}: {exc.message or ''}".strip()
    if isinstance(exc, oss2.exceptions.RequestError):
        return f"connection failed: {exc.body}"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _retry_after(exc: BaseException) -> float:
    """Seconds the server asked us to wait (``Retry-After``), or 0."""
    headers = getattr(exc, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0


# Failures of the transport (a dropped or timed-out connection, a malformed or truncated
# answer); kara_transport raises TransportError for all of them.
_TRANSPORT = (ShortReadError, TransportError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Return True for failures that another attempt may not hit."""
    if isinstance(exc, oss2.exceptions.ServerError):
        return exc.status >= 500 or exc.status == 429 or exc.code in _THROTTLING
    if isinstance(exc, oss2.exceptions.RequestError):
        return not any(marker in str(exc.body) for marker in _UNRESOLVABLE)
    return isinstance(exc, (oss2.exceptions.InconsistentError, *_TRANSPORT))


#: What oss2 (or kara's checks of its result) raises on an answer it cannot read.
_UNREADABLE_ANSWER = (ET.ParseError, ValueError, IndexError, KeyError, RuntimeError, TypeError, UnicodeError)


class Retrier:
    """Runs calls against one bucket with retries, and maps their failures to kara errors."""

    def __init__(self, budget: float, url: str, endpoint: str, bucket: str) -> None:
        self.budget = budget
        self.url, self.endpoint, self.bucket = url, endpoint, bucket

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the retry budget is spent.

        ``what`` describes the call for messages ("read row/ns/key/meta.json").
        """
        budget = RetryBudget(f"{what} on {self.url}", self.budget, _BASE_DELAY, _MAX_DELAY)
        while True:
            try:
                return fn()
            except (oss2.exceptions.OssError, *_TRANSPORT) as exc:
                if not is_transient(exc):
                    raise self.translate(what, exc) from None
                unreachable = isinstance(exc, oss2.exceptions.RequestError)
                hint = f" (is the endpoint {self.endpoint} right?)" if unreachable else ""
                log.warning("retrying %s on %s (attempt %d): %s", what, self.url, budget.attempts, _describe(exc))
                budget.wait(_describe(exc) + hint, _retry_after(exc))
            except KaraError:
                raise
            except _UNREADABLE_ANSWER as exc:
                # oss2 parses answers without guarding against hostile ones: a body that
                # is not XML, a missing or non-numeric field, bad UTF-8 (found by the
                # fuzzing campaign, tests/fuzz/test_oss_answers.py). Retrying would get
                # the same answer.
                raise BackendError(
                    f"{what} on {self.url}: the endpoint sent an answer that is not a valid OSS answer "
                    f"({type(exc).__name__}: {str(exc)[:200]})"
                ) from None

    def translate(self, what: str, exc: BaseException) -> KaraError:
        """Return the kara error for a failure that retrying will not fix."""
        if isinstance(exc, oss2.exceptions.ServerError):
            code, details = exc.code, exc.details or {}
            if code == "NoSuchKey":
                return NotFoundError(f"{what}: {self.url} has no such object")
            if code == "NoSuchBucket":
                return ConfigurationError(
                    f"bucket {self.bucket!r} does not exist at endpoint {self.endpoint}: check the bucket (and "
                    f"region endpoint) in the store URL {self.url}"
                )
            if details.get("Endpoint"):
                return ConfigurationError(
                    f"bucket {self.bucket!r} must be addressed through endpoint {details['Endpoint']!r}, "
                    f"not {self.endpoint!r}: fix the store URL {self.url}"
                )
            if exc.status == 403 or code in _CREDENTIAL_CODES:
                return PermissionDeniedError(
                    f"OSS refused to {what} on {self.url} ({code}: {exc.message}); check app_key/app_secret "
                    "(or OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET, and OSS_SESSION_TOKEN for STS credentials) "
                    "and the permissions of that key on the bucket"
                )
            return BackendError(f"{what} on {self.url} failed: {_describe(exc)}")
        if isinstance(exc, oss2.exceptions.RequestError):
            return ConfigurationError(
                f"cannot reach OSS endpoint {self.endpoint!r} ({_describe(exc)}): "
                f"check the endpoint in the store URL {self.url}"
            )
        if isinstance(exc, oss2.exceptions.ClientError):
            return ConfigurationError(f"{what} on {self.url}: {exc.body}")
        return BackendError(f"{what} on {self.url} failed: {_describe(exc)}")
