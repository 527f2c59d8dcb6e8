"""The Backend protocol: the only thing a storage plugin implements.

Paths are ``/``-separated keys relative to the store's root (``row/ns/key/meta.json``);
they never start with ``/`` and never contain ``.``/``..`` or empty components, nor NUL
(:func:`check_path` enforces it at the boundary). A backslash is a plain character of a
name, never a separator (kara-storage 2.x stores may hold such names). Everything above this layer (row
datasets, directory versions, retries policy for readers, progress reporting, shuffling)
is written once in the core against these methods.
"""

from __future__ import annotations

import io
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from .errors import CorruptDatasetError, NotFoundError, ReadOnlyStoreError, UnsafePathError

__all__ = [
    "Appender",
    "Backend",
    "Batch",
    "Capabilities",
    "RangeFeed",
    "ReadStream",
    "check_path",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the layers above adapt to it.

    - ``writable``: ``put``/``put_if_absent``/``delete`` work.
    - ``appendable``: ``open_append`` works (row datasets can be written).
    - ``atomic_create``: ``put_if_absent`` is a real atomic create (writer locks and
      version manifests rely on it; without it they fall back to best effort).
    - ``local_path``: ``local_path(path)`` returns a real file path that may be mmapped.
    - ``parallel_reads``: independent ranged reads may run concurrently and it pays off
      (remote stores); readers use it to prefetch several ranges at once.
    - ``copy``: ``copy`` runs without moving the bytes through this process (a
      server-side copy, an in-kernel file copy); without it ``copy`` reads and puts.
    - ``native_appends``: an appender extends the object in place. Without it (object
      stores with no append call: S3, GCS, Azure block blobs) an appender uploads the
      object whole on ``flush``, so a second flush of the same object re-uploads all of
      it; block writers then start a new block after each flush instead.
    - ``streamed_reads``: ``open_range`` streams a range from one request as its bytes
      arrive. Sequential readers then read each block they go through with one request
      (and the next block's at the same time) instead of several ranged reads.
    """

    writable: bool = True
    appendable: bool = True
    atomic_create: bool = True
    local_path: bool = False
    parallel_reads: bool = False
    copy: bool = False
    native_appends: bool = True
    streamed_reads: bool = False


@runtime_checkable
class Appender(Protocol):
    """An open append stream on one object, returned by :meth:`Backend.open_append`.

    ``position`` is the object's size as far as this appender knows (the offset the next
    ``append`` writes at). ``append`` may buffer; ``flush`` makes everything appended so
    far durable and visible to readers; ``close`` flushes and releases the stream.
    ``append`` must copy (or write) ``data`` before it returns: row writers hand it a
    view of a buffer they reuse. An ``append`` that raises may have stored part of
    ``data`` (kara-file's cuts it off again); a row writer then takes no more records
    (:class:`~kara_core.errors.WriterFailedError`), and the next writer of the version
    cuts off whatever lies past its last index entry.
    """

    @property
    def position(self) -> int: ...

    def append(self, data: bytes | bytearray | memoryview) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


ReadStream = BinaryIO


class Batch:
    """A group of puts made durable together, returned by :meth:`Backend.open_batch`.

    ``put`` takes the same arguments as :meth:`Backend.put`; every object put through
    the batch is complete, durable and visible once :meth:`commit` returns, which is
    the moment a caller may publish something that names them (a version manifest).
    Before ``commit`` an object may or may not be visible, but never partially
    written. :meth:`abort` drops what is not visible yet. Used as a context manager, a
    batch left without ``commit`` is aborted. ``put`` may be called from several
    threads at once.

    This default suits stores whose ``put`` is already durable (remote object stores):
    each ``put`` goes straight to :meth:`Backend.put` and ``commit`` has nothing left
    to do. Local stores override :meth:`Backend.open_batch` to pay for durability once
    per batch instead of once per object.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """Store ``data`` at ``path`` as part of the batch (atomic, see :meth:`Backend.put`)."""
        self.backend.put(path, data)

    def commit(self) -> None:
        """Make every object put so far complete, durable and visible."""
        return None

    def abort(self) -> None:
        """Give up: objects not made visible yet are discarded."""
        return None

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def check_path(path: str) -> str:
    """Validate a store-relative path and return it unchanged.

    Raises :class:`~kara_core.errors.UnsafePathError` for absolute paths, ``.``/``..``
    or empty components and NUL bytes: no backend may ever be asked to touch something
    outside its store. A backslash is an ordinary character (stores are POSIX folders
    or object keys, where it separates nothing).
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(repr(path), "path is empty")
    if "\x00" in path:
        raise UnsafePathError(path, "NUL bytes are not allowed")
    if path.startswith("/"):
        raise UnsafePathError(path, "path must be relative to the store")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(path, "empty, '.' and '..' components are not allowed")
    return path


class Backend(ABC):
    """Abstract storage backend. Subclass it and implement the abstract methods.

    Methods that a read-only backend cannot support have default implementations that
    raise :class:`~kara_core.errors.ReadOnlyStoreError`, so a read-only plugin only
    implements ``size``, ``read`` and ``list``.

    Thread safety: every method may be called from several threads at once.

    Pickling: a backend opened by :func:`kara_core.url.open_backend` pickles as "open
    this URL with these options" (the URL layer owns that); one built by hand pickles
    its attributes, which must then be picklable.
    """

    #: The store URL this backend was opened with (without credentials).
    url: str = ""
    capabilities: Capabilities = Capabilities()

    # -- reading -----------------------------------------------------------------

    @abstractmethod
    def size(self, path: str) -> int | None:
        """Return the size in bytes of the object at ``path``, or None if it is absent."""

    @abstractmethod
    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Return bytes ``[start, end)`` of the object (``end=None``: to its end).

        A range reaching past the end of the object is cut at the end (like a file).
        Raises :class:`~kara_core.errors.NotFoundError` if the object is absent.
        """

    def _read_empty_range(self, path: str) -> bytes:
        """What :meth:`read` returns for an empty range: ``b""``, or NotFoundError if ``path`` is absent."""
        if self.size(path) is None:
            raise NotFoundError(f"read {path}: {self.url} has no such object")
        return b""

    def open_read(self, path: str, start: int = 0) -> ReadStream:
        """Return a binary stream reading the object from ``start`` to its end.

        The default reads the whole remaining range into memory; backends that can
        stream (files, HTTP bodies) override it so large objects never sit in memory.
        """
        return io.BytesIO(self.read(path, start))

    def open_range(self, path: str, start: int, end: int) -> ReadStream:
        """Return a binary stream of bytes ``[start, end)`` of the object.

        ``read(n)`` on it returns ``n`` bytes, fewer only where the range (or the object)
        ends. The default reads the range into memory with one :meth:`read`; backends
        with ``capabilities.streamed_reads`` stream it from one request.
        """
        return io.BytesIO(self.read(path, start, end))

    def local_path(self, path: str) -> str | None:
        """Return a local filesystem path for ``path`` if the backend has one, else None."""
        return None

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Yield the paths of all objects whose path starts with ``prefix``, recursively.

        ``prefix`` is a plain string prefix (use a trailing ``/`` for a folder). Paths
        are yielded in no particular order. An absent prefix yields nothing.
        """

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int | None]]:
        """Yield ``(path, size)`` for every object :meth:`list` yields.

        Optional: stores whose listings carry sizes (object stores) override it, so a
        caller needing many sizes sends one listing instead of a request per object.
        The default yields ``None`` for the size: ask :meth:`size` when it matters.
        """
        for path in self.list(prefix):
            yield path, None

    # -- writing -----------------------------------------------------------------

    def _read_only(self, what: str) -> ReadOnlyStoreError:
        return ReadOnlyStoreError(self.url, what)

    def open_append(self, path: str) -> Appender:
        """Open ``path`` for appending (created if absent) and return an :class:`Appender`."""
        raise self._read_only("append to " + path)

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """Atomically create or replace the object at ``path``.

        ``data`` is bytes or a binary stream read to its end. Readers see either the old
        object or the new one, never a partial one.
        """
        raise self._read_only("write " + path)

    def sync_scope(self) -> str | None:
        """Name the volatile cache that :meth:`put_unsynced` leaves objects in; None: no such cache.

        Optional. None (the default) means every put is as durable as it will ever be when
        it returns, and :meth:`put_unsynced` is :meth:`put`. A store that can defer
        durability (the file store: the kernel's page cache) names where the deferred
        objects wait (a machine, its boot and the filesystem): :meth:`sync` makes them
        durable only when called where the scope is the same. Objects put unsynced under
        a scope that no longer exists (the machine restarted) may be lost or torn.
        """
        return None

    def put_unsynced(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """:meth:`put` (atomic), but durable only once :meth:`sync` covers it (see :meth:`sync_scope`).

        The default is :meth:`put`, already durable. Writers of many objects that a later
        step publishes (parts of a parallel write) use it so that the publisher can sync
        them all at once instead of paying a sync per object.
        """
        self.put(path, data)

    def sync(self, paths: list[str]) -> None:
        """Make the objects at ``paths``, put by :meth:`put_unsynced` in this :meth:`sync_scope`, durable.

        Their content and their names: after it returns they survive a crash of the
        machine. The default has nothing to do (puts are durable).
        """
        return None

    def open_batch(self) -> Batch:
        """Return a :class:`Batch`: many puts made durable at once by ``commit``.

        Optional: the default batch calls :meth:`put` for each object (right for stores
        whose every put is already durable). Writers of many objects (directory saves)
        use it so a local store can sync once instead of once per object.
        """
        return Batch(self)

    def copy(self, source: str, target: str) -> None:
        """Create or replace ``target`` with the content of ``source``, atomically (as ``put``).

        Optional: the default reads ``source`` and puts it (the bytes pass through this
        process). Stores that can copy on their side override it and declare
        ``capabilities.copy``. Raises :class:`~kara_core.errors.NotFoundError` if ``source``
        is absent.
        """
        stream = self.open_read(source)
        try:
            self.put(target, stream)
        finally:
            stream.close()

    def move(self, source: str, target: str) -> None:
        """Give the object at ``source`` the name ``target`` (created or replaced, as ``put``).

        Optional: the default copies (:meth:`copy`: server-side where the store can, else
        read and put) and then deletes ``source``. Stores with a rename override it (the
        file store: ``os.replace``). Readers of ``target`` see the old or the new object,
        never a partial one; ``source`` is gone once this returns. Raises
        :class:`~kara_core.errors.NotFoundError` if ``source`` is absent.
        """
        self.copy(source, target)
        self.delete(source)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Atomically create ``path`` with ``data`` unless it exists.

        Return True if this call created it, False if it already existed (in which case
        nothing is written). The primitive behind writer locks and version manifests.
        """
        raise self._read_only("create " + path)

    def create_lock(self, path: str, data: bytes) -> bool:
        """Create a lock object: :meth:`put_if_absent`, except that it need not be durable.

        A lock only matters while the process that took it runs, and a crash ends that
        process: after a crash the object may be absent, empty or complete, and
        :class:`~kara_core.locks.LeaseLock` treats an unreadable or dead holder's lock as
        stale. Stores whose puts cost a sync (the file store: an fsync of the file and of
        its folder) skip it here; atomicity and exactly one winner stay. The default is
        :meth:`put_if_absent`.
        """
        return self.put_if_absent(path, data)

    def delete(self, path: str) -> None:
        """Delete the object at ``path``; deleting an absent object is not an error."""
        raise self._read_only("delete " + path)

    def cleanup(self, prefix: str, older_than: float) -> int:
        """Remove leftovers of interrupted writes under ``prefix`` older than ``older_than`` s.

        Optional: a process killed in the middle of a write may leave the backend's own
        temporary data (hidden temp files, unfinished multipart uploads), invisible to
        readers and to :meth:`list`. Callers run this when no writer of ``prefix`` can
        be active (garbage collection of a key). Returns how many leftovers were
        removed; the default has none to remove.
        """
        return 0

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Release connections and other resources (the default has none to release)."""
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # -- conveniences built on the protocol --------------------------------------

    def exists(self, path: str) -> bool:
        """Return True if an object exists at ``path``."""
        return self.size(path) is not None

    def read_if_exists(self, path: str) -> bytes | None:
        """Return the whole object, or None if it is absent."""
        try:
            return self.read(path)
        except NotFoundError:
            return None


class RangeFeed:
    """Bytes ``[start, end)`` of one object, streamed by a thread of its own ahead of the reader.

    The thread reads the range through :meth:`Backend.open_range` in pieces of ``piece``
    bytes and queues them, at most ``buffered`` bytes waiting (then it waits, and so does
    the answer's connection); the reader takes them in order with :meth:`next_piece`.
    Positions count from ``offset`` (a block's place in its stream): the range is
    ``[offset + start, offset + end)`` there. :meth:`cancel` stops the thread at its next
    piece and drops what waits; :meth:`join` waits for the thread to end.

    The thread is a daemon: a feed its reader never cancels (a reader left open at exit)
    waits for a consumer forever, and must not hold up the interpreter's exit (as a
    ThreadPoolExecutor's thread would: those are joined at exit).
    """

    def __init__(
        self,
        backend: Backend,
        path: str,
        start: int,
        end: int,
        piece: int,
        buffered: int,
        offset: int = 0,
    ) -> None:
        self.start, self.end = offset + start, offset + end
        #: Position of the next piece :meth:`next_piece` returns.
        self.position = self.start
        self._pieces: queue.Queue[bytes | BaseException] = queue.Queue(max(1, buffered // piece))
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, args=(backend, path, start, end, piece), name="kara-range-feed", daemon=True
        )
        self._thread.start()

    def _run(self, backend: Backend, path: str, start: int, end: int, piece: int) -> None:
        try:
            with backend.open_range(path, start, end) as stream:
                position = start
                while position < end and not self._stopped:
                    data = stream.read(min(piece, end - position))
                    if not data:
                        raise CorruptDatasetError(
                            f"{backend.url}/{path}", position, f"the object ended before byte {end} (did it shrink?)"
                        )
                    position += len(data)
                    self._put(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stopped:
            try:
                self._pieces.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def next_piece(self) -> tuple[int, bytes]:
        """The next piece and its position (waits for it); raises what the stream raised."""
        item = self._pieces.get()
        if isinstance(item, BaseException):
            raise item
        position = self.position
        self.position += len(item)
        return position, item

    def cancel(self) -> None:
        """Stop streaming and drop the pieces not taken."""
        self._stopped = True
        while True:
            try:
                self._pieces.get_nowait()
            except queue.Empty:
                return

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`cancel`, or once the range is read)."""
        self._thread.join()
