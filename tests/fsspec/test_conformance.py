"""kara-fsspec passes the backend, row-dataset and directory-version conformance suites on
S3 (moto's server, through s3fs), Azure Blob (Azurite, through adlfs), and fsspec's memory
and local filesystems."""

from __future__ import annotations

import pickle

import pytest
from kara_fsspec import FsspecBackend

from kara_core.backend import Backend
from kara_core.errors import UnsafePathError
from kara_core.testing import BackendConformance
from kara_core.testing.obj import ObjectConformance
from kara_core.testing.row import RowConformance
from kara_core.url import opened_with


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


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self, memory_backend: Backend) -> Backend:
        return memory_backend

    def test_a_backend_opened_from_a_url_pickles_and_reads_the_same_store(self, backend: Backend) -> None:
        # memory:// belongs to kara's example memory plugin, so this store is opened with
        # open_fsspec, not open_backend: it pickles as "open_fsspec(url, options)" (the
        # backend's own __reduce_ex__), and unpickled it is fsspec's store again, not
        # kara-memory's. The stores opened by URL (S3, Azure, local) run the suite's test.
        backend.put("pk/obj", b"pickled")
        assert opened_with(backend) is None
        clone = pickle.loads(pickle.dumps(backend))
        try:
            assert isinstance(clone, FsspecBackend) and clone.root == backend.root
            assert clone.read("pk/obj") == b"pickled"
        finally:
            clone.close()


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
