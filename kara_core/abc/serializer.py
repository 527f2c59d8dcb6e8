"""``kara_storage.abc.serializer.Serializer`` of 2.x: the kara Serializer itself."""

from __future__ import annotations

from ..serialization import Serializer

__all__ = ["Serializer"]
