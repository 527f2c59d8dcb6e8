"""kara-ray: Ray Data reads and writes kara row datasets.

``ds.write_datasink(KaraDatasink(url, namespace, key, version))`` writes one part per
write task and commits them as one version (readable by kara-storage 2.1.5);
``ray.data.read_datasource(KaraDatasource(url, namespace, key))`` reads a version in
record ranges. Importing the package does not import ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KaraDatasink", "KaraDatasource"]


def __getattr__(name: str) -> Any:
    if name == "KaraDatasink":
        from .datasink import KaraDatasink

        return KaraDatasink
    if name == "KaraDatasource":
        from .datasource import KaraDatasource

        return KaraDatasource
    raise AttributeError(f"module 'kara_ray' has no attribute {name!r}")
