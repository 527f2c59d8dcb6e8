"""The Serializer base classes (plain and wrapping) and the lookup of serializers by name."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

# The serializer table lives in kara_core.plugins (pluggy, entry points): imported where a
# name is looked up, so ``import kara_core`` loads no plugin machinery.


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

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        """Return the records stored as ``xs``, in order: ``[deserialize(x) for x in xs]``.

        Readers that hold several records' bytes at once (batched and sequential reads,
        mixtures, packed views, kara-torch) call this instead of :meth:`deserialize`. The
        default loops; override it when a batch can be decoded with less work per record,
        and return exactly what :meth:`deserialize` returns for each.
        """
        return list(map(self.deserialize, xs))

    def deserialize_joined(self, data: memoryview, bounds: Any) -> list[Any]:
        """Return the records stored back to back in ``data``: record ``k`` is
        ``data[bounds[k]:bounds[k + 1]]`` (``bounds``: ``n + 1`` ascending int64 offsets, a
        numpy array).

        Sequential reads of a ``zero_copy`` serializer's records on local stores hand over
        a run of records this way (``data`` is a read-only view of mapped memory), so a
        serializer can decode the run with vector operations instead of one step per
        record. The default slices the records and calls :meth:`deserialize_many`; an
        override must return exactly that.
        """
        cuts = bounds.tolist()
        return self.deserialize_many([data[a:b] for a, b in itertools.pairwise(cuts)])

    def stream_decoder(self) -> Callable[[Iterator[bytes]], Iterator[Any]] | None:
        """A decoder of record streams for sequential reads, or None (the default).

        When not None, ``decoder(records)`` must return an iterator that decodes each of
        ``records`` (an iterator of stored records) lazily, in order, to exactly what
        :meth:`deserialize` returns for it, taking the next stored record only when asked
        for the next decoded one (so the reader knows which record an error came from).
        It may raise any error on a damaged record: the reader then decodes that record
        with :meth:`deserialize`, whose error is the one raised. Sequential reads ask for
        one decoder per iteration and use it from one thread at a time, so it may keep
        state that is not thread safe (a decompression context). Worth it only when the
        whole chain runs in C (``map`` over C functions): else :meth:`deserialize_many`
        decodes a few records at a time with less work per record.
        """
        return None

    def record_groups(self) -> GroupCodec | None:
        """How this serializer stores records in groups, or None (the default): one record each.

        A serializer that returns a :class:`GroupCodec` has the row writer join
        consecutive records (the bytes of its ``serialize``) into groups and store each
        group as one record holding ``codec.encode(group)`` followed by empty records;
        readers give its ``deserialize`` each record's bytes back from the group.
        """
        return None

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


@dataclass(frozen=True)
class GroupCodec:
    """What the row layer needs to store records in groups (see :meth:`Serializer.record_groups`).

    A group closes when it holds ``records`` records, when they hold ``nbytes`` bytes or
    more, and at every flush. ``encode`` turns a plain group
    (:func:`~kara_core.serialization.groups.join_group`) into the stored bytes,
    ``decode`` back (raising :class:`~kara_core.errors.SerializationError` on damage).
    """

    records: int
    nbytes: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]
    #: The records are not expected to hold newlines (JSON): groups try the newline form.
    lines: bool = False
    #: ``decode_values(plain, count)``: the ``count`` records of a plain group in the
    #: newline form, decoded at once, or None when this group cannot be decoded that way
    #: (then each record is decoded alone): must give exactly what ``deserialize`` gives
    #: record by record. JSON's is :func:`~kara_core.serialization.groups.decode_json_group`.
    decode_values: Callable[[bytes, int], list[Any] | None] | None = None


class WrappingSerializer(Serializer):
    """Applies ``encode`` to the bytes of an inner serializer (``decode`` on the way back).

    Subclass it, implement :meth:`encode` and :meth:`decode`, give the class a ``suffix``
    and register it under that name with ``kara_register_serializers``: then
    ``serialization="<any registered name>+<suffix>"`` works.
    """

    #: The name the class is registered under (the part after ``+``).
    suffix: str = ""

    def __init__(self, inner: Serializer | str | None = None) -> None:
        inner = resolve_serializer(inner)
        ungrouped = getattr(inner, "ungrouped", None)
        if ungrouped is not None:
            # Only the outermost serializer of a version may group records: wrapped,
            # a grouping one (zstd) stores each record alone.
            inner = ungrouped()
        self.inner = inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}+{self.suffix}"

    def encode(self, data: bytes) -> bytes:
        """Return the stored form of the inner serializer's ``data``."""
        raise NotImplementedError

    def decode(self, data: bytes) -> bytes:
        """Return the inner serializer's bytes from their stored form."""
        raise NotImplementedError

    def serialize(self, x: Any) -> bytes:
        return self.encode(self.inner.serialize(x))

    def deserialize(self, x: bytes) -> Any:
        return self.inner.deserialize(self.decode(x))

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        return batch_deserializer(self.inner)(list(map(self.decode, xs)))

    def sidecar_options(self) -> dict[str, Any]:
        inner = self.inner.sidecar_options()
        return {"inner": inner} if inner else {}

    def with_sidecar_options(self, options: dict[str, Any]) -> Serializer:
        inner = options.get("inner")
        if not inner:
            return self
        configured = copy.copy(self)
        configured.inner = self.inner.with_sidecar_options(inner)
        configured.reconfigured()
        return configured

    def reconfigured(self) -> None:
        """Called after the inner serializer or options of a copy changed (refresh caches)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def batch_deserializer(serializer: Any) -> Callable[[list[bytes]], list[Any]]:
    """``serializer.deserialize_many``, or a loop over ``deserialize`` for serializers that
    only have that (objects with ``serialize``/``deserialize`` are accepted as serializers)."""
    many = getattr(serializer, "deserialize_many", None)
    if many is not None:
        return many
    deserialize = serializer.deserialize
    return lambda xs: list(map(deserialize, xs))


def innermost(serializer: Any) -> Any:
    """The serializer a chain of wrappers ends in: what a record is to its user
    (``raw+zstd`` records are bytes, ``json+zstd`` records JSON values)."""
    while isinstance(serializer, WrappingSerializer):
        serializer = serializer.inner
    return serializer


def recorded_options(serializer: Any) -> dict[str, Any]:
    """``serializer.sidecar_options()``; ``{}`` for an object that only has
    ``serialize``/``deserialize`` (accepted as a serializer, see resolve_serializer)."""
    options = getattr(serializer, "sidecar_options", None)
    return options() if options is not None else {}


def configured(serializer: Any, options: dict[str, Any]) -> Any:
    """``serializer.with_sidecar_options(options)``, or ``serializer`` itself for an object
    that only has ``serialize``/``deserialize``."""
    configure = getattr(serializer, "with_sidecar_options", None)
    return configure(options) if configure is not None else serializer


def serializer_label(serializer: Serializer) -> str:
    """The name a version records for ``serializer``.

    A registered name when ``serializer`` is exactly what that name resolves to
    (``"json"``, ``"pickle+zstd"``), else ``"custom:<module>.<class>"``, which readers
    cannot resolve by themselves and must pass explicitly.
    """
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
