"""A version's kara-only sidecar: which serializer wrote its records.

``row/<namespace>/<key>/<version>/.kara/version.json`` (2.x opens only ``meta.json``,
``index/`` and ``data/``, never ``.kara/``)::

    {"format": 1, "serializer": "json+zstd", "options": {"level": 3, "dictionary": "..."}}

The writer creates it when it first opens a version (atomically, with ``put_if_absent``);
a reader without ``serialization=`` uses the serializer it names, and an explicit one that
differs is refused. A version without sidecar (written by 2.x) reads as JSON, as in 2.x.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from ..backend import Backend
from ..errors import ConfigurationError, CorruptDatasetError, SerializerMismatchError
from ..serialization import Serializer, resolve_serializer, serializer_label
from ..serialization.base import configured, recorded_options
from .layout import plain_json, plain_str, plain_value, version_prefix

if TYPE_CHECKING:
    from pydantic import BaseModel

    class VersionSidecar(BaseModel):  # what _version_sidecar() builds, for type checkers
        format: int
        serializer: str
        options: dict[str, Any]


__all__ = [
    "SIDECAR_FORMAT",
    "VersionSidecar",
    "decode_sidecar",
    "encode_sidecar",
    "open_serializer",
    "plain_sidecar",
    "plain_sidecar_bytes",
    "read_sidecar",
    "sidecar_path",
]

SIDECAR_FORMAT = 1


@cache
def _version_sidecar() -> type[VersionSidecar]:
    # The model, and pydantic under it, load when a sidecar is written or is not plain
    # (plain_sidecar reads the others): a fresh reader never pays pydantic's import.
    from pydantic import BaseModel, ConfigDict

    class VersionSidecar(BaseModel):
        """The content of ``.kara/version.json``; unknown fields are kept for later formats."""

        __qualname__ = "VersionSidecar"
        model_config = ConfigDict(extra="allow", strict=True)

        format: int = SIDECAR_FORMAT
        serializer: str
        options: dict[str, Any] = {}

    return VersionSidecar


def __getattr__(name: str) -> Any:
    if name == "VersionSidecar":
        return _version_sidecar()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SIDECAR_KEYS = frozenset(("format", "serializer", "options"))


def plain_sidecar(raw: Any) -> tuple[str, dict[str, Any]] | None:
    """``(serializer, options)`` of a plain sidecar, as :func:`decode_sidecar` gives them, without pydantic.

    Plain: a JSON object with no other keys than ``format`` (an int this kara reads),
    ``serializer`` (a non-empty string) and ``options`` (an object of plain JSON values,
    :func:`~kara_core.row.layout.plain_value`). Anything else returns None, and the
    caller asks :func:`decode_sidecar` (which keeps unknown keys, or raises).
    """
    doc = plain_json(raw)
    if type(doc) is not dict or "serializer" not in doc or not doc.keys() <= _SIDECAR_KEYS:
        return None
    form, serializer, options = doc.get("format", SIDECAR_FORMAT), doc["serializer"], doc.get("options", {})
    if type(form) is not int or not -(2**63) <= form <= SIDECAR_FORMAT or not serializer or not plain_str(serializer):
        return None
    if type(options) is not dict or not plain_value(options):
        return None
    return serializer, options


def plain_sidecar_bytes(serializer: Any, options: Any) -> bytes | None:
    """:func:`encode_sidecar` of a new sidecar, without pydantic, when its content is plain.

    Plain: ``serializer`` a UTF-8 string and ``options`` a str-keyed dict of plain JSON
    values (:func:`~kara_core.row.layout.plain_value`); the bytes are then those pydantic
    writes (compact, UTF-8, not ASCII-escaped). Anything else returns None.
    """
    if not plain_str(serializer) or type(options) is not dict or not plain_value(options):
        return None
    doc = {"format": SIDECAR_FORMAT, "serializer": serializer, "options": options}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sidecar_path(namespace: str, key: str, version: str) -> str:
    """Path of a version's sidecar (a folder 2.x never opens)."""
    return version_prefix(namespace, key, version) + ".kara/version.json"


def encode_sidecar(sidecar: VersionSidecar) -> bytes:
    """The stored bytes of ``sidecar``."""
    return sidecar.model_dump_json().encode("utf-8")


def decode_sidecar(raw: bytes, where: str) -> VersionSidecar:
    """Parse stored sidecar bytes; CorruptDatasetError (naming ``where``) when they are not one."""
    from pydantic import ValidationError

    try:
        sidecar = _version_sidecar().model_validate_json(raw)
    except ValidationError as exc:
        raise CorruptDatasetError(where, None, f"not a valid version sidecar ({exc.errors()[0]['msg']})") from None
    if sidecar.format > SIDECAR_FORMAT:
        raise CorruptDatasetError(
            where, None, f"sidecar format {sidecar.format} is newer than this kara reads ({SIDECAR_FORMAT}): upgrade"
        )
    if not sidecar.serializer:
        raise CorruptDatasetError(where, None, "the sidecar names no serializer")
    return sidecar


def read_sidecar(backend: Backend, namespace: str, key: str, version: str) -> VersionSidecar | None:
    """The version's sidecar, or None when it has none (a version 2.x wrote)."""
    path = sidecar_path(namespace, key, version)
    raw = backend.read_if_exists(path)
    return None if raw is None else decode_sidecar(raw, f"{backend.url}/{path}")


def open_serializer(
    backend: Backend,
    namespace: str,
    key: str,
    version: str,
    given: Serializer | type[Serializer] | str | None,
    record: bool = False,
) -> Serializer:
    """The serializer to open a version with: ``given``, checked against the recorded one.

    ``given=None`` takes the recorded serializer (JSON when none is recorded). With
    ``record`` (a writer holding the version's lock) a version without sidecar gets one.
    """
    path = sidecar_path(namespace, key, version)
    raw = backend.read_if_exists(path)
    what = f"dataset {namespace}/{key} version {version!r}"
    if raw is None:
        serializer = resolve_serializer(given)
        if record:
            label, options = serializer_label(serializer), recorded_options(serializer)
            raw = plain_sidecar_bytes(label, options)
            if raw is None:
                raw = encode_sidecar(_version_sidecar()(serializer=label, options=options))
            backend.put_if_absent(path, raw)
            # Configured as readers will be, from the options just recorded (a zstd
            # serializer then groups records, see ZstdSerializer).
            return configured(serializer, options)
        return serializer
    plain = plain_sidecar(raw)
    if plain is None:
        sidecar = decode_sidecar(raw, f"{backend.url}/{path}")
        plain = sidecar.serializer, sidecar.options
    recorded_name, options = plain
    if given is None:
        if recorded_name.startswith("custom:"):
            raise ConfigurationError(
                f"{what} was written with the unregistered serializer {recorded_name[7:]}; "
                "pass serialization=<an instance of it> to open it"
            )
        serializer = resolve_serializer(recorded_name)
    else:
        serializer = resolve_serializer(given)
        label = serializer_label(serializer)
        if label != recorded_name:
            raise SerializerMismatchError(what, label, recorded_name)
    return configured(serializer, options)
