"""Serializer.deserialize_many gives exactly what deserialize gives, record by record."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kara_core import KaraStorage
from kara_core.errors import SerializationError
from kara_core.serialization import (
    JSONSerializer,
    NumpySerializer,
    Serializer,
    ZstdSerializer,
    batch_deserializer,
    resolve_serializer,
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
DTYPES = ["<i4", ">i8", "<f2", "|u1", "<c8", "|b1", "<M8[ms]", "|S3", "<U2"]


def _same(one: Any, many: Any) -> None:
    if isinstance(one, np.ndarray):
        assert isinstance(many, np.ndarray)
        assert (one.dtype, one.shape, one.flags.writeable) == (many.dtype, many.shape, many.flags.writeable)
        assert one.tobytes() == many.tobytes()
    else:
        assert type(one) is type(many) and one == many


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except SerializationError as exc:
        return "error", str(exc)


def _check(serializer: Serializer, raws: list[Any]) -> None:
    """Either both decode every record alike, or both raise the same error (the first bad record's)."""
    kind, many = _outcome(lambda: serializer.deserialize_many(raws))
    one_kind, one = _outcome(lambda: [serializer.deserialize(raw) for raw in raws])
    assert kind == one_kind, (many, one)
    if kind == "error":
        assert many == one
        return
    assert len(many) == len(one) == len(raws)
    for a, b in zip(one, many, strict=True):
        _same(a, b)


@settings(max_examples=150, deadline=None)
@given(st.lists(JSON_VALUES, max_size=40), st.sampled_from(["json", "pickle", "json+zstd", "pickle+zstd"]))
def test_deserialize_many_equals_deserialize_for_json_and_pickle(records: list[Any], name: str) -> None:
    serializer = resolve_serializer(name)
    raws = [serializer.serialize(record) for record in records]
    _check(serializer, raws)
    _check(serializer, [memoryview(raw) for raw in raws])  # what mapped reads hand over


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.sampled_from(["raw", "raw+zstd"]))
def test_deserialize_many_equals_deserialize_for_raw_bytes(records: list[bytes], name: str) -> None:
    serializer = resolve_serializer(name)
    _check(serializer, [serializer.serialize(record) for record in records])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3), st.integers(0, 2**32 - 1)),
        max_size=12,
    ),
    st.sampled_from(["numpy", "numpy+zstd"]),
    st.sampled_from(["bytes", "readonly view", "writable view"]),
)
def test_deserialize_many_equals_deserialize_for_arrays(specs: list, name: str, holder: str) -> None:
    serializer = resolve_serializer(name)
    raws: list[Any] = []
    for dtype, shape, seed in specs:
        data = np.random.default_rng(seed).bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        raw = serializer.serialize(np.frombuffer(data, dtype=dtype).reshape(shape))
        if holder == "readonly view":
            raws.append(memoryview(raw))
        elif holder == "writable view":
            raws.append(memoryview(bytearray(raw)))
        else:
            raws.append(raw)
    _check(serializer, raws)
    # Twice: the second pass takes the headers the first one parsed from the cache.
    _check(serializer, raws)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=6), st.lists(st.integers(0, 5), max_size=6))
def test_numpy_deserialize_many_refuses_damaged_records_like_deserialize(garbage: list[bytes], keep: list) -> None:
    # Valid records (whose headers the cache knows), truncated and padded copies of them,
    # and arbitrary bytes, mixed: the same arrays or the same error as one by one.
    serializer = NumpySerializer()
    good = [serializer.serialize(np.arange(n, dtype=np.int32)) for n in keep]
    serializer.deserialize_many(good)
    damaged = [raw[:-1] for raw in good if raw] + [raw + b"\x00" for raw in good]
    _check(serializer, good + garbage)
    for bad in damaged:
        _check(serializer, [*good, bad])


def test_a_subclass_that_overrides_deserialize_keeps_its_own_decoding_in_batches() -> None:
    class Tagged(JSONSerializer):
        def deserialize(self, x: bytes) -> Any:
            return ("tagged", super().deserialize(x))

    raws = [b"1", b'"a"']
    assert Tagged().deserialize_many(raws) == [("tagged", 1), ("tagged", "a")]
    assert ZstdSerializer(Tagged()).deserialize_many([ZstdSerializer(Tagged()).encode(raw) for raw in raws]) == [
        ("tagged", 1),
        ("tagged", "a"),
    ]


