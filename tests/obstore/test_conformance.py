"""kara-obstore passes the backend, row-dataset and directory-version conformance suites on S3
(moto's server) and Azure Blob (Azurite), the suites kara-fsspec passes on the same servers."""

from __future__ import annotations

import pytest

from kara_core.backend import Backend
from kara_core.errors import UnsafePathError
from kara_core.testing import BackendConformance
from kara_core.testing.obj import ObjectConformance
from kara_core.testing.row import RowConformance


class TestS3Backend(BackendConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestS3Rows(RowConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestS3Objects(ObjectConformance):
    @pytest.fixture
    def backend(self, s3_backend: Backend) -> Backend:
        return s3_backend


class TestAzureBackend(BackendConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend

    def test_a_backslash_is_a_plain_character_of_a_name(self, backend: Backend) -> None:
        # Azure Blob Storage (Azurite as the service) stores 'a\\..\\c' as 'a/../c': the
        # name is refused, with the reason, before anything is sent.
        for path in ("bs/a\\b", "bs/a\\..\\c"):
            with pytest.raises(UnsafePathError, match="Azure Blob Storage"):
                backend.put(path, b"one")
            with pytest.raises(UnsafePathError, match="Azure Blob Storage"):
                backend.read(path)
        assert list(backend.list("bs/")) == []


class TestAzureRows(RowConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend


class TestAzureObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend
