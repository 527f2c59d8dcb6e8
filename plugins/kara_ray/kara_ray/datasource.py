"""KaraDatasource: Ray Data reads one version of a kara row dataset in record ranges."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import pairwise
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from kara_core import KaraStorage
from kara_core.serialization import JSONSerializer, NoSerializer, Serializer, resolve_serializer

from .rows import binary_records, block_of_records, json_block, json_block_joined, record_column

__all__ = ["KaraDatasource"]

#: Records per Arrow table a read task yields.
BATCH_RECORDS = 16384
#: Records whose types fix the schema of JSON datasets.
SCHEMA_SAMPLE = 1000


def _arrow_parses(serializer: Serializer, column: str | None) -> bool:
    # Only the built-in JSON deserializer is known to mean "records are JSON documents",
    # or orjson itself: what a grouped json+zstd version's records decode with (their
    # bytes come back plain from the groups).
    if column is not None:
        return False
    return type(serializer).deserialize is JSONSerializer.deserialize or serializer.deserialize is orjson.loads


class KaraDatasource(Datasource):
    """Read version ``version`` of ``namespace/key`` as a Ray Dataset.

    ``ray.data.read_datasource(KaraDatasource(url, "corpus", "web"))``. The version is
    pinned when the datasource is made (``"latest"`` resolves then); read tasks split
    the records into as many contiguous ranges as Ray asks for, and yield Arrow tables in
    record order. Dict records become rows; others a one-column row (``item``, or
    ``bytes`` for raw records, or ``column``).
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        key: str,
        version: Any = "latest",
        serialization: Serializer | type[Serializer] | str | None = None,
        *,
        column: str | None = None,
        **store_options: Any,
    ) -> None:
        self.url, self.namespace, self.key = url, namespace, key
        self.serializer = resolve_serializer(serialization)
        self.column = record_column(self.serializer, column)
        self.store_options = store_options
        with (
            KaraStorage(url, **store_options) as store,
            store.open_dataset(namespace, key, "r", version, self.serializer) as ds,
        ):
            self.version = ds.version
            # Configured for the version (a zstd group size, a dictionary from its
            # sidecar): the serializer that decodes the records its reads return.
            self.serializer = ds.serializer
            self.records = len(ds)
            self.nbytes = ds.nbytes()
            sample = ds.read_raw_range(0, SCHEMA_SAMPLE) if _arrow_parses(self.serializer, self.column) else []
        # JSON objects are parsed by Arrow, with the types of the first records for all tasks.
        sampled = json_block(sample, None)
        self.json_schema: pa.Schema | None = sampled.schema if sampled is not None else None

    def estimate_inmemory_data_size(self) -> int | None:
        return self.nbytes

    def get_name(self) -> str:
        return "Kara"

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One task per contiguous range of records, ``parallelism`` of them at most."""
        count = max(1, min(parallelism, self.records))
        bounds = [self.records * i // count for i in range(count + 1)]
        per_record = self.nbytes / self.records if self.records else 0
        tasks = []
        for start, stop in pairwise(bounds):
            if stop <= start and self.records:
                continue
            metadata = BlockMetadata(
                num_rows=stop - start, size_bytes=int(per_record * (stop - start)), exec_stats=None, input_files=None
            )
            read = partial(_read_range, self, start, stop)
            tasks.append(ReadTask(read, metadata, per_task_row_limit=per_task_row_limit))
        return tasks


def _read_range(source: KaraDatasource, start: int, stop: int) -> Iterator[pa.Table]:
    with (
        KaraStorage(source.url, **source.store_options) as store,
        store.open_dataset(source.namespace, source.key, "r", source.version, source.serializer) as ds,
    ):
        for first in range(start, stop, BATCH_RECORDS):
            # One buffer per batch, cut by Arrow: no Python object per record on the fast paths.
            data, ends = ds.read_raw_joined(first, min(stop, first + BATCH_RECORDS))
            yield _block(source, data, ends)
        if start == stop:
            yield block_of_records([], source.column)


def _block(source: KaraDatasource, data: bytes, ends: Any) -> pa.Table | pd.DataFrame:
    if source.json_schema is not None:
        parsed = json_block_joined(data, ends, source.json_schema)
        if parsed is not None:
            return parsed
    elif isinstance(source.serializer, NoSerializer) and source.column is not None:
        return pa.table({source.column: binary_records(data, ends)})
    # Other serializers get each record as bytes of its own (they may keep them).
    data = bytes(data)
    raws = [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return block_of_records(list(map(source.serializer.deserialize, raws)), source.column)
