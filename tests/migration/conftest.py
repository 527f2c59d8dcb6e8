"""Fixtures of the migration tests: run one script under kara-storage 2.1.5 and under kara."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def k215_interpreter() -> str:
    """The Python of .venv-k215, where kara-storage 2.1.5 is installed (and kara is not)."""
    path = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(path):
        pytest.fail(f"kara-storage 2.1.5 not found at {path}: run scripts/test (it creates .venv-k215)")
    return path


def run_script(python: str, script: Path, *args: str, timeout: float = 120) -> str:
    """Run ``script`` with ``python`` and return its stdout.

    The first argument is a store folder; the script runs in its parent (created here),
    so relative paths it uses stay inside the test's folder.
    """
    workdir = Path(args[0]).parent if args else Path.cwd()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [python, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=str(workdir),
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, f"{script.name} failed under {python}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="session")
def python_215() -> str:
    """Interpreter with kara-storage 2.1.5."""
    return k215_interpreter()


@pytest.fixture(scope="session")
def python_kara() -> str:
    """Interpreter with kara (this test run's)."""
    return sys.executable
