"""Loading a version into a folder: plan, download verified blobs, rename into place.

- Planning compares the folder with the manifest (size first, then hashes from the hash
  cache or from reading the file) and touches nothing.
- Blobs are downloaded in parallel into ``<target>/.kara-staging/files/<path>``, the
  version's tree for the files being downloaded, hashed while they are written and
  checked against the size and sha1 of the manifest (a mismatch is retried, then raises
  :class:`~kara_core.errors.BlobIntegrityError`). Nothing leaves the staging folder
  unverified; an interrupted load resumes from the staged files that verify.
- Files are then renamed into place (same filesystem: each file is either old or new,
  never torn), with Ctrl+C held until the step is done. A folder the target lacks is
  moved in whole with one rename: it holds nothing but verified files of this load.
- ``<target>/.kara/state.json`` remembers what kara placed. Only those files are ever
  deleted or overwritten without ``delete=True``; the state lists the files a load is
  about to place before it places them, so an interrupted load is still accounted for.
- Loads into one folder take turns (:func:`target_lock`): every local rank of a job may
  load the same checkpoint into the same folder; the first downloads, the others wait,
  then find the files in place, and none returns before the folder holds the version.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..backend import Backend, RangeFeed
from ..errors import (
    BlobIntegrityError,
    ConfigurationError,
    CorruptDatasetError,
    KaraError,
    NotFoundError,
    StorageFullError,
)
from ..localdisk import FULL_DISK
from ..localdisk._direct import DIRECT_MIN, DirectReader, copy_to_fd, direct_io_allowed, write_all
from .hashing import Digests, HashCache, sha1_file
from .manifest import FileEntry, KeyLayout, LinkEntry, Manifest
from .packs import PACK_MEMBER_MAX, read_ranges
from .scan import LocalFile, ScanResult, scan_folder
from .tasks import Progress, Worker, defer_interrupt, run_parallel

__all__ = [
    "STAGING_DIR",
    "STATE_DIR",
    "LoadPlan",
    "UnmanagedFilesError",
    "check_room",
    "execute_load",
    "plan_load",
    "target_lock",
]

_log = logging.getLogger(__name__)

STATE_DIR = ".kara"
STAGING_DIR = ".kara-staging"
_STATE_FILE = "state.json"
#: The staging folder's copy of the version's tree (only the files being downloaded).
_FILES = "files"
_PART = ".part-"
_DOWNLOAD_ATTEMPTS = 3
#: Blobs larger than this are fetched as parallel ranged reads from remote stores.
_RANGED_MIN = 32 * 1024 * 1024
_RANGE = 8 * 1024 * 1024
#: Ranged reads of one blob in flight at a time, and the threads that run them.
_RANGES_AHEAD = 4
_RANGE_THREADS = 4
#: From stores with ``capabilities.streamed_reads`` a large blob is fetched as at most
#: ``_RANGES_AHEAD`` concurrent streamed ranges of at least this size, each one request
#: whose answer is read as it arrives (pieces of ``_STREAM_PIECE``, at most
#: ``_STREAM_BUFFER`` bytes of each waiting): as much parallelism for a large blob
#: alone, fewer requests, and no more memory than 8 MiB ranges.
_STREAMED_RANGE = 32 * 1024 * 1024
_STREAM_PIECE = 4 * 1024 * 1024
_STREAM_BUFFER = 8 * 1024 * 1024
_SHOWN = 20
#: Blobs of local stores up to this size are copied with one read and one write.
_WHOLE_MAX = 1024 * 1024
_UTIME_FD = os.utime in os.supports_fd


class UnmanagedFilesError(KaraError, FileExistsError):
    """A load would delete or overwrite files that kara did not place in the folder."""

    def __init__(self, target: str, paths: list[str]) -> None:
        self.target, self.paths = target, paths
        shown = "\n  ".join(paths[:_SHOWN]) + (f"\n  ... and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")
        super().__init__(
            f"refusing to load into {target}: it holds {len(paths)} file(s) that kara did not put there and that "
            f"the load would delete or overwrite:\n  {shown}\n"
            "Load into an empty folder, or pass delete=True (CLI: --delete) to replace them."
        )


@dataclass
class LoadPlan:
    """What a load will do (see :meth:`ObjectStore.plan_load`); paths are ``/``-separated.

    ``download``: files to write (absent or different); ``keep``: files already right;
    ``delete``: files and links that are not in the version and will be removed;
    ``unmanaged``: paths among ``delete`` or ``download`` that kara did not place (the
    load refuses them unless ``delete=True``); ``links``/``dirs``: symbolic links and
    empty folders to create; ``chmod``: kept files whose executable bit changes;
    ``replace_dirs``: folders that sit where the version has a file or a link.
    """

    version: str
    target: str
    download: list[FileEntry] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    links: list[LinkEntry] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    chmod: list[tuple[str, int]] = field(default_factory=list)
    replace_dirs: list[str] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def bytes_to_download(self) -> int:
        """Total size of the files to write."""
        return sum(e.size for e in self.download)

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-able data (for ``--dry-run --json``)."""
        return {
            "version": self.version,
            "target": self.target,
            "download": [e.relpath for e in self.download],
            "bytes_to_download": self.bytes_to_download,
            "keep": self.keep,
            "delete": self.delete,
            "unmanaged": self.unmanaged,
            "links": [link.relpath for link in self.links],
            "dirs": self.dirs,
        }

    def __str__(self) -> str:
        lines = [
            f"load version {self.version!r} into {self.target}: download {len(self.download)} file(s) "
            f"({self.bytes_to_download} bytes), keep {len(self.keep)}, delete {len(self.delete)}"
        ]
        lines += [f"  download {e.relpath}" for e in self.download]
        lines += [f"  link     {link.relpath} -> {link.target}" for link in self.links]
        lines += [f"  mkdir    {d}" for d in self.dirs]
        unmanaged = set(self.unmanaged)
        lines += [
            f"  delete   {p}" + ("  (not placed by kara: needs delete=True)" if p in unmanaged else "")
            for p in self.delete
        ]
        lines += [
            f"  replace  {p}  (not placed by kara: needs delete=True)" for p in self.unmanaged if p not in self.delete
        ]
        return "\n".join(lines)


