"""A version's kara-only sidecar: which serializer wrote its records.

``row/<namespace>/<key>/<version>/.kara/version.json`` (2.x opens only ``meta.json``,
``index/`` and ``data/``, never ``.kara/``)::

    {"format": 1, "serializer": "json+zstd", "options": {"level": 3, "dictionary": "..."}}

The writer creates it when it first opens a version (atomically, with ``put_if_absent``);
a reader without ``serialization=`` uses the serializer it names, and an explicit one that
differs is refused. A version without sidecar (written by 2.x) reads as JSON, as in 2.x.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..backend import Backend
from ..errors import ConfigurationError, CorruptDatasetError, SerializerMismatchError
from ..serialization import Serializer, resolve_serializer, serializer_label
from .layout import version_prefix

__all__ = [
    "SIDECAR_FORMAT",
    "VersionSidecar",
    "decode_sidecar",
    "encode_sidecar",
    "open_serializer",
    "read_sidecar",
    "sidecar_path",
]

SIDECAR_FORMAT = 1


class VersionSidecar(BaseModel):
    """The content of ``.kara/version.json``; unknown fields are kept for later formats."""

    # Built at first use (see RowMeta): reading a version 2.x wrote never needs it.
    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    format: int = SIDECAR_FORMAT
    serializer: str
    options: dict[str, Any] = {}


def sidecar_path(namespace: str, key: str, version: str) -> str:
    """Path of a version's sidecar (a folder 2.x never opens)."""
    return version_prefix(namespace, key, version) + ".kara/version.json"


def encode_sidecar(sidecar: VersionSidecar) -> bytes:
    """The stored bytes of ``sidecar``."""
    return sidecar.model_dump_json().encode("utf-8")


def decode_sidecar(raw: bytes, where: str) -> VersionSidecar:
    """Parse stored sidecar bytes; CorruptDatasetError (naming ``where``) when they are not one."""
    try:
        sidecar = VersionSidecar.model_validate_json(raw)
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
    sidecar = read_sidecar(backend, namespace, key, version)
    what = f"dataset {namespace}/{key} version {version!r}"
    if sidecar is None:
        serializer = resolve_serializer(given)
        if record:
            recorded = VersionSidecar(serializer=serializer_label(serializer), options=serializer.sidecar_options())
            backend.put_if_absent(sidecar_path(namespace, key, version), encode_sidecar(recorded))
        return serializer
    if given is None:
        if sidecar.serializer.startswith("custom:"):
            raise ConfigurationError(
                f"{what} was written with the unregistered serializer {sidecar.serializer[7:]}; "
                "pass serialization=<an instance of it> to open it"
            )
        serializer = resolve_serializer(sidecar.serializer)
    else:
        serializer = resolve_serializer(given)
        label = serializer_label(serializer)
        if label != sidecar.serializer:
            raise SerializerMismatchError(what, label, sidecar.serializer)
    return serializer.with_sidecar_options(sidecar.options)
