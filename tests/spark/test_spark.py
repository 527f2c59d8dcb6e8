"""kara-spark on a real local SparkSession: df.write.format("kara") and spark.read.format("kara")."""

from __future__ import annotations

import datetime
import decimal
import json
import sys
from pathlib import Path
from typing import Any

import numpy
import pyspark.cloudpickle
import pytest
from kara_spark.schema import arrow_plain
from kara_spark.source import KaraArrowWriter, KaraDataSource, KaraWriter
from pyspark.sql.functions import col, udf
from pyspark.sql.types import LongType, StructType

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, DatasetNotFoundError

from ..row.test_parallel import read_with_215

# The UDFs below run in Spark's Python workers, which cannot import this test module.
pyspark.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kara-2.1.5"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
N = 3000


def row(i: int) -> dict[str, Any]:
    return {"id": i, "text": f"document {i}", "tokens": [i, i + 1]}


def _frame(spark: Any, n: int, partitions: int, id_column: Any = None) -> Any:
    frame = spark.range(n, numPartitions=partitions)
    if id_column is not None:
        frame = frame.withColumn("id", id_column)
    return frame.selectExpr("id", "concat('document ', id) as text", "array(id, id + 1) as tokens")


def _kara(writer: Any, url: str, key: str, namespace: str = "corpus", **options: str) -> Any:
    writer = writer.format("kara").option("url", url).option("namespace", namespace).option("key", key)
    for name, value in options.items():
        writer = writer.option(name, value)
    return writer


