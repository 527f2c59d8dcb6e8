"""kara-fsspec passes the backend, row-dataset and directory-version conformance suites on
S3 (moto's server, through s3fs), Azure Blob (Azurite, through adlfs), and fsspec's memory
and local filesystems."""

from __future__ import annotations

import pytest

from kara_core.backend import Backend
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


class TestAzureRows(RowConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend


class TestAzureObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, azure_backend: Backend) -> Backend:
        return azure_backend


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend


class TestMemoryRows(RowConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend


class TestMemoryObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend


class TestLocalRows(RowConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend


class TestLocalObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, local_backend: Backend) -> Backend:
        return local_backend
