"""Real protocol servers on 127.0.0.1 for testing kara-fsspec stores, and pytest fixtures.

::

    from kara_fsspec.testing import S3TestServer

    with S3TestServer() as s3:
        store = KaraStorage(s3.url("my/prefix"), **s3.options)

``S3TestServer`` runs moto's S3 server (in a thread, or in its own process with
``process=True``) and counts the requests it serves; ``AzuriteServer`` runs Azurite's
blob service; ``GCSTestServer`` runs gcp-storage-emulator (Google Cloud Storage's JSON
API, from PyPI) in a thread. All listen on random ports of 127.0.0.1. In a conftest.py,
import ``s3_server``, ``azurite_server`` and ``gcs_server`` (session fixtures) and
``s3_bucket`` / ``azure_container`` / ``gcs_bucket`` (a new bucket or container per test).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .azurite import ACCOUNT, ACCOUNT_KEY, AzuriteError, start_azurite
from .gcs import GCSEmulatorError, disable_gcsfs_extensions, start_gcs_emulator
from .s3 import COUNTER_PATH, make_s3_server

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "AzuriteError",
    "AzuriteServer",
    "GCSEmulatorError",
    "GCSTestServer",
    "S3TestServer",
    "azure_container",
    "azurite_server",
    "gcs_bucket",
    "gcs_server",
    "s3_bucket",
    "s3_server",
]


class _LoopbackServer:
    """What the three servers share: a port on 127.0.0.1, a context, store URLs."""

    #: The URL scheme of the stores this server holds.
    SCHEME = ""
    port = 0

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str = "", scheme: str | None = None) -> str:
        """``<scheme>://bucket/prefix`` (a bucket or a container)."""
        return f"{scheme or self.SCHEME}://{bucket}/{prefix}".rstrip("/")


class S3TestServer(_LoopbackServer):
    """moto's S3 on 127.0.0.1; ``options`` are the s3fs options that reach it."""

    SCHEME = "s3"

    def __init__(self, process: bool = False) -> None:
        self.process = process
        self.port = 0
        self._server: Any = None
        #: The counting middleware (thread mode only): see :class:`~kara_fsspec.testing.s3.CountingApp`.
        self.app: Any = None
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> S3TestServer:
        """Start the server (in a thread, or a child process)."""
        if self.process:
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from kara_fsspec.testing.s3 import main; main()"],
                stdin=subprocess.PIPE,  # the child serves until it ends: it dies with this process
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._child.stdout is not None
            line = self._child.stdout.readline()
            if not line.startswith("PORT "):
                self._child.kill()
                raise RuntimeError(f"moto's S3 server did not start: {line!r}")
            self.port = int(line.split()[1])
        else:
            self._server, self.app = make_s3_server()
            self.port = self._server.server_port
            self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._child is not None:
            assert self._child.stdin is not None
            self._child.stdin.close()  # the child's signal to stop
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait(10)
            self._child = None

    @property
    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's process has used so far (``process=True``, Linux).

        Benchmarks take it before and after an operation: moto answers requests under one
        GIL, so the CPU it spent is a floor under the operation's wall time.
        """
        if self._child is None:
            raise RuntimeError("cpu_seconds needs a server started with process=True")
        with open(f"/proc/{self._child.pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        # utime and stime: fields 14 and 15 of proc(5), counted from the state (field 3).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def options(self) -> dict[str, Any]:
        """s3fs options for this server (moto takes any credentials)."""
        return {"endpoint_url": self.endpoint_url, "key": "kara-test-key", "secret": "kara-test-secret-0123456789"}

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a random name unless given) and return its name."""
        name = name or "kara-" + secrets.token_hex(6)
        request = urllib.request.Request(f"{self.endpoint_url}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
        return name

    @property
    def requests(self) -> int:
        """Requests served since the start or the last :meth:`reset_requests`."""
        with urllib.request.urlopen(self.endpoint_url + COUNTER_PATH, timeout=30) as answer:
            return int(answer.read())

    def reset_requests(self) -> None:
        """Set the request counter to zero."""
        request = urllib.request.Request(self.endpoint_url + COUNTER_PATH, method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


class AzuriteServer(_LoopbackServer):
    """Azurite's blob service on 127.0.0.1; ``options`` are the adlfs options that reach it."""

    SCHEME = "az"

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._workdir = ""

    def start(self) -> AzuriteServer:
        """Start Azurite (raises :class:`AzuriteError` if it is missing or does not start)."""
        self._process, self.port, self._workdir = start_azurite()
        return self

    def stop(self) -> None:
        """Stop Azurite and remove its scratch folder."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            shutil.rmtree(self._workdir, ignore_errors=True)

    @property
    def connection_string(self) -> str:
        """The connection string of Azurite's development account on this port."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    @property
    def options(self) -> dict[str, Any]:
        """adlfs options for this server."""
        return {"connection_string": self.connection_string}

    def create_container(self, name: str | None = None) -> str:
        """Create a container (a random name unless given) and return its name."""
        import adlfs

        name = name or "kara-" + secrets.token_hex(6)
        fs = adlfs.AzureBlobFileSystem(connection_string=self.connection_string, skip_instance_cache=True)
        fs.mkdir(name)
        return name


class GCSTestServer(_LoopbackServer):
    """gcp-storage-emulator on 127.0.0.1 (in memory, in a thread); ``options`` are gcsfs's.

    Starting it sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (see
    :mod:`kara_fsspec.testing.gcs`): start it before anything imports gcsfs.
    """

    SCHEME = "gs"

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None

    def start(self) -> GCSTestServer:
        """Start the emulator (raises :class:`GCSEmulatorError` if it is missing or cannot serve)."""
        disable_gcsfs_extensions()
        self._server, self.port = start_gcs_emulator()
        return self

    def stop(self) -> None:
        """Stop the emulator (its objects lived in memory)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def options(self) -> dict[str, Any]:
        """gcsfs options for this server (the emulator checks no credentials)."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": "kara-test"}

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a random name unless given) and return its name."""
        import gcsfs

        name = name or "kara-" + secrets.token_hex(6)
        gcsfs.GCSFileSystem(skip_instance_cache=True, **self.options).mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    """moto's S3 server for the whole test session."""
    with S3TestServer() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3TestServer) -> str:
    """A new, empty bucket on the session's S3 server."""
    return s3_server.create_bucket()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """Azurite for the whole test session; fails (never skips) when it cannot start."""
    with AzuriteServer() as server:
        yield server


@pytest.fixture
def azure_container(azurite_server: AzuriteServer) -> str:
    """A new, empty container on the session's Azurite."""
    return azurite_server.create_container()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSTestServer]:
    """gcp-storage-emulator for the whole test session; fails (never skips) when it cannot start."""
    with GCSTestServer() as server:
        yield server


@pytest.fixture
def gcs_bucket(gcs_server: GCSTestServer) -> str:
    """A new, empty bucket on the session's GCS emulator."""
    return gcs_server.create_bucket()
