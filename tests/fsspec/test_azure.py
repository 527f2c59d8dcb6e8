"""kara-fsspec on Azure Blob (Azurite, through the real adlfs): credentials from the
environment, both URL schemes, conditional creates and whole-block appends."""

from __future__ import annotations

import pytest
from kara_fsspec import FsspecBackend
from kara_fsspec.testing import AzuriteServer

from kara_core import KaraStorage
from kara_core.errors import DatasetLockedError
from kara_core.url import open_backend


def test_the_connection_string_comes_from_the_environment(
    azurite_server: AzuriteServer, azure_container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    store = KaraStorage(azurite_server.url(azure_container, "env"))
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(50))
    # abfs:// names the same container.
    same = KaraStorage(azurite_server.url(azure_container, "env", scheme="abfs"))
    with same.open_dataset("ns", "k") as ds:
        assert [r["i"] for r in ds] == list(range(50))
    assert "AccountKey" not in repr(store.backend) and "AccountKey" not in store.backend.url


def test_creates_are_conditional_on_azure(azurite_server: AzuriteServer, azure_container: str) -> None:
    backend = open_backend(azurite_server.url(azure_container, "c"), **azurite_server.options)
    assert isinstance(backend, FsspecBackend) and backend.capabilities.atomic_create
    assert backend.put_if_absent("lock", b"first") is True
    assert backend.put_if_absent("lock", b"second") is False
    assert backend.read("lock") == b"first"
    assert backend.capabilities.atomic_create  # the probe found the server honours If-None-Match


def test_writer_lock_and_flushed_blocks_on_azure(azurite_server: AzuriteServer, azure_container: str) -> None:
    store = KaraStorage(azurite_server.url(azure_container, "rows"), **azurite_server.options)
    other = KaraStorage(azurite_server.url(azure_container, "rows"), **azurite_server.options)
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(20))
        ds.flush()
        with pytest.raises(DatasetLockedError):
            other.open_dataset("ns", "k", "w", version="1")
        ds.write_many({"i": i} for i in range(20, 30))
    assert store.backend.size("row/ns/k/1/data/1.blk")
    with other.open_dataset("ns", "k") as ds:
        assert [r["i"] for r in ds] == list(range(30))
