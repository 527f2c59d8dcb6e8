"""The row conformance suite passes on the file:// backend (mmap reads) and on an
in-memory backend (the ranged-read path every remote store takes)."""

from __future__ import annotations

import itertools

import pytest

from kara_core.backend import Backend
from kara_core.testing.row import RowConformance
from kara_core.url import open_backend

_names = itertools.count()


class TestFileRows(RowConformance):
    @pytest.fixture
    def backend(self, tmp_path) -> Backend:
        return open_backend(f"file://{tmp_path}/store")


class TestMemoryRows(RowConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return open_backend(f"memory://row-conformance-{next(_names)}")
