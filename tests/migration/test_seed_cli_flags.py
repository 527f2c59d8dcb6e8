"""Item 6: 2.x shell scripts pass --app-key/--app-secret to every command, file:// included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kara_storage"), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_the_seed_obj_commands_with_oss_flags_work_on_file_stores(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "w.bin").write_bytes(b"weights")
    flags = ["--app-key", "x", "--app-secret", "y"]
    saved = _run("obj", "file://store", "save", "models", "bert", "ckpt", *flags, cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    warning = "kara: warning: --app-key, --app-secret ignored: file:// stores take no such option"
    assert saved.stderr.splitlines()[0] == warning
    assert saved.stdout == "0\n"
    loaded = _run("obj", "file://store", "load", "models", "bert", "out", "-v", "0", *flags, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stderr.count("warning") == 1
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"weights"


def test_the_seed_row_view_with_oss_flags_gets_as_far_as_the_terminal_check(tmp_path: Path) -> None:
    import kara_core

    with kara_core.KaraStorage(f"file://{tmp_path}/store").open_dataset("ns", "k", "w", version="1") as ds:
        ds.write({"a": 1})
    viewed = _run("row", "file://store", "view", "ns", "k", "--app-key", "x", "--app-secret", "y", cwd=tmp_path)
    assert viewed.stderr.splitlines()[0].startswith("kara: warning: --app-key, --app-secret ignored")
    assert viewed.stderr.splitlines()[1] == (
        "kara: error: the viewer needs a terminal; to print records use: kara cat URL NAMESPACE KEY"
    )
