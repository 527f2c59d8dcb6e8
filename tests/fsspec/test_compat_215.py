"""A store kara writes on S3 (moto, through s3fs or obstore) stays readable by kara-storage 2.1.5.

S3 has no appends, so kara uploads blocks whole and ``flush()`` closes the open block
early: blocks are shorter than ``max_file_size``. 2.1.5 takes every block at its actual
size. The bucket is copied to a local folder and read with 2.1.5's ``file://``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import s3fs
from kara_fsspec.testing import S3TestServer

from kara_core import KaraStorage

ROOT = Path(__file__).resolve().parents[2]

READ_WITH_215 = """
import json, sys
import kara_storage
params = json.loads(sys.stdin.read())
storage = kara_storage.KaraStorage(params["url"])
out = {}
for version in params["versions"]:
    ds = storage.open_dataset("compat", "rows", "r", version=version)
    rows = [ds.read() for _ in range(ds.size())]
    picked = [ds.pread(i) for i in range(ds.size() - 1, -1, -5)]
    out[version] = {"rows": rows, "picked": picked}
storage.load_directory("compat", "tree", params["target"], progress_bar=False)
print(json.dumps(out))
"""


def _read_with_215(url: str, versions: list[str], target: Path) -> dict[str, Any]:
    python = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(python):
        pytest.fail(f"kara-storage 2.1.5 not found at {python}: run scripts/test (it creates .venv-k215)")
    proc = subprocess.run(
        [python, "-c", READ_WITH_215],
        input=json.dumps({"url": url, "versions": versions, "target": str(target)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(i: int) -> dict[str, Any]:
    return {"i": i, "text": f"s3 row {i} " * (i % 9)}


@pytest.mark.parametrize("plugin", ["fsspec", "obstore"])
def test_an_s3_store_written_with_flushes_is_read_by_215(
    s3_server: S3TestServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    # Written through kara-fsspec (s3fs), and through kara-obstore (obstore) alike.
    monkeypatch.setenv("KARA_PLUGIN_S3", plugin)
    store = KaraStorage(s3_server.url(s3_bucket, "compat-store"), **s3_server.options)
    assert type(store.backend).__module__ == f"kara_{plugin}.backend"
    expected: list[dict[str, Any]] = []
    # Two writer sessions with flushes in between and small blocks: records span blocks,
    # flushed blocks are short, the second session continues in new blocks.
    for session in range(2):
        with store.open_dataset("compat", "rows", "w", version="v1", max_file_size=700) as ds:
            for i in range(session * 60, session * 60 + 60):
                ds.write(_row(i))
                expected.append(_row(i))
                if i % 17 == 0:
                    ds.flush()
    with store.open_dataset("compat", "rows", "w", version="v2") as ds:
        ds.write_many(_row(i) for i in range(10))
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "weights.bin").write_bytes(os.urandom(300_000))
    (source / "notes.txt").write_text("saved on s3")
    store.save_directory("compat", "tree", str(source), progress_bar=False)

    fs = s3fs.S3FileSystem(**s3_server.options, skip_instance_cache=True)
    data = f"{s3_bucket}/compat-store/row/compat/rows/v1/data"
    sizes = [fs.size(f"{data}/{n}.blk") for n in range(len(fs.ls(data)))]
    # Short (flushed) blocks next to full ones, and the empty last block 2.x leaves too.
    assert len(sizes) > 3 and 0 < min(sizes[:-1]) < 700 and 700 in sizes and sizes[-1] == 0
    copy = tmp_path / "copy"
    fs.get(f"{s3_bucket}/compat-store/", str(copy), recursive=True)

    result = _read_with_215(f"file://{copy}", ["v1", "v2"], tmp_path / "loaded")
    assert result["v1"]["rows"] == expected
    assert result["v1"]["picked"] == expected[::-1][::5]
    assert result["v2"]["rows"] == [_row(i) for i in range(10)]
    assert (tmp_path / "loaded" / "sub" / "weights.bin").read_bytes() == (source / "sub" / "weights.bin").read_bytes()
    assert (tmp_path / "loaded" / "notes.txt").read_text() == "saved on s3"
