"""Serializers turn records into bytes and back.

The module and class names are those of kara-storage 2.x
(``kara_storage.serialization.JSONSerializer`` ...), so existing code keeps working.
"""

from __future__ import annotations

from .array import NumpySerializer
from .base import Serializer, resolve_serializer, serializer_label
from .builtin import JSONSerializer, NoSerializer, PickleSerializer
from .compressed import WrappingSerializer, ZstdSerializer

__all__ = [
    "JSONSerializer",
    "NoSerializer",
    "NumpySerializer",
    "PickleSerializer",
    "Serializer",
    "WrappingSerializer",
    "ZstdSerializer",
    "resolve_serializer",
    "serializer_label",
]
