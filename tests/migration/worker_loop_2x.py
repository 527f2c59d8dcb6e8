"""A 2.x user's own IterableDataset around a RowDataset, run by a DataLoader with workers.

``python worker_loop_2x.py STORE_DIR MODE WORKERS``; MODE is ``iterate`` (``for x in ds``),
``eof-loop`` (``read()`` until EOFError) or ``shard`` (``ds.shard(id, num_workers)``, the
fix). Prints the ``i`` of every record the DataLoader yielded, as JSON.
"""

import json
import sys

import torch.utils.data

import kara_core as kara_storage

STORE, MODE, WORKERS = sys.argv[1], sys.argv[2], int(sys.argv[3])


class Records(torch.utils.data.IterableDataset):
    def __init__(self, ds):
        self.ds = ds

    def __iter__(self):
        if MODE == "shard":
            info = torch.utils.data.get_worker_info()
            ds = self.ds if info is None else self.ds.shard(info.id, info.num_workers)
            yield from ds
        elif MODE == "iterate":
            yield from self.ds
        else:
            while True:
                try:
                    yield self.ds.read()
                except EOFError:
                    break


if __name__ == "__main__":
    storage = kara_storage.KaraStorage("file://" + STORE)
    ds = storage.open_dataset("ns", "rows", "r")
    loader = torch.utils.data.DataLoader(Records(ds), batch_size=None, num_workers=WORKERS)
    print(json.dumps([record["i"] for record in loader]))