def _read_state(target: str) -> dict[str, Any]:
    if os.path.islink(os.path.join(target, STATE_DIR)):
        return {}  # not kara's (a load refuses it: target_lock)
    try:
        with open(os.path.join(target, STATE_DIR, _STATE_FILE), "rb") as fh:
            state = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(target: str, state: dict[str, Any]) -> None:
    folder = os.path.join(target, STATE_DIR)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"{_STATE_FILE}{_PART}{uuid.uuid4().hex}")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(state))
    os.replace(tmp, os.path.join(folder, _STATE_FILE))


def _matches(rel: str, st: os.stat_result, path: str, entry: FileEntry, cache: HashCache) -> bool:
    """Whether the local file ``rel`` holds ``entry``'s content: its size and sha1.

    A file the hash cache knows is compared by its cached md5 and sha1. Any other file
    is read once for its sha1 alone (the check a download gets: md5 adds nothing
    against damaged or cut files, and costs 2.5 times sha1's CPU here); one that
    matches is cached with the manifest's hashes, which are then its own.
    """
    if st.st_size != entry.size:
        return False
    digests = cache.get(rel, st)
    if digests is not None:
        return digests.md5 == entry.md5 and digests.sha1 == entry.sha1
    started = time.time_ns()
    if sha1_file(path) != entry.sha1:
        return False
    cache.put(rel, st, Digests(entry.md5, entry.sha1, entry.sha256), started)
    return True


def _make_room(
    plan: LoadPlan, rel: str, disk: dict[str, LocalFile], scan: ScanResult, managed: set[str], managed_dirs: set[str]
) -> None:
    # The version puts a file or a link at rel: a folder there is replaced, and something
    # kara did not place there is the user's (it needs --delete).
    if rel in scan.dirs:
        plan.replace_dirs.append(rel)
        if rel not in managed_dirs:
            plan.unmanaged.append(rel)
    elif (rel in disk or rel in scan.links) and rel not in managed:
        plan.unmanaged.append(rel)


#: The longest staging prefix a file's path gets (``.kara-staging/files/``, plus room).
_STAGING_ROOM = 64


def _check_names_fit(manifest: Manifest, target: str) -> None:
    """Refuse, before anything is written, a version whose paths this file system cannot hold.

    Object stores take names the local disk does not (a 300-byte name from
    ``open_version``): such a load would otherwise fail half-way with the OS's error.
    """
    folder = target
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        name_max, path_max = os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    base = len(os.fsencode(target)) + _STAGING_ROOM
    short = min(name_max, path_max - base) // 4  # a path of fewer characters fits (4 bytes a character at most)
    for parts in [*(e.path for e in manifest.files), *(link.path for link in manifest.links), *manifest.dirs]:
        rel = "/".join(parts)
        if len(rel) < short:
            continue
        shown = rel if len(rel) <= 80 else rel[:77] + "..."
        longest = max(len(part.encode("utf-8", "surrogatepass")) for part in parts)
        if longest > name_max:
            raise ConfigurationError(
                f"cannot load into {target!r}: the version's path {shown!r} has a name of {longest} bytes, "
                f"and this file system takes {name_max}"
            )
        if base + len(rel.encode("utf-8", "surrogatepass")) >= path_max:
            raise ConfigurationError(
                f"cannot load into {target!r}: the version's path {shown!r} would be longer than this "
                f"file system takes ({path_max} bytes)"
            )