def test_serializers_without_deserialize_many_are_decoded_one_by_one() -> None:
    class Duck:  # accepted as a serializer: it has serialize and deserialize
        def serialize(self, x: str) -> bytes:
            return x.encode()

        def deserialize(self, x: bytes) -> str:
            return bytes(x).decode().upper()

    assert batch_deserializer(Duck())([b"a", b"bc"]) == ["A", "BC"]
    assert ZstdSerializer(Duck()).deserialize_many([ZstdSerializer(Duck()).serialize("x")]) == ["X"]  # type: ignore[arg-type]


def test_a_damaged_zstd_record_in_a_batch_is_the_serialization_error_of_deserialize() -> None:
    serializer = resolve_serializer("json+zstd")
    raws = [serializer.serialize(i) for i in range(3)]
    with pytest.raises(SerializationError, match="not a zstd frame"):
        serializer.deserialize_many([*raws, b"\xff\x00garbage"])


class _FailsOn(JSONSerializer):
    """JSON, except that the record ``bad`` cannot be decoded (a damaged record)."""

    def deserialize(self, x: bytes) -> Any:
        value = super().deserialize(x)
        if value == 77:
            raise SerializationError("record 77 is damaged")
        return value


@pytest.mark.parametrize("name", ["json+zstd", "numpy", "pickle"])
def test_sequential_reads_decoding_in_batches_keep_the_cursor_exact(store: KaraStorage, name: str) -> None:
    records: list[Any] = [np.arange(i % 7, dtype=np.int16) for i in range(200)] if name == "numpy" else list(range(200))
    with store.open_dataset("ns", "k", "w", version="1", serialization=name) as ds:
        ds.write_many(records)
    with store.open_dataset("ns", "k") as ds:
        for stop in (0, 1, 31, 32, 33, 150):  # leave the loop inside and at the edges of a batch
            ds.seek(0)
            reading = iter(ds)
            got = list(itertools.islice(reading, stop))
            reading.close()  # type: ignore[attr-defined]
            assert ds.tell() == stop
            rest = list(ds)
            for a, b in zip(got + rest, records, strict=True):
                assert np.array_equal(a, b)


def test_a_damaged_record_stops_a_batched_sequential_read_right_after_it(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization=_FailsOn()) as ds:
        ds.write_many(range(200))
    with store.open_dataset("ns", "k", serialization=_FailsOn()) as ds:
        got: list[int] = []
        with pytest.raises(SerializationError, match="record 77 is damaged"):
            for record in ds:
                got.append(record)
        assert got == list(range(77))
        assert ds.tell() == 78
        assert list(ds) == list(range(78, 200))


def _joined(raws: list[bytes], lead: int) -> tuple[memoryview, np.ndarray]:
    """``raws`` back to back after ``lead`` bytes, as read-only mapped runs come, and their bounds."""
    data = memoryview(bytes(lead) + b"".join(raws))
    bounds = np.concatenate(([lead], lead + np.cumsum([len(raw) for raw in raws], dtype=np.int64))).astype(np.int64)
    return data, bounds


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 3), max_size=3),
    st.integers(0, 6),
    st.integers(0, 9),
    st.integers(0, 2**32 - 1),
)
def test_numpy_deserialize_joined_equals_deserialize(dtype: str, shape: list, count: int, lead: int, seed: int) -> None:
    # Runs of records of one shape (the strided fast path), of mixed shapes, and with one
    # record of another dtype among them: the same arrays as decoding one by one.
    serializer = NumpySerializer()
    rng = np.random.default_rng(seed)
    arrays = [np.frombuffer(rng.bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize), dtype=dtype).reshape(shape)]
    arrays *= count
    for extra in ([], [np.arange(3, dtype=np.int64)], [np.zeros((), dtype=np.int8)]):
        raws = [serializer.serialize(array) for array in [*arrays, *extra]]
        joined = serializer.deserialize_joined(*_joined(raws, lead))
        one = [serializer.deserialize(raw) for raw in raws]
        assert len(joined) == len(one)
        for a, b in zip(one, joined, strict=True):
            _same(a, b)
            assert b.flags.c_contiguous


