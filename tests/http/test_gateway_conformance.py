"""The conformance suites pass through a ``kara serve`` gateway (file:// store behind it)."""

from __future__ import annotations

import pytest

from kara_core.backend import Backend
from kara_core.testing import BackendConformance
from kara_core.testing.obj import ObjectConformance
from kara_core.testing.row import RowConformance


class TestGatewayBackendConformance(BackendConformance):
    @pytest.fixture
    def backend(self, remote: Backend) -> Backend:
        return remote


class TestGatewayRows(RowConformance):
    @pytest.fixture
    def backend(self, remote: Backend) -> Backend:
        return remote


class TestGatewayObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, remote: Backend) -> Backend:
        return remote