def plan_load(manifest: Manifest, version: str, local_path: str) -> LoadPlan:
    """Compare the folder ``local_path`` with ``manifest`` and return the plan."""
    target = os.path.abspath(local_path)
    plan = LoadPlan(version, target)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise ConfigurationError(f"cannot load into {local_path!r}: it exists and is not a folder")
    _check_names_fit(manifest, target)
    scan = scan_folder(target, strict=False) if os.path.isdir(target) else ScanResult()
    state = _read_state(target)
    plan.previous = state
    managed = set(state.get("files", [])) | set(state.get("links", []))
    managed_dirs = set(state.get("dirs", []))
    disk = {f.rel: f for f in scan.files}
    cache = HashCache(target)

    wanted = {e.relpath: e for e in manifest.files}
    candidates = [(rel, e) for rel, e in wanted.items() if rel in disk and disk[rel].st.st_size == e.size]
    same = run_parallel(
        candidates, lambda item: _matches(item[0], disk[item[0]].st, disk[item[0]].path, item[1], cache), 4, Worker()
    )
    unchanged = {rel for (rel, _), ok in zip(candidates, same, strict=True) if ok}
    cache.save()
    for rel, entry in sorted(wanted.items()):
        if rel in unchanged:
            plan.keep.append(rel)
            mode = disk[rel].st.st_mode
            if entry.mode is not None and bool(mode & 0o111) != entry.executable:
                plan.chmod.append((rel, entry.mode))
            continue
        plan.download.append(entry)
        _make_room(plan, rel, disk, scan, managed, managed_dirs)
    for link in manifest.links:
        rel = link.relpath
        if scan.links.get(rel) == link.target:
            plan.keep.append(rel)
            continue
        plan.links.append(link)
        _make_room(plan, rel, disk, scan, managed, managed_dirs)
    wanted_links = {link.relpath for link in manifest.links}
    for rel in sorted([*disk, *scan.links]):
        if rel not in wanted and rel not in wanted_links:
            plan.delete.append(rel)
            if rel not in managed:
                plan.unmanaged.append(rel)
    plan.dirs = sorted("/".join(parts) for parts in manifest.dirs if "/".join(parts) not in scan.dirs)
    plan.unmanaged.sort()
    return plan


