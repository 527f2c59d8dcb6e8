"""The built-in serializers, registered through the same hook as any plugin (``trylast``).

The classes live in :mod:`.plain`, :mod:`.array` and :mod:`.compressed`; this module only
registers them, so the plugin manager loads it by name like an entry point.
"""

from __future__ import annotations

from collections.abc import Callable

from ..hookspecs import hookimpl
from .array import NumpySerializer
from .base import Serializer
from .compressed import ZstdSerializer
from .plain import JSONSerializer, NoSerializer, PickleSerializer


@hookimpl(trylast=True)
def kara_register_serializers(register: Callable[[str, type[Serializer]], None]) -> None:
    register("json", JSONSerializer)
    register("pickle", PickleSerializer)
    register("raw", NoSerializer)
    register("numpy", NumpySerializer)
    register("zstd", ZstdSerializer)
