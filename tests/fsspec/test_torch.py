"""The torch pipeline over s3://: real DataLoader workers reopen the store from its pickle."""

from __future__ import annotations

from kara_fsspec.testing import S3TestServer
from torch.utils.data import DataLoader

from kara_core import KaraStorage, make_torch_dataset

RECORDS = 400


def _ids(ds: object, num_workers: int) -> list[int]:
    torch_ds = make_torch_dataset(ds, shuffle=True, seed=11, batch_size=16)
    torch_ds.set_epoch(1)
    loader = DataLoader(torch_ds, batch_size=16, num_workers=num_workers, collate_fn=list)
    return [row["i"] for batch in loader for row in batch]


def test_dataloader_workers_read_every_record_of_an_s3_dataset_once(s3_server: S3TestServer, s3_bucket: str) -> None:
    store = KaraStorage(s3_server.url(s3_bucket, "torch"), **s3_server.options)
    with store.open_dataset("ns", "rows", "w", version="1", max_file_size=8192) as ds:
        for i in range(RECORDS):
            ds.write({"i": i, "pad": "y" * (i % 60)})
            if i % 150 == 0:
                ds.flush()
    with store.open_dataset("ns", "rows", version="1") as ds:
        in_process = _ids(ds, num_workers=0)
        with_workers = _ids(ds, num_workers=2)
    assert sorted(with_workers) == list(range(RECORDS))
    assert with_workers != list(range(RECORDS))
    assert with_workers == in_process
