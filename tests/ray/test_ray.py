"""kara-ray on a real local Ray instance: parallel writes (with a retried task) and reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray
import ray.cloudpickle
from kara_ray import KaraDatasink, KaraDatasource

from kara_core import KaraStorage
from kara_core.errors import DatasetNotFoundError
from kara_core.row.parts import attempt_prefix

from ..row.test_parallel import read_with_215

# The functions below run in Ray workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kara-2.1.5"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
N = 4000
RETRY = {"max_retries": 2, "retry_exceptions": True}


def row(i: int) -> dict[str, Any]:
    return {"id": i, "text": f"document {i} " * (i % 5), "tokens": list(range(i % 9))}


def _to_rows(batch: dict[str, Any]) -> dict[str, Any]:
    ids = batch["id"].tolist()
    return {
        "id": ids,
        "text": [f"document {i} " * (i % 5) for i in ids],
        "tokens": [list(range(i % 9)) for i in ids],
    }


class FailOnceDatasink(KaraDatasink):
    """The write task of part 2 fails once, after its first 7 blocks (a flag file remembers).

    It also keeps what was staged when the write completed, before the commit cleans up.
    """

    flag = ""

    def write(self, blocks: Any, ctx: Any) -> Any:
        def failing() -> Any:
            for number, block in enumerate(blocks):
                if ctx.task_idx == 2 and number == 7 and not Path(self.flag).exists():
                    Path(self.flag).write_text("failed once")
                    raise RuntimeError("injected failure of a write task")
                yield block

        return super().write(failing(), ctx)

    def on_write_complete(self, write_result: Any) -> None:
        assert self._handle is not None
        self.staged = self._handle.attempts()
        handle = self._handle
        self.unsynced = {
            result["part"]: orjson.loads(
                handle.backend.read(
                    attempt_prefix(handle.namespace, handle.key, handle.version, result["part"], result["attempt"])
                    + "done.json"
                )
            )["unsynced"]
            for result in write_result.write_returns
        }
        super().on_write_complete(write_result)


def _fail_at_150(batch: dict[str, Any]) -> dict[str, Any]:
    if 150 in batch["id"].tolist():
        raise RuntimeError("injected failure of a write task, every time")
    return _to_rows(batch)


@pytest.mark.slow
def test_every_record_once_and_parts_in_order_after_a_retried_task(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    flag = tmp_path / "failed"
    # 40 blocks of 100 rows, bundled 10 to a write task: the third task fails after it has
    # written 7 blocks (its first blocks are staged), and Ray runs it again.
    ds = ray.data.range(N, override_num_blocks=40).map_batches(_to_rows)
    sink = FailOnceDatasink(url, "corpus", "web", "v1", rows_per_part=N // 4, block_size=2000)
    sink.flag = str(flag)
    ds.write_datasink(sink, ray_remote_args=RETRY)
    assert flag.exists()
    retried = [part for part, attempts in sink.staged.items() if len(attempts) > 1]
    assert retried == [2] and sorted(sink.staged[2].values()) == [False, True]
    assert sink.report is not None and (sink.report.records, sink.report.parts) == (N, 4)
    store = KaraStorage(url)
    # The tasks ran on the driver's machine: their parts left the fsyncs to the commit.
    assert sink.unsynced == dict.fromkeys(range(4), store.backend.sync_scope()) and store.backend.sync_scope()
    with store.open_dataset("corpus", "web") as reader:
        assert list(reader) == [row(i) for i in range(N)]
    assert store.rows.verify("corpus", "web") == []
    assert read_with_215(url, "corpus", "web", "v1")["rows"] == [row(i) for i in range(N)]


def test_a_failed_write_is_aborted_and_leaves_no_trace(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    ds = ray.data.range(300, override_num_blocks=2).map_batches(_fail_at_150, batch_size=50)
    with pytest.raises(Exception, match="injected failure"):
        ds.write_datasink(KaraDatasink(url, "corpus", "web", "v1"), ray_remote_args={"max_retries": 0})
    assert [p for p in (tmp_path / "store").rglob("*")] == []
    with pytest.raises(DatasetNotFoundError):
        KaraStorage(url).open_dataset("corpus", "web")


def test_an_empty_dataset_makes_an_empty_version(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    empty = ray.data.range(10).filter(lambda row: row["id"] < 0)
    empty.write_datasink(KaraDatasink(url, "corpus", "empty", "v1"))
    with KaraStorage(url).open_dataset("corpus", "empty") as reader:
        assert (reader.version, len(reader)) == ("v1", 0)
    assert read_with_215(url, "corpus", "empty", "v1")["len"] == 0


def test_raw_records_are_a_bytes_column(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    items = [{"bytes": bytes([i % 256]) * (i % 40)} for i in range(500)]
    ray.data.from_items(items, override_num_blocks=3).write_datasink(
        KaraDatasink(url, "corpus", "raw", "v1", serialization="raw")
    )
    with KaraStorage(url).open_dataset("corpus", "raw", serialization="raw") as reader:
        assert list(reader) == [item["bytes"] for item in items]
    back = ray.data.read_datasource(KaraDatasource(url, "corpus", "raw", serialization="raw"))
    assert back.take_all() == items


def test_compressed_records_both_ways(ray_session: Any, tmp_path: Path) -> None:
    # json+zstd stores groups of records per frame: the datasink's parts are grouped, the
    # commit records the group size, the datasource decodes with the version's serializer.
    url = f"file://{tmp_path}/store"
    items = [row(i) for i in range(700)]
    ray.data.from_items(items, override_num_blocks=3).write_datasink(
        KaraDatasink(url, "corpus", "packed", "v1", serialization="json+zstd")
    )
    with KaraStorage(url).open_dataset("corpus", "packed") as reader:  # no serialization=: the sidecar
        assert reader.serializer.grouped
        assert list(reader) == items
        assert reader.read_raw_range(0, 700) == [orjson.dumps(item) for item in items]  # the plain records
    back = ray.data.read_datasource(KaraDatasource(url, "corpus", "packed", serialization="json+zstd"))
    assert [dict(r) for r in back.take_all()] == items
    # raw+zstd: records are bytes, in the "bytes" column both ways, as for raw.
    blobs = [{"bytes": b"\x00blob %d\n" % i * (i % 4)} for i in range(300)]
    ray.data.from_items(blobs, override_num_blocks=3).write_datasink(
        KaraDatasink(url, "corpus", "blobs", "v1", serialization="raw+zstd")
    )
    with KaraStorage(url).open_dataset("corpus", "blobs") as reader:
        assert reader.serializer.grouped and list(reader) == [blob["bytes"] for blob in blobs]
    back = ray.data.read_datasource(KaraDatasource(url, "corpus", "blobs", serialization="raw+zstd"))
    assert [dict(r) for r in back.take_all()] == blobs


@pytest.mark.parametrize(("serialization", "column"), [("json", None), ("json+zstd", None), ("raw+zstd", "bytes")])
def test_grouped_parts_take_the_encoded_path_of_their_inner_serializer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serialization: str, column: str | None
) -> None:
    # JSON rows encoded from Arrow (and raw bytes from the binary column) go to a part as
    # one buffer under zstd record groups too: never through Python dicts.
    import pyarrow as pa
    from kara_ray import rows as kara_rows

    def no_dicts(*args: Any) -> Any:
        raise AssertionError("the rows went through Python records")

    monkeypatch.setattr(kara_rows, "records_of_block", no_dicts)
    items = [row(i) for i in range(500)] if column is None else [{"bytes": b"b%d\n" % i} for i in range(500)]
    store = KaraStorage(f"file://{tmp_path}/store")
    handle = store.open_parallel_write("corpus", "k", "v1", serialization=serialization)
    with handle.part(0) as part:
        assert kara_rows.write_block(part, pa.Table.from_pylist(items), column) == 500
    handle.commit()
    with store.open_dataset("corpus", "k") as reader:
        expected = items if column is None else [item["bytes"] for item in items]
        assert list(reader) == expected


def test_rows_are_stored_as_orjson_encodes_them_whatever_path_they_take(ray_session: Any, tmp_path: Path) -> None:
    import datetime

    import orjson
    import pyarrow as pa

    url = f"file://{tmp_path}/store"
    # Encoded from the Arrow columns: nulls, floats, escapes, nested lists and structs.
    rows = [
        {
            "id": i,
            "score": None if i % 7 == 0 else i / 3,
            "text": f'line {i}\n"quoted" \\ caf\u00e9' * (i % 3),
            "tokens": None if i % 5 == 0 else [[i, None], []][: i % 3],
            "meta": {"ok": i % 2 == 0, "tag": None if i % 4 else "t"},
        }
        for i in range(600)
    ]
    ray.data.from_arrow(pa.Table.from_pylist(rows)).repartition(3).write_datasink(
        KaraDatasink(url, "corpus", "encoded", "v1")
    )
    # A timestamp column is not encoded from Arrow: the rows go through dicts and orjson.
    stamps = [{"id": i, "at": datetime.datetime(2024, 1, 1, 0, 0, i % 60)} for i in range(100)]
    ray.data.from_items(stamps).write_datasink(KaraDatasink(url, "corpus", "stamped", "v1"))
    with KaraStorage(url).open_dataset("corpus", "encoded") as reader:
        assert reader.read_raw_range(0, 1000) == [orjson.dumps(r) for r in rows]
    with KaraStorage(url).open_dataset("corpus", "stamped") as reader:
        assert reader.read_raw_range(0, 1000) == [orjson.dumps(r) for r in stamps]
    assert read_with_215(url, "corpus", "encoded", "v1")["rows"] == [orjson.loads(orjson.dumps(r)) for r in rows]


def test_ray_reads_a_version_written_by_one_kara_writer(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    store = KaraStorage(url)
    with store.open_dataset("corpus", "single", "w", version=3, max_file_size=5000) as writer:
        writer.write_many(row(i) for i in range(N))
    with store.open_dataset("corpus", "lists", "w", version="v1") as writer:
        writer.write_many([i] * (i % 4) for i in range(100))
    source = KaraDatasource(url, "corpus", "single")
    assert (source.version, source.records) == ("3", N)
    dicts = ray.data.read_datasource(source, override_num_blocks=5)
    assert dicts.count() == N
    assert [dict(r) for r in dicts.take_all()] == [row(i) for i in range(N)]
    assert dicts.materialize().num_blocks() >= 5
    lists = ray.data.read_datasource(KaraDatasource(url, "corpus", "lists"))
    assert [list(r["item"]) for r in lists.take_all()] == [[i] * (i % 4) for i in range(100)]
    named = ray.data.read_datasource(KaraDatasource(url, "corpus", "lists", column="value"))
    assert [list(r["value"]) for r in named.take_all()] == [[i] * (i % 4) for i in range(100)]


def test_ray_reads_versions_written_by_215(ray_session: Any) -> None:
    url = f"file://{FIXTURES / 'store'}"
    for version in ("v1", "v2"):
        rows = ray.data.read_datasource(KaraDatasource(url, "demo", "json_rows", version)).take_all()
        assert [dict(r) for r in rows] == EXPECTED["json_rows"][version]
    raw = ray.data.read_datasource(KaraDatasource(url, "demo", "raw_rows", 0, "raw"), override_num_blocks=3)
    assert [r["bytes"].hex() for r in raw.take_all()] == EXPECTED["raw_rows_hex"]
    pickled = ray.data.read_datasource(KaraDatasource(url, "demo", "pickle_rows", 3, "pickle", column="record"))
    assert [tuple(r["record"]) for r in pickled.take_all()] == [("tuple", i, b"\x00\x01" * i) for i in range(50)]
