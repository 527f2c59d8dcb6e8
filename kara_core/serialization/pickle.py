"""``kara_storage.serialization.pickle``, the 2.x module name of :class:`PickleSerializer`."""

from __future__ import annotations

from .plain import PickleSerializer

__all__ = ["PickleSerializer"]
