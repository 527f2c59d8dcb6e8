"""kara-ray: Ray Data reads and writes kara row datasets.

``ds.write_datasink(KaraDatasink(url, namespace, key, version))`` writes one part per
write task and commits them as one version (readable by kara-storage 2.1.5);
``ray.data.read_datasource(KaraDatasource(url, namespace, key))`` reads a version in
record ranges. ``kara_ray.write_datasink(ds, sink)`` and ``kara_ray.read_datasource(source)``
do the same with every CPU busy from the start (:mod:`kara_ray.execution`). Importing the
package does not import ray.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KaraDatasink", "KaraDatasource", "read_datasource", "write_datasink"]


def __getattr__(name: str) -> Any:
    if name == "KaraDatasink":
        from .datasink import KaraDatasink

        return KaraDatasink
    if name == "KaraDatasource":
        from .datasource import KaraDatasource

        return KaraDatasource
    if name in ("read_datasource", "write_datasink"):
        from . import execution

        return getattr(execution, name)
    raise AttributeError(f"module 'kara_ray' has no attribute {name!r}")
