"""Fixtures of the kara-fsspec tests: moto's S3 server, Azurite and gcp-storage-emulator on
127.0.0.1, stores on them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kara_fsspec import open_fsspec
from kara_fsspec.testing import (
    AzuriteServer,
    GCSTestServer,
    S3TestServer,
    azure_container,
    azurite_server,
    gcs_bucket,
    gcs_server,
    s3_bucket,
    s3_server,
)
from kara_fsspec.testing.gcs import disable_gcsfs_extensions

from kara_core.backend import Backend
from kara_core.url import open_backend

__all__ = ["azure_container", "azurite_server", "gcs_bucket", "gcs_server", "s3_bucket", "s3_server"]


@pytest.fixture(autouse=True)
def _through_fsspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are kara-fsspec's: its backend serves s3:// and az:// even where
    kara-obstore (which registers them by name, ahead of the fallback) is installed."""
    for scheme in ("S3", "AZ", "ABFS", "AZURE"):
        monkeypatch.setenv(f"KARA_PLUGIN_{scheme}", "fsspec")


# gcsfs picks its filesystem class when it is imported: the plain JSON-API one, which is
# what the emulator serves (see kara_fsspec.testing.gcs).
disable_gcsfs_extensions()


@pytest.fixture
def s3_backend(s3_server: S3TestServer, s3_bucket: str) -> Iterator[Backend]:
    """An s3:// store under prefix ``store`` of a new bucket, opened through kara's URL routing."""
    backend = open_backend(s3_server.url(s3_bucket, "store"), **s3_server.options)
    yield backend
    backend.close()


@pytest.fixture
def azure_backend(azurite_server: AzuriteServer, azure_container: str) -> Iterator[Backend]:
    """An az:// store under prefix ``store`` of a new container on Azurite."""
    backend = open_backend(azurite_server.url(azure_container, "store"), **azurite_server.options)
    yield backend
    backend.close()


@pytest.fixture
def gcs_backend(gcs_server: GCSTestServer, gcs_bucket: str) -> Iterator[Backend]:
    """A gs:// store under prefix ``store`` of a new bucket on gcp-storage-emulator."""
    backend = open_backend(gcs_server.url(gcs_bucket, "store"), **gcs_server.options)
    yield backend
    backend.close()


@pytest.fixture
def memory_backend() -> Iterator[Backend]:
    """A store on fsspec's memory filesystem (a fresh root per test)."""
    backend = open_fsspec(f"memory://kara-{secrets.token_hex(6)}/store")
    yield backend
    backend.fs.rm(backend.root, recursive=True) if backend.fs.exists(backend.root) else None


@pytest.fixture
def local_backend(tmp_path: Path) -> Backend:
    """A store on fsspec's local filesystem (``local://`` is a scheme no other plugin owns)."""
    return open_backend(f"local://{tmp_path}/store")
