"""One rank of the distributed tests: joins a gloo process group and reports what it yields.

Reads ``{"store", "port", "rank", "world_size"}`` as JSON from its first argument (``port`` is the
TCPStore the test process hosts on 127.0.0.1) and prints one JSON object: for each
scenario, ``len(dataset)`` and the batches this rank's DataLoader delivered. Every batch
is followed by an all_reduce, as a DDP step would be: a rank with more batches than the
others would hang the group.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

import kara_core

BATCH = 4
SCENARIOS: dict[str, dict[str, Any]] = {
    "shuffled": {"shuffle": True, "num_workers": 2, "epoch": 0},
    "shuffled_epoch_1": {"shuffle": True, "num_workers": 0, "epoch": 1},
    "padded": {"shuffle": True, "num_workers": 0, "epoch": 0, "pad": True},
    "sequential": {"shuffle": False, "num_workers": 2, "epoch": 0},
    "not_distributed": {"shuffle": True, "num_workers": 0, "epoch": 0, "auto_distributed": False},
}


def as_list(batch: list[Any]) -> list[Any]:
    return batch


def main() -> None:
    params = json.loads(sys.argv[1])
    rank, world_size = params["rank"], params["world_size"]
    store = dist.TCPStore("127.0.0.1", params["port"], world_size, False, timeout=datetime.timedelta(seconds=60))
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60)
    )
    rows = kara_core.KaraStorage(params["store"]).open_dataset("torch", "small")
    report: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        options = dict(scenario)
        workers, epoch = options.pop("num_workers"), options.pop("epoch")
        ds = kara_core.make_torch_dataset(rows, batch_size=BATCH, **options)
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=as_list)
        batches = []
        for batch in loader:
            batches.append([sample["i"] for sample in batch])
            if options.get("auto_distributed", True):
                step = torch.ones(1)
                dist.all_reduce(step)
        report[name] = {"len": len(ds), "batches": batches}
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
