"""kara-spark: Spark reads and writes kara row datasets through a PySpark data source.

After ``kara_spark.register(spark)``, ``df.write.format("kara")`` writes a new version
(one part per partition, committed on the driver when the job succeeds) and
``spark.read.format("kara")`` reads one, with options ``url``, ``namespace``, ``key``,
``version`` and ``serialization``. Importing the package does not import pyspark.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KaraDataSource", "register"]


def register(spark: Any) -> None:
    """Make ``format("kara")`` available in the SparkSession ``spark``."""
    from .source import register as register_source

    register_source(spark)


def __getattr__(name: str) -> Any:
    if name == "KaraDataSource":
        from .source import KaraDataSource

        return KaraDataSource
    raise AttributeError(f"module 'kara_spark' has no attribute {name!r}")
