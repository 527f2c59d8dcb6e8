"""``kara_storage.serialization.json``, the 2.x module name of :class:`JSONSerializer`."""

from __future__ import annotations

from .plain import JSONSerializer

__all__ = ["JSONSerializer"]
