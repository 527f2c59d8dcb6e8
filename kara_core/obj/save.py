"""Saving a folder as a version: scan, hash (cached), upload missing blobs, publish.

Order of visibility: every blob the version names is stored (each one atomically, by
``Backend.put``) before the manifest is created with ``put_if_absent``, and ``meta.json``
is updated last, under the meta lock. A reader of "latest" therefore never sees a
version whose manifest or blobs are missing, and an interrupted save leaves at most
unreferenced blobs that the next save reuses.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, BinaryIO

import orjson

from ..backend import Backend
from ..errors import ConfigurationError, ReadOnlyStoreError
from .hashing import Digests, HashCache, hash_file, stat_key
from .manifest import KeyLayout, dump_json
from .scan import LocalFile, scan_folder
from .tasks import DEFAULT_WORKERS, Progress, Worker, defer_interrupt, run_parallel

if TYPE_CHECKING:
    from .store import ObjectStore

__all__ = ["Lease", "save_directory"]

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
    if host == socket.gethostname():
        # A save on this machine whose process is gone was killed: its lease is void.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


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
        body = {"time": time.time(), "pid": os.getpid(), "host": socket.gethostname()}
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
) -> str:
    """Save ``local_path`` under ``layout`` and return the version name (see ObjectStore)."""
    backend = store.backend
    if not backend.capabilities.writable:
        raise ReadOnlyStoreError(backend.url, f"save {layout.namespace}/{layout.key}")
    root = os.path.abspath(local_path)
    if not os.path.isdir(root):
        raise ConfigurationError(f"cannot save {local_path!r}: it is not a folder")
    nworkers = workers or DEFAULT_WORKERS
    store.check_new_version(layout, version, overwrite)
    scan = scan_folder(root)
    cache = HashCache(root)
    worker = Worker()
    lease = Lease(backend, layout)
    try:
        digests = _hash_all(scan.files, cache, worker, nworkers, progress_bar)
        _upload_missing(backend, layout, scan.files, digests, worker, nworkers, progress_bar)
        entries = [
            {
                "md5": d.md5,
                "sha1": d.sha1,
                "file": d.blob,
                "path": f.rel.split("/"),
                "size": f.st.st_size,
                "sha256": d.sha256,
                "mode": f.st.st_mode & 0o7777,
                "mtime_ns": f.st.st_mtime_ns,
            }
            for f, d in zip(scan.files, digests, strict=True)
        ]
        sidecar = {
            "format": 1,
            "links": [{"path": rel.split("/"), "target": target} for rel, target in sorted(scan.links.items())],
            "dirs": [rel.split("/") for rel in scan.empty_dirs],
            "created": time.time(),
        }
        with defer_interrupt():
            return store.publish(layout, version, dump_json(entries), dump_json(sidecar), overwrite)
    finally:
        cache.retain({f.rel for f in scan.files})
        cache.save()
        lease.release()


def _hash_all(
    files: list[LocalFile], cache: HashCache, worker: Worker, workers: int, progress_bar: bool
) -> list[Digests]:
    cached = [cache.get(f.rel, f.st) for f in files]
    todo = [i for i, d in enumerate(cached) if d is None]
    total = sum(files[i].st.st_size for i in todo)
    done = [0]
    with Progress(progress_bar and bool(todo), total, "Hashing") as bar:

        def one(i: int) -> Digests:
            local = files[i]
            started = time.time_ns()
            digests = hash_file(local.path, worker.check, bar.update)
            _check_unchanged(local)
            cache.put(local.rel, local.st, digests, started)
            done[0] += 1
            bar.postfix(f"{done[0]}/{len(todo)} files")
            return digests

        for i, digests in zip(todo, run_parallel(todo, one, workers, worker), strict=True):
            cached[i] = digests
    return [d for d in cached if d is not None]


def _upload_missing(
    backend: Backend,
    layout: KeyLayout,
    files: list[LocalFile],
    digests: list[Digests],
    worker: Worker,
    workers: int,
    progress_bar: bool,
) -> None:
    # One upload per distinct content; a stored blob of the wrong size is a leftover of
    # a broken writer and is replaced.
    sources: dict[str, LocalFile] = {}
    for local, d in zip(files, digests, strict=True):
        sources.setdefault(d.blob, local)
    blobs = sorted(sources)

    def present(blob: str) -> bool:
        worker.check()
        return backend.size(layout.blob(blob)) == sources[blob].st.st_size

    missing = [b for b, ok in zip(blobs, run_parallel(blobs, present, workers, worker), strict=True) if not ok]
    total = sum(sources[b].st.st_size for b in missing)
    done = [0]
    with Progress(progress_bar and bool(missing), total, "Uploading") as bar:

        def upload(blob: str) -> None:
            local = sources[blob]
            with open(local.path, "rb") as fh:
                backend.put(layout.blob(blob), _UploadStream(local, fh, worker, bar))  # type: ignore[arg-type]
            done[0] += 1
            bar.postfix(f"{done[0]}/{len(missing)} files")

        run_parallel(missing, upload, workers, worker)
