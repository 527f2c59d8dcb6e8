"""Saving a folder as a version: scan, hash (cached), upload missing blobs, publish.

Order of visibility: every blob the version names is stored (each one atomically,
through one ``Backend.open_batch`` whose ``commit`` makes them all durable at once)
before the manifest is created with ``put_if_absent``, and ``meta.json`` is updated
last, under the meta lock. A reader of "latest" therefore never sees a
version whose manifest or blobs are missing, and an interrupted save leaves at most
unreferenced blobs that the next save reuses.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, BinaryIO

import orjson

from ..backend import Backend, Batch
from ..errors import ConfigurationError, NotFoundError, ReadOnlyStoreError
from ..locks import process_alive, process_start
from .hashing import Digests, HashCache, Hasher, hash_file, sha1_file, stat_key
from .manifest import KeyLayout, dump_json, manifest_digest
from .packs import Pack, plan_packs
from .scan import LocalFile, scan_folder
from .tasks import DEFAULT_WORKERS, Progress, Worker, defer_interrupt, run_parallel

if TYPE_CHECKING:
    from .store import ObjectStore

__all__ = ["Lease", "save_directory"]

#: Files up to this size are read once into memory: hashed and uploaded from the same bytes.
SMALL_FILE = 1024 * 1024

#: Packs built and uploaded at once (each holds up to PACK_MAX bytes in memory).
_PACK_WORKERS = 4

#: How often a running save refreshes its lease, and after how long a lease that was
#: not refreshed is considered abandoned (its process died).
LEASE_REFRESH = 30.0
LEASE_EXPIRY = 120.0


def _lease_is_live(raw: bytes | None, now: float) -> bool:
    try:
        body = orjson.loads(raw) if raw else {}
        written, pid, host = float(body["time"]), int(body["pid"]), str(body["host"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return False
    if now - written >= LEASE_EXPIRY:
        return False
    # A save on this machine whose process is gone was killed: its lease is void.
    return host != socket.gethostname() or process_alive(pid, body.get("pid_start"))


def count_live_leases(backend: Backend, layout: KeyLayout) -> int:
    """Return how many saves of this key are running; remove the leases of dead ones."""
    now = time.time()
    live = 0
    for path in list(backend.list(layout.leases)):
        if _lease_is_live(backend.read_if_exists(path), now):
            live += 1
        else:
            backend.delete(path)
    return live


class Lease:
    """Marks a running save of one key, so garbage collection leaves its blobs alone."""

    def __init__(self, backend: Backend, layout: KeyLayout) -> None:
        self._backend = backend
        count_live_leases(backend, layout)
        self.path = f"{layout.leases}{uuid.uuid4().hex}.json"
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._refresh, name="kara-lease", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        body = {
            "time": time.time(),
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "host": socket.gethostname(),
        }
        self._backend.put(self.path, dump_json(body))

    def _refresh(self) -> None:
        while not self._stop.wait(LEASE_REFRESH):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a failed refresh is retried at the next tick
                continue

    def release(self) -> None:
        """Stop refreshing and remove the lease."""
        self._stop.set()
        self._thread.join()
        self._backend.delete(self.path)


class _UploadStream:
    """Reads a local file for ``Backend.put``, checking for cancellation at each chunk.

    At the end of the file it checks that the file still has the size and mtime it had
    when it was hashed, and raises otherwise, so ``put`` fails before the blob becomes
    visible under a name that does not match its content.
    """

    def __init__(self, local: LocalFile, fh: BinaryIO, worker: Worker, progress: Progress) -> None:
        self._local, self._fh, self._worker, self._progress = local, fh, worker, progress
        self._seen = 0

    def _account(self, n: int) -> None:
        self._seen += n
        if self._seen > self._local.st.st_size or (n == 0 and self._seen != self._local.st.st_size):
            raise _changed_error(self._local)
        if n == 0:
            _check_unchanged(self._local)
        self._progress.update(n)

    def read(self, size: int = -1) -> bytes:
        self._worker.check()
        # Never ask for more than what is left (+1 to notice a file that grew): backends
        # read in large chunks, and a buffer that size per small file is costly.
        left = self._local.st.st_size - self._seen + 1
        data = self._fh.read(left if size is None or size < 0 else min(size, left))
        self._account(len(data))
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        self._worker.check()
        n = self._fh.readinto(buf) or 0
        self._account(n)
        return n


def _changed_error(local: LocalFile) -> ConfigurationError:
    return ConfigurationError(f"{local.path} changed while it was being saved; save again once it is stable")


def _check_unchanged(local: LocalFile) -> None:
    if stat_key(os.stat(local.path)) != stat_key(local.st):
        raise _changed_error(local)


def save_directory(
    store: ObjectStore,
    layout: KeyLayout,
    local_path: str,
    version: str | None,
    *,
    progress_bar: bool,
    overwrite: bool,
    workers: int | None,
    pack_small_files: bool | None = None,
) -> str:
    """Save ``local_path`` under ``layout`` and return the version name (see ObjectStore)."""
    if pack_small_files is None:
        # Packs save requests on remote loads; a store with local files copies blobs.
        pack_small_files = not store.backend.capabilities.local_path
    backend = store.backend
    if not backend.capabilities.writable:
        raise ReadOnlyStoreError(backend.url, f"save {layout.namespace}/{layout.key}")
    root = os.path.abspath(local_path)
    if not os.path.exists(root):
        raise NotFoundError(f"cannot save {local_path!r}: it does not exist")
    if not os.path.isdir(root):
        raise ConfigurationError(f"cannot save {local_path!r}: it is not a folder")
    nworkers = workers or DEFAULT_WORKERS
    store.check_new_version(layout, version, overwrite)
    scan = scan_folder(root)
    cache = HashCache(root)
    worker = Worker()
    lease = Lease(backend, layout)
    try:
        with (
            Progress(progress_bar, sum(f.st.st_size for f in scan.files), len(scan.files), "Saving") as bar,
            backend.open_batch() as batch,
        ):
            # One listing instead of a size request per blob (remote stores: half the
            # requests of a fresh save). Listed after the lease is taken, so garbage
            # collection cannot remove a listed blob while this save relies on it.
            # Sizes come with the listing where the store's listings carry them.
            stored = {path[len(layout.data) :]: size for path, size in backend.list_sizes(layout.data)}
            pipeline = _FilePipeline(backend, batch, layout, stored, cache, worker, bar)
            # Big files first: hashing them is CPU work that then overlaps with the
            # creation of the many small blobs, which the filesystem serializes (one
            # folder lock). Blob writes no longer sync one by one (the batch commits
            # once), so nothing waits behind the big files' dirty data. Measured on
            # ext4: 20% faster and less CPU than small files first.
            order = sorted(scan.files, key=lambda f: f.st.st_size, reverse=True)
            found = dict(
                zip((f.rel for f in order), run_parallel(order, pipeline.save_file, nworkers, worker), strict=True)
            )
            digests = [found[f.rel] for f in scan.files]
            packed = pipeline.save_packs(scan.files, digests, nworkers) if pack_small_files else {}
            # Every blob and pack durable before the manifest that names them exists.
            batch.commit()
        entries = []
        for f, d in zip(scan.files, digests, strict=True):
            entry = {
                "md5": d.md5,
                "sha1": d.sha1,
                "file": d.blob,
                "path": f.rel.split("/"),
                "size": f.st.st_size,
                "sha256": d.sha256,
                "mode": f.st.st_mode & 0o7777,
                "mtime_ns": f.st.st_mtime_ns,
            }
            if d.blob in packed:
                entry["pack"], entry["pack_offset"] = packed[d.blob]
            entries.append(entry)
        manifest = dump_json(entries)
        sidecar = {
            "format": 1,
            "manifest": manifest_digest(manifest),
            "links": [{"path": rel.split("/"), "target": target} for rel, target in sorted(scan.links.items())],
            "dirs": [rel.split("/") for rel in scan.empty_dirs],
            "created": time.time(),
        }
        with defer_interrupt():
            return store.publish(layout, version, manifest, dump_json(sidecar), overwrite)
    finally:
        cache.retain({f.rel for f in scan.files})
        cache.save()
        lease.release()


class _FilePipeline:
    """Hash one file (or take its cached hashes), then upload its blob if the store lacks it.

    One task per file overlaps hashing (CPU) with uploads (I/O) across the workers. A
    small file is read once: the bytes that were hashed are the bytes uploaded, so its
    blob always matches its name. A large file is streamed twice (hash, then upload), and
    the upload fails if the file changed in between.
    """

    def __init__(
        self,
        backend: Backend,
        batch: Batch,
        layout: KeyLayout,
        stored: dict[str, int | None],
        cache: HashCache,
        worker: Worker,
        bar: Progress,
    ) -> None:
        self.backend, self.batch, self.layout, self.stored = backend, batch, layout, stored
        self.cache, self.worker, self.bar = cache, worker, bar
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def save_file(self, local: LocalFile) -> Digests:
        """Return the hashes of ``local`` once its blob is in the store."""
        self.worker.check()
        size = local.st.st_size
        digests = self.cache.get(local.rel, local.st)
        data = None
        if digests is not None and self._needs_upload(self.stored, self.layout.blob(digests.blob), size):
            # A blob about to be stored is named after bytes read now, never on the
            # cache's word alone: a cache of another machine (one home folder on NFS) or a
            # damaged one would otherwise put a file's bytes under another content's name.
            digests, data = self._confirmed(local, digests)
        if digests is None:
            started = time.time_ns()
            if size <= SMALL_FILE:
                data = _read_small(local) if data is None else data
                hasher = Hasher()
                hasher.update(data)
                digests = hasher.digests()
                self.bar.update(size)
            else:
                digests = hash_file(local.path, self.worker.check, self.bar.update)
                _check_unchanged(local)
            self.cache.put(local.rel, local.st, digests, started)
        else:
            self.bar.update(size)
        with self._lock:
            first = digests.blob not in self._claimed
            self._claimed.add(digests.blob)
        # Blobs absent from the listing are uploaded without asking; a listed blob of
        # the wrong size is a leftover of a broken writer: replaced.
        if first and self._needs_upload(self.stored, self.layout.blob(digests.blob), size):
            if data is not None:
                self.batch.put(self.layout.blob(digests.blob), data)
            else:
                self.bar.add_total(size)
                with open(local.path, "rb") as fh:
                    stream = _UploadStream(local, fh, self.worker, self.bar)
                    self.batch.put(self.layout.blob(digests.blob), stream)  # type: ignore[arg-type]
        self.bar.file_done()
        return digests

    def _confirmed(self, local: LocalFile, cached: Digests) -> tuple[Digests | None, bytes | None]:
        """``cached`` if ``local`` still has its sha1, else None: the entry is then wrong
        and the file is hashed again. A small file's bytes come along (read once)."""
        data = None
        if local.st.st_size <= SMALL_FILE:
            data = _read_small(local)
            if hashlib.sha1(data, usedforsecurity=False).hexdigest() == cached.sha1:
                return cached, data
        elif sha1_file(local.path, self.worker.check) == cached.sha1:
            return cached, None
        self.bar.add_total(local.st.st_size)  # hashed again below
        return None, data

    def save_packs(self, files: list[LocalFile], digests: list[Digests], workers: int) -> dict[str, tuple[str, int]]:
        """Store the packs of the small files the store lacks; return each packed blob's pack and offset."""
        sources: dict[str, tuple[LocalFile, Digests]] = {}
        for local, d in zip(files, digests, strict=True):
            sources.setdefault(d.blob, (local, d))
        packs = plan_packs((d.blob, local.st.st_size) for local, d in zip(files, digests, strict=True))
        if not packs:
            return {}
        stored = {path[len(self.layout.packs) :]: size for path, size in self.backend.list_sizes(self.layout.packs)}
        missing = [pack for pack in packs if self._needs_upload(stored, self.layout.pack(pack.name), pack.size)]
        run_parallel(missing, lambda pack: self._save_pack(pack, sources), min(workers, _PACK_WORKERS), self.worker)
        return {blob: (pack.name, offset) for pack in packs for blob, _, offset in pack.members}

    def _save_pack(self, pack: Pack, sources: dict[str, tuple[LocalFile, Digests]]) -> None:
        # The files are read again (their hashes may have come from the cache): each
        # must still hold the bytes its blob was named after.
        parts = []
        for blob, _, _ in pack.members:
            self.worker.check()
            local, digests = sources[blob]
            data = _read_small(local)
            if hashlib.sha1(data, usedforsecurity=False).hexdigest() != digests.sha1:
                raise _changed_error(local)
            parts.append(data)
        self.bar.add_total(pack.size)
        self.batch.put(self.layout.pack(pack.name), b"".join(parts))
        self.bar.update(pack.size)

    def _needs_upload(self, stored: dict[str, int | None], path: str, size: int) -> bool:
        name = path.rpartition("/")[2]
        if name not in stored:
            return True
        listed = stored[name]
        if listed is None:
            listed = self.backend.size(path)
        return listed != size


def _read_small(local: LocalFile) -> bytes:
    with open(local.path, "rb", buffering=0) as fh:
        data = fh.read(local.st.st_size + 1)
        st = os.fstat(fh.fileno())
    if len(data) != local.st.st_size or stat_key(st) != stat_key(local.st):
        raise _changed_error(local)
    return data
