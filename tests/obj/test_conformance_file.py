"""The directory-version conformance suite on the file:// backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from kara_file.backend import FileBackend

from kara_core.testing.obj import ObjectConformance


class TestFileBackendObjects(ObjectConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> FileBackend:
        return FileBackend(str(tmp_path / "store"))
