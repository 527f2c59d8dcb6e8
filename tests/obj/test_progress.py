"""Progress bars: drawn on a terminal, absent when stderr is not one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect

from kara_core.testing.obj import write_tree

WORKER = str(Path(__file__).with_name("obj_worker.py"))


def _source(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", {f"f{i}.bin": bytes([i]) * 2_500_000 for i in range(4)})


def test_save_and_load_draw_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    source, store = _source(tmp_path), tmp_path / "store"
    for action, folder, label in (("save", source, "Saving"), ("load", tmp_path / "out", "Downloading")):
        child = pexpect.spawn(
            sys.executable,
            [WORKER, action, str(store), "ns", "ckpt", str(folder), "--slow", "--progress"],
            encoding="utf-8",
            timeout=60,
        )
        child.expect(label)
        child.expect(r"files")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before


def test_no_progress_is_written_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    source, store = _source(tmp_path), tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, WORKER, "save", str(store), "ns", "ckpt", str(source), "--progress"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout.strip() == "0"
