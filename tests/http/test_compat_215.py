"""kara-storage 2.1.5's own HTTP client reads what kara serves (mirror and gateway)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kara_http.testing import GatewayServer, StaticServer

from kara_core import KaraStorage

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "compat-token-31"

READ_CODE = """
import json, sys
import kara_storage
params = json.loads(sys.stdin.read())
store = kara_storage.KaraStorage(params["url"])
ds = store.open_dataset("ns", "ds", "r")
rows = [ds.read() for _ in range(ds.size())]
store.load_directory("ns", "dir", params["dst"], progress_bar=False)
print(json.dumps(rows))
"""


def _k215_read(url: str, dst: Path) -> list[Any]:
    python = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(python):
        pytest.fail(f"kara-storage 2.1.5 not found at {python}: run scripts/test (it creates .venv-k215)")
    proc = subprocess.run(
        [python, "-c", READ_CODE],
        input=json.dumps({"url": url, "dst": str(dst)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fill(store: KaraStorage, source: Path) -> None:
    with store.open_dataset("ns", "ds", "w", version="1") as ds:
        for i in range(300):
            ds.write({"i": i, "s": "x" * (i % 50)})
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.bin").write_bytes(os.urandom(100_000))
    (source / "b.txt").write_text("b")
    # Packs asked for: a file:// store also served over HTTP (2.1.5 must ignore them).
    store.save_directory("ns", "dir", str(source), progress_bar=False, pack_small_files=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_215_reads_a_static_mirror_of_a_store_kara_wrote(store_dir: Path, tmp_path: Path) -> None:
    _fill(KaraStorage(f"file://{store_dir}", fsync=False), tmp_path / "src")
    assert len(list((store_dir / "obj" / "ns" / "dir" / "kara-packs").iterdir())) == 1, "2.1.5 ignores packs"
    with StaticServer(str(store_dir)) as server:
        rows = _k215_read(server.url, tmp_path / "dst")
    assert rows == [{"i": i, "s": "x" * (i % 50)} for i in range(300)]
    assert _files(tmp_path / "dst") == _files(tmp_path / "src")


def test_215_reads_what_kara_wrote_through_the_gateway(store_dir: Path, tmp_path: Path) -> None:
    with GatewayServer(f"file://{store_dir}", token=TOKEN, store_options={"fsync": False}) as server:
        _fill(KaraStorage(server.url, token=TOKEN), tmp_path / "src")
        rows = _k215_read(server.url, tmp_path / "dst")
    assert rows == [{"i": i, "s": "x" * (i % 50)} for i in range(300)]
    assert _files(tmp_path / "dst") == _files(tmp_path / "src")
