"""Cumulative token counts of a version's records, cached in its kara-only sidecar folder.

``row/<namespace>/<key>/<version>/.kara/tokens/<field as hex>.u64`` (``record.u64`` when
the record itself is the token sequence)::

    b"KARATOK1" | u64 count | count x u64 cumulative token count (little-endian)

Entry ``i`` is the number of tokens in records ``0..i``. Versions only grow, so a cache
of fewer records than the version holds is extended with the new records and stored
again; a damaged cache is rebuilt. Stores that cannot be written keep the counts in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigurationError, CorruptDatasetError, KaraError
from ..row.layout import version_prefix
from .sources import name_undecodable

__all__ = ["HEAD_BYTES", "MAGIC", "cached_token_counts", "decode_counts", "encode_counts", "token_counts_path"]

MAGIC = b"KARATOK1"
_HEAD = struct.Struct("<8sQ")
#: Bytes before the first count.
HEAD_BYTES = _HEAD.size
#: Records decoded at a time while counting.
COUNT_CHUNK = 4096


def token_counts_path(namespace: str, key: str, version: str, field: str | None) -> str:
    """Where the counts of ``field`` (None: the whole record) are cached."""
    name = "record" if field is None else field.encode("utf-8").hex()
    return version_prefix(namespace, key, version) + f".kara/tokens/{name}.u64"


def encode_counts(cumulative: np.ndarray) -> bytes:
    """The stored form of cumulative counts."""
    return _HEAD.pack(MAGIC, len(cumulative)) + np.ascontiguousarray(cumulative, dtype="<u8").tobytes()


def decode_counts(raw: bytes, where: str) -> np.ndarray:
    """Parse stored counts; CorruptDatasetError (naming ``where``) when they are not valid."""
    if len(raw) < _HEAD.size:
        raise CorruptDatasetError(where, None, f"token count cache of {len(raw)} bytes is shorter than its header")
    magic, count = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptDatasetError(where, 0, "not a token count cache (wrong magic)")
    if len(raw) != _HEAD.size + 8 * count:
        raise CorruptDatasetError(where, None, f"token count cache claims {count} records but holds {len(raw)} bytes")
    cumulative = np.frombuffer(raw, dtype="<u8", count=count, offset=_HEAD.size).astype(np.int64)
    if count and (cumulative[0] < 0 or (np.diff(cumulative) < 0).any()):
        raise CorruptDatasetError(where, None, "token count cache is not cumulative (a count decreases)")
    return cumulative


def _tokens_of(field: str | None) -> Callable[[Any], int]:
    def count(record: Any) -> int:
        tokens = record if field is None else _field(record, field)
        ndim = getattr(tokens, "ndim", 1)
        if ndim != 1:
            raise ConfigurationError(f"token sequences must be one-dimensional, got an array of {ndim} dimensions")
        return len(tokens)

    return count


def _field(record: Any, field: str) -> Any:
    try:
        return record[field]
    except (KeyError, TypeError, IndexError):
        raise ConfigurationError(
            f"a record has no field {field!r} (it is a {type(record).__name__}); pass field=None when "
            "each record is itself the token sequence"
        ) from None


def count_tokens(rows: Any, field: str | None, start: int, stop: int) -> np.ndarray:
    """Token counts (not cumulative) of records ``[start, stop)`` of ``rows``."""
    deserialize, count = rows.serializer.deserialize, _tokens_of(field)
    counts = np.empty(stop - start, dtype=np.int64)
    for first in range(start, stop, COUNT_CHUNK):
        raws = rows.read_raw_range(first, min(stop, first + COUNT_CHUNK))
        try:
            counts[first - start : first - start + len(raws)] = [count(deserialize(raw)) for raw in raws]
        except Exception:
            name_undecodable(rows, range(first, first + len(raws)))
            raise
    return counts


def cached_token_counts(rows: Any, field: str | None) -> np.ndarray:
    """Cumulative token counts of every record of ``rows``, from the sidecar cache when present.

    The cache covers the whole version, so slices of a version (``rows.slice``) are
    counted in memory.
    """
    total = len(rows)
    # A slice starts inside the version: its counts are not the version's.
    if rows.start:
        return np.cumsum(count_tokens(rows, field, 0, total))
    backend = rows.backend
    path = token_counts_path(rows.namespace, rows.key, rows.version, field)
    raw = backend.read_if_exists(path)
    cumulative = np.empty(0, dtype=np.int64)
    if raw is not None:
        try:
            cumulative = decode_counts(raw, f"{backend.url}/{path}")
        except CorruptDatasetError:
            cumulative = np.empty(0, dtype=np.int64)  # a cache: rebuilt below and stored again
    if len(cumulative) >= total:
        return cumulative[:total]
    have = len(cumulative)
    added = count_tokens(rows, field, have, total)
    base = int(cumulative[-1]) if have else 0
    cumulative = np.concatenate((cumulative, base + np.cumsum(added)))
    if getattr(backend.capabilities, "writable", False):
        try:
            backend.put(path, encode_counts(cumulative))
        except (KaraError, OSError):
            pass  # counting worked; only the cache for the next open is lost
    return cumulative
