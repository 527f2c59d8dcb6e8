"""torch.save / torch.load through single-file streams of a file:// store (open_file)."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest
import torch

from kara_core import KaraStorage
from kara_core.errors import DatasetNotFoundError, VersionNotFoundError
from kara_core.obj.upload import STAGING_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # 24 MiB of float32 in all: well past the 8 MiB a stream may hold.
    return {f"layer{i}.weight": torch.randn(1024, 1024, generator=gen) for i in range(6)} | {"step": torch.tensor(seed)}


def _k215_python() -> str:
    path = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(path):
        pytest.fail(f"kara-storage 2.1.5 is needed at {path} (set KARA_215_PYTHON or run scripts/test)")
    return path


def test_torch_save_streams_into_a_version_with_bounded_memory_and_loads_back(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    state = _state()
    tracemalloc.start()
    try:
        with store.open_file("ckpt", "single", "model.pt", "wb", version="v1") as fh:
            torch.save(state, fh)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # torch hands each tensor over as a view of its memory; the stream holds at most a
    # chunk of small records besides (a BytesIO spool would hold all 24 MiB).
    assert peak < 4 * 1024 * 1024, peak
    assert fh.version == "v1"
    data = [p for p in store.backend.list("obj/ckpt/single/data/")]
    assert len(data) == 1 and STAGING_PREFIX not in data[0]
    with store.open_file("ckpt", "single", "model.pt", "rb", version="v1") as fh:
        loaded = torch.load(fh, weights_only=True)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_an_exception_inside_the_with_publishes_nothing_and_leaves_no_data(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    with pytest.raises(RuntimeError, match="diverged"), store.open_file("ckpt", "single", "m.pt", "wb") as fh:
        torch.save(_state(), fh)
        raise RuntimeError("loss diverged")
    with pytest.raises((DatasetNotFoundError, VersionNotFoundError)):
        store.objects.resolve_version("ckpt", "single", "latest")
    assert list(store.backend.list("obj/ckpt/single/")) == []


def test_kara_storage_2_1_5_loads_versions_written_by_streams(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    store = KaraStorage(url)
    with store.open_file("ckpt", "single", "model.pt", "wb", version="one") as fh:
        torch.save(_state(1), fh)
    with store.open_version("ckpt", "single", "two") as version:
        with version.open_file("weights/model.pt") as fh:
            torch.save(_state(2), fh)
        version.write_file("notes.txt", b"lr=3e-4\n")
    code = (
        "import sys, kara_storage\n"
        "s = kara_storage.KaraStorage(sys.argv[1])\n"
        "for v in ('one', 'two'):\n"
        "    s.load_directory('ckpt', 'single', sys.argv[2] + '/' + v, v, progress_bar=False)\n"
    )
    proc = subprocess.run(
        [_k215_python(), "-c", code, url, str(tmp_path / "k215")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    one = torch.load(tmp_path / "k215" / "one" / "model.pt", weights_only=True)
    two = torch.load(tmp_path / "k215" / "two" / "weights" / "model.pt", weights_only=True)
    assert all(torch.equal(one[k], v) for k, v in _state(1).items())
    assert all(torch.equal(two[k], v) for k, v in _state(2).items())
    assert (tmp_path / "k215" / "two" / "notes.txt").read_bytes() == b"lr=3e-4\n"
