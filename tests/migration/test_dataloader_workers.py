"""Item 5: a RowDataset read inside DataLoader workers warns once per worker; ds.shard is the fix.

Real DataLoader workers run tests/migration/worker_loop_2x.py in a fresh process.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, EndOfDatasetError
from kara_core.row.workers import WorkerIterationWarning

from .conftest import HERE

SCRIPT = HERE / "worker_loop_2x.py"
RECORDS = 10_000  # more than one read batch (4,096), so workers refill several times
WARNING = "WorkerIterationWarning"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("workers") / "store"
    with KaraStorage(f"file://{folder}").open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write_many({"i": i} for i in range(RECORDS))
    return folder


def _run(store_dir: Path, mode: str, workers: int) -> tuple[Counter[int], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(store_dir), mode, str(workers)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Counter(json.loads(proc.stdout)), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["iterate", "eof-loop"])
def test_reading_a_row_dataset_in_two_workers_warns_once_per_worker(store_dir: Path, mode: str) -> None:
    seen, stderr = _run(store_dir, mode, 2)
    assert seen == Counter({i: 2 for i in range(RECORDS)})  # what the warning is about
    assert stderr.count(WARNING) == 2, stderr
    assert "worker 0 of 2" in stderr and "worker 1 of 2" in stderr
    assert "make_torch_dataset" in stderr and "ds.shard(info.id, info.num_workers)" in stderr


@pytest.mark.slow
def test_shards_give_every_record_exactly_once_across_workers_without_a_warning(store_dir: Path) -> None:
    seen, stderr = _run(store_dir, "shard", 3)
    assert seen == Counter({i: 1 for i in range(RECORDS)})
    assert WARNING not in stderr


def test_no_warning_outside_workers_even_with_torch_imported(store_dir: Path) -> None:
    import torch.utils.data  # noqa: F401 - the check only runs once torch is imported

    ds = KaraStorage(f"file://{store_dir}").open_dataset("ns", "rows")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sum(1 for _ in ds) == RECORDS
    ds.close()
    assert not [w for w in caught if w.category is WorkerIterationWarning]


def test_kara_core_never_imports_torch(store_dir: Path) -> None:
    code = (
        "import sys, kara_core\n"
        f"ds = kara_core.KaraStorage('file://{store_dir}').open_dataset('ns', 'rows')\n"
        "n = sum(1 for _ in ds) + len(list(ds.shard(0, 2)))\n"
        "print(n, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(RECORDS + RECORDS // 2), "False"]


def test_shard_semantics(store_dir: Path) -> None:
    with KaraStorage(f"file://{store_dir}").open_dataset("ns", "rows") as ds:
        part = ds.slice(10, 11)  # records 10..20
        shards = [part.shard(k, 3) for k in range(3)]
        assert [len(s) for s in shards] == [4, 4, 3]
        assert [r["i"] for r in shards[1]] == [11, 14, 17, 20]
        assert sorted(r["i"] for s in (part.shard(k, 3) for k in range(3)) for r in s) == list(range(10, 21))
        shard = part.shard(2, 3)
        assert (shard[0]["i"], shard[-1]["i"], shard.pread(1)["i"]) == (12, 18, 15)
        assert shard.read()["i"] == 12 and shard.tell() == 1
        assert shard.seek(1, 2) == 2 and shard.read()["i"] == 18
        with pytest.raises(EndOfDatasetError):
            shard.read()
        assert shard.read(None) is None
        copy = pickle.loads(pickle.dumps(part.shard(0, 2)))
        assert [r["i"] for r in copy] == [10, 12, 14, 16, 18, 20]
        for bad in ((3, 3), (-1, 2), (0, 0)):
            with pytest.raises(ConfigurationError):
                ds.shard(*bad)
        with pytest.raises(IndexError):
            shard[3]
