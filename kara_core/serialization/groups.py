"""The plain form of a record group: several records in one compressed frame.

A wrapping serializer that compresses groups (``json+zstd``, see
:class:`~kara_core.serialization.ZstdSerializer`) stores a few consecutive records as one
frame. Before compression a group is one of two forms, told apart by its first byte:

- ``0x0A`` (a newline), then the records joined by newlines: for records that contain
  no newline (compact JSON never does), split again by one ``bytes.split``;
- ``0x00``, then ``count: u32``, then ``end[0] ... end[count - 1]: u32`` and the records
  back to back, little-endian; ``end[k]`` is where record ``k`` ends, counted from the
  start of the group (record 0 starts right after the header, at ``5 + 4 * count``).

kara owns this parser: :func:`split_group` accepts exactly what :func:`join_group` makes
and refuses everything else with a :class:`~kara_core.errors.SerializationError`.

:func:`decode_json_group` decodes the records of a newline group of JSON records with
one ``orjson.loads``: the newlines become the commas of one JSON array. That is the
records' own decoding whenever each record is one JSON value (what kara's writers store);
otherwise it gives up (None) and the caller decodes the records one by one, which raises
for the damaged one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate
from operator import le
from typing import Any

import orjson

from ..errors import SerializationError

__all__ = ["MAX_GROUP_RECORDS", "decode_json_group", "join_group", "lines_group_size", "split_group"]

#: The most records one group may hold (a limit of the format, far above any default).
MAX_GROUP_RECORDS = 1 << 16
_LINES = 0x0A
_SIZED = 0x00
_COUNT = struct.Struct("<BI")


@lru_cache(maxsize=256)
def _ends(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def join_group(records: Sequence[bytes | memoryview], lines: bool = False) -> bytes:
    """The plain group of ``records`` (1 to :data:`MAX_GROUP_RECORDS`).

    ``lines``: the records likely contain no newline (JSON), so the newline form is
    tried first; a record with a newline makes it fall back to the sized form.
    """
    count = len(records)
    if not 0 < count <= MAX_GROUP_RECORDS:
        raise ValueError(f"a record group holds 1 to {MAX_GROUP_RECORDS} records, not {count}")
    if lines:
        joined = b"\n".join((b"", *records))
        if joined.count(b"\n") == count:
            return joined
    head = 5 + 4 * count
    ends = list(accumulate(map(len, records), initial=head))[1:]
    if ends[-1] > 0xFFFFFFFF:
        raise ValueError("a record group holds less than 4 GiB")
    return b"".join((_COUNT.pack(_SIZED, count), _ends(count).pack(*ends), *records))


def split_group(plain: bytes) -> list[bytes]:
    """The records of a plain group made by :func:`join_group`."""
    size = len(plain)
    if not size:
        raise SerializationError("a record group is empty")
    form = plain[0]
    if form == _LINES:
        records = plain.split(b"\n")
        del records[0]
        return records
    if form != _SIZED:
        raise SerializationError(f"a record group starts with {form:#04x}, which is no group form")
    if size < 9:
        raise SerializationError(f"a record group of {size} bytes is too short for its header")
    _, count = _COUNT.unpack_from(plain)
    head = 5 + 4 * count
    if not 0 < count <= MAX_GROUP_RECORDS or head > size:
        raise SerializationError(f"a record group of {size} bytes cannot hold {count} records")
    bounds = (head, *_ends(count).unpack_from(plain, 5))
    if bounds[-1] != size or not all(map(le, bounds[:-1], bounds[1:])):
        raise SerializationError("the record ends of a record group are not ascending up to its size")
    return list(map(plain.__getitem__, map(slice, bounds[:-1], bounds[1:])))


def lines_group_size(plain: bytes) -> int | None:
    """The number of records of a group in the newline form (its newlines); None for the
    sized form (which only :func:`split_group` reads, checking it)."""
    # Two memchr-driven passes: about half of what bytes.count(b"\n") takes here.
    return len(plain) - len(plain.replace(b"\n", b"")) if plain[:1] == b"\n" else None


def decode_json_group(plain: bytes, count: int) -> list[Any] | None:
    """The ``count`` JSON records of a newline group made by :func:`join_group` (``count``
    from :func:`lines_group_size`), decoded at once.

    One ``orjson.loads`` of ``[record0,record1,...]`` (the group's newlines made commas)
    instead of a split and a call per record. None when ``plain`` is not in the newline
    form or the array does not hold exactly ``count`` values (a record that is not one
    JSON value): then split the group and decode the records one by one, which raises
    for the damaged record.

    For records that are each one JSON value (all that kara's writers store: orjson's
    output, which never holds a raw newline) this is exactly their own decoding. Stored
    groups carry zstd's checksum, so damage of the stored bytes is refused before this.
    """
    if plain[:1] != b"\n":
        return None
    try:
        values = orjson.loads(b"[" + plain[1:].replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        return None
    return values if len(values) == count else None
