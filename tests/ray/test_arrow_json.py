"""kara_ray.arrow_json: JSON records from Arrow columns, byte for byte what orjson gives per row."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kara_ray.arrow_json import joined, json_records, supported

from kara_core.serialization import JSONSerializer

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_INTS = {
    pa.int8(): 8,
    pa.int16(): 16,
    pa.int32(): 32,
    pa.int64(): 64,
    pa.uint8(): -8,
    pa.uint16(): -16,
    pa.uint32(): -32,
    pa.uint64(): -64,
}
# Text heavy in what JSON escapes: quotes, backslashes, every control character, and
# the characters orjson leaves alone (DEL, '/', U+2028, non-ASCII, astral).
_SPECIAL = st.sampled_from(['"', "\\", "/", "\x7f", "\u2028", "é", "\U0001f600", *map(chr, range(0x20))])
TEXT = st.lists(_SPECIAL | st.characters(codec="utf-8"), max_size=12).map("".join) | st.text(max_size=12)

SCALARS = st.sampled_from(
    [pa.null(), pa.bool_(), pa.float32(), pa.float64(), pa.string(), pa.large_string(), *_INTS]
) | st.just(pa.dictionary(pa.int32(), pa.string()))


def _nested(inner: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    structs = st.lists(st.tuples(TEXT, inner), min_size=1, max_size=3, unique_by=lambda f: f[0]).map(
        lambda fields: pa.struct([pa.field(name, kind) for name, kind in fields])
    )
    return inner.map(pa.list_) | inner.map(pa.large_list) | structs


TYPES = st.recursive(SCALARS, _nested, max_leaves=6)


def values(kind: pa.DataType, nulls: bool = True) -> st.SearchStrategy[Any]:
    """Python values of an Arrow type (None among them unless the type is null, or ``nulls`` is False)."""
    if pa.types.is_null(kind):
        return st.none()
    if pa.types.is_boolean(kind):
        base: st.SearchStrategy[Any] = st.booleans()
    elif kind in _INTS:
        bits = _INTS[kind]
        base = st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if bits > 0 else st.integers(0, 2**-bits - 1)
    elif pa.types.is_float32(kind):
        base = st.floats(width=32)  # NaN and infinities included: orjson writes null
    elif pa.types.is_float64(kind):
        base = st.floats()
    elif pa.types.is_dictionary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        base = TEXT
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        base = st.lists(values(kind.value_type, nulls), max_size=4)
    else:
        fields = {kind.field(i).name: values(kind.field(i).type, nulls) for i in range(kind.num_fields)}
        base = st.fixed_dictionaries(fields)
    return st.none() | base if nulls else base


@st.composite
def tables(draw: st.DrawFn, nulls: bool = True) -> pa.Table:
    names = draw(st.lists(TEXT, min_size=1, max_size=4, unique=True))
    kinds = [draw(TYPES) for _ in names]
    rows = draw(st.integers(0, 12))
    columns = [pa.array([draw(values(kind, nulls)) for _ in range(rows)], type=kind) for kind in kinds]
    table = pa.table(dict(zip(names, columns, strict=True)))
    # Slices and several chunks: offsets into shared buffers must be honoured.
    if rows > 2 and draw(st.booleans()):
        cut = draw(st.integers(1, rows - 1))
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    start = draw(st.integers(0, rows))
    return table.slice(start, draw(st.integers(0, rows - start)))


def dict_path(table: pa.Table) -> list[bytes]:
    """What kara's json serializer writes for the rows as dicts (to_pydict): the dict path's bytes."""
    columns = table.to_pydict()
    serialize = JSONSerializer().serialize
    return [serialize(dict(zip(columns, row, strict=True))) for row in zip(*columns.values(), strict=True)]


def encoded(array: pa.Array) -> list[bytes]:
    return [value.as_py().encode() for value in array]


@SETTINGS
@given(tables())
def test_every_supported_type_gives_orjsons_bytes(table: pa.Table) -> None:
    result = json_records(table)
    assert result is not None
    assert result.null_count == 0
    assert encoded(result) == dict_path(table)


@SETTINGS
@given(tables(nulls=False))
def test_columns_without_nulls_give_orjsons_bytes(table: pa.Table) -> None:
    # Without nulls, integers, strings and lists of integers take the paths that fold
    # quotes, brackets and separators into the constant text between the values.
    result = json_records(table)
    assert result is not None
    assert encoded(result) == dict_path(table)


@pytest.mark.parametrize("kind", [pa.list_(pa.int64()), pa.large_list(pa.uint8()), pa.list_(pa.int16())])
def test_integer_lists_without_nulls_cut_at_the_right_commas(kind: pa.DataType) -> None:
    # Empty lists first, last and in a row; a slice that starts inside the items.
    lists = [[], [1, -2, 3] if kind != pa.large_list(pa.uint8()) else [1, 2, 3], [], [], [7], [0, 0], []]
    table = pa.table({"n": pa.array(range(len(lists)), pa.int32()), "tokens": pa.array(lists, kind)})
    for part in (table, table.slice(1), table.slice(2, 3), table.slice(3, 1)):
        assert encoded(json_records(part)) == dict_path(part)


@SETTINGS
@given(tables())
def test_record_batches_and_tables_give_the_same_records(table: pa.Table) -> None:
    batch = table.combine_chunks().to_batches()
    if batch:
        result = json_records(batch[0])
        assert result is not None and encoded(result) == dict_path(table)


@pytest.mark.parametrize("special", ['"', "\\", "\n", "\x00", "\x1f"])
def test_escapes_are_looked_for_in_the_slices_own_strings(special: str) -> None:
    # A slice (a batch of a block) shares the block's whole string buffer: what needs an
    # escape is found in its own values, first and last included, and what lies outside
    # them changes nothing.
    text = ["a" + special, "plain", "b" + special, "plain", special]
    table = pa.table({"text": text})
    for start in range(len(text)):
        for stop in range(start, len(text) + 1):
            part = table.slice(start, stop - start)
            assert encoded(json_records(part)) == dict_path(part)
    assert dict_path(table.slice(1, 1)) == [b'{"text":"plain"}']


def test_the_buffers_hold_the_records_back_to_back() -> None:
    table = pa.table({"id": [1, 2, 3], "text": ["a", 'b"', ""], "tokens": [[0], [], [1, 2]]}).slice(1)
    result = json_records(table)
    assert result is not None
    for records in (result, result.slice(1), result.cast(pa.large_binary())):
        data, ends = joined(records)
        expected = [r.as_py().encode() if isinstance(r.as_py(), str) else r.as_py() for r in records]
        assert bytes(data) == b"".join(expected)
        assert data.readonly  # a part writer holds it without a copy
        assert ends.dtype == np.uint64 and ends.tolist() == list(accumulate(map(len, expected)))
    with pytest.raises(ValueError, match="null"):
        joined(pa.array(["a", None]))


@pytest.mark.parametrize(
    "column",
    [
        pa.array([b"x"], pa.binary()),
        pa.array([0], pa.timestamp("s")),
        pa.array([1], pa.decimal128(5, 2)),
        pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
        pa.array([1.5], pa.float16()),
        pa.array([[b"x"]], pa.list_(pa.binary())),
        pa.array([{"a": 1}], pa.struct([pa.field("a", pa.date32())])),
    ],
    ids=lambda column: str(column.type),
)
def test_unsupported_types_are_left_to_the_dict_path(column: pa.Array) -> None:
    assert not supported(column.type)
    assert json_records(pa.table({"ok": pa.array([1]), "other": column})) is None


def test_repeated_names_and_no_columns_are_left_to_the_dict_path() -> None:
    repeated = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    assert json_records(repeated) is None
    assert json_records(pa.table({})) is None
    assert not supported(pa.struct([pa.field("a", pa.int8()), pa.field("a", pa.int8())]))


def test_an_empty_table_gives_no_records() -> None:
    result = json_records(pa.table({"id": pa.array([], pa.int64())}))
    assert result is not None and len(result) == 0


INT_LISTS = st.lists(
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 40), max_size=40) | st.just([]), max_size=40
)


@SETTINGS
@given(INT_LISTS, st.data())
def test_integer_lists_cut_at_row_boundaries_whatever_their_lengths(lists: list[list[int]], data: Any) -> None:
    # Lists of integers without nulls are cut from one orjson text at the commas that end
    # rows: runs of empty lists anywhere, a single item in the whole batch, long rows,
    # slices starting and ending anywhere.
    table = pa.table({"tokens": pa.array(lists, pa.list_(pa.int64())), "n": pa.array(range(len(lists)), pa.int16())})
    start = data.draw(st.integers(0, len(lists)))
    part = table.slice(start, data.draw(st.integers(0, len(lists) - start)))
    for columns in (part, part.select(["tokens"])):
        assert encoded(json_records(columns)) == dict_path(columns)
