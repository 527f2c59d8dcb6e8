"""Where a row dataset's objects live, and how ``meta.json`` is read and written.

The layout is kara-storage 2.x's (docs/rows.md); kara's own sidecar objects (writer
and meta locks) live under ``.kara/`` folders that a 2.x reader never opens.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..backend import Backend
from ..errors import CorruptDatasetError, DatasetNotFoundError, VersionNotFoundError
from ..names import check_name, check_nested_name

__all__ = [
    "RowMeta",
    "check_name",
    "check_nested_name",
    "data_prefix",
    "dataset_prefix",
    "encode_meta",
    "index_prefix",
    "meta_lock_path",
    "meta_path",
    "read_meta",
    "version_prefix",
    "writer_lock_path",
]

ROW_ROOT = "row/"


class RowMeta(BaseModel):
    """``meta.json`` of a row dataset; unknown fields are kept (2.x ignores them too)."""

    # Validators are built at the first read of a meta.json, not when kara_core.row is
    # imported (which a writer's first open_dataset pays for inside the user's timing).
    model_config = ConfigDict(extra="allow", defer_build=True)

    latest: str | None = None
    versions: list[str] = []
    api: int = 2


def dataset_prefix(namespace: str, key: str) -> str:
    """``row/<namespace>/<key>/``."""
    return f"{ROW_ROOT}{check_nested_name('namespace', namespace)}/{check_nested_name('key', key)}/"


def meta_path(namespace: str, key: str) -> str:
    """Path of the dataset's ``meta.json``."""
    return dataset_prefix(namespace, key) + "meta.json"


def meta_lock_path(namespace: str, key: str) -> str:
    """Short-lived lock that serializes read-modify-write cycles of ``meta.json``."""
    return dataset_prefix(namespace, key) + ".kara/meta.lock"


def version_prefix(namespace: str, key: str, version: str) -> str:
    """``row/<namespace>/<key>/<version>/``."""
    return dataset_prefix(namespace, key) + check_name("version", version) + "/"


def index_prefix(namespace: str, key: str, version: str) -> str:
    """Folder of the index blocks (``0.blk``, ``1.blk``, ...)."""
    return version_prefix(namespace, key, version) + "index/"


def data_prefix(namespace: str, key: str, version: str) -> str:
    """Folder of the data blocks (``0.blk``, ``1.blk``, ...)."""
    return version_prefix(namespace, key, version) + "data/"


def writer_lock_path(namespace: str, key: str, version: str) -> str:
    """The lock a writer holds on one version (2.x never opens ``.kara/``)."""
    return version_prefix(namespace, key, version) + ".kara/writer.lock"


def encode_meta(meta: dict[str, Any]) -> bytes:
    """Serialize ``meta.json`` exactly as 2.x does (``json.dumps`` defaults, key order kept)."""
    return json.dumps(meta).encode("utf-8")


def read_meta(backend: Backend, namespace: str, key: str) -> dict[str, Any]:
    """Return the dataset's ``meta.json`` as a dict, validated.

    Raises :class:`DatasetNotFoundError` when it is absent and
    :class:`CorruptDatasetError` when it is not a 2.x meta object.
    """
    path = meta_path(namespace, key)
    raw = backend.read_if_exists(path)
    if raw is None:
        raise DatasetNotFoundError("row", namespace, key, backend.url)
    try:
        meta = RowMeta.model_validate_json(raw)
    except ValidationError as exc:
        detail = f"not a valid meta.json ({exc.errors()[0]['msg']})"
        raise CorruptDatasetError(f"{backend.url}/{path}", None, detail) from None
    return meta.model_dump()


def resolve_version(namespace: str, key: str, meta: dict[str, Any], version: str) -> str:
    """Return the version ``version`` names in ``meta`` (``"latest"`` is looked up).

    Raises :class:`VersionNotFoundError` when ``meta`` has no such version.
    """
    if version == "latest":
        if meta.get("latest") is None:
            raise VersionNotFoundError("row", namespace, key, version, meta.get("versions", []))
        return str(meta["latest"])
    if version not in meta.get("versions", []):
        raise VersionNotFoundError("row", namespace, key, version, meta.get("versions", []))
    return version
