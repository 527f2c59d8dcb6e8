"""The 2.x-style example script prints the same under kara-storage 2.1.5 and under kara."""

from __future__ import annotations

from pathlib import Path

from .conftest import ROOT, run_script

SCRIPT = ROOT / "examples" / "kara_storage_2x.py"


def test_the_2x_script_prints_the_same_under_both_libraries(tmp_path: Path, python_215: str, python_kara: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    theirs = run_script(python_215, SCRIPT, str(tmp_path / "a"))
    ours = run_script(python_kara, SCRIPT, str(tmp_path / "b"))
    assert ours == theirs
    lines = ours.splitlines()
    assert len(lines) == 23
    assert "read at the end: EOFError" in lines and "weights.txt: epoch 2" in lines
    assert lines[-1] == "object meta: {'latest': '0', 'versions': ['best', '0'], 'api': 2}"
