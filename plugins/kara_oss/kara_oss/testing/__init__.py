"""Test offline against OSS: an OSS-protocol server on 127.0.0.1 and a pytest fixture.

::

    from kara_oss.testing import OSSTestServer

    with OSSTestServer() as oss:
        store = KaraStorage(oss.url("my/prefix"), **oss.options)

or, in a conftest.py, ``from kara_oss.testing import oss_server`` and take ``oss_server``
as a fixture argument. The server keeps everything in memory and implements what an OSS
client uses with OSS's own semantics (see :mod:`kara_oss.testing.server`); faults and a
per-request latency can be injected with :meth:`OSSTestServer.inject` and
``OSSTestServer.latency``. Run ``python -m kara_oss.testing`` for a standalone server.
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, Any

from .server import FAULT_ACTIONS, Fault, OSSServerState, serve

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FAULT_ACTIONS", "Fault", "OSSTestServer", "oss_server"]


class OSSTestServer:
    """An in-memory OSS endpoint on 127.0.0.1 (port chosen by the OS unless given).

    ``bucket`` exists from the start (``extra_buckets`` too); requests must be signed
    with ``access_key_id``/``access_key_secret`` (a random secret unless given), with
    ``security_token`` as well when one is set (STS credentials). ``region`` is the
    region V4 signatures must be scoped to. ``latency`` (seconds) is added to every
    request. ``md5_etags``: the ETag of an uploaded object or part is the MD5 of its
    content, as OSS answers; off, it is derived from the CRC64 instead (same format,
    still unique per content), which spares an MD5 pass over every uploaded byte when
    the server shares a machine with the client it serves (benchmarks). Appendable
    objects always get derived ETags (OSS documents theirs as unique, not as an MD5).
    """

    def __init__(
        self,
        bucket: str = "kara-test",
        *,
        access_key_id: str = "kara-test-key-id",
        access_key_secret: str | None = None,
        security_token: str | None = None,
        region: str = "cn-kara-test",
        latency: float = 0.0,
        md5_etags: bool = True,
        extra_buckets: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.bucket = bucket
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret or "kara-test-secret-" + secrets.token_hex(8)
        self.security_token = security_token
        self.region = region
        tokens = {access_key_id: security_token} if security_token else {}
        self.state = OSSServerState(
            (bucket, *extra_buckets), {access_key_id: self.access_key_secret}, tokens, region, latency, md5_etags
        )
        self._httpd = serve(self.state, host, port)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> OSSTestServer:
        """Start serving in a background thread and return self."""
        if self._thread is None:
            # A short poll interval makes stop() (and so every test's teardown) quick.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.02,), name="kara-oss-test-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OSSTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addressing --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the endpoint part of ``oss://`` URLs."""
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def url(self, prefix: str = "", bucket: str | None = None) -> str:
        """The store URL ``oss://127.0.0.1:PORT/BUCKET/prefix``."""
        return f"oss://{self.endpoint}/{bucket or self.bucket}/{prefix}".rstrip("/")

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options that authenticate against this server (``app_key``...)."""
        options: dict[str, Any] = {"app_key": self.access_key_id, "app_secret": self.access_key_secret}
        if self.security_token:
            options["security_token"] = self.security_token
        return options

    # -- faults and inspection -----------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every request."""
        return self.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.state.latency = seconds

    def inject(
        self, action: str, operation: str | None = None, key: str | None = None, times: int = 1, **kwargs: Any
    ) -> Fault:
        """Make the next ``times`` requests matching ``operation``/``key`` fail with ``action``.

        ``action`` is one of :data:`FAULT_ACTIONS`; ``kwargs`` set ``status``, ``code``,
        ``retry_after`` (for ``error``) or ``delay`` (for ``slow``). Returns the
        :class:`Fault`, whose ``hits`` counts the requests it caught.
        """
        if action not in FAULT_ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; choose one of {', '.join(FAULT_ACTIONS)}")
        fault = Fault(action, operation, key, times, **kwargs)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(operation, key)`` of every request received so far, in order."""
        with self.state.lock:
            return list(self.state.log)

    def count(self, operation: str, key_prefix: str = "") -> int:
        """How many ``operation`` requests on keys starting with ``key_prefix`` arrived."""
        return sum(1 for op, key in self.requests if op == operation and key.startswith(key_prefix))

    def keys(self, bucket: str | None = None) -> list[str]:
        """The object keys in ``bucket`` (default: the main bucket), sorted."""
        with self.state.lock:
            return sorted(self.state.buckets[bucket or self.bucket])

    def get(self, key: str, bucket: str | None = None) -> bytes | None:
        """The content of an object, or None if it is absent (no request is made)."""
        with self.state.lock:
            obj = self.state.buckets[bucket or self.bucket].get(key)
            return None if obj is None else bytes(obj.data)

    def object_type(self, key: str, bucket: str | None = None) -> str | None:
        """``Normal``, ``Appendable`` or ``Multipart`` for an object, None if absent."""
        with self.state.lock:
            obj = self.state.buckets[bucket or self.bucket].get(key)
            return None if obj is None else obj.kind

    def pending_uploads(self, bucket: str | None = None) -> int:
        """Number of multipart uploads initiated and neither completed nor aborted."""
        with self.state.lock:
            return len(self.state.uploads[bucket or self.bucket])


def _fixture() -> Iterator[OSSTestServer]:
    """A started :class:`OSSTestServer`, stopped after the test."""
    with OSSTestServer() as server:
        yield server


def __getattr__(name: str) -> Any:
    # The pytest fixture is built on first access so that importing kara_oss.testing
    # (for the server alone) never needs pytest.
    if name == "oss_server":
        import pytest

        fixture = pytest.fixture(name="oss_server")(_fixture)
        globals()["oss_server"] = fixture
        return fixture
    raise AttributeError(name)
