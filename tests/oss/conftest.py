"""Fixtures of the kara-oss tests: a fresh OSS test server per test, and stores on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kara_oss.testing import OSSTestServer, oss_server

from kara_core.backend import Backend
from kara_core.url import open_backend

__all__ = ["oss_server"]

# A small retry budget: fault tests must fail fast when retries do not help. Timeouts
# stay generous so that a loaded test machine never adds retries the tests do not expect.
FAST = {"retry_budget": 10.0, "connect_timeout": 10.0, "read_timeout": 10.0}


@pytest.fixture
def oss_backend(oss_server: OSSTestServer) -> Iterator[Backend]:
    """An oss:// backend under prefix ``store`` of the test server's bucket."""
    backend = open_backend(oss_server.url("store"), **oss_server.options, **FAST)
    try:
        yield backend
    finally:
        backend.close()
