"""Serializers turn records into bytes and back.

The module and class names are those of kara-storage 2.x
(``kara_storage.serialization.JSONSerializer`` ...), so existing code keeps working.
"""

from __future__ import annotations

from . import json, pickle, raw  # the 2.x module names (kara_storage.serialization.json ...)
from .array import NumpySerializer
from .base import Serializer, WrappingSerializer, batch_deserializer, innermost, resolve_serializer, serializer_label
from .compressed import ZstdSerializer
from .plain import JSONSerializer, NoSerializer, PickleSerializer

__all__ = [
    "JSONSerializer",
    "NoSerializer",
    "NumpySerializer",
    "PickleSerializer",
    "Serializer",
    "WrappingSerializer",
    "ZstdSerializer",
    "batch_deserializer",
    "innermost",
    "json",
    "pickle",
    "raw",
    "resolve_serializer",
    "serializer_label",
]
