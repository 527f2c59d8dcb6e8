"""JSON records straight from Arrow columns: the bytes ``orjson.dumps`` gives for each row.

A Ray write task holds its rows as Arrow columns. Turning every row into a Python dict
and calling ``orjson.dumps`` on it costs more than the JSON encoding itself: one Python
object per value. :func:`json_records` instead encodes each column with Arrow compute
kernels (integers cast to text, strings escaped and quoted, lists joined, structs
assembled) and joins the columns of each row into ``{"name":value,...}`` in one
element-wise kernel. The result is an Arrow string array whose element ``i`` is,
byte for byte, ``orjson.dumps(row_i)`` where ``row_i`` is the dict Ray's
``to_pydict`` gives for row ``i`` (tests/ray/test_arrow_json.py checks it with
hypothesis for every supported type). Its data buffer holds the records back to back
and its offsets their bounds: a part writer takes them as they are.

Supported column types: null, bool, signed and unsigned integers, float32/float64,
string and large_string, lists and large lists of supported types, structs of
supported types (with distinct field names) and dictionary-encoded columns of them.
For anything else (binary, timestamps, decimals, maps, ...) :func:`json_records`
returns None and the caller takes the dict path, which encodes (or refuses) those
values exactly as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["joined", "json_records", "supported"]

#: orjson's escapes of the control characters (the other escaped bytes are ``"`` and ``\``).
_SHORT = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES = {chr(c): _SHORT.get(c, f"\\u{c:04x}") for c in range(0x20)}
_NULL = pa.scalar("null", pa.string())
_COMMA = ord(",")


def supported(kind: pa.DataType) -> bool:
    """True if columns of this type are encoded here (else the caller uses the dict path)."""
    if pa.types.is_dictionary(kind):
        return supported(kind.value_type)
    if (
        pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_float32(kind)
        or pa.types.is_float64(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    ):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return supported(kind.value_type)
    if pa.types.is_struct(kind):
        names = [kind.field(i).name for i in range(kind.num_fields)]
        return (
            bool(names)
            and len(set(names)) == len(names)
            and all(supported(kind.field(i).type) for i in range(kind.num_fields))
        )
    return False


def json_records(batch: pa.RecordBatch | pa.Table) -> pa.StringArray | None:
    """``orjson.dumps`` of every row of ``batch`` as an Arrow string array, or None if unsupported.

    None when a column's type is not supported, when the columns' names repeat (a dict
    cannot hold them), or when there are no columns. Arrow's 2 GiB limit of one string
    array applies: the caller passes batches of a bounded number of rows.
    """
    names = batch.schema.names
    if not names or len(set(names)) != len(names) or not all(supported(field.type) for field in batch.schema):
        return None
    if batch.num_rows == 0:
        return pa.array([], pa.string())
    columns = [column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column for column in batch.columns]
    return _object(names, columns, None)


def _object(names: list[str], columns: list[pa.Array], validity: pa.Array | None) -> pa.StringArray:
    # '{"a":' + a + ',"b":' + b + '}' for every row, in one element-wise kernel. The
    # constant text around a value (a string's quotes, a list's brackets, the comma or
    # brace after it) goes into the literal pieces when the column allows (no nulls):
    # no kernel pass per column to add it.
    pieces: list[Any] = []
    literal = "{"
    for number, (name, column) in enumerate(zip(names, columns, strict=True)):
        follow = "," if number + 1 < len(names) else "}"
        opener, encoded, closer = _member(column, follow)
        literal += orjson.dumps(name).decode() + ":" + opener
        pieces += [literal, encoded] if literal else [encoded]
        literal = closer
    if literal:
        pieces.append(literal)
    joined = pc.binary_join_element_wise(*pieces, "")
    if validity is not None:
        joined = pc.if_else(validity, joined, _NULL)
    return joined


def _member(array: pa.Array, follow: str) -> tuple[str, pa.StringArray, str]:
    """``(opener, values, closer)``: ``opener + values[i] + closer`` is value ``i``'s JSON then ``follow``."""
    kind = array.type
    if not array.null_count:
        if pa.types.is_integer(kind):
            return "", _ints_followed(array, follow), ""
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return '"', _escaped(array), '"' + follow
        if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_integer(kind.value_type):
            items = array.values.slice(array.offsets[0].as_py(), array.offsets[-1].as_py() - array.offsets[0].as_py())
            if not items.null_count:
                return "[", _int_lists(array), follow
    return "", _value(array), follow


def _ints_followed(array: pa.Array, follow: str) -> pa.StringArray:
    # Each integer's text then ``follow``: orjson writes the whole column as one JSON list
    # (numpy in C, several times faster than Arrow's cast to string), and its commas and
    # closing bracket become ``follow`` in place: the items are cut after them.
    count = len(array)
    text = bytearray(orjson.dumps(array.to_numpy(), option=orjson.OPT_SERIALIZE_NUMPY))
    view = np.frombuffer(text, dtype=np.uint8)
    commas = np.flatnonzero(view == _COMMA)
    view[commas] = ord(follow)
    view[-1] = ord(follow)
    offsets = np.empty(count + 1, dtype=np.int32)
    offsets[0] = 1
    offsets[1:count] = commas + 1
    offsets[count] = len(text)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def _int_lists(array: pa.Array) -> pa.StringArray:
    # Each list's items and its closing bracket ("1,2,3]", "]" when empty), for a list
    # column without nulls at either level. orjson writes all the items as one JSON list;
    # a row's items are then one stretch of that text, and the comma after a row's last
    # item becomes its ']' in place. Only the commas at row boundaries are looked up:
    # item k > 0 starts after comma k - 1 (no array of every item's start).
    rows = len(array)
    bounds = np.asarray(array.offsets, dtype=np.int64)
    bounds = bounds - bounds[0]
    count = int(bounds[-1])
    if not count:
        return pa.array(["]"] * rows, pa.string())
    items = array.values.slice(int(array.offsets[0].as_py()), count)
    text = bytearray(orjson.dumps(items.to_numpy(), option=orjson.OPT_SERIALIZE_NUMPY))
    view = np.frombuffer(text, dtype=np.uint8)
    commas = np.flatnonzero(view == _COMMA)  # count - 1 of them: comma k follows item k
    # Where each row's text begins: item bounds[r]'s start; 1 (after '[') for item 0, and
    # the end of the text (the final ']') for rows that start past the last item.
    offsets = np.where(bounds == 0, 1, len(text))
    inside = (bounds > 0) & (bounds < count)
    offsets[inside] = commas[bounds[inside] - 1] + 1
    last = bounds[1:]
    filled = last > bounds[:-1]
    view[commas[last[filled & (last < count)] - 1]] = ord("]")
    lists = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(text))
    if not filled.all():
        lists = pc.if_else(pa.array(filled), lists, "]")
    return lists


