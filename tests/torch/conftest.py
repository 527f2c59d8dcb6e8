"""Fixtures of the kara-torch tests: real row datasets in a file:// store, run helpers."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist
from torch.utils.data import DataLoader

import kara_core
from kara_core import KaraStorage

HERE = Path(__file__).resolve().parent
#: Records of the small dataset: odd-sized on purpose, so ranks, workers and batches
#: never divide it evenly.
SMALL = 2003
#: Records of the dataset the shuffle-quality test uses (the issue's target size).
LARGE = 100_000


def as_list(batch: list[Any]) -> list[Any]:
    """Collate function that keeps the samples of a batch as they are."""
    return batch


def ids(batches: Iterable[list[dict[str, Any]]]) -> list[int]:
    """The record ids of the samples of some batches, in order."""
    return [sample["i"] for batch in batches for sample in batch]


@pytest.fixture(scope="session")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// store with dataset ``torch/small`` (SMALL records) and ``torch/large`` (LARGE)."""
    url = f"file://{tmp_path_factory.mktemp('torch')}/store"
    store = KaraStorage(url, fsync=False)
    for key, count in (("small", SMALL), ("large", LARGE)):
        with store.open_dataset("torch", key, "w", version="1") as ds:
            ds.write_many({"i": i} for i in range(count))
    return url


@pytest.fixture
def small(store_url: str) -> Any:
    """The small dataset, opened for reading."""
    with KaraStorage(store_url).open_dataset("torch", "small") as ds:
        yield ds


@pytest.fixture
def large(store_url: str) -> Any:
    """The large dataset, opened for reading."""
    with KaraStorage(store_url).open_dataset("torch", "large") as ds:
        yield ds


def load(rows: Any, num_workers: int = 0, batch_size: int = 8, epoch: int = 0, **kwargs: Any) -> list[int]:
    """Ids a DataLoader delivers for one epoch of ``make_torch_dataset(rows, **kwargs)``."""
    ds = kara_core.make_torch_dataset(rows, batch_size=batch_size, **kwargs)
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=as_list)
    return ids(loader)


def run_script(name: str, params: dict[str, Any], timeout: float = 120) -> Any:
    """Run ``tests/torch/<name>`` in a new Python process with ``params``; return its JSON output."""
    proc = subprocess.run(
        [sys.executable, str(HERE / name)],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_ranks(script: str, params: dict[str, Any], world_size: int, timeout: int = 60) -> tuple[Any, list[Any]]:
    """Start ``tests/torch/<script>`` as ``world_size`` ranks of one gloo group.

    Each rank gets ``params`` plus ``port``, ``rank`` and ``world_size`` as JSON in its
    first argument. The test process hosts the rendezvous TCPStore on a port the OS
    picks; it is returned with the processes and must stay alive while they run.
    """
    wait = datetime.timedelta(seconds=timeout)
    rendezvous = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=wait, wait_for_workers=False)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / script),
                json.dumps({**params, "port": rendezvous.port, "rank": rank, "world_size": world_size}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(HERE),
        )
        for rank in range(world_size)
    ]
    return rendezvous, procs


def launch_ranks(script: str, params: dict[str, Any], world_size: int) -> list[Any]:
    """Run ``script`` as ``world_size`` ranks (see :func:`start_ranks`) until they end.

    Each rank prints one JSON value last; the values are returned in rank order.
    """
    rendezvous, procs = start_ranks(script, params, world_size)
    outputs = []
    for rank, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"rank {rank} of {world_size} failed:\n{err[-4000:]}"
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    del rendezvous
    return outputs


@pytest.fixture(scope="module")
def pipe_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// store with the sources of ``pipeline_views`` (one per test module)."""
    from .pipeline_views import write_store

    url = f"file://{tmp_path_factory.mktemp('pipeline')}/store"
    write_store(url)
    return url
