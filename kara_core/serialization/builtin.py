"""The built-in serializers, registered through the same hook as any plugin (``trylast``)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import orjson

from ..hookspecs import hookimpl
from .base import Serializer


class JSONSerializer(Serializer):
    """JSON via orjson: compact UTF-8, the same bytes kara-storage 2.x writes."""

    name = "json"

    def serialize(self, x: Any) -> bytes:
        return orjson.dumps(x)

    def deserialize(self, x: bytes) -> Any:
        return orjson.loads(x)


class PickleSerializer(Serializer):
    """Any picklable Python object (only read data you trust)."""

    name = "pickle"

    def __init__(self, protocol: int | None = None) -> None:
        self.protocol = protocol

    def serialize(self, x: Any) -> bytes:
        return pickle.dumps(x, protocol=self.protocol)

    def deserialize(self, x: bytes) -> Any:
        return pickle.loads(x)


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


@hookimpl(trylast=True)
def kara_register_serializers(register: Callable[[str, type[Serializer]], None]) -> None:
    register("json", JSONSerializer)
    register("pickle", PickleSerializer)
    register("raw", NoSerializer)
