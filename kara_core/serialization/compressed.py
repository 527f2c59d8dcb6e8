"""The zstd wrapping serializer: ``"json+zstd"`` is JSON, then zstd.

A :class:`~kara_core.serialization.base.WrappingSerializer` turns the bytes of an inner serializer into other bytes
(compression, encryption, checksums). Registered under a suffix name, it composes with
every registered serializer by name: ``"<inner>+<suffix>"`` (``"pickle+zstd"``,
``"myformat+zstd"``). kara's own :class:`ZstdSerializer` is registered as ``"zstd"``.
"""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..errors import ConfigurationError, SerializationError
from .base import GroupCodec, Serializer, WrappingSerializer, batch_deserializer
from .groups import MAX_GROUP_RECORDS, decode_json_group
from .plain import native_decoder

__all__ = ["DEFAULT_ZSTD_GROUP", "DEFAULT_ZSTD_LEVEL", "GROUP_BYTES", "ZstdSerializer"]

#: zstd's own default: fast, and most of the ratio of higher levels on small records.
DEFAULT_ZSTD_LEVEL = 3
#: Records compressed together in one frame by default (see ZstdSerializer's ``group``).
DEFAULT_ZSTD_GROUP = 16
#: A group is closed once its records hold this many bytes: a record read alone
#: (``ds[i]``) never decompresses much more than itself and this.
GROUP_BYTES = 8 * 1024


