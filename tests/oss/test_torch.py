"""The torch pipeline over oss://: DataLoader workers reopen the store and get every sample."""

from __future__ import annotations

from kara_oss.testing import OSSTestServer
from torch.utils.data import DataLoader

from kara_core import KaraStorage, make_torch_dataset

RECORDS = 300


def _ids(ds: object, num_workers: int) -> list[int]:
    torch_ds = make_torch_dataset(ds, shuffle=True, seed=3, batch_size=8)
    torch_ds.set_epoch(0)
    loader = DataLoader(torch_ds, batch_size=8, num_workers=num_workers, collate_fn=list)
    return [row["i"] for batch in loader for row in batch]


def test_dataloader_workers_read_every_record_of_an_oss_dataset_once_in_seed_order(oss_server: OSSTestServer) -> None:
    store = KaraStorage(oss_server.url("torch"), **oss_server.options)
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        for i in range(RECORDS):
            ds.write({"i": i, "pad": "x" * (i % 40)})
    with store.open_dataset("ns", "rows", version="1") as ds:
        in_process = _ids(ds, num_workers=0)
        with_workers = _ids(ds, num_workers=2)
    assert sorted(with_workers) == list(range(RECORDS))
    assert with_workers != list(range(RECORDS))  # shuffled
    # The order comes from the index and the seed alone, whatever the number of workers.
    assert with_workers == in_process
