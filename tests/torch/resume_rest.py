"""Run by the resume tests in a new process: load a state, print the ids that follow.

Reads ``{"store", "kwargs", "state", "num_workers", "batch_size"}`` as JSON on stdin and
prints the ids the DataLoader delivers for the rest of the epoch, as one JSON list.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from torch.utils.data import DataLoader

import kara_core


def as_list(batch: list[Any]) -> list[Any]:
    return batch


def main() -> None:
    params = json.loads(sys.stdin.read())
    rows = kara_core.KaraStorage(params["store"]).open_dataset("torch", "small")
    ds = kara_core.make_torch_dataset(rows, batch_size=params["batch_size"], **params["kwargs"])
    ds.load_state_dict(params["state"])
    loader = DataLoader(ds, batch_size=params["batch_size"], num_workers=params["num_workers"], collate_fn=as_list)
    print(json.dumps([sample["i"] for batch in loader for sample in batch]))


if __name__ == "__main__":
    main()
