"""Fixtures of the kara-obstore tests: moto's S3 server and Azurite on 127.0.0.1 (kara-fsspec's
test servers), stores on them opened through kara's URL routing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kara_fsspec.testing import AzuriteServer, S3TestServer, azure_container, azurite_server, s3_bucket, s3_server

from kara_core.backend import Backend
from kara_core.url import open_backend

__all__ = ["azure_container", "azurite_server", "s3_bucket", "s3_server"]


def azure_options(server: AzuriteServer) -> dict[str, str]:
    """obstore options for Azurite, in obstore's own names."""
    from kara_fsspec.testing.azurite import ACCOUNT, ACCOUNT_KEY

    return {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "endpoint": f"{server.endpoint_url}/{ACCOUNT}"}


@pytest.fixture
def s3_backend(s3_server: S3TestServer, s3_bucket: str) -> Iterator[Backend]:
    """An s3:// store under prefix ``store`` of a new bucket, opened through kara's URL routing."""
    backend = open_backend(s3_server.url(s3_bucket, "store"), **s3_server.options)
    assert type(backend).__name__ == "ObstoreBackend"
    yield backend
    backend.close()


@pytest.fixture
def azure_backend(azurite_server: AzuriteServer, azure_container: str) -> Iterator[Backend]:
    """An az:// store under prefix ``store`` of a new container on Azurite."""
    backend = open_backend(azurite_server.url(azure_container, "store"), **azure_options(azurite_server))
    assert type(backend).__name__ == "ObstoreBackend"
    yield backend
    backend.close()
