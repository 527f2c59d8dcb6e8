"""Retry policy of one HTTP operation: exponential backoff with jitter, bounded in time.

One policy for every kara HTTP client (kara-http's requests, kara-oss's oss2 calls).
"""

from __future__ import annotations

import email.utils
import random
import time

from kara_core.errors import BackendError

__all__ = ["RETRY_STATUSES", "RetryBudget", "parse_retry_after"]

#: Statuses worth retrying: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryBudget:
    """Counts the attempts of one operation and sleeps between them.

    Delay before retry ``n`` is drawn from ``[d/2, d]`` with ``d = min(cap, base * 2**n)``
    (jitter spreads retries of many workers hitting the same server), raised to the
    server's ``Retry-After`` when it sent one. When the next attempt would start after
    the budget ends, :meth:`wait` raises :class:`BackendError` naming the last failure.
    """

    def __init__(self, what: str, budget: float, base: float, cap: float, *, option: str = "retry_budget") -> None:
        self.what = what
        self.budget = budget
        self.base = base
        self.cap = cap
        self.started = time.monotonic()
        self.attempts = 1
        self.option = option

    def wait(self, reason: str, retry_after: float | None = None) -> None:
        """Sleep before the next attempt, or raise :class:`BackendError` if out of budget."""
        delay = min(self.cap, self.base * 2 ** (self.attempts - 1))
        delay = random.uniform(delay / 2, delay)
        if retry_after is not None:
            delay = max(delay, retry_after)
        elapsed = time.monotonic() - self.started
        if elapsed + delay > self.budget:
            raise BackendError(
                f"{self.what} failed after {self.attempts} attempt(s) in {elapsed:.1f}s "
                f"(retry budget {self.budget:g}s, option {self.option}): {reason}"
            )
        time.sleep(delay)
        self.attempts += 1
