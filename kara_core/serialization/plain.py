"""The plain serializers: JSON, pickle and raw bytes (kara-storage 2.x's three)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import orjson

from .base import Serializer

__all__ = ["JSONSerializer", "NoSerializer", "PickleSerializer", "native_decoder"]


class JSONSerializer(Serializer):
    """JSON via orjson: compact UTF-8, the same bytes kara-storage 2.x writes."""

    name = "json"

    def serialize(self, x: Any) -> bytes:
        return orjson.dumps(x)

    def deserialize(self, x: bytes) -> Any:
        return orjson.loads(x)

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        return list(map(native_decoder(self) or self.deserialize, xs))


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
        return list(map(native_decoder(self) or self.deserialize, xs))


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
        return list(map(native_decoder(self) or self.deserialize, xs))


#: The C function each built-in ``deserialize`` only forwards to.
_NATIVE_DECODERS: dict[Any, Callable[[bytes], Any]] = {
    JSONSerializer.deserialize: orjson.loads,
    PickleSerializer.deserialize: pickle.loads,
    NoSerializer.deserialize: bytes,
}


def native_decoder(serializer: Any) -> Callable[[bytes], Any] | None:
    """The C function that ``serializer.deserialize`` only forwards to (``orjson.loads``,
    ``pickle.loads``, ``bytes``): for the built-in serializers and subclasses that keep
    their ``deserialize``; else None. Calling it directly saves a Python call per record,
    and ``map`` over it runs no Python code per record at all."""
    return _NATIVE_DECODERS.get(getattr(type(serializer), "deserialize", None))
