"""The kara-ray and kara-spark integrations are registered, and build what they promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kara_core import KaraStorage
from kara_core.plugins import get_integration, list_plugins


def test_ray_and_spark_plugins_are_registered() -> None:
    names = {plugin.name for plugin in list_plugins()}
    assert {"ray", "spark"} <= names


def test_the_ray_integration_builds_a_datasink_and_a_datasource(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    with KaraStorage(url).open_dataset("corpus", "web", "w", version="v1") as writer:
        writer.write_many({"i": i} for i in range(10))
    ray_integration: Any = get_integration("ray")
    sink = ray_integration.datasink(url, "corpus", "web", "v2", serialization="pickle")
    source = ray_integration.datasource(url, "corpus", "web")
    assert (type(sink).__name__, sink.version, sink.column) == ("KaraDatasink", "v2", None)
    assert (type(source).__name__, source.version, source.records) == ("KaraDatasource", "v1", 10)
    raw = ray_integration.datasink(url, "corpus", "raw", 1, serialization="raw")
    assert raw.column == "bytes"
