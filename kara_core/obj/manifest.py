"""Version manifests and their sidecars: parsing, validation and the store layout.

A manifest (``vers/<v>.json``) is the 2.x JSON list of regular files. kara adds
``sha256``, ``mode`` and ``mtime_ns`` to each entry, and ``pack``/``pack_offset`` to a
small file's (see :mod:`kara_core.obj.packs`; 2.x ignores unknown fields). What
2.x cannot represent (symbolic links, empty folders) goes into a sidecar
(``kara/<v>.json``) that 2.x never opens.

Everything read from storage is validated here before any byte reaches the user's disk:
a hostile manifest (``..``, absolute or drive paths, empty components, backslashes,
reserved names, a blob name that is not ``<md5>_<sha1>``) raises
:class:`~kara_core.errors.UnsafePathError`.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..backend import check_path
from ..errors import CorruptDatasetError, UnsafePathError
from ..names import check_name, check_nested_name
from .hashing import is_hex_digest
from .packs import is_pack_name

__all__ = [
    "RESERVED_NAMES",
    "FileEntry",
    "KeyLayout",
    "LinkEntry",
    "Manifest",
    "Meta",
    "check_version_name",
    "parse_manifest",
]

#: Names at the root of a loaded folder that belong to kara (state and staging area);
#: saves skip them and manifests may not use them.
RESERVED_NAMES = frozenset({".kara", ".kara-staging"})

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_parts(parts: list[str], what: str = "manifest path") -> tuple[str, ...]:
    """Validate the components of a path inside the loaded folder and return them.

    Rejects empty lists, empty/``.``/``..`` components, separators or NUL inside a
    component, drive letters and kara's reserved root names.
    """
    shown = "/".join(str(p) for p in parts) if isinstance(parts, list) else repr(parts)
    if not isinstance(parts, list) or not parts:
        raise UnsafePathError(shown, f"{what} must be a non-empty list of components")
    for part in parts:
        if not isinstance(part, str) or part in ("", ".", ".."):
            raise UnsafePathError(shown, f"{what} has an empty, '.' or '..' component")
        if "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePathError(shown, f"{what} component {part!r} contains a separator or NUL")
    if _DRIVE.match(parts[0]):
        raise UnsafePathError(shown, f"{what} starts with a drive letter")
    if parts[0] in RESERVED_NAMES:
        raise UnsafePathError(shown, f"{what} uses the reserved name {parts[0]!r}")
    return tuple(parts)


class FileEntry(BaseModel):
    """One regular file of a version (a 2.x manifest entry plus kara's optional fields)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    md5: str
    sha1: str
    file: str
    path: tuple[str, ...]
    size: int = Field(ge=0)
    sha256: str | None = None
    mode: int | None = Field(default=None, ge=0, le=0o7777)
    mtime_ns: int | None = None
    pack: str | None = None
    pack_offset: int | None = Field(default=None, ge=0)

    @field_validator("path", mode="before")
    @classmethod
    def _path_is_safe(cls, value: Any) -> tuple[str, ...]:
        return check_relative_parts(value)

    @field_validator("pack")
    @classmethod
    def _pack_is_named(cls, value: str | None) -> str | None:
        if value is not None and not is_pack_name(value):
            raise ValueError(f"pack {value!r} is not 'pack-' and 40 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _pack_has_offset(self) -> FileEntry:
        if (self.pack is None) != (self.pack_offset is None):
            raise ValueError("pack and pack_offset come together")
        return self

    @field_validator("md5")
    @classmethod
    def _md5_is_hex(cls, value: str) -> str:
        if not is_hex_digest(value, 32):
            raise ValueError(f"md5 {value!r} is not 32 lowercase hex digits")
        return value

    @field_validator("sha1")
    @classmethod
    def _sha1_is_hex(cls, value: str) -> str:
        if not is_hex_digest(value, 40):
            raise ValueError(f"sha1 {value!r} is not 40 lowercase hex digits")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha256_is_hex(cls, value: str | None) -> str | None:
        if value is not None and not is_hex_digest(value, 64):
            raise ValueError(f"sha256 {value!r} is not 64 lowercase hex digits")
        return value

    @property
    def relpath(self) -> str:
        """The path inside the folder, ``/``-separated."""
        return "/".join(self.path)

    @property
    def executable(self) -> bool:
        """True if the file was saved with an executable bit."""
        return bool(self.mode is not None and self.mode & 0o111)


class LinkEntry(BaseModel):
    """A symbolic link kept as a link: ``target`` is relative and stays inside the folder."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: tuple[str, ...]
    target: str

    @field_validator("path", mode="before")
    @classmethod
    def _path_is_safe(cls, value: Any) -> tuple[str, ...]:
        return check_relative_parts(value, "link path")

    @property
    def relpath(self) -> str:
        """The link's path inside the folder, ``/``-separated."""
        return "/".join(self.path)


class Sidecar(BaseModel):
    """kara's extra description of a version (``kara/<v>.json``), invisible to 2.x."""

    model_config = ConfigDict(extra="allow")

    format: int = 1
    links: list[LinkEntry] = []
    dirs: list[tuple[str, ...]] = []
    created: float | None = None

    @field_validator("dirs", mode="before")
    @classmethod
    def _dirs_are_safe(cls, value: Any) -> list[tuple[str, ...]]:
        if not isinstance(value, list):
            raise ValueError("dirs must be a list")
        return [check_relative_parts(parts, "folder path") for parts in value]


class Meta(BaseModel):
    """``meta.json`` of a saved directory (the 2.x shape; unknown fields are kept)."""

    model_config = ConfigDict(extra="allow")

    latest: str | None = None
    versions: list[str] = []
    api: int = 2


@dataclass(frozen=True)
class Manifest:
    """A validated version: its regular files plus the sidecar's links and empty folders."""

    files: tuple[FileEntry, ...]
    links: tuple[LinkEntry, ...] = ()
    dirs: tuple[tuple[str, ...], ...] = ()

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes of the version's files."""
        return sum(f.size for f in self.files)

    @property
    def blobs(self) -> set[str]:
        """The distinct blob names the version references."""
        return {f.file for f in self.files}

    @property
    def packs(self) -> set[str]:
        """The names of the packs that hold some of the version's small files."""
        return {f.pack for f in self.files if f.pack is not None}


def _check_blob_name(entry: FileEntry) -> None:
    if entry.file != f"{entry.md5}_{entry.sha1}":
        raise UnsafePathError(entry.file, "a blob name must be '<md5>_<sha1>' of the entry's own hashes")


def _check_tree(manifest: Manifest) -> None:
    # Two entries at one path, or a file used as another entry's folder, would make the
    # load order decide the result; such manifests are refused.
    leaves: dict[str, str] = {}
    for kind, paths in (
        ("file", [f.path for f in manifest.files]),
        ("link", [link.path for link in manifest.links]),
    ):
        for parts in paths:
            rel = "/".join(parts)
            if rel in leaves:
                raise UnsafePathError(rel, f"listed twice in the manifest ({leaves[rel]} and {kind})")
            leaves[rel] = kind
    folders = {
        "/".join(parts[:i])
        for parts in [*(f.path for f in manifest.files), *manifest.dirs]
        for i in range(1, len(parts))
    }
    folders.update("/".join(parts) for parts in manifest.dirs)
    for link in manifest.links:
        folders.update("/".join(link.path[:i]) for i in range(1, len(link.path)))
    clash = folders.intersection(leaves)
    if clash:
        rel = sorted(clash)[0]
        raise UnsafePathError(rel, "used both as a file and as a folder in the manifest")
    for link in manifest.links:
        _check_link_target(link)


def link_stays_inside(rel: str, target: str) -> bool:
    """True if a link at ``rel`` pointing to ``target`` is relative and resolves inside the folder."""
    if not target or target.startswith("/") or "\\" in target or "\x00" in target or _DRIVE.match(target):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return not (resolved == ".." or resolved.startswith("../"))


def _check_link_target(link: LinkEntry) -> None:
    if not link_stays_inside(link.relpath, link.target):
        raise UnsafePathError(link.relpath, f"link target {link.target!r} must be relative and stay inside the folder")


def parse_manifest(raw: bytes, sidecar_raw: bytes | None, where: str) -> Manifest:
    """Parse and validate a manifest (and its sidecar, if any) read from ``where``."""
    try:
        data = orjson.loads(raw)
        sidecar_data = orjson.loads(sidecar_raw) if sidecar_raw is not None else {}
    except orjson.JSONDecodeError as exc:
        raise CorruptDatasetError(where, None, f"not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise CorruptDatasetError(where, None, "a manifest must be a JSON list of file entries")
    try:
        files = tuple(FileEntry.model_validate(item) for item in data)
        sidecar = Sidecar.model_validate(sidecar_data)
    except ValidationError as exc:
        raise _validation_error(exc, where) from None
    for entry in files:
        _check_blob_name(entry)
    manifest = Manifest(files, tuple(sidecar.links), tuple(sidecar.dirs))
    _check_tree(manifest)
    return manifest


def manifest_digest(raw: bytes) -> str:
    """The name a sidecar gives the manifest it belongs to (SHA-1 of its bytes)."""
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def sidecar_matches(manifest_raw: bytes, sidecar_raw: bytes | None) -> bool:
    """Whether ``sidecar_raw`` belongs to ``manifest_raw`` (sidecars that name none always do)."""
    if sidecar_raw is None:
        return True
    try:
        named = orjson.loads(sidecar_raw).get("manifest")
    except (orjson.JSONDecodeError, AttributeError):
        return True  # parse_manifest reports a broken sidecar
    return named is None or named == manifest_digest(manifest_raw)


def _validation_error(exc: ValidationError, where: str) -> Exception:
    # An unsafe path raised inside a validator reaches us wrapped by pydantic; surface
    # it as the UnsafePathError it is, everything else as a corrupt manifest.
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, UnsafePathError):
            return cause
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return UnsafePathError(where, f"invalid manifest entry ({loc}: {first['msg']})")


def check_version_name(version: Any) -> str:
    """Return ``version`` as a string (2.x accepted ints) if it is a usable name."""
    return check_name("version", str(version))


class KeyLayout:
    """Store paths of one saved directory ``obj/<namespace>/<key>/``."""

    #: The folders of a key's own contents (a meta.json below them is not a nested key).
    INNER = frozenset(["vers", "data", "kara", "kara-saves", "kara-packs"])

    def __init__(self, namespace: str, key: str) -> None:
        check_nested_name("namespace", namespace)
        check_nested_name("key", key)
        self.namespace, self.key = namespace, key
        self.root = check_path(f"obj/{namespace}/{key}") + "/"

    @property
    def meta(self) -> str:
        """``meta.json``: latest version and the version list (2.x shape)."""
        return self.root + "meta.json"

    @property
    def lock(self) -> str:
        """Short-lived lock object that serializes ``meta.json`` updates."""
        return self.root + "meta.json.lock"

    @property
    def data(self) -> str:
        """Folder of the content-addressed blobs."""
        return self.root + "data/"

    @property
    def packs(self) -> str:
        """Folder of the packs of small files (see :mod:`kara_core.obj.packs`); 2.x never looks there."""
        return self.root + "kara-packs/"

    def pack(self, name: str) -> str:
        """Path of pack ``name``."""
        return self.packs + name

    @property
    def leases(self) -> str:
        """Folder of the leases of running saves (garbage collection waits for them)."""
        return self.root + "kara-saves/"

    @property
    def gc_state(self) -> str:
        """When each unreferenced blob was first seen (for stores without local files)."""
        return self.root + "kara-gc.json"

    def blob(self, name: str) -> str:
        """Path of blob ``name``."""
        return self.data + name

    def manifest(self, version: str) -> str:
        """Path of the version's 2.x manifest."""
        return f"{self.root}vers/{version}.json"

    def sidecar(self, version: str) -> str:
        """Path of the version's kara sidecar (links, empty folders)."""
        return f"{self.root}kara/{version}.json"


def dump_json(value: Any) -> bytes:
    """Serialize JSON the way kara stores it."""
    return orjson.dumps(value)
