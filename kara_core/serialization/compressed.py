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

from ..errors import ConfigurationError, SerializationError
from .base import Serializer, WrappingSerializer, batch_deserializer
from .plain import native_decoder

__all__ = ["DEFAULT_ZSTD_LEVEL", "ZstdSerializer"]

#: zstd's own default: fast, and most of the ratio of higher levels on small records.
DEFAULT_ZSTD_LEVEL = 3


class ZstdSerializer(WrappingSerializer):
    """Each record compressed on its own with zstd (python-zstandard).

    ``level`` is zstd's compression level (1-22, negative for faster); ``dictionary`` is
    a zstd dictionary (bytes, see :meth:`train`), which makes small records compress
    several times better. Records are magicless zstd frames without checksum or
    dictionary id (the version's sidecar names the dictionary): 8 bytes less per record.
    The dictionary is kept in the version's sidecar, so readers need not pass it.
    """

    suffix = "zstd"

    def __init__(
        self, inner: Serializer | str | None = None, level: int = DEFAULT_ZSTD_LEVEL, dictionary: bytes | None = None
    ) -> None:
        super().__init__(inner)
        if isinstance(level, bool) or not isinstance(level, int) or not -(1 << 17) <= level <= 22:
            raise ConfigurationError(f"zstd level must be an integer up to 22, got {level!r}")
        self.level = level
        self.dictionary = bytes(dictionary) if dictionary else None
        self.reconfigured()

    @classmethod
    def train(
        cls,
        samples: list[Any],
        inner: Serializer | str | None = None,
        level: int = DEFAULT_ZSTD_LEVEL,
        dict_size: int = 16 * 1024,
    ) -> ZstdSerializer:
        """A serializer with a dictionary trained on ``samples`` (records, a few thousand).

        Write the version with it: the dictionary is stored in the version's sidecar and
        every later reader and appender uses it.
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
        return cls(plain.inner, level, trained.as_bytes())

    def _codecs(self) -> tuple[Any, Any]:
        local = self._local
        codecs = getattr(local, "codecs", None)
        if codecs is None:
            # zstd contexts are not thread safe: one pair per thread.
            import zstandard

            data = local.dict_data = zstandard.ZstdCompressionDict(self.dictionary) if self.dictionary else None
            params = zstandard.ZstdCompressionParameters.from_level(
                self.level, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=0, write_dict_id=0
            )
            compressor = zstandard.ZstdCompressor(dict_data=data, compression_params=params)
            decompressor = zstandard.ZstdDecompressor(dict_data=data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
            codecs = local.codecs = (compressor.compress, decompressor.decompress)
            local.decompress = decompressor.decompress
        return codecs

    def encode(self, data: bytes) -> bytes:
        return self._codecs()[0](data)

    def decode(self, data: bytes) -> bytes:
        import zstandard

        try:
            return self._codecs()[1](data)
        except zstandard.ZstdError:
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

    def _fast_deserialize(self) -> Callable[[bytes], Any]:
        # Reading is per record, so the layers cost more than zstd itself on small records:
        # one function with the thread's decompressor at hand (and orjson called directly
        # for plain JSON) replaces deserialize -> decode -> _codecs -> inner.deserialize.
        inner = native_decoder(self.inner) or self.inner.deserialize
        import zstandard

        local, decode, damaged = self._local, self.decode, zstandard.ZstdError

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
        except zstandard.ZstdError:
            return list(map(self.deserialize, xs))  # raises the SerializationError that says why
        return batch_deserializer(self.inner)(plain)

    def stream_decoder(self) -> Callable[[Iterator[bytes]], Iterator[Any]] | None:
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

    def sidecar_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {**super().sidecar_options(), "level": self.level}
        if self.dictionary:
            options["dictionary"] = base64.b64encode(self.dictionary).decode("ascii")
        return options

    def with_sidecar_options(self, options: dict[str, Any]) -> Serializer:
        configured = super().with_sidecar_options(options)
        recorded = options.get("dictionary")
        if not isinstance(recorded, str) or not recorded:
            return configured
        dictionary = _b64(recorded)
        assert isinstance(configured, ZstdSerializer)
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
        self.deserialize = self._fast_deserialize()  # type: ignore[method-assign]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        state.pop("deserialize", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reconfigured()

    def __repr__(self) -> str:
        trained = f", dictionary=<{len(self.dictionary)} bytes>" if self.dictionary else ""
        return f"ZstdSerializer({self.inner!r}, level={self.level}{trained})"


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise SerializationError("the zstd dictionary recorded for this version is not valid base64") from None
