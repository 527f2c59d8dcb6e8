"""Warn when a RowDataset is read sequentially inside a PyTorch DataLoader worker.

A 2.x user who wraps a RowDataset in their own ``IterableDataset`` and starts
``DataLoader(num_workers=N)`` gets every record N times: each worker receives a copy of
the dataset and reads all of it (2.1.5 happened to serve them one shared cursor through
a pipe). kara cannot guess how the records should be split, so it says so once per
worker, with the two fixes.

torch is never imported here: a process that has not imported it runs no DataLoader.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["WorkerIterationWarning", "warn_if_in_dataloader_worker"]

#: The process (DataLoader worker) that has already been warned.
_warned_pid: int | None = None

MESSAGE = (
    "RowDataset {name} is read sequentially inside DataLoader worker {id} of {workers}: every "
    "worker reads every record, so each record is yielded {workers} times. Use "
    "kara.make_torch_dataset(ds) (splits records across workers and ranks), or read "
    "ds.shard(info.id, info.num_workers) with info = torch.utils.data.get_worker_info()."
)


class WorkerIterationWarning(UserWarning):
    """A RowDataset read sequentially in a DataLoader worker (each worker reads all records)."""


def warn_if_in_dataloader_worker(name: str) -> None:
    """Warn (once per worker process) if the caller runs inside a DataLoader worker."""
    global _warned_pid
    torch = sys.modules.get("torch")
    if torch is None:
        return
    pid = os.getpid()
    if _warned_pid == pid:
        return
    try:
        info = torch.utils.data.get_worker_info()
    except AttributeError:  # torch is still being imported
        return
    if info is None or info.num_workers < 2:
        return
    _warned_pid = pid
    warnings.warn(MESSAGE.format(name=name, id=info.id, workers=info.num_workers), WorkerIterationWarning, stacklevel=4)
