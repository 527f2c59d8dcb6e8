"""Spark schemas for kara records: inferred from the first records, and values converted to them.

Dict records are rows (a nested dict is a struct, a list an array); any other record is
a row of one column (``item``, or the column named by the ``column`` option; raw records
are the ``bytes`` column).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NullType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)

from kara_core.errors import ConfigurationError

__all__ = ["ITEM", "arrow_plain", "infer_schema", "row_converter", "to_spark_row"]

ITEM = "item"

#: Spark types whose values pyarrow's ``to_pylist`` gives exactly as Spark's rows hold them
#: (the same Python type and value). Maps (a list of pairs in Arrow, a dict in a row),
#: timestamps with a time zone (aware in Arrow, naive local time in a row), intervals,
#: variants and user-defined types are not among them.
_PLAIN_LEAVES = (
    BooleanType,
    ByteType,
    ShortType,
    IntegerType,
    LongType,
    FloatType,
    DoubleType,
    DecimalType,
    StringType,
    BinaryType,
    DateType,
    TimestampNTZType,
    NullType,
)


def _type_of(value: Any) -> DataType:
    if value is None:
        return NullType()
    if isinstance(value, bool):
        return BooleanType()
    if isinstance(value, int):
        return LongType()
    if isinstance(value, float):
        return DoubleType()
    if isinstance(value, str):
        return StringType()
    if isinstance(value, (bytes, bytearray)):
        return BinaryType()
    if isinstance(value, (list, tuple)):
        element: DataType = NullType()
        for item in value:
            element = _merge(element, _type_of(item))
        return ArrayType(element)
    if isinstance(value, dict):
        return StructType([StructField(str(name), _type_of(item)) for name, item in value.items()])
    raise ConfigurationError(f"no Spark type for {type(value).__name__} values: pass a schema to the reader")


def _merge(a: DataType, b: DataType) -> DataType:
    if isinstance(a, NullType):
        return b
    if isinstance(b, NullType) or a == b:
        return a
    if {type(a), type(b)} == {LongType, DoubleType}:
        return DoubleType()
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return ArrayType(_merge(a.elementType, b.elementType))
    if isinstance(a, StructType) and isinstance(b, StructType):
        fields = {field.name: field.dataType for field in a.fields}
        for field in b.fields:
            fields[field.name] = _merge(fields.get(field.name, NullType()), field.dataType)
        return StructType([StructField(name, kind) for name, kind in fields.items()])
    raise ConfigurationError(
        f"records disagree on a field's type ({a.simpleString()} and {b.simpleString()}): pass a schema"
    )


def _settled(kind: DataType) -> DataType:
    # A field that was None in every sampled record is read as a string column.
    if isinstance(kind, NullType):
        return StringType()
    if isinstance(kind, ArrayType):
        return ArrayType(_settled(kind.elementType))
    if isinstance(kind, StructType):
        return StructType([StructField(f.name, _settled(f.dataType)) for f in kind.fields])
    return kind


def infer_schema(records: Iterable[Any], column: str | None) -> StructType:
    """The schema of rows made of ``records`` (a sample of the dataset's first ones)."""
    merged: DataType = NullType()
    as_rows = column is None
    for record in records:
        as_rows = as_rows and isinstance(record, dict)
        merged = _merge(merged, _type_of(record))
    if as_rows and isinstance(merged, StructType):
        return _settled(merged)  # type: ignore[return-value]
    return StructType([StructField(column or ITEM, _settled(merged))])


def arrow_plain(kind: DataType) -> bool:
    """Whether records made from Arrow batches of ``kind`` (``to_pylist``) equal those made
    from Spark's rows (``asDict(recursive=True)``): plain leaves, arrays and structs of
    them, and no struct with two fields of one name (a row keeps the last; Arrow refuses
    such a nested struct, and its rules for them are not Spark's)."""
    if isinstance(kind, StructType):
        names = [f.name for f in kind.fields]
        return len(set(names)) == len(names) and all(arrow_plain(f.dataType) for f in kind.fields)
    if isinstance(kind, ArrayType):
        return arrow_plain(kind.elementType)
    return isinstance(kind, _PLAIN_LEAVES)


#: Converts one value to what Spark takes for it; None: the value is taken as it is.
Converter = Callable[[Any], Any] | None


def _converter(kind: DataType) -> Converter:
    """The conversion of values of ``kind``, made once per schema: a dict becomes the tuple
    of a struct's fields by name (a missing one None), anything iterable the list of an
    array, and leaves stay as they are."""
    if isinstance(kind, StructType):
        fields = [(f.name, _converter(f.dataType)) for f in kind.fields]
        names = [name for name, _ in fields]
        if not fields:
            return lambda value: None if value is None else ()
        if all(convert is None for _, convert in fields):

            def plain_struct(value: Any) -> Any:
                return None if value is None else tuple(map(value.get, names))

            return plain_struct

        converted = [(i, convert) for i, (_, convert) in enumerate(fields) if convert is not None]

        def struct(value: Any) -> Any:
            if value is None:
                return None
            items = list(map(value.get, names))
            for i, convert in converted:
                item = items[i]
                if item is not None:
                    items[i] = convert(item)
            return tuple(items)

        return struct
    if isinstance(kind, ArrayType):
        element = _converter(kind.elementType)
        if element is None:
            return lambda value: value if value is None or type(value) is list else list(value)
        return lambda value: None if value is None else [None if item is None else element(item) for item in value]
    return None


def row_converter(schema: StructType, column: str | None) -> Callable[[Any], tuple[Any, ...]]:
    """What :func:`to_spark_row` does for every record of ``schema``, built once."""
    single = _converter(schema.fields[0].dataType) if schema.fields else None

    def alone(record: Any) -> tuple[Any, ...]:
        return (record if single is None or record is None else single(record),)

    if column is not None:
        return alone
    whole = _converter(schema)
    assert whole is not None  # a struct's converter

    def convert(record: Any) -> tuple[Any, ...]:
        return whole(record) if isinstance(record, dict) else alone(record)  # type: ignore[no-any-return]

    return convert


def to_spark_row(record: Any, schema: StructType, column: str | None) -> tuple[Any, ...]:
    """The tuple Spark takes for ``record`` as a row of ``schema`` (dict records are rows;
    any other record, or any record when ``column`` is set, is the one column's value)."""
    return row_converter(schema, column)(record)
