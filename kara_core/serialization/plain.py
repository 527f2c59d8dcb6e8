"""The plain serializers: JSON, pickle and raw bytes (kara-storage 2.x's three)."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from .base import Serializer

__all__ = ["JSONSerializer", "NoSerializer", "PickleSerializer"]


class JSONSerializer(Serializer):
    """JSON via orjson: compact UTF-8, the same bytes kara-storage 2.x writes."""

    name = "json"

    def serialize(self, x: Any) -> bytes:
        return orjson.dumps(x)

    def deserialize(self, x: bytes) -> Any:
        return orjson.loads(x)

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        if type(self).deserialize is not JSONSerializer.deserialize:
            return list(map(self.deserialize, xs))  # a subclass's own decoding
        return list(map(orjson.loads, xs))


class PickleSerializer(Serializer):
    """Any picklable Python object (only read data you trust)."""

    name = "pickle"

    def __init__(self, protocol: int | None = None) -> None:
        self.protocol = protocol

    def serialize(self, x: Any) -> bytes:
        return pickle.dumps(x, protocol=self.protocol)

    def deserialize(self, x: bytes) -> Any:
        return pickle.loads(x)

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        if type(self).deserialize is not PickleSerializer.deserialize:
            return list(map(self.deserialize, xs))
        return list(map(pickle.loads, xs))


class NoSerializer(Serializer):
    """Raw bytes, stored as they are."""

    name = "raw"

    def serialize(self, x: bytes) -> bytes:
        if not isinstance(x, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"NoSerializer stores bytes only, got {type(x).__name__}; "
                "use serialization='json' or 'pickle' (or your own Serializer) for objects"
            )
        return bytes(x)

    def deserialize(self, x: bytes) -> bytes:
        return bytes(x)

    def deserialize_many(self, xs: list[bytes]) -> list[bytes]:
        if type(self).deserialize is not NoSerializer.deserialize:
            return list(map(self.deserialize, xs))
        return list(map(bytes, xs))
