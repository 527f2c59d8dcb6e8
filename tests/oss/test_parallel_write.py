"""A parallel write on an oss:// store: blocks move by server-side copy, and 2.1.5 reads the result."""

from __future__ import annotations

from pathlib import Path

from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.backend import Backend

from ..row.conftest import record
from ..row.test_parallel import read_with_215


def test_commit_copies_blocks_on_the_server_and_215_reads_a_local_copy(
    oss_server: OSSTestServer, oss_backend: Backend, tmp_path: Path
) -> None:
    store = KaraStorage(oss_backend)
    handle = store.open_parallel_write("corpus", "docs", "v1", block_size=2000)
    for part in range(3):
        with handle.part(part) as writer:
            writer.write_many(record(part * 1000 + i) for i in range(60 + part))
    report = handle.commit()
    assert report.moved_by == "server copy"
    assert oss_server.count("CopyObject", "store/row/corpus/docs/v1/data/") == report.data_blocks > 3
    # No data byte came back to the client: only the parts' index blocks were read.
    data_gets = [key for op, key in oss_server.requests if op == "GetObject" and "/parts/" in key and "/data." in key]
    assert data_gets == []
    expected = [record(part * 1000 + i) for part in range(3) for i in range(60 + part)]
    with store.open_dataset("corpus", "docs") as ds:
        assert list(ds) == expected
    # Nothing staged is left; the version's sidecar (its serializer) is, as for any writer.
    assert [key for key in oss_server.keys() if "/.kara/" in key] == ["store/row/corpus/docs/v1/.kara/version.json"]
    local = tmp_path / "copy"
    for key in oss_server.keys():
        target = local / key.removeprefix("store/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(oss_server.get(key) or b"")
    assert read_with_215(f"file://{local}", "corpus", "docs", "v1")["rows"] == expected
