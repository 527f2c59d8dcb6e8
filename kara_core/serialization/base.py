"""The Serializer base class and the lookup of serializers by name."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError


class Serializer:
    """Turns one record into bytes (``serialize``) and back (``deserialize``).

    Subclass it to store any kind of record; the subclass must round-trip:
    ``deserialize(serialize(x)) == x``.
    """

    #: The name this serializer is registered under, if any (shown by ``kara info``).
    name: str = ""
    #: True: ``deserialize`` may receive a read-only memoryview of mapped storage (it must
    #: then not keep a reference it expects to stay valid after the dataset is closed).
    zero_copy: bool = False

    def serialize(self, x: Any) -> bytes:
        """Return the bytes stored for record ``x``."""
        raise NotImplementedError

    def deserialize(self, x: bytes) -> Any:
        """Return the record stored as ``x``."""
        raise NotImplementedError

    def sidecar_options(self) -> dict[str, Any]:
        """What readers of the version need besides the name (kept in the version's sidecar).

        JSON-compatible values only; the default is nothing.
        """
        return {}

    def with_sidecar_options(self, options: dict[str, Any]) -> Serializer:
        """This serializer configured with ``options`` recorded by :meth:`sidecar_options`."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def serializer_label(serializer: Serializer) -> str:
    """The name a version records for ``serializer``.

    A registered name when ``serializer`` is exactly what that name resolves to
    (``"json"``, ``"pickle+zstd"``), else ``"custom:<module>.<class>"``, which readers
    cannot resolve by themselves and must pass explicitly.
    """
    from .compressed import WrappingSerializer

    if isinstance(serializer, WrappingSerializer):
        return f"{serializer_label(serializer.inner)}+{serializer.suffix}"
    name = getattr(serializer, "name", "")
    if name:
        from ..plugins import get_serializer_class

        try:
            if get_serializer_class(name) is type(serializer):
                return name
        except KeyError:
            pass
    kind = type(serializer)
    return f"custom:{kind.__module__}.{kind.__qualname__}"


def resolve_serializer(spec: Serializer | type[Serializer] | str | None) -> Serializer:
    """Return a serializer instance for ``spec``.

    ``None`` is the default (JSON); a string is a registered name (``"json"``,
    ``"pickle"``, ``"raw"``, ``"numpy"`` or a plugin's), optionally followed by wrappers
    (``"json+zstd"``: see :class:`~kara_core.serialization.WrappingSerializer`); a class
    is instantiated; an instance is used as it is.
    """
    if spec is None:
        spec = "json"
    if isinstance(spec, str):
        from .compressed import WrappingSerializer

        base, *wrappers = spec.split("+")
        serializer = _registered(base, spec)()
        for suffix in wrappers:
            wrapper = _registered(suffix, spec)
            if not issubclass(wrapper, WrappingSerializer):
                raise ConfigurationError(
                    f"serializer {spec!r}: {suffix!r} is not a wrapping serializer (like 'zstd'), "
                    "so it cannot follow '+'"
                )
            serializer = wrapper(serializer)
        return serializer
    if isinstance(spec, type) and issubclass(spec, Serializer):
        return spec()
    if hasattr(spec, "serialize") and hasattr(spec, "deserialize"):
        return spec
    raise ConfigurationError(
        f"serialization must be a Serializer, a Serializer class or a registered name, got {spec!r}"
    )


def _registered(name: str, spec: str) -> type[Serializer]:
    from ..plugins import get_serializer_class, serializer_names

    try:
        return get_serializer_class(name)
    except KeyError:
        known = ", ".join(serializer_names())
        within = f" in {spec!r}" if spec != name else ""
        raise ConfigurationError(f"unknown serializer {name!r}{within}; registered: {known}") from None
