"""Fixtures of the kara-http tests: real servers on 127.0.0.1 (static mirror and gateway)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kara_http.testing import GatewayServer, StaticServer

from kara_core.backend import Backend
from kara_core.url import open_backend

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "kara-2.1.5"
TOKEN = "test-token-5f1c9e"

#: Small retry budget and timeouts: fault tests must fail fast when retries do not help.
FAST: dict[str, Any] = {"retry_budget": 5.0, "connect_timeout": 2.0, "read_timeout": 2.0, "backoff_base": 0.05}


@pytest.fixture
def fast() -> dict[str, Any]:
    """Options for http:// stores in fault tests (see :data:`FAST`)."""
    return dict(FAST)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An empty folder that a file:// store writes to and the static server serves."""
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def static(store_dir: Path) -> Iterator[StaticServer]:
    """A static web server with Range support serving ``store_dir`` at its root."""
    with StaticServer(str(store_dir)) as server:
        yield server


@pytest.fixture
def mirror(static: StaticServer) -> Iterator[Backend]:
    """An http:// backend reading ``store_dir`` through the static server."""
    backend = open_backend(static.url, **FAST)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def gateway(store_dir: Path) -> Iterator[GatewayServer]:
    """A gateway serving a file:// store in ``store_dir``, writable with :data:`TOKEN`."""
    with GatewayServer(f"file://{store_dir}", token=TOKEN, store_options={"fsync": False}) as server:
        yield server


@pytest.fixture
def remote(gateway: GatewayServer) -> Iterator[Backend]:
    """An http:// backend on the gateway, holding the token (so writable)."""
    backend = open_backend(gateway.url, token=TOKEN, **FAST)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def fixture_store(tmp_path: Path) -> Path:
    """A copy of the store kara-storage 2.1.5 wrote (tests/fixtures/kara-2.1.5/store)."""
    target = tmp_path / "k215-store"
    shutil.copytree(FIXTURES / "store", target)
    return target


@pytest.fixture
def expected() -> dict[str, Any]:
    """The records of the 2.1.5 fixture store (expected.json)."""
    return json.loads((FIXTURES / "expected.json").read_text())
