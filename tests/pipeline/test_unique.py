"""sorted_unique equals np.unique, and reading packed views and mixtures never imports numpy.ma
(np.unique did, about 20 ms in every forked DataLoader worker's first batch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kara_core.pipeline.sources import sorted_unique


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62), max_size=60), st.sampled_from(["int64", "int32", "uint64"]))
def test_sorted_unique_equals_np_unique(values: list[int], dtype: str) -> None:
    array = np.array(values, dtype=np.int64)
    if dtype != "int64":
        array = np.abs(array) % 2**31 if dtype == "int32" else np.abs(array)
        array = array.astype(dtype)
    got, expected = sorted_unique(array), np.unique(array)
    assert got.dtype == expected.dtype and got.tolist() == expected.tolist()


SCRIPT = """
import sys
import numpy as np
import kara_core

store = kara_core.KaraStorage(sys.argv[1])
with store.open_dataset("tok", "docs", "w", version="1", serialization="numpy") as ds:
    ds.write_many(np.arange(n, dtype=np.int32) for n in range(1, 400))
for name in ("a", "b"):
    with store.open_dataset("ns", name, "w", version="1") as ds:
        ds.write_many(range(300))
assert "numpy.ma" not in sys.modules
packed = kara_core.pack(store.open_dataset("tok", "docs"), field=None, seq_len=64)
packed.fetch_batch(np.array([5, 1, 5, 3]))
packed.fetch(np.arange(10))
mixture = kara_core.mix({name: store.open_dataset("ns", name) for name in ("a", "b")}, {"a": 2, "b": 1},
                        exhausted="cycle", samples=2000)
mixture.fetch(np.arange(0, 2000, 7))
mixture.fetch(np.array([1999, 3, 3, 1000]))
print("numpy.ma" in sys.modules)
"""


def test_reading_packed_views_and_mixtures_does_not_import_numpy_ma(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"file://{tmp_path}/store"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", out.stderr
