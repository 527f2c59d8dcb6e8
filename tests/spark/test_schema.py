"""kara-spark's conversion of records to Spark rows, against its definition (no SparkSession)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_spark.schema import row_converter, to_spark_row
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

NAMES = st.sampled_from(["a", "b", "id", "text", "x"])
LEAVES = st.sampled_from([LongType(), StringType(), DoubleType(), BooleanType(), BinaryType()])


def _structs(children: st.SearchStrategy[DataType]) -> st.SearchStrategy[StructType]:
    fields = st.lists(st.tuples(NAMES, children), max_size=4, unique_by=lambda field: field[0])
    return fields.map(lambda pairs: StructType([StructField(name, kind) for name, kind in pairs]))


TYPES = st.recursive(LEAVES, lambda children: st.one_of(children.map(ArrayType), _structs(children)), max_leaves=8)
SCHEMAS = _structs(TYPES)


def _value(kind: DataType) -> st.SearchStrategy[Any]:
    # Values as records hold them: sometimes None, missing or extra fields, tuples for lists.
    if isinstance(kind, StructType):
        known = st.fixed_dictionaries({}, optional={f.name: _value(f.dataType) for f in kind.fields})
        extra = st.dictionaries(st.sampled_from(["zz", "extra"]), st.integers(), max_size=1)
        return st.none() | st.tuples(known, extra).map(lambda parts: {**parts[1], **parts[0]})
    if isinstance(kind, ArrayType):
        items = st.lists(_value(kind.elementType), max_size=3)
        return st.none() | items | items.map(tuple)
    return st.none() | st.integers() | st.text(max_size=3) | st.floats(allow_nan=False) | st.binary(max_size=3)


def _reference(value: Any, kind: DataType) -> Any:
    # The definition: a struct is the tuple of its fields by name, an array a list.
    if value is None:
        return None
    if isinstance(kind, StructType):
        return tuple(_reference(value.get(f.name), f.dataType) for f in kind.fields)
    if isinstance(kind, ArrayType):
        return [_reference(item, kind.elementType) for item in value]
    return value


@st.composite
def _schema_and_record(draw: st.DrawFn) -> tuple[StructType, Any]:
    schema = draw(SCHEMAS.filter(lambda s: bool(s.fields)))
    record = draw(st.one_of(_value(schema), _value(schema.fields[0].dataType)))
    return schema, record


@settings(max_examples=400, deadline=None)
@given(_schema_and_record(), st.sampled_from([None, "x"]))
def test_rows_are_converted_as_defined(case: tuple[StructType, Any], column: str | None) -> None:
    schema, record = case
    try:
        if column is None and isinstance(record, dict):
            expected = _reference(record, schema)
        else:
            expected = (_reference(record, schema.fields[0].dataType),)
    except (AttributeError, TypeError) as error:
        # A value that does not fit the schema (a string where a struct is): the same error.
        with pytest.raises(type(error)):
            row_converter(schema, column)(record)
        return
    assert row_converter(schema, column)(record) == expected
    assert to_spark_row(record, schema, column) == expected


def test_a_list_of_plain_items_is_handed_over_as_it_is() -> None:
    schema = StructType([StructField("tokens", ArrayType(LongType())), StructField("id", LongType())])
    tokens = [1, 2, 3]
    row = row_converter(schema, None)({"id": 7, "tokens": tokens, "other": 1})
    assert row == ([1, 2, 3], 7) and row[0] is tokens
    assert row_converter(schema, None)({"tokens": (4, 5)}) == ([4, 5], None)