def test_numpy_deserialize_joined_refuses_a_damaged_record_like_deserialize() -> None:
    serializer = NumpySerializer()
    raws = [serializer.serialize(np.arange(8, dtype=np.int32)) for _ in range(4)]
    bad = bytearray(raws[2])
    bad[1] = 3  # claims 3 dimensions: its header no longer matches the others'
    with pytest.raises(SerializationError, match=r"header runs past|needs"):
        serializer.deserialize_joined(*_joined([*raws[:2], bytes(bad), raws[3]], 0))


@pytest.mark.parametrize("shape", [(2048,), (3, 5), (0,)])
def test_sequential_reads_of_fixed_shape_arrays_are_read_only_views_of_the_run(
    store: KaraStorage, shape: tuple[int, ...]
) -> None:
    records = [np.full(shape, i, dtype=np.int32) for i in range(300)]
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy") as ds:
        ds.write_many(records)
    with store.open_dataset("ns", "k") as ds:
        got = list(ds)
        assert ds.tell() == 300
        for a, b in zip(got, records, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
            assert not a.flags.writeable
        # Interleaved read() and iteration share the cursor exactly.
        ds.seek(5)
        assert np.array_equal(ds.read(), records[5])
        reading = iter(ds)
        assert np.array_equal(next(reading), records[6])
        reading.close()  # type: ignore[attr-defined]
        assert np.array_equal(ds.read(), records[7])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 40), min_size=2, max_size=8),
    st.integers(0, 9),
    st.integers(0, 2**32 - 1),
    st.integers(0, 7),
)
def test_numpy_deserialize_joined_of_1d_records_of_any_length(
    dtype: str, lengths: list[int], lead: int, seed: int, damage: int
) -> None:
    # Token documents: 1-D records of one dtype and many lengths (the sliced fast path),
    # then the same run with one record's stored length changed: the error of deserialize.
    serializer = NumpySerializer()
    rng = np.random.default_rng(seed)
    itemsize = np.dtype(dtype).itemsize
    raws = [serializer.serialize(np.frombuffer(rng.bytes(n * itemsize), dtype=dtype)) for n in lengths]
    joined = serializer.deserialize_joined(*_joined(raws, lead))
    for a, b in zip([serializer.deserialize(raw) for raw in raws], joined, strict=True):
        _same(a, b)
    bad = bytearray(raws[damage % len(raws)])
    shape_at = 4 + len(np.dtype(dtype).str)
    bad[shape_at] ^= 1 + damage
    damaged = list(raws)
    damaged[damage % len(raws)] = bytes(bad)
    with pytest.raises(SerializationError):
        serializer.deserialize(bytes(bad))
    with pytest.raises(SerializationError):
        serializer.deserialize_joined(*_joined(damaged, lead))


def test_read_raw_at_and_read_range_of_a_slice(store: KaraStorage) -> None:
    from kara_core.errors import RecordIndexError

    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many(range(100))
    with store.open_dataset("ns", "k") as ds:
        part = ds.slice(10, 50)
        assert part.mapped
        stored = part.read_raw_range(0, 50)
        assert part.read_raw_at([3, 0, 49, -1, 3]) == [stored[3], stored[0], stored[49], stored[49], stored[3]]
        assert part.read_raw_at([]) == []
        with pytest.raises(RecordIndexError, match="record 50 is out of range"):
            part.read_raw_at([1, 50])
        with pytest.raises(RecordIndexError, match="record -51 is out of range"):
            part.read_raw_at([-51])
        assert part.read_range(45, 99) == list(range(55, 60))
        assert part.read_range(-5, 3) == list(range(10, 13))


def test_read_raw_at_refuses_positions_that_are_not_integers(store: KaraStorage) -> None:
    # As ds[0.5] does: no silent truncation of floats, and a uint64 position past the
    # int64 range does not wrap around to a negative one (a record counted from the end).
    from kara_core.errors import RecordIndexError

    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many(range(5))
    with store.open_dataset("ns", "k") as ds:
        for bad in ([0.9], [1, 2.5], [True], np.array([0.0])):
            with pytest.raises(TypeError, match="integers"):
                ds.read_raw_at(bad)
        with pytest.raises(RecordIndexError, match="out of range"):
            ds.read_raw_at(np.array([2**64 - 1], dtype=np.uint64))
        assert ds.read_raw_at(np.array([4, 0], dtype=np.uint64)) == [b"4", b"0"]
        assert ds.read_raw_at(np.array([], dtype=np.float64)) == []