class _Downloader:
    """Fetches blobs into the staging folder, verified, retried, cancellable."""

    def __init__(
        self, backend: Backend, layout: KeyLayout, staging: str, staged: set[str], worker: Worker, bar: Progress
    ) -> None:
        self.backend, self.layout, self.staging, self.worker, self.bar = backend, layout, staging, worker, bar
        self.staged = staged
        #: The stat of each staged blob once it is final (its key in the hash cache).
        self.stats: dict[str, os.stat_result] = {}
        self._local = backend.capabilities.local_path
        self._ranged = backend.capabilities.parallel_reads

    def fetch(self, entry: FileEntry) -> None:
        """Put the verified content of ``entry`` at its staging path (or raise)."""
        if not self._kept_from_staging(entry):
            self._fetch_blob(entry)

    def _kept_from_staging(self, entry: FileEntry) -> bool:
        """Whether a file an interrupted run staged for ``entry`` verifies now (and is kept).

        Such a file may be partial (or another version's): it is kept only if it verifies.
        """
        final = staged_path(self.staging, entry.relpath)
        if entry.relpath in self.staged and _staged_is_valid(final, entry, self.worker):
            self.bar.update(entry.size)
            self._finish(final, entry)
            return True
        return False

    def _fetch_blob(self, entry: FileEntry) -> None:
        """Download ``entry``'s blob to its staging path, verified and retried (or raise)."""
        final = staged_path(self.staging, entry.relpath)
        path = self.layout.blob(entry.file)
        try:
            for _ in range(_DOWNLOAD_ATTEMPTS):
                written, sha1, st = self._download(path, final, entry)
                if written == entry.size and sha1 == entry.sha1:
                    self.stats[entry.file] = st
                    self.bar.file_done()
                    return
        except NotFoundError:
            _unlink(final)
            raise BlobIntegrityError(
                f"blob {entry.file} (for {entry.relpath}) is missing from {self.backend.url}/{self.layout.data}; "
                "the version cannot be loaded (run `kara verify` to list every problem)"
            ) from None
        except BaseException:
            _unlink(final)
            raise
        _unlink(final)
        raise BlobIntegrityError(
            f"blob {entry.file} (for {entry.relpath}) in {self.backend.url}/{self.layout.data} does not match its "
            f"size and sha1 after {_DOWNLOAD_ATTEMPTS} downloads: the stored copy is corrupted (run `kara verify`); "
            "nothing in the target folder was changed"
        )

    def _finish(self, path: str, entry: FileEntry) -> None:
        # A staged blob kept from an interrupted run.
        if entry.mtime_ns is not None:
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
        self.stats[entry.file] = os.stat(path)
        self.bar.file_done()

    def _download(self, path: str, part: str, entry: FileEntry) -> tuple[int, str, os.stat_result]:
        """Copy blob ``path`` to ``part``; return its size, sha1 and the stat of ``part``.

        The saved mtime is set (through the open file, in parallel, rather than in the
        short single-threaded rename step) before the stat, which is the placed file's
        key in the hash cache.
        """
        size = entry.size

        def fill(fd: int) -> tuple[int, str]:
            if self._local and size <= _WHOLE_MAX:
                return self._copy_whole(path, fd, size)
            return self._copy_stream(path, fd, size)

        return _write_staged(part, entry, fill)

    def fetch_pack(self, task: _PackTask) -> None:
        """Stage the files of ``task`` from their pack; those it cannot serve come from their blobs."""
        todo = [entry for entry in task.entries if not self._kept_from_staging(entry)]
        fallback: list[FileEntry] = []
        path = self.layout.pack(task.pack)
        for span in read_ranges((e, e.pack_offset or 0, e.size) for e in todo):
            self.worker.check()
            try:
                data = memoryview(self.backend.read(path, span.start, span.end))
            except (KaraError, OSError):
                # A missing or unreadable pack costs requests, nothing else.
                fallback.extend(entry for entry, _, _ in span.members)
                continue
            for entry, offset, size in span.members:
                piece = data[offset - span.start : offset - span.start + size]
                if len(piece) != size or hashlib.sha1(piece).hexdigest() != entry.sha1:
                    fallback.append(entry)
                    continue
                final = staged_path(self.staging, entry.relpath)
                try:
                    *_, st = _write_staged(final, entry, _writes(piece, entry.sha1))
                except BaseException:
                    _unlink(final)
                    raise
                self.stats[entry.file] = st
                self.bar.update(size)
                self.bar.file_done()
        for entry in fallback:
            self._fetch_blob(entry)

    def run(self, task: FileEntry | _PackTask) -> None:
        """Stage one blob, or the files of one pack."""
        if isinstance(task, _PackTask):
            self.fetch_pack(task)
        else:
            self.fetch(task)

    def _copy_whole(self, path: str, fd: int, size: int) -> tuple[int, str]:
        # A small blob of a local store: one read, one hash, one write (thousands of
        # small files make the per-file overhead the cost of a load).
        self.worker.check()
        local = self.backend.local_path(path)
        try:
            source = os.open(local, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"{self.backend.url}/{path} does not exist") from None
        try:
            # One byte more than expected, to notice a blob that is too long.
            data = os.read(source, size + 1)
            while len(data) <= size:
                more = os.read(source, size + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(source)
        write_all(fd, memoryview(data))
        self.bar.update(len(data))
        return len(data), hashlib.sha1(data).hexdigest()

    def _copy_stream(self, path: str, fd: int, size: int) -> tuple[int, str]:
        hasher = hashlib.sha1()

        def consume(chunk: memoryview) -> None:
            self.worker.check()
            hasher.update(chunk)
            self.bar.update(len(chunk))

        # Large files bypass the page cache on both ends (see kara_core.localdisk._direct).
        direct = size >= DIRECT_MIN and direct_io_allowed()
        with self._open_source(path, size, direct) as source:
            written = copy_to_fd(fd, source.readinto, consume, direct=direct)
        return written, hasher.hexdigest()

    def _open_source(self, path: str, size: int, direct: bool) -> Any:
        """The blob as a context manager with ``readinto``: a local file, ranges or a stream."""
        if not self._local and self._ranged and size > _RANGED_MIN:
            if self.backend.capabilities.streamed_reads:
                return _StreamedRanges(self.backend, path, size, self.worker)
            return _RangeReader(self.backend, path, size, self.worker)
        local = self.backend.local_path(path) if self._local else None
        if local is None:
            return self.backend.open_read(path)
        try:
            return DirectReader(local, direct)
        except FileNotFoundError:
            raise NotFoundError(f"{self.backend.url}/{path} does not exist") from None


_Fill = Callable[[int], tuple[int, str]]


def _write_staged(part: str, entry: FileEntry, fill: _Fill) -> tuple[int, str, os.stat_result]:
    """Create ``part`` for ``entry``, let ``fill`` write it; return what ``fill`` returns and the stat.

    The file is created with the saved permission bits (the umask applies, as for any
    new file), and the saved mtime is set through the open file (in parallel, rather
    than in the short single-threaded rename step) before the stat, which is the placed
    file's key in the hash cache.
    """
    mode = (entry.mode if entry.mode is not None else 0o666) & 0o777
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        written, sha1 = fill(fd)
        if entry.mtime_ns is not None:
            os.utime(fd if _UTIME_FD else part, ns=(entry.mtime_ns, entry.mtime_ns))
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return written, sha1, st


def _writes(data: memoryview, sha1: str) -> _Fill:
    """A ``fill`` for :func:`_write_staged` that writes ``data``, whose sha1 is known."""

    def fill(fd: int) -> tuple[int, str]:
        write_all(fd, data)
        return len(data), sha1

    return fill


@dataclass(frozen=True)
class _PackTask:
    """Files to stage from one pack (each one blob's canonical entry)."""

    pack: str
    entries: tuple[FileEntry, ...]


def _with_packs(entries: list[FileEntry]) -> list[FileEntry | _PackTask]:
    """``entries`` with the files that share a pack gathered into one task per pack, first."""
    by_pack: dict[str, list[FileEntry]] = {}
    for entry in entries:
        # Only what a save packs is taken from a pack (a manifest cannot make a load
        # read a large file into memory).
        if entry.pack is not None and entry.size <= PACK_MEMBER_MAX:
            by_pack.setdefault(entry.pack, []).append(entry)
    # A pack that would serve one file saves no request: its blob is fetched.
    tasks: list[FileEntry | _PackTask] = [
        _PackTask(name, tuple(group)) for name, group in by_pack.items() if len(group) > 1
    ]
    from_packs = {id(e) for task in tasks if isinstance(task, _PackTask) for e in task.entries}
    tasks += [e for e in entries if id(e) not in from_packs]
    return tasks


class _InOrder:
    """A ``readinto`` over a remote blob that arrives as consecutive pieces, in order.

    Subclasses hand over the next piece with :meth:`_next_piece` (None at the end) and
    stop their fetches in :meth:`close`; the caller consumes the blob in order, so the
    file is hashed as it is written (one pass, no read-back) and can be written with
    direct I/O, while the fetches overlap their round trips.
    """

    def __init__(self) -> None:
        self._block = memoryview(b"")
        self._offset = 0

    def _next_piece(self) -> bytes | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def readinto(self, buf: memoryview) -> int:
        """Copy the next bytes of the blob into ``buf``; 0 at the end."""
        if self._offset == len(self._block):
            piece = self._next_piece()
            if piece is None:
                return 0
            self._block, self._offset = memoryview(piece), 0
        n = min(len(buf), len(self._block) - self._offset)
        buf[:n] = self._block[self._offset : self._offset + n]
        self._offset += n
        return n

    def __enter__(self) -> _InOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RangeReader(_InOrder):
    """A blob fetched as parallel ranged reads: ``_RANGES_AHEAD`` ranges in flight at any time."""

    def __init__(self, backend: Backend, path: str, size: int, worker: Worker) -> None:
        super().__init__()
        self._backend, self._path, self._size, self._worker = backend, path, size, worker
        self._pool = ThreadPoolExecutor(max_workers=_RANGE_THREADS, thread_name_prefix="kara-range")
        self._starts = iter(range(0, size, _RANGE))
        self._ahead: collections.deque[Future[bytes]] = collections.deque()
        for _ in range(_RANGES_AHEAD):
            self._submit()

    def _submit(self) -> None:
        start = next(self._starts, None)
        if start is not None:
            self._ahead.append(self._pool.submit(self._fetch, start))

    def _fetch(self, start: int) -> bytes:
        self._worker.check()
        return self._backend.read(self._path, start, min(start + _RANGE, self._size))

    def _next_piece(self) -> bytes | None:
        if not self._ahead:
            return None
        piece = self._ahead.popleft().result()
        self._submit()
        return piece

    def close(self) -> None:
        """Drop the ranges not started yet and wait for the running ones."""
        for future in self._ahead:
            future.cancel()
        self._pool.shutdown(wait=True)


class _StreamedRanges(_InOrder):
    """A blob fetched as concurrent streamed ranges.

    The blob is cut into at most ``_RANGES_AHEAD`` ranges of at least ``_STREAMED_RANGE``
    bytes, all requested at once (:class:`~kara_core.backend.RangeFeed`). A blob shorter
    than its manifest size ends early: the caller's size check catches it (and retries).
    """

    def __init__(self, backend: Backend, path: str, size: int, worker: Worker) -> None:
        super().__init__()
        self._worker = worker
        part = max(_STREAMED_RANGE, -(-size // _RANGES_AHEAD))
        cuts = [*range(0, size, part), size]
        self._feeds = collections.deque(
            RangeFeed(backend, path, start, end, _STREAM_PIECE, _STREAM_BUFFER)
            for start, end in itertools.pairwise(cuts)
        )
        self._started = list(self._feeds)

    def _next_piece(self) -> bytes | None:
        while self._feeds and self._feeds[0].position == self._feeds[0].end:
            self._feeds.popleft()
        if not self._feeds:
            return None
        self._worker.check()
        try:
            return self._feeds[0].next_piece()[1]
        except CorruptDatasetError:
            # A short blob: the caller sees fewer bytes than expected (and retries).
            self.close()
            return None

    def close(self) -> None:
        """Stop the streams and wait for their threads."""
        while self._feeds:
            self._feeds.popleft().cancel()
        for feed in self._started:
            feed.join()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _staged_is_valid(path: str, entry: FileEntry, worker: Worker) -> bool:
    try:
        if os.stat(path).st_size != entry.size:
            return False
        return sha1_file(path, worker.check) == entry.sha1
    except FileNotFoundError:
        return False


def staged_path(staging: str, rel: str) -> str:
    """Where the file ``rel`` of the version is staged: at the same path under ``files/``."""
    return os.path.join(staging, _FILES, *rel.split("/"))


def _prepare_staging(staging: str, entries: list[FileEntry]) -> set[str]:
    """Clear what an interrupted run left that is of no use; return the staged paths kept.

    Temporary files, files this load does not stage, links and anything outside
    ``files/`` (the layout of older kara versions) are removed. The folders of every staged file
    are created here, once, rather than by each download.
    """
    wanted = {e.relpath for e in entries}
    files = os.path.join(staging, _FILES)
    kept = set()
    # Links are never kara's: one in the staging tree would send downloads elsewhere.
    for path in (staging, files):
        if os.path.islink(path):
            os.unlink(path)
    for dirpath, dirnames, filenames in os.walk(staging):
        for name in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            os.unlink(os.path.join(dirpath, name))
            dirnames.remove(name)
        inside = dirpath == files or dirpath.startswith(files + os.sep)
        rel_dir = os.path.relpath(dirpath, files).replace(os.sep, "/") if inside else ""
        for name in filenames:
            rel = name if rel_dir in ("", ".") else f"{rel_dir}/{name}"
            if inside and _PART not in name and rel in wanted:
                kept.add(rel)
            else:
                _unlink(os.path.join(dirpath, name))
        if dirpath == staging:
            for name in [d for d in dirnames if d != _FILES]:
                _remove(os.path.join(staging, name))
            dirnames[:] = [d for d in dirnames if d == _FILES]
    for parent in {e.relpath.rpartition("/")[0] for e in entries}:
        os.makedirs(staged_path(staging, parent) if parent else files, exist_ok=True)
    return kept


def _remove(path: str) -> None:
    # Gone already is fine: a replaced folder took its files with it.
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)


def _folder_at(full: str) -> bool:
    """Whether a folder is at ``full``, once a stale file or link there is removed."""
    if os.path.isdir(full) and not os.path.islink(full):
        return True
    if os.path.lexists(full):
        os.unlink(full)  # a stale file or link where the version has a folder
    return False


class _Placer:
    """Renames staged files into place, creating parent folders and clearing conflicts."""

    def __init__(self, target: str, created_dirs: set[str], dirs_in_the_way: set[str]) -> None:
        self.target = target
        self.created = created_dirs
        self._in_the_way = dirs_in_the_way
        self._known: set[str] = set()
        #: Folders moved in whole from the staging tree.
        self._moved: set[str] = set()

    def dest(self, rel: str) -> str:
        """The absolute path of ``rel`` in the target folder."""
        # Manifest paths are validated ``/``-separated components (see manifest.py).
        return f"{self.target}{os.sep}{rel}" if os.sep == "/" else os.path.join(self.target, *rel.split("/"))

    def ensure_parent(self, rel: str) -> None:
        """Create the folders above ``rel``."""
        parent = rel.rpartition("/")[0]
        if parent:
            self.ensure_dir(parent)

    def ensure_dir(self, rel: str) -> None:
        """Create folder ``rel`` and its parents, replacing stale files in the way."""
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._known:
                continue
            full = self.dest(sub)
            if not _folder_at(full):
                os.mkdir(full)
                self.created.add(sub)
            self._known.add(sub)

    def place(self, source: str, rel: str) -> None:
        """Rename ``source`` to ``rel``, replacing a stale folder in the way."""
        self.ensure_parent(rel)
        dest = self.dest(rel)
        if rel in self._in_the_way:
            shutil.rmtree(dest)
        os.replace(source, dest)

    def place_staged(self, staging: str, rel: str) -> None:
        """Move the staged file ``rel`` into place, or the first of its folders the target lacks.

        Such a folder holds only staged files of this load (see :func:`_prepare_staging`)
        and is moved in whole, with one rename, when the first of its files is placed:
        a load into an empty folder renames its top-level entries, not every file.
        """
        parts = rel.split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub in self._moved:
                self.created.update("/".join(parts[:j]) for j in range(i + 1, len(parts)))
                return
            if sub in self._known:
                continue
            full = self.dest(sub)
            if _folder_at(full):
                self._known.add(sub)
                continue
            os.rename(staged_path(staging, sub), full)
            self._moved.add(sub)
            self.created.update("/".join(parts[:j]) for j in range(i, len(parts)))
            return
        self.place(staged_path(staging, rel), rel)


#: Threads added to a load for large files written with direct I/O (at most).
_DIRECT_THREADS = 4


def _download_order(entries: list[FileEntry]) -> tuple[list[FileEntry], int]:
    """The order in which to fetch ``entries``, and how many threads to add for it."""
    if direct_io_allowed() and entries and max(e.size for e in entries) >= DIRECT_MIN:
        # Large files go first, in threads of their own: written with O_DIRECT they
        # mostly wait for the disk, while the small files' work (creating files,
        # hashing) keeps the CPUs busy meanwhile. Measured on ext4, 2,000 small files
        # plus 4 x 64 MiB: 0.35-0.39 s instead of 0.6-0.78 s with large files last.
        entries.sort(key=lambda e: e.size, reverse=True)
        return entries, min(_DIRECT_THREADS, sum(e.size >= DIRECT_MIN for e in entries))
    # Without direct I/O, small files first: on journaling filesystems (ext4
    # data=ordered) creating files stalls behind commits that must flush every dirty
    # data block, so the big buffered writes come last.
    entries.sort(key=lambda e: e.size)
    return entries, 0


LOCK_FILE = "load.lock"


@contextlib.contextmanager
def target_lock(target: str) -> Iterator[None]:
    """Hold the lock of loads into the folder ``target`` (waiting for it if taken).

    Two loads into one folder at once would share its staging folder (each clearing or
    overwriting what the other staged) and place files of both. The lock is an ``flock``
    of ``<target>/.kara/load.lock``, which the kernel releases when the holder exits,
    however it exits (on NFS, the client turns it into a POSIX lock of the server).
    """
    folder = os.path.join(target, STATE_DIR)
    if os.path.islink(folder):
        # kara writes its state, lock and staged files only inside the target: a link
        # here (planted, or left by a tool) would send them elsewhere.
        raise ConfigurationError(
            f"cannot load into {target}: {folder} is a symbolic link (to {os.readlink(folder)!r}), and kara "
            "keeps the folder's load state in a real folder there; remove the link"
        )
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info("waiting for another load into %s to finish", target)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def execute_load(
    backend: Backend,
    layout: KeyLayout,
    manifest: Manifest,
    plan: LoadPlan,
    *,
    delete: bool,
    progress_bar: bool,
    workers: int,
) -> None:
    """Carry out ``plan`` (see :func:`plan_load`) for ``manifest`` read from ``layout``."""
    if plan.unmanaged and not delete:
        raise UnmanagedFilesError(plan.target, plan.unmanaged)
    target = plan.target
    previous = plan.previous
    old_files = set(previous.get("files", []))
    old_links = set(previous.get("links", []))
    created_dirs = set(previous.get("dirs", []))
    new_files = {e.relpath for e in manifest.files}
    new_links = {link.relpath for link in manifest.links}
    staging = os.path.join(target, STAGING_DIR)
    # One entry per blob, the last one using it: the blob is downloaded to its path.
    canonical = {e.file: e for e in plan.download}
    check_room(plan)
    umask = os.umask(0)
    os.umask(umask)
    staged_stats: dict[str, os.stat_result] = {}
    try:
        os.makedirs(target, exist_ok=True)
        if plan.download or plan.links:
            # Record what this load may place before placing it, so an interrupted
            # load's files still count as kara's.
            _write_state(
                target,
                {
                    "version": plan.version,
                    "pending": True,
                    "files": sorted(old_files | new_files),
                    "links": sorted(old_links | new_links),
                    "dirs": sorted(created_dirs),
                },
            )
        if plan.download:
            unique, extra = _download_order(list(canonical.values()))
            staged = _prepare_staging(staging, unique)
            worker = Worker()
            with Progress(progress_bar, sum(e.size for e in unique), len(unique), "Downloading") as bar:
                downloader = _Downloader(backend, layout, staging, staged, worker, bar)
                # Small files come from their packs where a request costs more than a
                # file (remote stores); a local store copies them one by one.
                tasks = unique if backend.capabilities.local_path else _with_packs(unique)
                run_parallel(tasks, downloader.run, workers + extra, worker)
                staged_stats = downloader.stats
        # Each blob was staged at the path of its canonical entry: the other entries of
        # the same content get copies, all made in the staging folder before anything
        # in the target changes.
        for e in plan.download:
            path = staged_path(staging, e.relpath)
            want = (e.mode if e.mode is not None else 0o666) & 0o777 & ~umask
            if e is not canonical[e.file]:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                shutil.copyfile(staged_path(staging, canonical[e.file].relpath), path)
                os.chmod(path, want)
                if e.mtime_ns is not None:
                    os.utime(path, ns=(e.mtime_ns, e.mtime_ns))
            elif stat.S_IMODE(staged_stats[e.file].st_mode) != want:
                os.chmod(path, want)
    except OSError as exc:
        if exc.errno not in FULL_DISK:
            raise
        # Nothing in the target changed yet; the staged files go, to give the space back.
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageFullError(
            exc.errno,
            f"loading version {plan.version!r} into {target} ran out of disk ({exc.strerror}): the folder "
            "holds what it held before, and the files downloaded so far were removed to give the space back",
        ) from None

    cache = HashCache(target)
    placer = _Placer(target, created_dirs, set(plan.replace_dirs))
    with defer_interrupt():
        # Stale entries go first: a file of the old version may sit where the new one
        # has a folder.
        for rel in plan.delete:
            _remove(placer.dest(rel))
        now = time.time_ns()
        for e in plan.download:
            placer.place_staged(staging, e.relpath)
            # The placed file's own stat: a rename (and a chmod) changes the ctime.
            cache.put(e.relpath, os.stat(placer.dest(e.relpath)), Digests(e.md5, e.sha1, e.sha256), now)
        for link in plan.links:
            tmp = os.path.join(staging, f"link{_PART}{uuid.uuid4().hex}")
            os.makedirs(staging, exist_ok=True)
            os.symlink(link.target, tmp)
            placer.place(tmp, link.relpath)
        for rel, mode in plan.chmod:
            os.chmod(placer.dest(rel), mode & 0o777 & ~umask)
        for rel in plan.dirs:
            placer.ensure_dir(rel)
        _prune_dirs(target, created_dirs, manifest)
        _write_state(
            target,
            {
                "version": plan.version,
                "files": sorted(new_files),
                "links": sorted(new_links),
                "dirs": sorted(created_dirs),
            },
        )
    cache.retain(new_files)
    cache.save()
    shutil.rmtree(staging, ignore_errors=True)


def check_room(plan: LoadPlan) -> None:
    """Refuse a load whose files cannot fit on the target's disk, before anything is written.

    A load needs room for every file it downloads (staged beside the old ones, which go
    only once the new ones are in place) and for the copies of files of the same
    content; a file an interrupted load left staged at its full size is counted as
    there. Sizes are counted as the disk allocates them (whole blocks), uncompressed.
    File systems that tell no size (``f_blocks`` 0: ramfs, some FUSE ones) are not checked.
    """
    if not plan.download:
        return
    staging = os.path.join(plan.target, STAGING_DIR)
    canonical = {e.file: e for e in plan.download}
    folder = plan.target
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        disk = os.statvfs(folder)
    except OSError:
        return
    if not disk.f_blocks:
        return  # a file system that tells no size (ramfs, some FUSE ones): nothing to check
    unit = disk.f_frsize or disk.f_bsize or 4096
    need = files = 0
    for entry in plan.download:
        if entry is canonical[entry.file]:
            try:
                if os.stat(staged_path(staging, entry.relpath)).st_size == entry.size:
                    continue
            except OSError:
                pass
        need += -(-entry.size // unit) * unit
        files += 1
    free = disk.f_bavail * unit
    what = f"loading version {plan.version!r} into {plan.target}"
    if need > free:
        raise StorageFullError(
            errno.ENOSPC,
            f"{what} needs {_megabytes(need)} of disk for {files} file(s), and the disk of {folder} has "
            f"{_megabytes(free)} free: nothing was written (free space there, or load into another disk)",
        )
    if disk.f_files and files > disk.f_favail:
        raise StorageFullError(
            errno.ENOSPC,
            f"{what} creates {files} file(s), and the disk of {folder} has room for {disk.f_favail} more "
            "(it is out of inodes): nothing was written",
        )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _prune_dirs(target: str, created: set[str], manifest: Manifest) -> None:
    # Folders kara created that the version no longer needs go away if they are empty
    # (a user's files inside keep them); deepest first.
    needed = {"/".join(parts) for parts in manifest.dirs}
    for parts in [*(e.path for e in manifest.files), *(link.path for link in manifest.links)]:
        needed.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for rel in sorted(created - needed, key=lambda r: r.count("/"), reverse=True):
        full = os.path.join(target, *rel.split("/"))
        try:
            if stat.S_ISDIR(os.lstat(full).st_mode):
                os.rmdir(full)
        except OSError:
            continue
        created.discard(rel)
    created.difference_update([r for r in created if not os.path.isdir(os.path.join(target, *r.split("/")))])