class ZstdSerializer(WrappingSerializer):
    """Records compressed with zstd (python-zstandard), a few consecutive ones per frame.

    ``level`` is zstd's compression level (1-22, negative for faster); ``dictionary`` is
    a zstd dictionary (bytes, see :meth:`train`), which makes small records compress
    several times better. Frames are magicless zstd frames without dictionary id (the
    version's sidecar names the dictionary); a record's own frame has no checksum either
    (8 bytes less per frame), a group's frame has zstd's content checksum (4 bytes per
    group), which decoding checks.

    ``group``: the most records stored in one frame (default 16; a group also closes
    once its records hold :data:`GROUP_BYTES`, and at every ``flush``). Compressing
    neighbours together costs one decompression per group instead of one per record and
    compresses better; ``ds[i]`` decompresses the record's group. ``group=1`` stores each
    record as its own frame (versions written before groups existed are read that way).
    The group size and the dictionary are kept in the version's sidecar, so readers need
    not pass them. An inner serializer (the ``zstd`` of ``"json+zstd+other"``) stores
    each record as its own frame.

    On its own, the serializer's ``serialize``/``deserialize`` make and read one frame per
    record. The copy a dataset of a grouped version holds (``ds.serializer``, configured
    from the sidecar: :attr:`grouped`) works on the records' plain bytes instead, which
    is what ``read_raw_range`` returns there: the row layer compresses the groups (see
    docs/pipeline.md).
    """

    suffix = "zstd"

    def __init__(
        self,
        inner: Serializer | str | None = None,
        level: int = DEFAULT_ZSTD_LEVEL,
        dictionary: bytes | None = None,
        group: int = DEFAULT_ZSTD_GROUP,
    ) -> None:
        super().__init__(inner)
        if isinstance(level, bool) or not isinstance(level, int) or not -(1 << 17) <= level <= 22:
            raise ConfigurationError(f"zstd level must be an integer up to 22, got {level!r}")
        self.level = level
        self.dictionary = bytes(dictionary) if dictionary else None
        self.group = _group(group)
        #: True on the copy configured for a version whose records are grouped (see
        #: with_sidecar_options): the record methods then work on plain records.
        self.grouped = False
        self.reconfigured()

    @classmethod
    def train(
        cls,
        samples: list[Any],
        inner: Serializer | str | None = None,
        level: int = DEFAULT_ZSTD_LEVEL,
        dict_size: int = 16 * 1024,
        group: int = DEFAULT_ZSTD_GROUP,
    ) -> ZstdSerializer:
        """A serializer with a dictionary trained on ``samples`` (records, a few thousand).

        Write the version with it: the dictionary is stored in the version's sidecar and
        every later reader and appender uses it. ``group``: records per frame, as for the
        constructor (the dictionary is trained on single records either way).
        """
        import zstandard

        plain = cls(inner, level)
        raws = [plain.inner.serialize(sample) for sample in samples]
        try:
            trained = zstandard.train_dictionary(dict_size, raws, level=level)
        except zstandard.ZstdError as exc:
            raise ConfigurationError(
                f"cannot train a zstd dictionary on {len(raws)} samples ({exc}); give more samples "
                "(a few thousand records) or a smaller dict_size"
            ) from None
        return cls(plain.inner, level, trained.as_bytes(), group)

    def _codecs(self) -> tuple[Any, Any]:
        local = self._local
        codecs = getattr(local, "codecs", None)
        if codecs is None:
            # zstd contexts are not thread safe: one pair per thread.
            import zstandard

            data = local.dict_data = zstandard.ZstdCompressionDict(self.dictionary) if self.dictionary else None
            compress = [
                zstandard.ZstdCompressor(
                    dict_data=data,
                    compression_params=zstandard.ZstdCompressionParameters.from_level(
                        self.level, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=checksum, write_dict_id=0
                    ),
                ).compress
                for checksum in (0, 1)
            ]
            decompressor = zstandard.ZstdDecompressor(dict_data=data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
            codecs = local.codecs = (compress[0], decompressor.decompress, compress[1])
            local.decompress = decompressor.decompress
        return codecs

    def encode(self, data: bytes) -> bytes:
        return self._codecs()[0](data)

    def encode_group(self, data: bytes) -> bytes:
        """The frame of a plain record group: as :meth:`encode`, with zstd's checksum of
        the content (4 bytes a group), which :meth:`decode` checks: a damaged group is
        refused instead of decoding into other records."""
        return self._codecs()[2](data)

    def decode(self, data: bytes) -> bytes:
        import zstandard

        try:
            return self._codecs()[1](data)
        except (zstandard.ZstdError, MemoryError):
            return self._decode_afresh(data)

    def _decode_afresh(self, data: bytes) -> bytes:
        # A frame the thread's context refused, decoded on a new context: zstd's reason
        # for a damaged frame depends on what the context decoded before (with a
        # dictionary, "Data corruption detected" on a new context, "Destination buffer is
        # too small" after a failure), and the error must not depend on the read order.
        import zstandard

        context = zstandard.ZstdDecompressor(dict_data=self._local.dict_data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        try:
            return context.decompress(data)
        except zstandard.ZstdError as exc:
            raise SerializationError(f"record is not a zstd frame of this version ({exc})") from None
        except MemoryError:
            # python-zstandard allocates the size a frame's header declares: a damaged
            # header can declare more than any record (or than this process can hold).
            raise SerializationError(
                "record is not a zstd frame of this version (it declares more bytes than this process can "
                "allocate: a damaged frame, or too little memory)"
            ) from None

    def _fast_deserialize(self) -> Callable[[bytes], Any]:
        # Reading is per record, so the layers cost more than zstd itself on small records:
        # one function with the thread's decompressor at hand (and orjson called directly
        # for plain JSON) replaces deserialize -> decode -> _codecs -> inner.deserialize.
        inner = native_decoder(self.inner) or self.inner.deserialize
        import zstandard

        local, decode, damaged = self._local, self.decode, (zstandard.ZstdError, MemoryError)

        def deserialize(x: bytes) -> Any:
            try:
                return inner(local.decompress(x))
            except AttributeError:
                return inner(decode(x))  # this thread's first record: decode makes its codecs
            except damaged:
                return inner(self._decode_afresh(x))  # raises the SerializationError that says why

        return deserialize

    def deserialize_many(self, xs: list[bytes]) -> list[Any]:
        # The thread's decompressor over the whole batch (no Python step per record), then
        # the inner serializer's own batch decoding.
        import zstandard

        try:
            decompress = self._local.decompress
        except AttributeError:
            self._codecs()
            decompress = self._local.decompress
        try:
            plain = list(map(decompress, xs))
        except (zstandard.ZstdError, MemoryError):
            return list(map(self.deserialize, xs))  # raises the SerializationError that says why
        return batch_deserializer(self.inner)(plain)

    def stream_decoder(self) -> Callable[[Iterator[bytes]], Iterator[Any]] | None:
        if self.grouped:
            plain = native_decoder(self.inner)
            return None if plain is None else lambda records: map(plain, records)
        return self._frame_stream_decoder()

    def _frame_stream_decoder(self) -> Callable[[Iterator[bytes]], Iterator[Any]] | None:
        # Sequential reads of JSON, pickle and raw records: zstd then the inner C decoder,
        # both mapped over the records (no Python step per record, no list per batch).
        # The decompression context is the decoder's own (the reader may resume its
        # iteration in another thread); the dictionary, digested once per thread, is
        # shared (zstd's digested dictionaries are read-only).
        inner = native_decoder(self.inner)
        if inner is None:
            return None
        import zstandard

        self._codecs()
        context = zstandard.ZstdDecompressor(dict_data=self._local.dict_data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        decompress = context.decompress

        def decoder(records: Iterator[bytes]) -> Iterator[Any]:
            return map(inner, map(decompress, records))

        return decoder

    def record_groups(self) -> GroupCodec | None:
        if not self.grouped:
            return None
        lines = native_decoder(self.inner) is orjson.loads
        values = decode_json_group if lines else None
        return GroupCodec(self.group, GROUP_BYTES, self.encode_group, self.decode, lines, values)

    def ungrouped(self) -> ZstdSerializer:
        """This serializer with ``group=1`` (each record its own frame)."""
        if self.group == 1 and not self.grouped:
            return self
        configured = copy.copy(self)
        configured.group, configured.grouped = 1, False
        configured.reconfigured()
        return configured

    def sidecar_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {**super().sidecar_options(), "level": self.level}
        if self.dictionary:
            options["dictionary"] = base64.b64encode(self.dictionary).decode("ascii")
        if self.group > 1:
            options["group"] = self.group
        return options

    def with_sidecar_options(self, options: dict[str, Any]) -> Serializer:
        configured = super().with_sidecar_options(options)
        assert isinstance(configured, ZstdSerializer)
        # The version's layout decides (versions written before groups record none).
        group = options.get("group", 1)
        if type(group) is not int or not 1 <= group <= MAX_GROUP_RECORDS:
            raise SerializationError(f"the zstd group size recorded for this version is not valid: {group!r}")
        if (configured.group, configured.grouped) != (group, group > 1):
            configured = copy.copy(configured)
            configured.group, configured.grouped = group, group > 1
            configured.reconfigured()
        recorded = options.get("dictionary")
        if not isinstance(recorded, str) or not recorded:
            return configured
        dictionary = _b64(recorded)
        if configured.dictionary == dictionary:
            return configured
        if configured.dictionary is not None:
            raise ConfigurationError(
                "this serializer's zstd dictionary differs from the one the version was written with; "
                "pass serialization='" + configured.name + "' to use the version's own"
            )
        configured = copy.copy(configured)
        configured.dictionary = dictionary
        configured.reconfigured()
        return configured

    def reconfigured(self) -> None:
        self._local = threading.local()
        for name in _RECORD_METHODS:
            self.__dict__.pop(name, None)
        if not self.grouped:
            self.deserialize = self._fast_deserialize()  # type: ignore[method-assign]
            return
        # Grouped: a record's bytes are the inner serializer's (the row layer compresses
        # the groups), so the record methods are the inner ones, C functions where they
        # only forward to one (orjson.loads is then what sequential reads map).
        inner = self.inner
        self.serialize = inner.serialize  # type: ignore[method-assign]
        self.deserialize = native_decoder(inner) or inner.deserialize  # type: ignore[method-assign]
        self.deserialize_many = batch_deserializer(inner)  # type: ignore[method-assign]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        for name in _RECORD_METHODS:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reconfigured()

    def __repr__(self) -> str:
        trained = f", dictionary=<{len(self.dictionary)} bytes>" if self.dictionary else ""
        grouped = ", grouped" if self.grouped else ""
        return f"ZstdSerializer({self.inner!r}, level={self.level}{trained}, group={self.group}{grouped})"


#: What reconfigured() sets on the instance (and pickling leaves out).
_RECORD_METHODS = ("serialize", "deserialize", "deserialize_many")


def _group(group: Any) -> int:
    if isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= MAX_GROUP_RECORDS:
        raise ConfigurationError(f"zstd group must be an integer from 1 to {MAX_GROUP_RECORDS}, got {group!r}")
    return group


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise SerializationError("the zstd dictionary recorded for this version is not valid base64") from None
