"""The installed scripts as separate processes: a light ``--help`` and quiet pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kara_core

BIN = Path(sys.executable).parent
HEAVY = ("torch", "oss2", "requests")


@pytest.mark.parametrize("args", [["--help"], ["cat", "--help"], ["obj", "--help"]], ids=" ".join)
def test_help_imports_no_heavy_library(args):
    code = textwrap.dedent(
        f"""
        import sys
        from kara_core.cli import main
        try:
            main({args!r})
        except SystemExit:
            pass
        print("HEAVY:", sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage:" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "HEAVY: []"


def test_kara_storage_script_runs_the_same_cli():
    result = subprocess.run([str(BIN / "kara_storage"), "version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"kara {kara_core.__version__}\n"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "kara_core.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == f"kara {kara_core.__version__}\n"


def test_cat_into_head_exits_quietly(tmp_path):
    url = f"file://{tmp_path / 'store'}"
    with kara_core.KaraStorage(url).open_dataset("ns", "big", "w", "1") as ds:
        ds.write_many({"i": i, "pad": "x" * 40} for i in range(30000))
    cat = subprocess.Popen([str(BIN / "kara"), "cat", url, "ns", "big"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-n", "2"], stdin=cat.stdout, capture_output=True, check=True)
    cat.stdout.close()
    stderr = cat.stderr.read()
    cat.stderr.close()
    assert cat.wait(timeout=60) == 141
    assert head.stdout.decode().splitlines() == ['{"i":0,"pad":"' + "x" * 40 + '"}', '{"i":1,"pad":"' + "x" * 40 + '"}']
    assert stderr == b""


@pytest.fixture
def broken_plugin_env(tmp_path) -> dict[str, str]:
    """An environment where a real installed distribution's entry point fails to import."""
    (tmp_path / "kara_broken_cli_example.py").write_text("raise RuntimeError('boom at import')\n")
    dist = tmp_path / "kara_broken_cli_example-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kara-broken-cli-example\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[kara.plugins]\nbroken = kara_broken_cli_example\n")
    return dict(os.environ, PYTHONPATH=str(tmp_path))


def test_a_plugin_that_fails_to_import_is_silent_in_unrelated_commands(broken_plugin_env, tmp_path):
    url = f"file://{tmp_path / 'store'}"
    with kara_core.KaraStorage(url).open_dataset("ns", "k", "w", "1") as ds:
        ds.write(1)
    result = subprocess.run([str(BIN / "kara"), "ls", url], capture_output=True, text=True, env=broken_plugin_env)
    assert result.returncode == 0 and result.stderr == ""
    assert (
        subprocess.run([str(BIN / "kara"), "--help"], capture_output=True, text=True, env=broken_plugin_env).stderr
        == ""
    )


def test_a_plugin_that_fails_to_import_is_listed_by_kara_plugins(broken_plugin_env):
    result = subprocess.run(
        [str(BIN / "kara"), "plugins", "--json"], capture_output=True, text=True, env=broken_plugin_env
    )
    broken = next(p for p in json.loads(result.stdout)["plugins"] if p["name"] == "broken")
    assert (broken["distribution"], broken["version"]) == ("kara-broken-cli-example", "1.2.3")
    assert broken["error"] == "RuntimeError: boom at import"
    assert "boom at import" in broken["traceback"]


def test_a_plugin_that_fails_to_import_is_noted_next_to_a_missing_backend_error(broken_plugin_env):
    result = subprocess.run(
        [str(BIN / "kara"), "ls", "nosuch://x"], capture_output=True, text=True, env=broken_plugin_env
    )
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1] == "kara: note: plugin(s) broken failed to load; run `kara plugins` for details"
    )


def _import_on_a_terminal(tmp_path, *extra: str) -> str:
    import pexpect

    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"i": {i}}}\n' for i in range(1000)))
    url = f"file://{tmp_path / 'store'}"
    child = pexpect.spawn(str(BIN / "kara"), [*extra, "import", url, "ns", "k", "-v", "1", str(source)], timeout=60)
    output = child.read().decode()
    child.close()
    assert child.exitstatus == 0
    return output


def test_import_on_a_terminal_shows_a_progress_bar(tmp_path):
    output = _import_on_a_terminal(tmp_path)
    assert "import ns/k: 100%" in output and "1000/1000" in output
    assert "imported 1000 records into ns/k version 1" in output


def test_quiet_import_on_a_terminal_prints_nothing(tmp_path):
    assert _import_on_a_terminal(tmp_path, "--quiet") == ""