def test_every_record_once_and_parts_in_order_after_a_failed_task(spark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    flag = str(tmp_path / "failed")

    def fail_once(i: int) -> int:
        if i == 2222 and not Path(flag).exists():
            Path(flag).write_text("failed once")
            raise RuntimeError("injected failure of a write task")
        return i

    frame = _frame(spark, N, 3, udf(fail_once, LongType())(col("id")))
    context = spark.sparkContext
    context.setJobGroup("kara-retry", "a write with a task that fails once")
    _kara(frame.write, url, "web", version="v1", block_size="2000").mode("append").save()
    context.setJobGroup("other", "")
    tracker = context.statusTracker()
    stages = [
        tracker.getStageInfo(stage)
        for job in tracker.getJobIdsForGroup("kara-retry")
        for stage in tracker.getJobInfo(job).stageIds
    ]
    # The task of partition 2 failed once and Spark ran it again: 3 tasks, 1 failure.
    assert Path(flag).exists()
    assert [(info.numTasks, info.numCompletedTasks, info.numFailedTasks) for info in stages] == [(3, 3, 1)]
    store = KaraStorage(url)
    with store.open_dataset("corpus", "web") as reader:
        assert list(reader) == [row(i) for i in range(N)]
    assert store.rows.verify("corpus", "web") == []
    # Nothing staged is left, only the version's sidecar (its serializer).
    kara_files = sorted(
        str(p.relative_to(tmp_path / "store")) for p in (tmp_path / "store").rglob("*") if ".kara" in str(p)
    )
    assert kara_files == ["row/corpus/web/v1/.kara", "row/corpus/web/v1/.kara/version.json"]
    assert read_with_215(url, "corpus", "web", "v1")["rows"] == [row(i) for i in range(N)]


def test_a_failed_job_is_aborted_and_leaves_no_trace(spark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"

    def always_fail(i: int) -> int:
        if i == 50:
            raise RuntimeError("injected failure, every time")
        return i

    frame = _frame(spark, 100, 2, udf(always_fail, LongType())(col("id")))
    with pytest.raises(Exception, match="injected failure"):
        _kara(frame.write, url, "web", version="v1").mode("append").save()
    assert list((tmp_path / "store").rglob("*")) == []
    with pytest.raises(DatasetNotFoundError):
        KaraStorage(url).open_dataset("corpus", "web")


@pytest.mark.parametrize("serialization", ["raw", "raw+zstd"])
def test_raw_records_are_a_binary_column_both_ways(spark: Any, tmp_path: Path, serialization: str) -> None:
    # Compressed raw records (raw+zstd, stored in record groups) are bytes too.
    url = f"file://{tmp_path}/store"
    payloads = [bytes([i % 256]) * (i % 30) for i in range(200)]
    frame = spark.createDataFrame([(p,) for p in payloads], "bytes binary").repartition(1)
    _kara(frame.write, url, "raw", version="v1", serialization=serialization).mode("append").save()
    with KaraStorage(url).open_dataset("corpus", "raw", serialization=serialization) as reader:
        assert sorted(reader) == sorted(payloads)
    back = _kara(spark.read, url, "raw", serialization=serialization).load()
    assert back.schema.simpleString() == "struct<bytes:binary>"
    assert sorted(bytes(r["bytes"]) for r in back.collect()) == sorted(payloads)


def test_spark_reads_a_version_written_by_one_kara_writer(spark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    records = [{"id": i, "meta": {"lang": "en", "score": i / 2}, "tags": [str(i)] * (i % 3)} for i in range(N)]
    with KaraStorage(url).open_dataset("corpus", "single", "w", version=7, serialization="pickle") as writer:
        writer.write_many(records)
    frame = _kara(spark.read, url, "single", serialization="pickle", partitions="4").load()
    assert frame.rdd.getNumPartitions() == 4
    assert frame.schema.simpleString() == "struct<id:bigint,meta:struct<lang:string,score:double>,tags:array<string>>"
    assert [r.asDict(recursive=True) for r in frame.collect()] == records
    assert frame.filter("id % 1000 = 0").count() == 3
    with pytest.raises(Exception, match="never overwritten"):
        _kara(frame.write, url, "single", version="8").mode("overwrite").save()


def test_compressed_records_both_ways(spark: Any, tmp_path: Path) -> None:
    # json+zstd stores groups of records per frame: Spark's writer tasks write grouped
    # parts, the commit records the group size, the reader's schema comes from the
    # records' plain bytes.
    url = f"file://{tmp_path}/store"
    _kara(_frame(spark, 500, 2).write, url, "packed", version="v1", serialization="json+zstd").mode("append").save()
    with KaraStorage(url).open_dataset("corpus", "packed") as reader:  # no serialization=: the sidecar
        assert reader.serializer.grouped
        assert list(reader) == [row(i) for i in range(500)]
    back = _kara(spark.read, url, "packed", serialization="json+zstd").load()
    assert back.schema.simpleString() == "struct<id:bigint,text:string,tokens:array<bigint>>"
    assert sorted((r.asDict() for r in back.collect()), key=lambda r: r["id"]) == [row(i) for i in range(500)]


def test_spark_reads_versions_written_by_215(spark: Any) -> None:
    url = f"file://{FIXTURES / 'store'}"
    for version in ("v1", "v2"):
        frame = _kara(spark.read, url, "json_rows", "demo", version=version).load()
        rows = [r.asDict(recursive=True) for r in frame.collect()]
        assert rows == EXPECTED["json_rows"][version]
    raw = _kara(spark.read, url, "raw_rows", "demo", version="0", serialization="raw", partitions="3").load()
    assert [bytes(r["bytes"]).hex() for r in raw.collect()] == EXPECTED["raw_rows_hex"]


def _write_and_read_pickled(spark: Any, tmp_path: Path, frame: Any) -> list[Any]:
    url = f"file://{tmp_path}/store"
    _kara(frame.write, url, "typed", version="v1", serialization="pickle").mode("append").save()
    with KaraStorage(url).open_dataset("corpus", "typed", serialization="pickle") as reader:
        return sorted(reader, key=lambda r: r["id"])


def test_arrow_batches_give_the_records_spark_rows_would(spark: Any, tmp_path: Path) -> None:
    # Every plain type, nested and with nulls, through the Arrow writer; pickle keeps the
    # exact Python values, so a float32, a Decimal, a date or a naive timestamp that came
    # out as another type or value would differ.
    schema = (
        "id bigint, small tinyint, ratio float, price decimal(10,2), day date, at timestamp_ntz, "
        "blob binary, flag boolean, meta struct<lang:string,score:double,tags:array<string>>, "
        "values array<int>"
    )
    records = [
        {
            "id": i,
            "small": i % 100 - 50,
            "ratio": [0.5, 0.1, None][i % 3],
            "price": decimal.Decimal(f"{i}.{i % 100:02d}"),
            "day": datetime.date(2024, 1 + i % 12, 1 + i % 28),
            "at": datetime.datetime(2024, 5, 6, 7, 8, 9, i * 1000 % 1_000_000),
            "blob": bytes([i % 256]) * (i % 5),
            "flag": None if i % 7 == 0 else i % 2 == 0,
            "meta": None if i % 11 == 0 else {"lang": "en", "score": i / 4, "tags": [str(i), None][: i % 3]},
            "values": None if i % 13 == 0 else [i, None, -i][: i % 4],
        }
        for i in range(300)
    ]
    frame = spark.createDataFrame(records, schema).repartition(2)
    assert arrow_plain(frame.schema)
    got = _write_and_read_pickled(spark, tmp_path, frame)
    want = [{**r, "ratio": None if r["ratio"] is None else float(numpy.float32(r["ratio"]))} for r in records]
    assert got == want
    assert [type(r["ratio"]) for r in got[:2]] == [float, float]
    assert type(got[0]["blob"]) is bytes and type(got[1]["price"]) is decimal.Decimal


def test_columns_arrow_would_change_go_through_spark_rows(spark: Any, tmp_path: Path) -> None:
    # A map is a list of pairs in Arrow but a dict in a row; a timestamp with the session's
    # time zone is aware in Arrow but naive local time in a row: the row writer keeps them.
    records = [
        {"id": i, "counts": {"a": i, "b": i + 1}, "seen": datetime.datetime(2024, 1, 2, 3, 4, i % 60)}
        for i in range(50)
    ]
    frame = spark.createDataFrame(records, "id bigint, counts map<string,bigint>, seen timestamp").repartition(2)
    assert not arrow_plain(frame.schema)
    assert _write_and_read_pickled(spark, tmp_path, frame) == records


def test_a_record_column_the_frame_lacks_is_refused_before_any_task(spark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    frame = spark.createDataFrame([(b"x",)], "payload binary")
    with pytest.raises(Exception, match="column 'bytes', which the DataFrame does not have"):
        _kara(frame.write, url, "raw", version="v1", serialization="raw").mode("append").save()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        ("id bigint, text string, tokens array<bigint>", KaraArrowWriter),
        ("id bigint, meta struct<a:array<struct<b:date,c:decimal(5,1)>>>", KaraArrowWriter),
        ("id bigint, counts map<string,bigint>", KaraWriter),
        ("id bigint, meta struct<seen:timestamp>", KaraWriter),
        ("id bigint, spans array<interval day to second>", KaraWriter),
    ],
)
def test_the_writer_takes_arrow_batches_only_for_plain_columns(
    spark: Any, tmp_path: Path, schema: str, kind: type
) -> None:
    parsed = StructType.fromDDL(schema)  # parsed by the session's JVM
    options = {"url": f"file://{tmp_path}/store", "namespace": "corpus", "key": "k", "version": "v1"}
    writer = KaraDataSource(options).writer(parsed, False)
    try:
        assert type(writer) is kind
    finally:
        writer.abort([])
    with pytest.raises(ConfigurationError, match="column 'bytes'"):
        KaraDataSource({**options, "serialization": "raw"}).writer(parsed, False)


def test_two_fields_of_one_name_go_through_spark_rows(spark: Any) -> None:
    twice = StructType.fromJson(
        {
            "type": "struct",
            "fields": [
                {"name": "a", "type": "long", "nullable": True, "metadata": {}},
                {"name": "a", "type": "string", "nullable": True, "metadata": {}},
            ],
        }
    )
    assert not arrow_plain(twice)
    assert arrow_plain(StructType.fromDDL("a bigint, b struct<a:bigint>"))
