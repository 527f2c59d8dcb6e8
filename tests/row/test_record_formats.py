"""Compressed records (json/pickle/raw + zstd) and array records (numpy)."""

from __future__ import annotations

import mmap
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, SerializationError
from kara_core.serialization import NumpySerializer, ZstdSerializer, resolve_serializer

from .conftest import record


@pytest.mark.parametrize(
    ("name", "records"),
    [
        ("json+zstd", [record(i) for i in range(300)] + [{}, [], "", 0]),
        ("pickle+zstd", [("t", i, b"\x00" * i, {i}) for i in range(200)]),
        ("raw+zstd", [b"", b"\x00" * 100_000, bytes(range(256))] + [b"x" * i for i in range(100)]),
    ],
)
def test_zstd_serializers_round_trip_sequentially_and_by_index(store: KaraStorage, name: str, records: list) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization=name, max_file_size=4096) as ds:
        ds.write_many(records)
    with store.open_dataset("ns", "k") as ds:
        assert ds.serializer.name == name
        assert list(ds) == records
        assert [ds[i] for i in range(len(ds) - 1, -1, -1)] == records[::-1]


def test_zstd_compresses_repetitive_records(store: KaraStorage) -> None:
    records = [{"text": "the same sentence again " * 20, "i": i} for i in range(200)]
    for name in ("json", "json+zstd"):
        with store.open_dataset("ns", name, "w", version="1", serialization=name) as ds:
            ds.write_many(records)
    plain = store.rows.dataset_info("ns", "json")["data_bytes"]
    packed = store.rows.dataset_info("ns", "json+zstd")["data_bytes"]
    assert packed * 5 < plain


def test_a_trained_dictionary_is_kept_in_the_sidecar_and_used_by_readers(store: KaraStorage) -> None:
    records = [{"user": f"user{i % 97}", "event": ["click", "view", "buy"][i % 3], "n": i} for i in range(5000)]
    trained = ZstdSerializer.train(records[:2000], "json", level=9, dict_size=4096)
    with store.open_dataset("ns", "dict", "w", version="1", serialization=trained) as ds:
        ds.write_many(records)
    with store.open_dataset("ns", "plain", "w", version="1", serialization="json+zstd") as ds:
        ds.write_many(records)
    with store.open_dataset("ns", "dict") as ds:
        assert ds.serializer.dictionary == trained.dictionary
        assert list(ds) == records
    with store.open_dataset("ns", "dict", "w") as ds:  # an appender uses the recorded dictionary too
        ds.write({"late": True})
    with store.open_dataset("ns", "dict", serialization="json+zstd") as ds:
        assert ds[len(ds) - 1] == {"late": True}
    with_dict = store.rows.dataset_info("ns", "dict")["data_bytes"]
    without = store.rows.dataset_info("ns", "plain")["data_bytes"]
    # Groups of 16 records already share their context; the dictionary still saves more
    # than a quarter (about 40% here).
    assert with_dict < 0.75 * without


def test_another_dictionary_than_the_recorded_one_is_refused(store: KaraStorage) -> None:
    records = [{"k": f"value {i}", "n": i % 7} for i in range(3000)]
    first = ZstdSerializer.train(records, "json", dict_size=2048)
    other = ZstdSerializer.train([{"other": i} for i in range(3000)], "json", dict_size=2048)
    with store.open_dataset("ns", "k", "w", version="1", serialization=first) as ds:
        ds.write_many(records)
    with pytest.raises(ConfigurationError, match="dictionary"):
        store.open_dataset("ns", "k", serialization=other)


def test_zstd_level_is_checked_and_recorded(store: KaraStorage) -> None:
    with pytest.raises(ConfigurationError, match="level"):
        ZstdSerializer("json", level=99)
    with store.open_dataset("ns", "k", "w", version="1", serialization=ZstdSerializer("pickle", level=19)) as ds:
        ds.write([1])
    assert store.rows.open_dataset("ns", "k").serializer.name == "pickle+zstd"


