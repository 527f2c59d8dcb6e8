"""``kara_storage.serialization.raw``, the 2.x module name of :class:`NoSerializer`."""

from __future__ import annotations

from .plain import NoSerializer

__all__ = ["NoSerializer"]
