"""kara-spark: its writer (Spark's Arrow batches against Spark's rows) and its reader.

A local SparkSession (``local[2]``), ``--records`` bench records (``common.small_record``'s
shape: an id, a ~100-character string, a list of 0-31 ints), file://, every round of
every side in a fresh process (sides alternate). Timed is one Spark action alone: the
session, the input and Spark's Python workers (one untimed small action first) are ready
before the clock starts.

Write (``save()`` of a DataFrame made by Spark expressions, ``--parts`` partitions, cached
and counted first):

- ``arrow``: ``format("kara")``, which takes Spark's Arrow batches for these columns
  (``KaraArrowWriter``: records from pyarrow's ``to_pylist``);
- ``rows``: the same data source with its writer fixed to Spark's rows (``KaraWriter``:
  a ``Row`` per record, then ``asDict(recursive=True)``), what every write took before.

Both write the same records (checked: the version's length and a sample of records).

Read (``spark.read.format("kara")`` of a version written once by ``write_many``, 4
partitions, consumed by Spark's ``noop`` sink so every row is converted and nothing is
collected; the count checked once, untimed): ``kara`` is this tree; with ``--before DIR``
also ``before``, kara-spark from another source tree (``DIR/plugins/kara_spark`` first on
the path of the driver and Spark's Python workers): an A/B of the reader in the same run.

The table's CPU column is the driver's alone (the work is in Spark's JVM and its Python
workers): read the wall times.

    .venv/bin/python bench/spark.py [--rounds 5] [--records 1000000] [--parts 8]
                                    [--workloads write,read] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import small_record
from fresh import Clock, Contender, Row, measure, print_table

SIDES = ("arrow", "rows")


def _session() -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    import kara_spark
    import pyspark.cloudpickle
    from pyspark.sql import SparkSession

    # The row-writing data source below is defined here: Spark's workers get it by value.
    pyspark.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    local = {"spark.ui.enabled": "false", "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    spark = SparkSession.builder.master("local[2]").appName("kara-bench-spark").config(map=local).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    kara_spark.register(spark)
    spark.dataSource.register(_rows_source())
    return spark


def _rows_source() -> type:
    from kara_spark.source import KaraDataSource, KaraWriter, Target

    class KaraRowsDataSource(KaraDataSource):  # type: ignore[misc]
        """``format("kara")`` with the writer of Spark's rows whatever the schema."""

        @classmethod
        def name(cls) -> str:
            return "kara_rows"

        def writer(self, schema: Any, overwrite: bool) -> Any:
            return KaraWriter(Target.from_options(self.options, None), 0)

    return KaraRowsDataSource


def _save(frame: Any, source: str, url: str, version: str) -> None:
    (
        frame.write.format(source)
        .option("url", url)
        .option("namespace", "bench")
        .option("key", "spark")
        .option("version", version)
        .mode("append")
        .save()
    )


def write(params: dict[str, Any], clock: Clock) -> None:
    """One timed ``save()`` of the DataFrame by this round's side."""
    from kara_core import KaraStorage

    spark = _session()
    source = "kara" if os.environ["BENCH_SPARK_SIDE"] == "arrow" else "kara_rows"
    root = tempfile.mkdtemp(prefix="kara-bench-spark-", dir=params.get("root"))
    url = "file://" + root
    try:
        frame = spark.range(params["records"], numPartitions=params["parts"]).selectExpr(
            "id",
            "repeat(concat('sample text number ', id, ' '), 4) as text",
            "slice(sequence(cast(0 as bigint), cast(31 as bigint)), 1, cast(id % 32 as int)) as tokens",
        )
        frame.cache().count()
        _save(frame.limit(1000), source, url, "warm")  # starts the Python workers
        with clock.step("write"):
            _save(frame, source, url, "1")
        with KaraStorage(url).open_dataset("bench", "spark", version="1") as ds:
            assert len(ds) == params["records"]
            assert [ds[i] for i in range(0, params["records"], 99_991)] == [
                small_record(i) for i in range(0, params["records"], 99_991)
            ]
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


def read(params: dict[str, Any], clock: Clock) -> None:
    """One timed read of the whole version through ``format("kara")`` into Spark's noop sink."""
    spark = _session()
    try:

        def load(version: str) -> Any:
            return (
                spark.read.format("kara")
                .option("url", params["url"])
                .option("namespace", "bench")
                .option("key", "read")
                .option("version", version)
                .option("partitions", "4")
                .load()
            )

        load("1").limit(1000).write.format("noop").mode("overwrite").save()  # starts the Python workers
        with clock.step("read"):
            load("1").write.format("noop").mode("overwrite").save()
        assert load("1").count() == params["records"]
        import kara_spark

        clock.record("kara_spark", kara_spark.__file__)
    finally:
        spark.stop()


def _write_version(url: str, records: int) -> None:
    from kara_core import KaraStorage

    with KaraStorage(url).open_dataset("bench", "read", "w", version="1") as ds:
        ds.write_many([small_record(i) for i in range(records)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--workloads", default="write,read")
    parser.add_argument("--before", help="a source tree whose kara-spark reads as the contender 'before'")
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    contenders = []
    if "write" in workloads:
        # measure() passes the same params to every side: the side comes from the environment.
        contenders += [Contender(s, sys.executable, {"write": "write"}, {"BENCH_SPARK_SIDE": s}) for s in SIDES]
    if "read" in workloads:
        contenders.append(Contender("kara", sys.executable, {"read": "read"}))
        if args.before:
            path = os.path.join(os.path.abspath(args.before), "plugins", "kara_spark")
            contenders.append(Contender("before", sys.executable, {"read": "read"}, {"PYTHONPATH": path}))
    root = tempfile.mkdtemp(prefix="kara-bench-spark-read-")
    params = {"records": args.records, "parts": args.parts, "url": "file://" + root}
    try:
        if "read" in workloads:
            _write_version(params["url"], args.records)
        results = measure("spark", contenders, params, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "write" in workloads:
        print_table(
            f"kara-spark write, {args.records:,} records in {args.parts} partitions, local[2], file://",
            results,
            [Row("save(): Spark rows (baseline) and Arrow batches", "write", "write")],
            list(SIDES),
            "rows",
        )
    if "read" in workloads:
        readers = ["before", "kara"] if args.before else ["kara"]
        print_table(
            f"kara-spark read, {args.records:,} records, 4 partitions, local[2], file://, noop sink",
            results,
            [Row("read into noop" + (" (baseline: before)" if args.before else ""), "read", "read")],
            readers,
            readers[0],
        )
    for (name, workload), rounds in results.items():
        rate = args.records / rounds.median(workload)
        where = f" (kara_spark from {rounds.extra('kara_spark')})" if workload == "read" else ""
        print(f"  {workload} {name}: {rate / 1e3:,.0f} k records/s (median){where}")


if __name__ == "__main__":
    main()
