"""How kara records map to Ray Data rows, and back.

A record that is a dict is a row (json and pickle datasets of dicts); any other record
is a row with one column: ``item`` (Ray's own name for rows of plain values), or
``column`` when one is named. With the ``raw`` serializer records are bytes and the
column is ``bytes`` unless another is named.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from ray.data.block import Block, BlockAccessor

from kara_core.errors import ConfigurationError
from kara_core.row.parts import RowPart
from kara_core.serialization import JSONSerializer, NoSerializer, Serializer, WrappingSerializer, innermost

from .arrow_json import joined, json_records

__all__ = [
    "ITEM",
    "RAW_COLUMN",
    "binary_records",
    "block_of_records",
    "json_block",
    "json_block_joined",
    "record_column",
    "records_of_block",
    "write_block",
]

ITEM = "item"
RAW_COLUMN = "bytes"
#: Rows encoded to JSON at a time (bounds the encoder's memory and its string arrays);
#: a block's batches are encoded by as many threads as Arrow's pool has (Arrow's kernels
#: let go of the GIL; in a Ray worker, as many as the task's CPUs).
ENCODE_ROWS = 16384
#: Bytes of JSON lines Arrow parses per block (and per thread) when it has several threads.
PARSE_BLOCK = 256 * 1024


def record_column(serializer: Serializer, column: str | None) -> str | None:
    """The single column records live in, or None when each record is a whole row (raw
    records, compressed or not, are bytes: the ``bytes`` column)."""
    if column is not None:
        return column
    return RAW_COLUMN if isinstance(innermost(serializer), NoSerializer) else None


def records_of_block(block: Block, column: str | None) -> list[Any]:
    """The records a Ray block holds: its rows as dicts, or the values of ``column``."""
    table = BlockAccessor.for_block(block).to_arrow()
    if column is None:
        # Column by column, then zipped into dicts: several times faster than to_pylist().
        columns = table.to_pydict()
        names = list(columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    if column not in table.column_names:
        raise ConfigurationError(f"the rows have no column {column!r} to write (columns: {table.column_names})")
    return table.column(column).to_pylist()


def write_block(part: RowPart, block: Block, column: str | None) -> int:
    """Write the records of a Ray block to a part; return their count.

    JSON rows are encoded from the Arrow columns (:mod:`kara_ray.arrow_json`, the same
    bytes as ``orjson.dumps`` of each row) and raw records are taken from the binary
    column's buffer, both handed to the part as one buffer with end offsets (also under
    zstd record groups, which compress those plain records). Rows the encoder does not
    support, and other serializers, go through Python records.
    """
    table = BlockAccessor.for_block(block).to_arrow()
    stored = _record_serializer(part.serializer)
    if column is None and type(stored).serialize is JSONSerializer.serialize and isinstance(stored, JSONSerializer):
        total = 0
        batches = table.to_batches(max_chunksize=ENCODE_ROWS)
        threads = min(pa.cpu_count(), len(batches)) or 1
        with ThreadPoolExecutor(threads, thread_name_prefix="kara-encode") as pool:
            # Encoded ahead by the threads, written in order by this one.
            for batch, records in zip(batches, pool.map(_encoded, batches), strict=True):
                if records is None:
                    total += part.write_many(records_of_block(batch, None))
                else:
                    total += part.write_joined(*joined(records))
        return total
    if isinstance(stored, NoSerializer) and column is not None and column in table.column_names:
        values = table.column(column)
        if (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)) and not values.null_count:
            return sum(part.write_joined(*joined(chunk)) for chunk in values.chunks)
    return part.write_many(records_of_block(table, column))


def _record_serializer(serializer: Serializer) -> Serializer:
    """The serializer whose bytes a part with ``serializer`` stores for each record: itself,
    or for zstd record groups (``json+zstd``, ``raw+zstd``) the inner one, whose plain
    records the part writer compresses a group at a time."""
    if getattr(serializer, "grouped", False) and isinstance(serializer, WrappingSerializer):
        return serializer.inner
    return serializer


def _encoded(batch: pa.RecordBatch) -> pa.StringArray | None:
    try:
        return json_records(batch)
    except (pa.ArrowInvalid, pa.ArrowCapacityError, pa.ArrowNotImplementedError):
        return None  # a batch too large for one string array, say


def json_block(raws: list[bytes], schema: pa.Schema | None) -> pa.Table | None:
    """Arrow's JSON reader over serialized JSON records (no Python objects), or None if it cannot.

    It cannot when a record is not a JSON object on one line, or when the values do not
    fit ``schema`` (the types sampled when the datasource was made); the caller then
    deserializes the records in Python.
    """
    if not raws:
        return None
    return _read_json(b"\n".join(raws), len(raws), schema)


def json_block_joined(data: bytes, ends: Any, schema: pa.Schema | None) -> pa.Table | None:
    """:func:`json_block` over records stored back to back in ``data`` (``ends``: their ends).

    No Python object per record. Arrow parsing on one thread takes the buffer as one
    block, in which JSON objects need no separator: ``data`` is parsed as it is. Several
    threads split their blocks at newlines: Arrow puts them between the records first
    (one kernel over an array that wraps ``data`` without a copy).
    """
    count = len(ends)
    if not count:
        return None
    if pa.cpu_count() == 1:
        return _read_json(pa.py_buffer(data), count, schema)
    records = binary_records(data, ends, pa.string())
    lines = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, count], pa.int32()), records), "\n")
    return _read_json(lines.buffers()[2], count, schema)


def _read_json(data: Any, count: int, schema: pa.Schema | None) -> pa.Table | None:
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer") if schema else None
    try:
        # With several threads in Arrow's pool, they parse blocks of PARSE_BLOCK bytes at
        # once (pyarrow's default, as Ray's own read_json). Ray sizes the pool of its
        # workers to the task's CPUs (OMP_NUM_THREADS): one thread parses the whole
        # buffer as one block, which is faster than many small ones.
        threads = pa.cpu_count() > 1
        read = pj.ReadOptions(use_threads=threads, block_size=PARSE_BLOCK if threads else len(data) + 1)
        table = pj.read_json(pa.BufferReader(data), read, options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == count else None


def binary_records(data: bytes, ends: Any, kind: pa.DataType | None = None) -> pa.Array:
    """The records joined in ``data`` as an Arrow binary array (no copy of the bytes).

    ``ends``: each record's end in ``data`` (a buffer of unsigned 64-bit integers, as
    :meth:`RowDataset.read_raw_joined` gives). ``kind``: binary (default) or string.
    """
    count = len(ends)
    large = len(data) >= 2**31 - 1
    offsets = np.zeros(count + 1, dtype=np.int64 if large else np.int32)
    offsets[1:] = np.frombuffer(ends, dtype=np.uint64)
    if kind is None:
        kind = pa.binary()
    if large:
        kind = pa.large_string() if kind == pa.string() else pa.large_binary()
    return pa.Array.from_buffers(kind, count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def block_of_records(records: list[Any], column: str | None) -> pa.Table | pd.DataFrame:
    """A Ray block of records: dict records as rows, others in one column.

    An Arrow table when Arrow can type the values; a pandas frame of Python objects
    when it cannot (tuples of mixed types, say), which Ray keeps as they are.
    """
    if column is None and records and not all(isinstance(record, dict) for record in records):
        column = ITEM
    try:
        if column is None:
            return pa.Table.from_pylist(records)
        kind = pa.binary() if records and isinstance(records[0], (bytes, bytearray)) else None
        return pa.table({column: pa.array(records, type=kind)})
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        if column is None:
            return pd.DataFrame.from_records(records)
        return pd.DataFrame({column: pd.Series(records, dtype=object)})
