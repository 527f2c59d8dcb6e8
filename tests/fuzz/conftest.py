"""The fuzzing campaign's shared parts: example counts, a hard timeout per case, a tally.

Every fuzz test runs ``KARA_FUZZ_EXAMPLES`` examples per parser (a small default keeps
the campaign under two minutes in CI; raise it for a longer campaign) and wraps every
case in :func:`hard_timeout`, so a hang fails the case instead of the suite. The number
of cases run per area is printed at the end of the session.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

#: Examples per fuzz test (``KARA_FUZZ_EXAMPLES`` raises it).
EXAMPLES = int(os.environ.get("KARA_FUZZ_EXAMPLES", "40"))
#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = float(os.environ.get("KARA_FUZZ_CASE_TIMEOUT", "10"))

_CASES: collections.Counter[str] = collections.Counter()


class CaseHang(Exception):
    """A fuzz case ran past its hard timeout."""


@contextlib.contextmanager
def _hard_timeout(area: str, seconds: float = CASE_TIMEOUT) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise CaseHang(f"a {area} fuzz case ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _CASES[area] += 1


@pytest.fixture
def hard_timeout() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with hard_timeout("area"): ...`` fails the case with CaseHang past CASE_TIMEOUT."""
    return _hard_timeout


settings.register_profile(
    "kara-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("kara-fuzz")


@pytest.fixture
def fuzz_settings() -> settings:
    return FUZZ


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _CASES:
        counts = ", ".join(f"{area} {count}" for area, count in sorted(_CASES.items()))
        terminalreporter.write_line(f"kara fuzz campaign: {sum(_CASES.values())} cases ({counts})")