def test_unknown_or_non_wrapping_parts_of_a_name_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown serializer 'lz9'"):
        resolve_serializer("json+lz9")
    with pytest.raises(ConfigurationError, match="not a wrapping serializer"):
        resolve_serializer("json+pickle")


def test_a_record_that_is_not_a_zstd_frame_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        resolve_serializer("json+zstd").deserialize(b"certainly not zstd")


def test_zstd_serializers_pickle_for_worker_processes() -> None:
    serializer = ZstdSerializer.train([{"k": i} for i in range(3000)], "json", dict_size=1024)
    copy = pickle.loads(pickle.dumps(serializer))
    assert copy.deserialize(serializer.serialize({"k": 5})) == {"k": 5}


ARRAYS = {
    "int32 tokens": np.arange(2048, dtype=np.int32),
    "0-d": np.array(3.25),
    "empty": np.zeros((0, 5), dtype=np.float32),
    "non-contiguous": np.arange(120, dtype=np.int64).reshape(10, 12)[::3, 1::2],
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "big-endian": np.arange(10, dtype=">u2"),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, 3j]),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="M8[D]"),
    "strings": np.array([b"ab", b"cde"]),
    "unicode": np.array(["kara", "ü"]),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_numpy_records_round_trip_with_dtype_and_shape(store: KaraStorage, name: str) -> None:
    array = ARRAYS[name]
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy") as ds:
        ds.write(array)
        ds.write(array)
    with store.open_dataset("ns", "k") as ds:
        for back in (ds[0], next(iter(ds)), ds[1]):
            assert back.dtype == array.dtype and back.shape == array.shape
            np.testing.assert_array_equal(back, array)
            assert not back.flags.writeable


def test_a_huge_array_spanning_blocks_round_trips(store: KaraStorage) -> None:
    array = np.arange(3_000_000, dtype=np.float64).reshape(1000, 3000)
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy", max_file_size=4 << 20) as ds:
        ds.write(array)
    with store.open_dataset("ns", "k") as ds:
        np.testing.assert_array_equal(ds[0], array)


def _mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_numpy_reads_on_local_files_view_the_mapped_block_without_copying(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy") as ds:
        ds.write_many(np.full(2048, i, dtype=np.int32) for i in range(100))
    with store.open_dataset("ns", "k") as ds:
        by_index, in_order = ds[7], list(ds)
        assert _mapped(by_index) and all(map(_mapped, in_order))
        assert int(by_index[0]) == 7 and [int(a[0]) for a in in_order] == list(range(100))
        with pytest.raises(ValueError, match="read-only"):
            by_index[0] = 1
    # Arrays taken from a closed dataset stay valid (the map lives until they are dropped).
    assert int(by_index.sum()) == 7 * 2048


def test_object_arrays_are_refused_with_a_clear_error(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy") as ds:
        with pytest.raises(SerializationError, match="object"):
            ds.write(np.array([{"a": 1}, None], dtype=object))
        with pytest.raises(SerializationError, match=r"np\.ndarray"):
            ds.write([1, 2, 3])
        ds.write(np.arange(3))
    with store.open_dataset("ns", "k") as ds:
        assert len(ds) == 1


def test_numpy_and_zstd_compose(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="numpy+zstd") as ds:
        ds.write(np.zeros(100_000, dtype=np.int32))
    assert store.rows.dataset_info("ns", "k")["data_bytes"] < 2000
    with store.open_dataset("ns", "k") as ds:
        np.testing.assert_array_equal(ds[0], np.zeros(100_000, dtype=np.int32))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_numpy_record_parser_accepts_or_refuses_any_bytes_cleanly(raw: bytes) -> None:
    try:
        array = NumpySerializer().deserialize(raw)
    except SerializationError:
        return
    assert isinstance(array, np.ndarray) and not array.dtype.hasobject


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["<i4", ">i8", "<f2", "|u1", "<c8", "|b1", "<M8[ms]", "|S3"]),
    st.lists(st.integers(0, 4), max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_numpy_records_of_random_dtype_and_shape_round_trip(dtype: str, shape: list[int], seed: int) -> None:
    raw = np.random.default_rng(seed).bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    back = NumpySerializer().deserialize(NumpySerializer().serialize(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()
