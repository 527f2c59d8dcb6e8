"""Entry point of kara-spark: registers the ``spark`` integration (cheap to import: no pyspark)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kara_core import hookimpl


class SparkIntegration:
    """Registers kara's PySpark data source; imports pyspark only when used."""

    def register(self, spark: Any) -> None:
        """Make ``format("kara")`` available in the session ``spark``."""
        from .source import register

        register(spark)


@hookimpl
def kara_register_integrations(register: Callable[[str, Any], None]) -> None:
    register("spark", SparkIntegration())
