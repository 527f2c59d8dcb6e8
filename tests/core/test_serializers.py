"""Serializers: the built-ins (same bytes as kara-storage 2.x), user classes, lookup by name."""

from __future__ import annotations

import pickle

import orjson
import pytest

from kara_core.errors import ConfigurationError
from kara_core.serialization import JSONSerializer, NoSerializer, PickleSerializer, Serializer, resolve_serializer


def test_json_writes_compact_utf8_like_kara_storage_2() -> None:
    record = {"id": 1, "text": "行存储", "vals": [1, 2], "ok": True}
    assert JSONSerializer().serialize(record) == orjson.dumps(record)
    assert JSONSerializer().deserialize(orjson.dumps(record)) == record


def test_pickle_round_trips_python_objects() -> None:
    record = ("tuple", 3, b"\x00\x01")
    data = PickleSerializer().serialize(record)
    assert pickle.loads(data) == record
    assert PickleSerializer().deserialize(data) == record


def test_raw_stores_bytes_as_they_are() -> None:
    assert NoSerializer().serialize(b"\x00\xff") == b"\x00\xff"
    assert NoSerializer().serialize(bytearray(b"ab")) == b"ab"
    assert NoSerializer().deserialize(b"xy") == b"xy"


def test_raw_refuses_objects_with_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="NoSerializer stores bytes only, got dict"):
        NoSerializer().serialize({"a": 1})


@pytest.mark.parametrize(
    ("name", "cls"), [("json", JSONSerializer), ("pickle", PickleSerializer), ("raw", NoSerializer)]
)
def test_builtins_are_selected_by_name(name: str, cls: type) -> None:
    assert type(resolve_serializer(name)) is cls


def test_default_is_json() -> None:
    assert type(resolve_serializer(None)) is JSONSerializer


def test_a_user_subclass_is_used_as_given_and_a_class_is_instantiated() -> None:
    class Upper(Serializer):
        def serialize(self, x: str) -> bytes:
            return x.upper().encode()

        def deserialize(self, x: bytes) -> str:
            return x.decode()

    instance = Upper()
    assert resolve_serializer(instance) is instance
    assert isinstance(resolve_serializer(Upper), Upper)


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown serializer 'yaml'; registered: json, numpy, pickle, raw, zstd"
    ):
        resolve_serializer("yaml")


def test_something_that_is_not_a_serializer_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="serialization must be"):
        resolve_serializer(42)  # type: ignore[arg-type]


def test_the_base_class_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError):
        Serializer().serialize(1)
