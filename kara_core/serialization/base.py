"""The Serializer base class and the lookup of serializers by name."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ..plugins import get_serializer_class, serializer_names


class Serializer:
    """Turns one record into bytes (``serialize``) and back (``deserialize``).

    Subclass it to store any kind of record; the subclass must round-trip:
    ``deserialize(serialize(x)) == x``.
    """

    #: The name this serializer is registered under, if any (shown by ``kara info``).
    name: str = ""

    def serialize(self, x: Any) -> bytes:
        """Return the bytes stored for record ``x``."""
        raise NotImplementedError

    def deserialize(self, x: bytes) -> Any:
        """Return the record stored as ``x``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_serializer(spec: Serializer | type[Serializer] | str | None) -> Serializer:
    """Return a serializer instance for ``spec``.

    ``None`` is the default (JSON); a string is a registered name (``"json"``,
    ``"pickle"``, ``"raw"`` or a plugin's); a class is instantiated; an instance is used
    as it is.
    """
    if spec is None:
        spec = "json"
    if isinstance(spec, str):
        try:
            cls = get_serializer_class(spec)
        except KeyError:
            raise ConfigurationError(
                f"unknown serializer {spec!r}; registered: {', '.join(serializer_names())}"
            ) from None
        return cls()
    if isinstance(spec, type) and issubclass(spec, Serializer):
        return spec()
    if hasattr(spec, "serialize") and hasattr(spec, "deserialize"):
        return spec
    raise ConfigurationError(
        f"serialization must be a Serializer, a Serializer class or a registered name, got {spec!r}"
    )
