"""One rank of the pipeline resume tests: loads a mixture or packed view in a gloo group.

Reads ``{"store", "port", "rank", "world_size", "kind", "num_workers", "batch_size",
"epoch", "state", "stop_after"}`` as JSON from its first argument; prints the batches this
rank's DataLoader delivered (sample ids) and the dataset's state after them. Every batch
is followed by an all_reduce, as a DDP step would be.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

import kara_core

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_views


def as_list(batch: list[Any]) -> list[Any]:
    return batch


def main() -> None:
    params = json.loads(sys.argv[1])
    rank, world_size, kind = params["rank"], params["world_size"], params["kind"]
    timeout = datetime.timedelta(seconds=60)
    store = dist.TCPStore("127.0.0.1", params["port"], world_size, False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    view = pipeline_views.build(params["store"], kind)
    batch_size = params["batch_size"]
    ds = kara_core.make_torch_dataset(view, batch_size=batch_size, **pipeline_views.torch_options(kind))
    ds.set_epoch(params["epoch"])
    if params.get("state"):
        ds.load_state_dict(params["state"])
    loader = DataLoader(ds, batch_size=batch_size, num_workers=params["num_workers"], collate_fn=as_list)
    batches = []
    for batch in loader:
        batches.append([pipeline_views.sample_id(kind, sample) for sample in batch])
        dist.all_reduce(torch.ones(1))
        if len(batches) == params.get("stop_after"):
            break
    state = ds.state_dict(consumed=len(batches) * batch_size)
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps({"batches": batches, "state": state, "len": len(ds)}))


if __name__ == "__main__":
    main()
