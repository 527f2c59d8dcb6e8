"""kara-oss passes the backend, row-dataset and directory-version conformance suites on the OSS test server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kara_oss.testing import OSSTestServer

from kara_core.backend import Backend
from kara_core.testing import BackendConformance
from kara_core.testing.obj import ObjectConformance
from kara_core.testing.row import RowConformance
from kara_core.url import open_backend


class TestOSSBackendConformance(BackendConformance):
    @pytest.fixture
    def backend(self, oss_backend: Backend) -> Backend:
        return oss_backend


class TestOSSBackendConformanceWithV4Signatures(BackendConformance):
    @pytest.fixture
    def backend(self, oss_server: OSSTestServer) -> Iterator[Backend]:
        backend = open_backend(oss_server.url("v4"), region=oss_server.region, **oss_server.options)
        yield backend
        backend.close()


class TestOSSRows(RowConformance):
    @pytest.fixture
    def backend(self, oss_backend: Backend) -> Backend:
        return oss_backend


class TestOSSObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, oss_backend: Backend) -> Backend:
        return oss_backend
