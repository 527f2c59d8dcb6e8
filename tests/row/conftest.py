"""Fixtures of the row-dataset tests: a file:// store and the kara-storage 2.1.5 runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from kara_core import KaraStorage

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "kara-2.1.5"


def record(i: int) -> dict[str, Any]:
    """The records most row tests write: varied sizes, nested values."""
    return {"id": i, "text": f"sample text number {i} " * (i % 5), "tokens": list(range(i % 32))}


@pytest.fixture
def store(tmp_path: Path) -> KaraStorage:
    """A fresh, empty file:// store."""
    return KaraStorage(f"file://{tmp_path}/store")


def k215_python() -> str:
    """The interpreter that has kara-storage 2.1.5 (never imported in the test process)."""
    path = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(path):
        pytest.fail(f"kara-storage 2.1.5 not found at {path}: run scripts/test (it creates .venv-k215)")
    return path


def run_k215(code: str, params: dict[str, Any]) -> Any:
    """Run ``code`` under kara-storage 2.1.5 with ``PARAMS``; it prints one JSON value last."""
    prelude = "import json, sys\nPARAMS = json.loads(sys.stdin.read())\n"
    proc = subprocess.run(
        [k215_python(), "-c", prelude + code],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kara-storage 2.1.5 failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_kara(code: str, *args: str, stdin: bool = False, stderr: IO[str] | None = None) -> subprocess.Popen[str]:
    """Start ``code`` in a new kara Python process.

    stdout is a pipe, and so is stdin if asked; stderr is a pipe unless a file is given
    (long-running processes get a file, so that a full pipe can never block them).
    """
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr if stderr is not None else subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
