"""A version remembers its serializer in a kara-only sidecar that 2.x never opens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, CorruptDatasetError, SerializerMismatchError
from kara_core.row.sidecar import VersionSidecar, decode_sidecar, encode_sidecar, sidecar_path
from kara_core.serialization import JSONSerializer, PickleSerializer, Serializer

from .conftest import FIXTURES, record, run_k215


def sidecar_of(store: KaraStorage, key: str, version: str = "1") -> dict:
    return json.loads(store.backend.read(sidecar_path("ns", key, version)))


def test_the_writer_records_its_serializer_and_a_reader_uses_it(store: KaraStorage) -> None:
    with store.open_dataset("ns", "pickled", "w", version="1", serialization="pickle") as ds:
        ds.write(("a tuple", b"\x00"))
    assert sidecar_of(store, "pickled") == {"format": 1, "serializer": "pickle", "options": {}}
    with store.open_dataset("ns", "pickled") as ds:
        assert isinstance(ds.serializer, PickleSerializer)
        assert ds[0] == ("a tuple", b"\x00")


def test_the_sidecar_is_inside_the_kara_folder_2x_never_opens(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write(1)
    assert sidecar_path("ns", "k", "1") == "row/ns/k/1/.kara/version.json"
    assert store.backend.size("row/ns/k/1/.kara/version.json")


def test_an_explicit_serializer_that_differs_from_the_recorded_one_is_refused_naming_both(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="json+zstd") as ds:
        ds.write({"a": 1})
    for mode in ("r", "w"):
        with pytest.raises(SerializerMismatchError) as caught:
            store.open_dataset("ns", "k", mode, version="1", serialization="pickle")
        assert "'json+zstd'" in str(caught.value) and "'pickle'" in str(caught.value)
    with store.open_dataset("ns", "k", serialization="json+zstd") as ds:
        assert ds[0] == {"a": 1}


def test_appending_without_a_serializer_keeps_the_recorded_one(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="pickle") as ds:
        ds.write({1, 2})
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write({3})
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [{1, 2}, {3}]


def test_a_version_written_by_215_has_no_sidecar_and_reads_as_json() -> None:
    store = KaraStorage(f"file://{FIXTURES / 'store'}")
    assert store.backend.size(sidecar_path("demo", "json_rows", "v1")) is None
    with store.open_dataset("demo", "json_rows", version="v1") as ds:
        assert isinstance(ds.serializer, JSONSerializer)
        assert len(list(ds)) == len(ds)


class Upper(Serializer):
    """A serializer nobody registered."""

    def serialize(self, x: str) -> bytes:
        return x.upper().encode()

    def deserialize(self, x: bytes) -> str:
        return bytes(x).decode()


def test_an_unregistered_serializer_is_recorded_by_class_and_must_be_passed_to_read(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization=Upper()) as ds:
        ds.write("abc")
    assert sidecar_of(store, "k")["serializer"] == f"custom:{__name__}.Upper"
    with pytest.raises(ConfigurationError, match="unregistered serializer"):
        store.open_dataset("ns", "k")
    with store.open_dataset("ns", "k", serialization=Upper) as ds:
        assert ds[0] == "ABC"


def test_a_damaged_sidecar_is_a_clear_error(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write(1)
    store.backend.put(sidecar_path("ns", "k", "1"), b'{"format": 1, "serializer": 7}')
    with pytest.raises(CorruptDatasetError, match=r"version\.json"):
        store.open_dataset("ns", "k")


def test_a_sidecar_of_a_newer_format_asks_for_an_upgrade() -> None:
    with pytest.raises(CorruptDatasetError, match="upgrade"):
        decode_sidecar(b'{"format": 2, "serializer": "json"}', "here")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_sidecar_parser_accepts_or_refuses_any_bytes_cleanly(raw: bytes) -> None:
    try:
        sidecar = decode_sidecar(raw, "fuzz")
    except CorruptDatasetError:
        return
    assert sidecar.serializer and sidecar.format <= 1


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["format", "serializer", "options", "extra"]),
        _json_values | st.dictionaries(st.text(max_size=5), _json_values, max_size=3),
    )
)
def test_sidecar_parser_on_json_objects_of_any_shape(obj: dict) -> None:
    try:
        sidecar = decode_sidecar(json.dumps(obj).encode(), "fuzz")
    except CorruptDatasetError:
        return
    assert isinstance(sidecar.serializer, str) and isinstance(sidecar.options, dict)
    assert decode_sidecar(encode_sidecar(sidecar), "again") == sidecar


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30), st.dictionaries(st.text(max_size=8), _json_values, max_size=4))
def test_encoded_sidecars_decode_to_themselves(name: str, options: dict) -> None:
    sidecar = VersionSidecar(serializer=name, options=options)
    assert decode_sidecar(encode_sidecar(sidecar), "x") == sidecar


READ_JSON_WITH_215 = """
import kara_storage
ds = kara_storage.KaraStorage(PARAMS["url"]).open_dataset("ns", "k", "r", version="1")
print(json.dumps(list(ds)))
"""


def test_215_reads_the_json_records_of_a_version_that_has_a_sidecar(tmp_path: Path) -> None:
    store = KaraStorage(f"file://{tmp_path}")
    with store.open_dataset("ns", "k", "w", version="1") as ds:
        ds.write_many(record(i) for i in range(50))
    assert sidecar_of(store, "k")["serializer"] == "json"
    assert run_k215(READ_JSON_WITH_215, {"url": f"file://{tmp_path}"}) == [record(i) for i in range(50)]


class _Duck:
    """Not a Serializer subclass: an object with serialize/deserialize is accepted too."""

    def serialize(self, x: object) -> bytes:
        return json.dumps(x).encode()

    def deserialize(self, raw: bytes) -> object:
        return json.loads(raw)


def test_an_object_with_serialize_and_deserialize_writes_and_reads_a_version(store: KaraStorage) -> None:
    # It has no sidecar_options / with_sidecar_options: recorded as custom, no options.
    with store.open_dataset("ns", "duck", "w", version="1", serialization=_Duck()) as ds:
        ds.write_many(record(i) for i in range(20))
    assert sidecar_of(store, "duck")["serializer"] == f"custom:{__name__}._Duck"
    handle = store.open_parallel_write("ns", "duck", "2", serialization=_Duck())
    with handle.part(0) as part:
        part.write_many(record(i) for i in range(5))
    handle.commit()
    for version, count in (("1", 20), ("2", 5)):
        with store.open_dataset("ns", "duck", version=version, serialization=_Duck()) as ds:
            assert list(ds) == [record(i) for i in range(count)]
