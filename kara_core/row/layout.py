"""Where a row dataset's objects live, and how ``meta.json`` is read and written.

The layout is kara-storage 2.x's (docs/rows.md); kara's own sidecar objects (writer
and meta locks) live under ``.kara/`` folders that a 2.x reader never opens.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from ..backend import Backend
from ..errors import CorruptDatasetError, DatasetNotFoundError, VersionNotFoundError
from ..names import check_name, check_nested_name

if TYPE_CHECKING:
    from pydantic import BaseModel

    class RowMeta(BaseModel):  # what _row_meta() builds, for type checkers
        latest: str | None
        versions: list[str]
        api: int


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


@cache
def _row_meta() -> type[RowMeta]:
    # The model, and pydantic under it, load at the first meta.json that is not plain
    # (plain_meta reads the others): a fresh reader never pays pydantic's import.
    from pydantic import BaseModel, ConfigDict

    class RowMeta(BaseModel):
        """``meta.json`` of a row dataset; unknown fields are kept (2.x ignores them too)."""

        __qualname__ = "RowMeta"
        model_config = ConfigDict(extra="allow")

        latest: str | None = None
        versions: list[str] = []
        api: int = 2

    return RowMeta


def __getattr__(name: str) -> Any:
    if name == "RowMeta":
        return _row_meta()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The int range the plain path accepts (beyond it the model decides).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def plain_json(raw: Any) -> Any:
    """``raw`` (UTF-8 JSON bytes) parsed by the standard library, or None when unsure.

    The plain common case of the JSON that kara's models parse: ``None`` when ``raw`` is
    not ``bytes``, not strict UTF-8, not JSON or holds an object with a key twice (the
    value dropped could hold what the model refuses, ``{"api": {"\\ud800": 0}, "api": 2}``).
    The caller still checks the shape.
    """
    if type(raw) is not bytes:
        return None
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_once_each)
    except (ValueError, RecursionError):
        return None


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key appears twice")
    return obj


def plain_value(value: Any) -> bool:
    """Is ``value`` (parsed JSON) plain: null, bools, ints in 64 bits, UTF-8 strings, lists, str-keyed objects?

    No floats (parsers may round or spell them differently) and no lone surrogates
    (``"\\ud800"``, which pydantic's parser refuses).
    """
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return _INT_MIN <= value <= _INT_MAX
    if kind is str:
        return plain_str(value)
    if kind is list:
        return all(plain_value(item) for item in value)
    if kind is dict:
        return all(plain_str(k) and plain_value(v) for k, v in value.items())
    return False


def plain_str(value: Any) -> bool:
    """Is ``value`` an exact ``str`` that encodes to UTF-8 (no lone surrogates)?"""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain_meta(raw: Any) -> dict[str, Any] | None:
    """``RowMeta.model_validate_json(raw).model_dump()`` without pydantic, for a plain meta.json.

    Plain: a JSON object with no other keys than ``latest`` (a string or null),
    ``versions`` (a list of strings) and ``api`` (an int). Anything else returns None, and
    :func:`read_meta` asks the model (which keeps unknown keys, or raises).
    """
    doc = plain_json(raw)
    if type(doc) is not dict or not doc.keys() <= _META_KEYS:
        return None
    meta = {"latest": doc.get("latest"), "versions": doc.get("versions", []), "api": doc.get("api", 2)}
    latest, versions, api = meta.values()
    if not (latest is None or plain_str(latest)) or type(versions) is not list or type(api) is not int:
        return None
    if not all(plain_str(v) for v in versions) or not _INT_MIN <= api <= _INT_MAX:
        return None
    return meta


_META_KEYS = frozenset(("latest", "versions", "api"))


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
    meta = plain_meta(raw)
    if meta is not None:
        return meta
    from pydantic import ValidationError

    try:
        model = _row_meta().model_validate_json(raw)
    except ValidationError as exc:
        detail = f"not a valid meta.json ({exc.errors()[0]['msg']})"
        raise CorruptDatasetError(f"{backend.url}/{path}", None, detail) from None
    return model.model_dump()


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
