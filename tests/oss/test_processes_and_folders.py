"""oss:// datasets across processes, and directory versions on oss://."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage

READ_PICKLED = """
import json, pickle, sys
ds = pickle.loads(sys.stdin.buffer.read())
print(json.dumps({"len": len(ds), "rows": list(ds), "last": ds[len(ds) - 1]}))
"""


def test_pickled_oss_dataset_reopens_and_reads_in_another_process(oss_server: OSSTestServer) -> None:
    store = KaraStorage(oss_server.url("pickled"), **oss_server.options)
    rows = [{"i": i} for i in range(100)]
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        for row in rows:
            ds.write(row)
    with store.open_dataset("ns", "rows", version="1") as ds:
        payload = pickle.dumps(ds)
    proc = subprocess.run(
        [sys.executable, "-c", READ_PICKLED], input=payload, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == {"len": 100, "rows": rows, "last": rows[-1]}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != ".kara"
    }


def test_directory_versions_save_and_load_on_oss(oss_server: OSSTestServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"version one")
    (src / "sub" / "big.bin").write_bytes(bytes(range(256)) * 80_000)  # 20 MB: a multipart upload
    store = KaraStorage(oss_server.url("dirs"), **oss_server.options)
    assert store.save_directory("ns", "ckpt", str(src), progress_bar=False) == "0"
    (src / "a.txt").write_bytes(b"version two")
    assert store.save_directory("ns", "ckpt", str(src), progress_bar=False) == "1"
    first, second = tmp_path / "v0", tmp_path / "v1"
    store.load_directory("ns", "ckpt", str(first), version="0", progress_bar=False)
    store.load_directory("ns", "ckpt", str(second), progress_bar=False)
    assert _tree(second) == _tree(src)
    assert _tree(first)["a.txt"] == b"version one"
    big = (src / "sub" / "big.bin").read_bytes()
    stored_as = [oss_server.object_type(key) for key in oss_server.keys() if oss_server.get(key) == big]
    assert stored_as == ["Multipart"]  # stored once, uploaded in parts
