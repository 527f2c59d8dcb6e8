"""The example third-party plugin (examples/kara_memory) is installed and conforms."""

from __future__ import annotations

import uuid

import pytest

from kara_core import KaraStorage
from kara_core.backend import Backend
from kara_core.plugins import list_plugins
from kara_core.testing import BackendConformance
from kara_core.url import open_backend


class TestMemoryBackendConformance(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return open_backend(f"memory://{uuid.uuid4().hex}")


def test_the_example_plugin_is_discovered_through_its_entry_point() -> None:
    memory = [p for p in list_plugins() if p.name == "memory"]
    assert len(memory) == 1
    assert memory[0].distribution == "kara-memory"
    assert memory[0].backends == ["memory"]


def test_a_store_on_the_example_backend_opens_by_url() -> None:
    storage = KaraStorage(f"memory://{uuid.uuid4().hex}")
    assert storage.url.startswith("memory://")
