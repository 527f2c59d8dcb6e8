"""ObjectStore: directory versions over any Backend (the api-2 ``obj/`` layout).

``meta.json`` is only ever changed under a short-lived lock object created with
``put_if_absent`` (read, modify, write, release), so concurrent savers never drop each
other's versions. Auto versions are claimed by creating the manifest with
``put_if_absent``: two savers racing for ``"3"`` get ``"3"`` and ``"4"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from ..backend import Backend
from ..errors import (
    BlobIntegrityError,
    ConfigurationError,
    CorruptDatasetError,
    DatasetNotFoundError,
    NotFoundError,
    ReadOnlyStoreError,
    VersionExistsError,
    VersionNotFoundError,
)
from ..locks import LeaseLock
from ..names import NamedEntries
from .hashing import Hasher
from .load import STATE_DIR, LoadPlan, UnmanagedFilesError, check_room, execute_load, plan_load, target_lock
from .manifest import KeyLayout, Manifest, Meta, check_version_name, dump_json, parse_manifest, sidecar_matches
from .save import count_live_leases, save_directory
from .stream import BlobFile, BlobReader, VersionWriter, split_file_path
from .tasks import DEFAULT_WORKERS, Worker, load_workers, run_parallel

__all__ = ["GCReport", "ObjectStore"]

#: A meta lock is held for milliseconds: one older than this (or whose process is gone)
#: was left by a crash and is broken.
LOCK_STALE = 30.0
LOCK_TIMEOUT = 120.0
DEFAULT_GRACE = 24 * 3600.0
#: How often (and how patiently) a manifest is read again while its sidecar lags behind.
SIDECAR_READS = 20
SIDECAR_WAIT = 0.01


@dataclass
class GCReport:
    """What :meth:`ObjectStore.gc` did.

    ``removed``: blob and pack names deleted; ``bytes_freed``: their total size;
    ``kept_recent``: unreferenced blobs and packs kept because they are younger than the
    grace period; ``referenced``: how many blobs and packs the key's manifests name;
    ``deferred``: True if a save of this key was running, so nothing was deleted;
    ``leftovers_removed``: temporary data of killed writers deleted
    (:meth:`Backend.cleanup`, same grace period).
    """

    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_recent: list[str] = field(default_factory=list)
    referenced: int = 0
    deferred: bool = False
    leftovers_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)


class ObjectStore(NamedEntries):
    """Saved directories (``obj/<namespace>/<key>/``) of one store."""

    _root = "obj/"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- meta -----------------------------------------------------------------------

    def _layout(self, namespace: str, key: str) -> KeyLayout:
        return KeyLayout(namespace, key)

    def _read_meta(self, layout: KeyLayout) -> Meta | None:
        raw = self.backend.read_if_exists(layout.meta)
        if raw is None:
            return None
        try:
            return Meta.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise CorruptDatasetError(f"{self.backend.url}/{layout.meta}", None, str(exc)) from None

    def get_meta(self, namespace: str, key: str) -> dict[str, Any]:
        """Return ``meta.json`` (``latest``, ``versions``, ``api``) of a saved directory.

        Raises :class:`~kara_core.errors.DatasetNotFoundError` if nothing was saved there.
        """
        layout = self._layout(namespace, key)
        meta = self._read_meta(layout)
        if meta is None:
            raise DatasetNotFoundError("obj", namespace, key, self.backend.url)
        return meta.model_dump()

    def put_meta(self, namespace: str, key: str, meta: dict[str, Any]) -> None:
        """Replace ``meta.json`` of a saved directory (atomically, under the meta lock)."""
        layout = self._layout(namespace, key)
        checked = Meta.model_validate(meta)
        self._update_meta(layout, lambda _: checked)

    def _update_meta(self, layout: KeyLayout, change: Callable[[Meta], Meta]) -> Meta:
        if not self.backend.capabilities.writable:
            raise ReadOnlyStoreError(self.backend.url, f"update {layout.meta}")
        lock = LeaseLock(
            self.backend, layout.lock, f"meta.json of {layout.namespace}/{layout.key}", ttl=LOCK_STALE, heartbeat=False
        )
        lock.acquire(timeout=LOCK_TIMEOUT)
        try:
            meta = change(self._read_meta(layout) or Meta())
            self.backend.put(layout.meta, json.dumps(meta.model_dump()).encode())
            return meta
        finally:
            lock.release()

    # -- listing --------------------------------------------------------------------

    def _inner_folders(self, folder: str) -> frozenset[str]:
        # What a saved directory's folder holds besides nested keys.
        return KeyLayout.INNER

    def resolve_version(self, namespace: str, key: str, version: Any = "latest") -> str:
        """Return the name of ``version`` (``"latest"`` resolved) or raise if it is not listed."""
        layout = self._layout(namespace, key)
        meta = self._read_meta(layout)
        if meta is None:
            raise DatasetNotFoundError("obj", namespace, key, self.backend.url)
        name = str(version)
        if name == "latest":
            if meta.latest is None:
                raise VersionNotFoundError("obj", namespace, key, name, meta.versions)
            name = meta.latest
        if name not in meta.versions:
            raise VersionNotFoundError("obj", namespace, key, name, meta.versions)
        return name

    def read_manifest(self, namespace: str, key: str, version: str) -> Manifest:
        """Return the validated manifest of a listed version (hostile manifests raise).

        The manifest and its sidecar are two objects; while a save replaces the version,
        a reader may find the new manifest beside the old sidecar. The sidecar names the
        manifest it belongs to, so both are read again until they match (a save killed
        between its two writes leaves a sidecar that never matches: it is ignored).
        """
        layout = self._layout(namespace, key)
        path = layout.manifest(version)
        for attempt in range(SIDECAR_READS):
            raw = self.backend.read_if_exists(path)
            if raw is None:
                raise CorruptDatasetError(
                    f"{self.backend.url}/{path}", None, "the version is listed but has no manifest"
                )
            sidecar = self.backend.read_if_exists(layout.sidecar(version))
            if sidecar_matches(raw, sidecar):
                break
            time.sleep(SIDECAR_WAIT * (attempt + 1))
        else:
            sidecar = None
        return parse_manifest(raw, sidecar, f"{self.backend.url}/{path}")

    # -- save -----------------------------------------------------------------------

    def save_directory(
        self,
        namespace: str,
        key: str,
        local_path: str,
        version: Any = None,
        progress_bar: bool = True,
        *,
        overwrite: bool | None = None,
        workers: int | None = None,
        pack_small_files: bool | None = None,
    ) -> str:
        """Save the folder ``local_path`` as a version and return its name.

        ``version=None`` picks ``"0"``, ``"1"``, ... (the smallest free number, distinct
        even when several processes save at once). Saving a named version that exists
        replaces it, as 2.x did (``save_directory(..., version="best")`` every epoch):
        readers see the old or the new version, never a mix, and the old version's blobs
        stay until :meth:`gc`. ``overwrite=False`` raises
        :class:`~kara_core.errors.VersionExistsError` instead. Only
        blobs the store lacks are uploaded, by ``workers`` threads (default 8); hashes of
        unchanged files come from the hash cache. On stores without local files (S3,
        OSS, GCS, Azure, the http gateway) files up to 256 KiB are also stored in packs of
        about 8 MiB, so that a load fetches them with a few requests instead of one each
        (their bytes are stored twice; see :mod:`kara_core.obj.packs`).
        ``pack_small_files=False`` writes no packs; ``True`` writes them on a file://
        store too (whose own loads copy the blobs), for a store also served over HTTP.
        Progress bars are shown when ``progress_bar`` is true and stderr is a terminal.
        """
        layout = self._layout(namespace, key)
        name = None if version is None else check_version_name(version)
        if name == "latest":
            name = self.resolve_version(namespace, key, "latest")
        if overwrite is None:
            overwrite = name is not None
        return save_directory(
            self,
            layout,
            local_path,
            name,
            progress_bar=progress_bar,
            overwrite=overwrite,
            workers=workers,
            pack_small_files=pack_small_files,
        )

    def check_new_version(self, layout: KeyLayout, version: str | None, overwrite: bool) -> None:
        """Raise VersionExistsError early if saving ``version`` would need ``overwrite``."""
        if version is None or overwrite:
            return
        meta = self._read_meta(layout) or Meta()
        if version in meta.versions or self.backend.exists(layout.manifest(version)):
            raise self._exists_error(layout, version)

    def _exists_error(self, layout: KeyLayout, version: str) -> VersionExistsError:
        return VersionExistsError(
            f"version {version!r} of {layout.namespace}/{layout.key} already exists in {self.backend.url}; "
            "save without overwrite=False (CLI: without --no-overwrite) to replace it, or choose another name"
        )

    def publish(self, layout: KeyLayout, version: str | None, manifest: bytes, sidecar: bytes, overwrite: bool) -> str:
        """Make a version visible: manifest (atomic create), sidecar, then ``meta.json``.

        Called once every blob the manifest names is stored.
        """
        backend = self.backend
        if version is None:
            taken = set((self._read_meta(layout) or Meta()).versions)
            number = 0
            while str(number) in taken or not backend.put_if_absent(layout.manifest(str(number)), manifest):
                number += 1
            name = str(number)
        elif overwrite:
            name = version
            backend.put(layout.manifest(name), manifest)
        else:
            name = version
            if not backend.put_if_absent(layout.manifest(name), manifest):
                raise self._exists_error(layout, name)
        backend.put(layout.sidecar(name), sidecar)

        def add(meta: Meta) -> Meta:
            if name not in meta.versions:
                meta.versions.append(name)
            meta.latest = name
            return meta

        self._update_meta(layout, add)
        return name

    # -- versions written file by file ------------------------------------------------

    def open_version(self, namespace: str, key: str, version: Any = None, *, overwrite: bool = False) -> VersionWriter:
        """Return a :class:`VersionWriter`: a version written file by file, published on success.

        ``with store.open_version(ns, key, "v1") as v: v.open_file("model.pt")...``
        publishes every file at once when the block ends without an exception, and
        nothing otherwise. ``version=None`` picks the next free number; an existing
        version raises :class:`~kara_core.errors.VersionExistsError` unless ``overwrite``.
        """
        name = None if version is None else check_version_name(version)
        if name == "latest":
            name = self.resolve_version(namespace, key, "latest")
        return VersionWriter(self, self._layout(namespace, key), name, overwrite=overwrite)

    def open_file(
        self,
        namespace: str,
        key: str,
        path: str,
        mode: str = "rb",
        version: Any = None,
        *,
        overwrite: bool = False,
        verify: bool = False,
    ) -> BlobFile | BlobReader:
        """Open one file of a directory version as a stream.

        ``mode="rb"``: a seekable reader of ``path`` in ``version`` (default ``"latest"``),
        memory-mapped on stores with local files, else ranged reads with read-ahead.
        ``verify=True`` checks the file against its sha1 first (a pass over the mapping,
        or one download into a temporary file the reader then serves), raising
        ``BlobIntegrityError`` if it is damaged.
        ``mode="wb"``: a writable file that becomes a new version (``version``; None
        picks the next number) holding just ``path``, published when it is closed
        without error; an exception inside its ``with`` block publishes nothing.
        """
        if not isinstance(verify, bool):
            raise ConfigurationError(f"verify must be True or False, got {verify!r}")
        if mode == "wb":
            if verify:
                raise ConfigurationError("verify=True is for mode 'rb'; a written file is hashed as it is written")
            writer = self.open_version(namespace, key, version, overwrite=overwrite)
            return BlobFile(writer, split_file_path(path), owns_version=True)
        if mode != "rb":
            raise ConfigurationError(f"open_file mode must be 'rb' or 'wb', not {mode!r}")
        parts = split_file_path(path)
        name = self.resolve_version(namespace, key, "latest" if version is None else version)
        for entry in self.read_manifest(namespace, key, name).files:
            if entry.path == parts:
                blob = self._layout(namespace, key).blob(entry.file)
                return BlobReader(self.backend, blob, entry.size, entry.relpath, entry.sha1 if verify else None)
        raise NotFoundError(f"{path!r} is not a file of version {name!r} of {namespace}/{key} in {self.backend.url}")

    # -- load -----------------------------------------------------------------------

    def plan_load(self, namespace: str, key: str, local_path: str, version: Any = "latest") -> LoadPlan:
        """Return what loading ``version`` into ``local_path`` would do, touching nothing.

        The plan lists files to download, files already up to date, files to delete and,
        among those, the ones kara did not place (``unmanaged``: a load refuses them
        unless ``delete=True``).
        """
        name = self.resolve_version(namespace, key, version)
        return plan_load(self.read_manifest(namespace, key, name), name, local_path)

    def load_directory(
        self,
        namespace: str,
        key: str,
        local_path: str,
        version: Any = "latest",
        progress_bar: bool = True,
        *,
        delete: bool = False,
        dry_run: bool = False,
        workers: int | None = None,
    ) -> str:
        """Make ``local_path`` hold exactly ``version`` and return the version name.

        Only files whose content differs are downloaded (by ``workers`` threads; default 8,
        4 from stores with local files, 32 from stores with parallel reads; files of 8 MiB
        and more get up to 4 threads more and are written with direct I/O), each
        verified against its hashes in a staging folder and renamed into place; files
        kara placed earlier and no longer in the version are removed. Files kara did not
        place that would be deleted or overwritten make the load refuse with
        :class:`UnmanagedFilesError` unless ``delete=True``. ``dry_run=True`` only plans.
        """
        layout = self._layout(namespace, key)
        name = self.resolve_version(namespace, key, version)
        manifest = self.read_manifest(namespace, key, name)
        if dry_run:
            plan_load(manifest, name, local_path)
            return name
        if not os.path.isdir(os.path.join(local_path, STATE_DIR)):
            # A folder kara never loaded into (or none yet): a load refused here (a file
            # in the way, names this disk cannot hold, files kara did not place) leaves
            # no trace, not even the lock's folder.
            first = plan_load(manifest, name, local_path)
            if first.unmanaged and not delete:
                raise UnmanagedFilesError(first.target, first.unmanaged)
            check_room(first)
        # One load at a time into a folder (every local rank may load the same checkpoint
        # to the same place), planned once its turn comes: a later load finds the files
        # an earlier one placed, and none returns before the folder holds the version.
        with target_lock(os.path.abspath(local_path)):
            execute_load(
                self.backend,
                layout,
                manifest,
                plan_load(manifest, name, local_path),
                delete=delete,
                progress_bar=progress_bar,
                workers=workers or load_workers(self.backend.capabilities),
            )
        return name

    # -- housekeeping ---------------------------------------------------------------

    def version_info(self, namespace: str, key: str, version: Any = "latest") -> dict[str, Any]:
        """Describe a version: ``version``, ``files``, ``bytes``, ``blobs`` (distinct
        contents), ``links``, ``dirs`` (empty folders), ``latest`` (bool), ``created``."""
        name = self.resolve_version(namespace, key, version)
        manifest = self.read_manifest(namespace, key, name)
        meta = self.get_meta(namespace, key)
        sidecar = self.backend.read_if_exists(self._layout(namespace, key).sidecar(name))
        created = orjson.loads(sidecar).get("created") if sidecar else None
        return {
            "version": name,
            "files": len(manifest.files),
            "bytes": manifest.total_bytes,
            "blobs": len(manifest.blobs),
            "links": len(manifest.links),
            "dirs": len(manifest.dirs),
            "latest": meta["latest"] == name,
            "created": created,
        }

    def delete_version(self, namespace: str, key: str, version: Any) -> None:
        """Remove a version from ``meta.json``, then its manifest; blobs wait for :meth:`gc`."""
        layout = self._layout(namespace, key)
        name = self.resolve_version(namespace, key, version)

        def drop(meta: Meta) -> Meta:
            if name in meta.versions:
                meta.versions.remove(name)
            if meta.latest == name:
                meta.latest = meta.versions[-1] if meta.versions else None
            return meta

        self._update_meta(layout, drop)
        self.backend.delete(layout.manifest(name))
        self.backend.delete(layout.sidecar(name))

    def _referenced(self, layout: KeyLayout) -> set[str]:
        # Every manifest counts, listed or not: a save that has created its manifest but
        # not yet updated meta.json still needs its blobs.
        referenced: set[str] = set()
        for path in self.backend.list(layout.root + "vers/"):
            if not path.endswith(".json"):
                continue
            raw = self.backend.read_if_exists(path)
            if raw is None:
                continue
            try:
                entries = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    referenced.update(entry[k] for k in ("file", "pack") if isinstance(entry.get(k), str))
        return referenced

    def _blob_age(self, path: str, now: float, first_seen: dict[str, float]) -> float:
        local = self.backend.local_path(path) if self.backend.capabilities.local_path else None
        if local is not None:
            try:
                return now - os.stat(local).st_mtime
            except OSError:
                return 0.0
        return now - first_seen.setdefault(path.rsplit("/", 1)[-1], now)

    def gc(self, namespace: str, key: str, grace_period: float = DEFAULT_GRACE) -> GCReport:
        """Delete the blobs and packs of ``namespace/key`` that no manifest references.

        Blobs younger than ``grace_period`` seconds (default one day) are kept, and
        nothing is deleted while a save of this key is running, so a concurrent save
        never loses a blob it has just uploaded or deduplicated against. The backend's
        leftovers of killed writes under the key (temp files) older than the grace
        period go too (:meth:`Backend.cleanup`). On stores
        without local files a blob's age counts from the first gc run that saw it
        unreferenced.
        """
        layout = self._layout(namespace, key)
        if not self.backend.capabilities.writable:
            raise ReadOnlyStoreError(self.backend.url, f"garbage-collect {layout.root}")
        self.get_meta(namespace, key)
        report = GCReport()
        if count_live_leases(self.backend, layout):
            report.deferred = True
            return report
        referenced = self._referenced(layout)
        report.referenced = len(referenced)
        raw_state = self.backend.read_if_exists(layout.gc_state)
        first_seen: dict[str, float] = orjson.loads(raw_state) if raw_state else {}
        now = time.time()
        candidates = []
        paths: dict[str, str] = {}
        for folder in (layout.data, layout.packs):
            for path in self.backend.list(folder):
                blob = path[len(folder) :]
                if blob in referenced:
                    continue
                paths[blob] = path
                if self._blob_age(path, now, first_seen) < grace_period:
                    report.kept_recent.append(blob)
                else:
                    candidates.append(blob)
        # A save may have started while we were listing: check again right before deleting.
        if candidates and (count_live_leases(self.backend, layout) or self._referenced(layout) != referenced):
            report.deferred = True
            report.kept_recent.extend(candidates)
            candidates = []
        if not report.deferred:
            # No save of the key is running: temp files older than the grace period
            # belong to writers that were killed.
            report.leftovers_removed = self.backend.cleanup(layout.root, grace_period)
        for blob in candidates:
            size = self.backend.size(paths[blob]) or 0
            self.backend.delete(paths[blob])
            report.removed.append(blob)
            report.bytes_freed += size
            first_seen.pop(blob, None)
        live = set(report.kept_recent)
        first_seen = {blob: t for blob, t in first_seen.items() if blob in live}
        if first_seen or raw_state is not None:
            self.backend.put(layout.gc_state, dump_json(first_seen))
        report.removed.sort()
        report.kept_recent.sort()
        return report

    def verify(self, namespace: str, key: str, version: Any = None, *, workers: int | None = None) -> list[str]:
        """Check that every blob and pack of ``version`` (default: every listed version) is intact.

        Returns a list of problems (missing blob, wrong size, hash mismatch, unreadable
        manifest, a pack missing or holding damaged files); an empty list means healthy.
        Every blob and pack is read and hashed.
        """
        versions = (
            self.list_versions(namespace, key) if version is None else [self.resolve_version(namespace, key, version)]
        )
        layout = self._layout(namespace, key)
        problems: list[str] = []
        expected: dict[str, int] = {}
        users: dict[str, str] = {}
        packs: dict[str, dict[tuple[int, int, str], str]] = {}
        for name in versions:
            try:
                manifest = self.read_manifest(namespace, key, name)
            except (CorruptDatasetError, BlobIntegrityError, ValueError, NotFoundError) as exc:
                problems.append(f"version {name!r}: {exc}")
                continue
            for entry in manifest.files:
                expected[entry.file] = entry.size
                users.setdefault(entry.file, f"version {name!r}, {entry.relpath}")
                if entry.pack is not None and entry.pack_offset is not None:
                    member = (entry.pack_offset, entry.size, entry.sha1)
                    packs.setdefault(entry.pack, {}).setdefault(member, f"version {name!r}, {entry.relpath}")

        def check(blob: str) -> str | None:
            path = layout.blob(blob)
            size = self.backend.size(path)
            if size is None:
                return f"missing blob {blob} ({users[blob]})"
            if size != expected[blob]:
                return f"blob {blob} has {size} bytes, expected {expected[blob]} ({users[blob]})"
            hasher = Hasher(sha256=False)
            with self.backend.open_read(path) as stream:
                while chunk := stream.read(1024 * 1024):
                    hasher.update(chunk)
            if hasher.digests().blob != blob:
                return f"blob {blob} does not match its hashes (corrupted; {users[blob]})"
            return None

        def check_pack(pack: str) -> str | None:
            # A damaged pack loses nothing (loads take such files from their blobs),
            # but it is damage all the same.
            members = packs[pack]
            try:
                data = self.backend.read(layout.pack(pack), 0, max(off + size for off, size, _ in members))
            except NotFoundError:
                return f"missing pack {pack} ({next(iter(members.values()))}; loads use the blobs instead)"
            bad = [
                where
                for (off, size, sha1), where in members.items()
                if hashlib.sha1(data[off : off + size], usedforsecurity=False).hexdigest() != sha1
                or off + size > len(data)
            ]
            if bad:
                return f"pack {pack}: {len(bad)} of its files are not intact ({bad[0]}; loads use the blobs instead)"
            return None

        found = run_parallel(sorted(expected), check, workers or DEFAULT_WORKERS, Worker())
        found += run_parallel(sorted(packs), check_pack, workers or DEFAULT_WORKERS, Worker())
        problems.extend(p for p in found if p)
        return problems