def _value(array: pa.Array) -> pa.StringArray:
    """The JSON text of every value of ``array`` (``null`` for nulls), never null itself."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _value(array.dictionary_decode())
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    if pa.types.is_boolean(kind):
        encoded = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(kind):
        encoded = pc.cast(array, pa.string())
    elif pa.types.is_floating(kind):
        return _floats(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = _string(array)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        encoded = _list(array)
    else:  # a struct (supported() admitted nothing else)
        fields = [kind.field(i).name for i in range(kind.num_fields)]
        # flatten(): the children, sliced like the parent.
        return _object(fields, array.flatten(), array.is_valid() if array.null_count else None)
    if array.null_count:
        encoded = pc.fill_null(encoded, _NULL)
    return encoded


def _floats(array: pa.Array) -> pa.StringArray:
    # Float text is orjson's own: it formats the whole column as one JSON list in C, whose
    # items never hold a comma, and Arrow cuts it at the commas.
    count = len(array)
    text = orjson.dumps(array.to_pylist())
    data = bytearray(text[1:-1])
    data += b","
    commas = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord(","))
    offsets = np.empty(count + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:] = commas + 1
    items = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(bytes(data)))
    return pc.utf8_slice_codeunits(items, 0, -1)  # each item without its comma


def _string(array: pa.Array) -> pa.StringArray:
    return pc.binary_join_element_wise('"', _escaped(array), '"', "")


def _escaped(array: pa.Array) -> pa.StringArray:
    # The text between the quotes, with orjson's escapes: '\\', '"' and the control
    # characters; nothing else (not '/', DEL or U+2028). UTF-8 continuation bytes are
    # >= 0x80, so the bytes needing an escape are found by scanning the data buffer: only
    # the stretch this array's values occupy (a slice of a batch shares the whole
    # block's buffer), with a minimum (the control characters) and two byte searches
    # (memchr) on a copy of it; a mask of the bytes only when one is there.
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    _, offsets_buffer, data_buffer = array.buffers()
    if data_buffer is None or not len(array):
        return array
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    first, last = int(offsets[0]), int(offsets[-1])
    if last <= first:
        return array
    raw = np.frombuffer(data_buffer, dtype=np.uint8, count=last - first, offset=first)
    text = data_buffer.slice(first, last - first).to_pybytes()
    if raw.min() >= 0x20 and b'"' not in text and b"\\" not in text:
        return array
    special = raw[(raw < 0x20) | (raw == 0x22) | (raw == 0x5C)]
    present = set(np.unique(special).tolist())
    if 0x5C in present:  # first: the other escapes add backslashes
        array = pc.replace_substring(array, "\\", "\\\\")
    if 0x22 in present:
        array = pc.replace_substring(array, '"', '\\"')
    for code in sorted(present - {0x22, 0x5C}):
        array = pc.replace_substring(array, chr(code), _ESCAPES[chr(code)])
    return array


def _list(array: pa.Array) -> pa.StringArray:
    # The items are encoded as one flat array, regrouped by the list offsets, joined with ','.
    offsets = array.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    items = _value(array.values.slice(first, last - first))
    offsets = pc.subtract(offsets, first)  # a new array: from_arrays refuses a sliced one with a mask
    if pa.types.is_large_list(array.type):
        offsets = offsets.cast(pa.int32())  # the items' text is one string array (< 2 GiB)
    grouped = pa.ListArray.from_arrays(offsets, items, mask=array.is_null() if array.null_count else None)
    joined = pc.binary_join(grouped, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")  # null lists stay null here


def joined(records: pa.Array) -> tuple[memoryview, np.ndarray]:
    """The records of a string or binary array (no nulls) as one buffer and their end offsets.

    ``(data, ends)``: record ``i`` is ``data[ends[i - 1]:ends[i]]`` (from 0 for the first);
    ``ends`` are unsigned 64-bit integers, as a part writer takes them. No copy of the data:
    ``data`` is a read-only view (Arrow's buffers are never changed once built, though
    their buffer protocol says writable), which a part writer holds until it writes it.
    """
    if records.null_count:
        raise ValueError("records cannot be null")
    count = len(records)
    width = np.int64 if pa.types.is_large_string(records.type) or pa.types.is_large_binary(records.type) else np.int32
    _, offsets_buffer, data_buffer = records.buffers()
    offsets = np.frombuffer(
        offsets_buffer, dtype=width, count=count + 1, offset=records.offset * np.dtype(width).itemsize
    )
    first, last = int(offsets[0]), int(offsets[-1])
    data = memoryview(data_buffer)[first:last].toreadonly() if data_buffer is not None else memoryview(b"")
    return data, (offsets[1:] - first).astype(np.uint64)
