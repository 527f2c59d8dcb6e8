"""Versions written file by file from memory or streams, and seekable readers of stored files.

A save from a local folder hashes files that exist; here the content arrives while the
version is being written (``torch.save`` into :meth:`VersionWriter.open_file`, a tensor
handed over by a distributed checkpoint). Each file still becomes one content-addressed
blob ``data/<md5>_<sha1>``, so what is written is an ordinary directory version that
``load_directory`` (kara's or 2.x's) reproduces:

- :class:`BlobSink` stores blobs of one key: it hashes the bytes, skips blobs the store
  already has (listed once) and puts the others through one backend batch. ``commit``
  makes them durable; a lease keeps garbage collection away meanwhile.
- :class:`VersionWriter` (``store.open_version``) collects files and publishes the
  version with the object store's own :meth:`~kara_core.obj.ObjectStore.publish` when its
  block ends without error; an exception publishes nothing.
- :class:`BlobFile` is a writable file of a version. Its name is the hash of everything
  written, known only at the end, so it is a :class:`~kara_core.obj.upload.StreamedUpload`:
  the bytes are hashed and written to a staging object as they arrive, and ``close``
  moves that object to its content name (memory stays bounded, whatever the size).
- :class:`BlobReader` is a seekable reader of one stored file (``open_file(..., "rb")``):
  ``mmap`` of the blob on stores with local files, else ranged reads with read-ahead.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ..backend import Backend
from ..errors import BlobIntegrityError, ConfigurationError, CorruptDatasetError, ReadOnlyStoreError
from ..localdisk import Buffers, raise_disk_error, same_as_cached_file
from .hashing import Digests, hash_views
from .manifest import KeyLayout, check_relative_parts, dump_json
from .save import Lease
from .tasks import defer_interrupt
from .upload import StreamedUpload

if TYPE_CHECKING:
    from .store import ObjectStore

__all__ = ["BlobFile", "BlobReader", "BlobSink", "SeekableReader", "StoredBlob", "VersionWriter", "split_file_path"]

#: Bytes a remote :class:`BlobReader` fetches per request; while reading sequentially it
#: fetches the next window in the background.
READ_AHEAD = 8 * 1024 * 1024

#: Mode of the files of a version written here (2.x has no modes; kara records one).
FILE_MODE = 0o644


def split_file_path(path: str) -> tuple[str, ...]:
    """Return the components of a ``/``-separated path inside a version, validated."""
    if not isinstance(path, str):
        raise ConfigurationError(f"a file path inside a version must be a string, got {path!r}")
    return check_relative_parts(path.split("/"), "file path")


@dataclass(frozen=True)
class StoredBlob:
    """A blob in the store: its hashes, its size, and whether this sink uploaded it."""

    digests: Digests
    size: int
    uploaded: bool

    def entry(self, parts: tuple[str, ...]) -> dict[str, Any]:
        """The manifest entry of a file at ``parts`` holding this blob."""
        entry: dict[str, Any] = {
            "md5": self.digests.md5,
            "sha1": self.digests.sha1,
            "file": self.digests.blob,
            "path": list(parts),
            "size": self.size,
            "mode": FILE_MODE,
        }
        if self.digests.sha256 is not None:
            entry["sha256"] = self.digests.sha256
        return entry


class BlobSink:
    """Stores content-addressed blobs of one key, each once; thread safe.

    ``uploaded_blobs``/``uploaded_bytes`` count what was sent to the store,
    ``reused_blobs`` what the store already had. Use as a context manager, or call
    :meth:`close`: blobs not committed by then are dropped.
    """

    def __init__(self, backend: Backend, layout: KeyLayout) -> None:
        if not backend.capabilities.writable:
            raise ReadOnlyStoreError(backend.url, f"write {layout.namespace}/{layout.key}")
        self.backend, self.layout = backend, layout
        self.uploaded_blobs = 0
        self.uploaded_bytes = 0
        self.reused_blobs = 0
        self._lock = threading.Lock()
        #: sha1 -> md5 of the blobs this sink stored or reused.
        self._claimed: dict[str, str] = {}
        # The lease is taken before the listing, so garbage collection cannot remove a
        # listed blob that this sink then relies on.
        self._lease = Lease(backend, layout)
        self._batch = backend.open_batch()
        #: sha1 -> md5 of the blobs the store held when first asked (one listing).
        self._listed: dict[str, str] | None = None

    def _listed_md5(self, sha1: str) -> str | None:
        with self._lock:
            if self._listed is None:
                data = self.layout.data
                names = (path[len(data) :] for path in self.backend.list(data))
                self._listed = {sha: md5 for md5, _, sha in (name.partition("_") for name in names) if len(sha) == 40}
            return self._listed.get(sha1)

    def _key_has_no_blobs(self) -> bool:
        """True if the store held no blob of this key when first asked (one listing)."""
        self._listed_md5("")
        return not self._listed

    def _known(self, sha1: str, size: int) -> str | None:
        """The md5 of a blob with this sha1 and size that is stored (or being stored by this sink)."""
        with self._lock:
            md5 = self._claimed.get(sha1)
        if md5 is not None:
            return md5
        md5 = self._listed_md5(sha1)
        # A listed blob of the wrong size is the leftover of a broken writer: replaced.
        if md5 is None or self.backend.size(self.layout.blob(f"{md5}_{sha1}")) != size:
            return None
        with self._lock:
            self._claimed.setdefault(sha1, md5)
        return md5

    def _claim(self, digests: Digests, size: int) -> bool:
        """True if this call must upload the blob (first claim and the store lacks it)."""
        if self._known(digests.sha1, size) == digests.md5:
            with self._lock:
                self.reused_blobs += 1
            return False
        with self._lock:
            first = self._claimed.get(digests.sha1) != digests.md5
            self._claimed.setdefault(digests.sha1, digests.md5)
        if not first:
            with self._lock:
                self.reused_blobs += 1
        return first

    def _count_upload(self, size: int) -> None:
        with self._lock:
            self.uploaded_blobs += 1
            self.uploaded_bytes += size

    def store_bytes(self, data: bytes | bytearray | memoryview, *, sha256: bool = False) -> StoredBlob:
        """Hash ``data`` (in the calling thread) and upload it unless the store has it.

        sha1 is computed first: content whose sha1 and size match a stored blob is that
        blob (the md5 half of its name comes from the listing), so unchanged content
        costs one sha1 pass and no md5 (the slower hash) unless ``sha256`` is asked for.
        """
        return self.store_parts([data], sha256=sha256)

    def store_parts(
        self, parts: list[bytes | bytearray | memoryview], *, sha256: bool = False, like: Digests | None = None
    ) -> StoredBlob:
        """Like :meth:`store_bytes` for content made of ``parts`` in order, never joined.

        The parts are hashed where they are and handed to the store as
        :class:`~kara_core.localdisk.Buffers` (``os.writev`` on file://): a tensor's
        memory goes to the store without a copy into an intermediate buffer. The parts
        must stay unchanged until this returns.

        ``like``: the digests of a stored blob of this key that the content probably
        equals (the same file in the previous version). On stores with local files,
        when that blob is wholly in the page cache, the content is compared with it byte
        for byte (:func:`~kara_core.localdisk.same_as_cached_file`, a fraction of a
        sha1 pass); if every byte matches, the content is that blob, unhashed. If it
        differs, all its digests are computed in one pass (it is most likely new);
        where the comparison cannot be made, it is hashed as without ``like``.
        """
        views = [view for view in (memoryview(p).cast("B") for p in parts) if len(view)]
        size = sum(len(view) for view in views)
        same = self._same_as(like, views) if like is not None and not sha256 else None
        if same:
            with self._lock:
                self._claimed.setdefault(like.sha1, like.md5)
                self.reused_blobs += 1
            return StoredBlob(Digests(like.md5, like.sha1, None), size, False)
        extra = ["sha256"] if sha256 else []
        if same is False or self._key_has_no_blobs():
            # Nothing to deduplicate against (a first save), or the content differs from
            # the blob it was like (changed since the previous version, so most likely
            # new): every digest in one pass. _claim still finds it if stored.
            sha1, md5, *rest = hash_views(["sha1", "md5", *extra], views)
            digests = Digests(md5, sha1, rest[0] if rest else None)
        else:
            (sha1,) = hash_views(["sha1"], views)
            known = self._known(sha1, size)
            if known is not None and not sha256:
                with self._lock:
                    self.reused_blobs += 1
                return StoredBlob(Digests(known, sha1, None), size, False)
            md5, *rest = hash_views(["md5", *extra], views)
            digests = Digests(md5, sha1, rest[0] if rest else None)
        if not self._claim(digests, size):
            return StoredBlob(digests, size, False)
        self._batch.put(self.layout.blob(digests.blob), views[0] if len(views) == 1 else Buffers(views))
        self._count_upload(size)
        return StoredBlob(digests, size, True)

    def _same_as(self, digests: Digests, views: list[memoryview]) -> bool | None:
        """Whether the stored blob named ``digests`` holds exactly ``views`` (compared, not hashed).

        None when that cannot be told cheaply (no local files, the blob not wholly cached).
        """
        if not self.backend.capabilities.local_path:
            return None
        local = self.backend.local_path(self.layout.blob(digests.blob))
        return None if local is None else same_as_cached_file(local, views)

    def store_staged(self, staging: str, digests: Digests, size: int) -> StoredBlob:
        """Give the durable object ``staging`` (``size`` bytes hashed to ``digests``) its blob name.

        It is moved (:meth:`Backend.move`), or deleted if the store already has the blob.
        """
        if not self._claim(digests, size):
            self.backend.delete(staging)
            return StoredBlob(digests, size, False)
        self.backend.move(staging, self.layout.blob(digests.blob))
        self._count_upload(size)
        return StoredBlob(digests, size, True)

    def store_stream(self, stream: BinaryIO, digests: Digests, size: int) -> StoredBlob:
        """Upload ``size`` bytes of ``stream`` already hashed to ``digests`` (if the store lacks them)."""
        if not self._claim(digests, size):
            return StoredBlob(digests, size, False)
        self._batch.put(self.layout.blob(digests.blob), stream)
        self._count_upload(size)
        return StoredBlob(digests, size, True)

    def commit(self) -> None:
        """Make every blob stored so far durable (call before anything names them)."""
        self._batch.commit()

    def close(self) -> None:
        """Drop uncommitted blobs and release the lease."""
        try:
            self._batch.abort()
        finally:
            self._lease.release()

    def __enter__(self) -> BlobSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VersionWriter:
    """A version being written file by file; published when its ``with`` block succeeds.

    Returned by :meth:`ObjectStore.open_version`. ``open_file(path)`` returns a writable
    file, ``write_file(path, data)`` stores bytes, ``add_blob(path, stored)`` names a
    blob stored by someone else (another rank's :class:`BlobSink`, committed). Leaving the
    block without an exception publishes the version (``version`` then holds its name);
    an exception, or :meth:`abort`, publishes nothing.
    """

    def __init__(self, store: ObjectStore, layout: KeyLayout, version: str | None, *, overwrite: bool = False) -> None:
        store.check_new_version(layout, version, overwrite)
        self._store, self._layout = store, layout
        self._requested, self._overwrite = version, overwrite
        self.sink = BlobSink(store.backend, layout)
        self._files: dict[tuple[str, ...], dict[str, Any]] = {}
        self._open: set[BlobFile] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.version: str | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this version is already published or aborted")

    def add_blob(self, path: str | tuple[str, ...], stored: StoredBlob) -> None:
        """Make the file at ``path`` hold an already stored (and committed) blob."""
        self._check_open()
        parts = split_file_path(path) if isinstance(path, str) else check_relative_parts(list(path), "file path")
        with self._lock:
            if parts in self._files:
                raise ConfigurationError(f"{'/'.join(parts)!r} is written twice in this version")
            self._files[parts] = stored.entry(parts)

    def write_file(self, path: str, data: bytes | bytearray | memoryview) -> StoredBlob:
        """Store ``data`` as the file at ``path`` of this version."""
        self._check_open()
        parts = split_file_path(path)
        stored = self.sink.store_bytes(data, sha256=True)
        self.add_blob(parts, stored)
        return stored

    def open_file(self, path: str, mode: str = "wb") -> BlobFile:
        """Return a writable binary file that becomes ``path`` of this version when closed."""
        self._check_open()
        if mode != "wb":
            raise ConfigurationError(f"a version being written opens files with mode 'wb', not {mode!r}")
        handle = BlobFile(self, split_file_path(path))
        with self._lock:
            self._open.add(handle)
        return handle

    def _file_closed(self, handle: BlobFile, stored: StoredBlob | None) -> None:
        with self._lock:
            self._open.discard(handle)
        if stored is not None:
            self.add_blob(handle.parts, stored)

    def publish(self, *, sidecar_extra: dict[str, Any] | None = None) -> str:
        """Make every file durable, then publish the version; return its name.

        ``sidecar_extra`` adds fields to the version's kara sidecar (2.x never reads it).
        """
        self._check_open()
        if self._open:
            names = sorted("/".join(h.parts) for h in self._open)
            raise ConfigurationError(f"close every file before publishing the version (still open: {names})")
        try:
            self.sink.commit()
            entries = [self._files[parts] for parts in sorted(self._files)]
            sidecar = {"format": 1, "links": [], "dirs": [], "created": time.time(), **(sidecar_extra or {})}
            with defer_interrupt():
                self.version = self._store.publish(
                    self._layout, self._requested, dump_json(entries), dump_json(sidecar), self._overwrite
                )
        finally:
            self._finish()
        return self.version

    def abort(self) -> None:
        """Publish nothing; blobs already uploaded are left to garbage collection."""
        if self._closed:
            return
        for handle in list(self._open):
            handle.discard()
        self._finish()

    def _finish(self) -> None:
        self._closed = True
        self.sink.close()

    def __enter__(self) -> VersionWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.abort()


class BlobFile(io.RawIOBase):
    """A writable file of a :class:`VersionWriter`, hashed as written and stored on close.

    ``close`` (or the end of a ``with`` block) stores the blob; leaving the ``with`` block
    by an exception, or :meth:`discard`, drops the content. When the file was opened by
    :meth:`ObjectStore.open_file` it is the version's only file, and closing it
    publishes the version.
    """

    def __init__(self, version: VersionWriter, parts: tuple[str, ...], *, owns_version: bool = False) -> None:
        super().__init__()
        self.parts = parts
        self._version = version
        self._owns_version = owns_version
        self._discarded = False
        self._upload = StreamedUpload(version.sink)

    @property
    def name(self) -> str:
        """The file's path inside the version."""
        return "/".join(self.parts)

    @property
    def version(self) -> str | None:
        """The published version's name (once a file opened by ``open_file`` is closed)."""
        return self._version.version

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._upload.size

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed file")
        return self._upload.write(data)

    def discard(self) -> None:
        """Close without storing anything (and abort the version if this file owns it)."""
        if self.closed:
            return
        self._discarded = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        stored = None
        try:
            if not self._discarded:
                stored = self._upload.finish()
        except BaseException:
            self._discarded = True
            raise
        finally:
            self._upload.abort()
            super().close()
            self._version._file_closed(self, stored)
            if self._owns_version:
                if self._discarded:
                    self._version.abort()
                else:
                    self._version.publish()

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # A file dropped without close() was not finished: store nothing.
        if not self.closed:
            self._discarded = True
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing can be reported from a finalizer
                pass


class SeekableReader(io.RawIOBase):
    """A read-only, seekable binary file of ``size`` bytes; subclasses implement ``_read_at``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed file")
        out = memoryview(buffer).cast("B")
        count = max(0, min(len(out), self._size - self._pos))
        if count:
            self._read_at(self._pos, out[:count])
        self._pos += count
        return count

    def readall(self) -> bytes:
        out = bytearray(max(0, self._size - self._pos))
        n = self.readinto(out)
        return bytes(out[:n])

    def _read_at(self, position: int, out: memoryview) -> None:
        """Fill ``out`` with the bytes from ``position`` (all of them exist)."""
        raise NotImplementedError


class BlobReader(SeekableReader):
    """A seekable reader of one stored blob.

    Stores with local files map the blob (``mmap``); others serve reads from a window of
    :data:`READ_AHEAD` bytes fetched with a ranged read, and fetch the next window in the
    background while the reader moves forward.

    With ``sha1`` (the blob's, hex) the blob is checked before the reader is returned,
    and the reader then serves exactly the bytes checked: the mapping is hashed on
    stores with local files; elsewhere the blob is downloaded once into an unlinked
    temporary file (in ``TMPDIR``), hashed on the way, and mapped. A mismatch raises
    :class:`~kara_core.errors.BlobIntegrityError`.
    """

    def __init__(self, backend: Backend, path: str, size: int, name: str = "", sha1: str | None = None) -> None:
        super().__init__(size)
        self._backend, self._path = backend, path
        self._name = name or path
        self._map: mmap.mmap | None = None
        self._window_start, self._window = 0, b""
        self._ahead: tuple[int, Future[bytes]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        local = backend.local_path(path) if backend.capabilities.local_path else None
        if local is not None and size > 0:
            with open(local, "rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if sha1 is not None:
            try:
                if self._map is None and size > 0:
                    digest, got = self._spool()
                else:
                    mapped = self._map if self._map is not None else b""
                    # A mapping shorter than the manifest's size fails the size check.
                    digest, got = hashlib.sha1(mapped, usedforsecurity=False).hexdigest(), len(mapped)
                self._compare(sha1, digest, got)
            except BaseException:
                self.close()
                raise

    def _spool(self) -> tuple[str, int]:
        """Download the blob once into an unlinked temporary file, hashing it on the way,
        and map it; return its sha1 and the bytes received."""
        hasher = hashlib.sha1(usedforsecurity=False)
        got = 0
        with tempfile.TemporaryFile(prefix="kara-verify-") as spool:
            for start in range(0, self._size, READ_AHEAD):
                piece = self._backend.read(self._path, start, min(self._size, start + READ_AHEAD))
                hasher.update(piece)
                try:
                    spool.write(piece)
                except OSError as exc:
                    folder = tempfile.gettempdir()
                    raise_disk_error(exc, f"spool {self._name!r} to check it, in {folder}", "file://" + folder)
                    raise
                got += len(piece)
                if len(piece) < min(READ_AHEAD, self._size - start):
                    break
            spool.flush()
            if got:
                # The mapping outlives the file: the reader serves the bytes it checked.
                self._map = mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ)
        return hasher.hexdigest(), got

    def _compare(self, sha1: str, digest: str, got: int) -> None:
        if got != self._size or digest != sha1:
            what = f"size ({got} bytes, not {self._size})" if got != self._size else "sha1"
            raise BlobIntegrityError(
                f"{self._backend.url}/{self._path} ({self._name!r}) does not match its {what}: "
                "the stored copy is corrupted (run `kara verify`)"
            )

    @property
    def name(self) -> str:
        """The file's path inside its version."""
        return self._name

    def _read_at(self, position: int, out: memoryview) -> None:
        count = len(out)
        if self._map is not None:
            self._fill(out, self._map[position : position + count], position)
        elif count >= READ_AHEAD:
            self._fill(out, self._backend.read(self._path, position, position + count), position)
        else:
            done = 0
            while done < count:
                view = self._window_at(position + done)
                n = min(count - done, len(view))
                out[done : done + n] = view[:n]
                done += n

    def _fill(self, out: memoryview, data: bytes, position: int) -> None:
        if len(data) != len(out):
            raise self._shorter(position + len(data))
        out[:] = data

    def _shorter(self, end: int) -> CorruptDatasetError:
        return CorruptDatasetError(
            f"{self._backend.url}/{self._path}",
            end,
            f"{self._name!r} ends before the {self._size} bytes its manifest says (run `kara verify`)",
        )

    def _fetch(self, start: int) -> bytes:
        end = min(self._size, start + READ_AHEAD)
        data = self._backend.read(self._path, start, end)
        if len(data) != end - start:
            raise self._shorter(start + len(data))
        return data

    def _window_at(self, position: int) -> memoryview:
        offset = position - self._window_start
        if not 0 <= offset < len(self._window):
            ahead, self._ahead = self._ahead, None
            if ahead is not None and ahead[0] == position:
                self._window = ahead[1].result()
            else:
                self._window = self._fetch(position)
            self._window_start, offset = position, 0
            following = position + len(self._window)
            if following < self._size:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="kara-read-ahead")
                self._ahead = (following, self._pool.submit(self._fetch, following))
        return memoryview(self._window)[offset:]

    def close(self) -> None:
        if self.closed:
            return
        if self._map is not None:
            self._map.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        super().close()
