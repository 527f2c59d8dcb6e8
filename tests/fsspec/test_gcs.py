"""kara-fsspec on Google Cloud Storage (gcp-storage-emulator, through the real gcsfs):
routing, whole-block appends with flushes, reads by ranged GETs, directory versions."""

from __future__ import annotations

import os

from kara_fsspec import FsspecBackend
from kara_fsspec.testing import GCSTestServer

from kara_core import KaraStorage
from kara_core.url import open_backend


def test_gs_urls_open_through_gcsfs(gcs_server: GCSTestServer, gcs_bucket: str) -> None:
    backend = open_backend(gcs_server.url(gcs_bucket, "a/b"), **gcs_server.options)
    assert isinstance(backend, FsspecBackend)
    assert type(backend.fs).__module__.startswith("gcsfs.") and backend.traits.kind == "object"
    assert backend.capabilities.parallel_reads and not backend.capabilities.native_appends


def test_rows_written_with_flushes_read_back_on_gcs(gcs_server: GCSTestServer, gcs_bucket: str) -> None:
    store = KaraStorage(gcs_server.url(gcs_bucket, "rows"), **gcs_server.options)
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many({"i": i, "pad": "x" * (i % 50)} for i in range(500))
        ds.flush()
        ds.write_many({"i": i, "pad": "y"} for i in range(500, 800))
    backend = store.backend
    assert backend.size("row/ns/k/1/data/1.blk")  # the flush closed block 0
    with store.open_dataset("ns", "k", version="1") as ds:
        assert len(ds) == 800
        assert [r["i"] for r in ds] == list(range(800))
        assert ds[617]["i"] == 617


def test_directory_versions_round_trip_on_gcs(gcs_server: GCSTestServer, gcs_bucket: str, tmp_path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    files = {"a.bin": os.urandom(3000), "sub/b.bin": os.urandom(9 * 1024 * 1024 + 7), "empty": b""}
    for name, data in files.items():
        (source / name).write_bytes(data)
    store = KaraStorage(gcs_server.url(gcs_bucket, "dirs"), **gcs_server.options)
    store.save_directory("ns", "ckpt", str(source), progress_bar=False)
    store.load_directory("ns", "ckpt", str(tmp_path / "loaded"), progress_bar=False)
    for name, data in files.items():
        assert (tmp_path / "loaded" / name).read_bytes() == data
