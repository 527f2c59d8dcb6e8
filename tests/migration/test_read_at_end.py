"""Item 0: ``read()`` past the end raises an EOFError (as 2.1.5 does), so 2.x loops end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kara_core import KaraStorage
from kara_core.errors import EndOfDatasetError

from .conftest import HERE, run_script

SCRIPT = HERE / "read_loop_2x.py"


def test_the_2x_eof_loop_ends_and_reads_what_2x_reads(tmp_path: Path, python_215: str, python_kara: str) -> None:
    theirs = json.loads(run_script(python_215, SCRIPT, str(tmp_path / "a" / "store"), timeout=60))
    ours = json.loads(run_script(python_kara, SCRIPT, str(tmp_path / "b" / "store"), timeout=60))
    assert ours == theirs
    assert ours == {
        "whole": list(range(25)),
        "again": [],
        "tail": [20, 21, 22, 23, 24],
        "part": [5, 6, 7],
        "iterated": [22, 23, 24],
    }


def test_read_default_returns_a_value_instead_of_raising(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many([None, 1])
    with store.open_dataset("ns", "k") as ds:
        assert [ds.read(default="end") for _ in range(3)] == [None, 1, "end"]
        with pytest.raises(EndOfDatasetError, match="all 2 records were read"):
            ds.read()
        ds.seek(0)
        assert list(ds) == [None, 1]
        assert ds.read(None) is None
