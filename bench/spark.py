"""kara-spark's writer: Spark's Arrow batches against Spark's rows, same DataFrame, same run.

A local SparkSession (``local[2]``) writes ``--records`` bench records (``common.small_record``'s
shape: an id, a ~100-character string, a list of 0-31 ints, made by Spark expressions)
in ``--parts`` partitions as a new version of a file:// store, once per round and side,
each round in a fresh process (sides alternate). Timed is the ``save()`` alone: the
session, the DataFrame (cached and counted) and the Python workers (one untimed write
first) are ready before the clock starts. Sides:

- ``arrow``: ``format("kara")``, which takes Spark's Arrow batches for these columns
  (``KaraArrowWriter``: records from pyarrow's ``to_pylist``);
- ``rows``: the same data source with its writer fixed to Spark's rows (``KaraWriter``:
  a ``Row`` per record, then ``asDict(recursive=True)``), what every write took before.

Both write the same records (checked: the version's length and a sample of records).
The table's CPU column is the driver's alone (the work is in Spark's JVM and its Python
workers): read the wall times.

    .venv/bin/python bench/spark.py [--rounds 5] [--records 1000000] [--parts 8]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8)
    args = parser.parse_args()
    contenders = [Contender(side, sys.executable, {"write": "write"}, {"BENCH_SPARK_SIDE": side}) for side in SIDES]
    params = {"records": args.records, "parts": args.parts}
    # measure() passes the same params to every side: the side comes from the environment.
    results = measure("spark", contenders, params, args.rounds)
    print_table(
        f"kara-spark write, {args.records:,} records in {args.parts} partitions, local[2], file://",
        results,
        [Row("save(): Spark rows (baseline) and Arrow batches", "write", "write")],
        list(SIDES),
        "rows",
    )
    for side in SIDES:
        rate = args.records / results[side, "write"].median("write")
        print(f"  {side}: {rate / 1e3:,.0f} k records/s (median)")


if __name__ == "__main__":
    main()
