"""Fixtures of the directory-version tests: a file:// store and a private hash cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from kara_file.backend import FileBackend

from kara_core.obj import ObjectStore
from kara_core.testing.obj import write_tree


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "kara-cache"
    monkeypatch.setenv("KARA_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def backend(tmp_path: Path) -> FileBackend:
    return FileBackend(str(tmp_path / "store"))


@pytest.fixture
def objects(backend: FileBackend) -> ObjectStore:
    return ObjectStore(backend)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "source",
        {"a.txt": b"hello\n", "sub/b.bin": b"\x00\x01" * 1000, "sub/c.txt": b"c\n", "d.txt": b"hello\n"},
    )
