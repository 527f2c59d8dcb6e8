"""Fixtures of the pipeline tests: small row datasets to mix and token datasets to pack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kara_core import KaraStorage

#: Records of the three sources mixed by most tests (odd sizes on purpose).
SIZES = {"web": 700, "code": 240, "books": 61}


def token_record(r: int) -> np.ndarray:
    """Record ``r`` of the token datasets: 1 + (r * 37) % 150 tokens, unique across records."""
    return (r * 1000 + np.arange(1 + (r * 37) % 150)).astype(np.int32)


@pytest.fixture
def store(tmp_path: Path) -> KaraStorage:
    """A fresh file:// store holding ns/web, ns/code, ns/books ({"src", "i"} records)."""
    store = KaraStorage(f"file://{tmp_path}/store")
    for name, count in SIZES.items():
        with store.open_dataset("ns", name, "w", version="1") as ds:
            ds.write_many({"src": name, "i": i} for i in range(count))
    return store


@pytest.fixture
def sources(store: KaraStorage) -> Any:
    """The three sources opened for reading, by name."""
    opened = {name: store.open_dataset("ns", name) for name in SIZES}
    yield opened
    for ds in opened.values():
        ds.close()


def write_tokens(store: KaraStorage, key: str, records: range, serialization: str = "numpy") -> None:
    """Append token records ``records`` to ns/<key> (numpy arrays, or {"tokens": list} for json)."""
    with store.open_dataset("ns", key, "w", version="1", serialization=serialization) as ds:
        if serialization == "numpy":
            ds.write_many(token_record(r) for r in records)
        else:
            ds.write_many({"tokens": token_record(r).tolist()} for r in records)
