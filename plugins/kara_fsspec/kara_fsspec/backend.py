"""The backend on any fsspec filesystem: ranged reads, whole-object appends, conditional creates.

Paths map to ``<root>/<path>`` on the filesystem (``s3://bucket/prefix`` -> keys under
``bucket/prefix/``). What differs between filesystems is decided once, when the store
opens, from the filesystem's class (:class:`Traits`):

- object stores (s3fs, adlfs, gcsfs) replace objects atomically with one upload and
  create them conditionally on the server (S3 ``If-None-Match: *``, Azure
  ``If-None-Match: *``, GCS ``ifGenerationMatch=0``); they have no append call, so an
  appender uploads the whole object (:class:`WholeObjectAppender`) and the row layer
  starts a new block after each flush (``Capabilities.native_appends`` is off);
- fsspec's local filesystem appends in place, renames temporary files into place and
  creates with a hard link (atomic); its files are mmapped like kara-file's;
- fsspec's memory filesystem lives in this process: a lock makes creates atomic;
- any other filesystem writes through a temporary name and a move, and its create is
  a check then a write: ``Capabilities.atomic_create`` is off, and the first lock or
  version publish on such a store warns that two writers are not kept apart.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, TypeVar

from kara_core.backend import Backend, Capabilities, check_path
from kara_core.errors import (
    BackendError,
    ConfigurationError,
    KaraError,
    NotFoundError,
    PermissionDeniedError,
    UnsafePathError,
)
from kara_core.localdisk import disk_error, raise_disk_error
from kara_core.remote import (
    TMP_MARK,
    ConditionalCreates,
    RedactSecrets,
    WholeObjectAppender,
    call_translated,
    secret_values,
    split_body,
)
from kara_core.url import StoreURL, parse_store_url

from .options import FsspecOptions, check_options, filesystem_class

__all__ = ["TMP_MARK", "FsspecBackend", "Traits", "WholeObjectAppender", "open_fsspec"]

#: ``open_read`` streams objects as ranged GETs of this size.
STREAM_BLOCK = 8 * 1024 * 1024
#: ``put`` uploads streams up to this size in one call, longer ones through a writer.
WHOLE_PUT = 256 * 1024 * 1024
#: Filesystem packages whose servers create objects conditionally and replace them atomically.
OBJECT_STORES = frozenset({"s3fs", "adlfs", "gcsfs"})

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Traits:
    """How kara uses one kind of filesystem (see the module docstring)."""

    kind: str  # "object", "local", "memory" or "other"
    capabilities: Capabilities

    @classmethod
    def of(cls, fs: Any) -> Traits:
        """The traits of the filesystem instance ``fs``."""
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.implementations.memory import MemoryFileSystem

        if isinstance(fs, LocalFileSystem):
            return cls("local", Capabilities(local_path=True))
        if isinstance(fs, MemoryFileSystem):
            return cls("memory", Capabilities(native_appends=False))
        package = type(fs).__module__.split(".")[0]
        if package in OBJECT_STORES:
            # s3fs hands out the response body of a GET (aiobotocore's): a range streams
            # from one request (:class:`_S3RangeStream`).
            streamed = package == "s3fs"
            return cls("object", Capabilities(parallel_reads=True, native_appends=False, streamed_reads=streamed))
        return cls("other", Capabilities(atomic_create=False, parallel_reads=True, native_appends=False))


_REDACT = RedactSecrets(("fsspec", "s3fs", "botocore", "aiobotocore", "adlfs", "azure", "gcsfs", "urllib3"))

# fsspec's memory filesystem is one dict per process: this lock makes check-and-create atomic.
_MEMORY_CREATE = threading.Lock()


class FsspecBackend(Backend):
    """A store under ``root`` of an fsspec filesystem (``s3://bucket/prefix``, ...)."""

    def __init__(self, url: str, fs: Any, root: str, options: dict[str, Any]) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self._options = options
        self.traits = Traits.of(fs)
        self.capabilities = self.traits.capabilities
        self._creates = ConditionalCreates(url, checked=self.traits.kind != "object")
        #: Azure Blob Storage stores a '\\' of a blob name as '/', so 'a\\..\\c' would
        #: become 'a/../c': such names are refused instead of changed.
        self._backslash_is_slash = type(fs).__module__.split(".")[0] == "adlfs"
        #: What a pickle holds: reopen this URL with these options (see __reduce_ex__).
        self._opened_by_open_fsspec = (url, dict(options))

    @classmethod
    def from_url(cls, url: StoreURL, options: FsspecOptions) -> FsspecBackend:
        """Open the filesystem of ``url.scheme`` with ``options`` (checked against its signature)."""
        given = dict(options.model_extra or {})
        fs_class = filesystem_class(url.scheme)
        check_options(url.scheme, fs_class, given)
        _REDACT.secrets.update(secret_values(given))
        # Listings are never cached: other writers change the store under this process,
        # and a cached listing would hide their objects from size() and list().
        kwargs = {"use_listings_cache": False, "skip_instance_cache": True, **given}
        try:
            fs = fs_class(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot open {url.scheme}:// store {_REDACT.mask(str(url))}: {_REDACT.mask(str(exc))}"
            ) from None
        root = fs_class._strip_protocol(str(url)).rstrip("/")
        relative = root.strip("/")
        if not relative:
            raise ConfigurationError(f"{url.raw!r} must name a bucket, container or folder: {url.scheme}://NAME/prefix")
        check_path(relative)
        return cls(str(url), fs, root, given)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # URL + options: another process (a DataLoader worker) opens its own filesystem.
        # open_fsspec, not open_backend: the scheme may belong to another plugin too.
        return (_reopen, self._opened_by_open_fsspec)

    # -- helpers ---------------------------------------------------------------------

    def _key(self, path: str) -> str:
        checked = check_path(path)
        if self._backslash_is_slash and "\\" in checked:
            raise UnsafePathError(
                path, "Azure Blob Storage turns '\\' into '/' in blob names, so it cannot keep this name"
            )
        return f"{self.root}/{checked}"

    def _translate(self, what: str, exc: Exception, writing: bool) -> KaraError:
        """kara's error for the filesystem's ``exc``, with credentials masked.

        A write finding nothing there means the bucket (container, folder) is missing.
        """
        if isinstance(exc, FileNotFoundError):
            if writing:
                return BackendError(
                    f"{what} on {self.url} failed: the bucket, container or folder does not exist "
                    f"({_REDACT.mask(str(exc))})"
                )
            return NotFoundError(f"{what}: {self.url} has no such object")
        if isinstance(exc, PermissionError):
            return PermissionDeniedError(f"{what} on {self.url}: access denied ({_REDACT.mask(str(exc))})")
        if isinstance(exc, OSError):
            # A local or network filesystem's disk (fsspec's local, sftp, ...): full or read-only.
            error = disk_error(exc, f"{what} on {self.url}", self.url)
            if error is not None:
                return error
        return BackendError(f"{what} on {self.url} failed: {type(exc).__name__}: {_REDACT.mask(str(exc))}")

    def _call(self, what: str, fn: Callable[[], _Result], writing: bool = False) -> _Result:
        """``fn()``, its errors turned into kara's (:meth:`_translate`, see
        :func:`~kara_core.remote.call_translated`); ``FileExistsError`` passes through."""
        return call_translated(fn, lambda exc: self._translate(what, exc, writing), (KaraError, FileExistsError))

    # -- reading ---------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        """The object's size from the filesystem's info (a HEAD on object stores); None if absent."""
        key = self._key(path)
        try:
            info = self._call("get the size of " + path, lambda: self.fs.info(key))
        except NotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return int(info["size"])

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """One ranged GET (``cat_file``) of ``[start, end)``, cut at the object's end."""
        key = self._key(path)
        if end is not None and end <= start:
            return self._read_empty_range(path)
        try:
            return self._call("read " + path, lambda: self.fs.cat_file(key, start=start or None, end=end))
        except BackendError:
            # A range starting at or past the end, an empty object's included (S3
            # answers 416): empty, as for a file.
            size = self.size(path)
            if size is not None and start >= size:
                return b""
            raise

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        """The object from ``start`` on, as ranged GETs of 8 MiB, the first one sent at once.

        What fits in the first range (every file of a directory load up to 8 MiB) costs
        exactly one request; no HEAD is sent.
        """
        first = self.read(path, start, start + STREAM_BLOCK)
        if len(first) < STREAM_BLOCK:
            return io.BytesIO(first)  # type: ignore[return-value]
        return io.BufferedReader(_RangedStream(self, path, start, first), STREAM_BLOCK)  # type: ignore[return-value]

    def open_range(self, path: str, start: int, end: int) -> BinaryIO:
        """Bytes ``[start, end)`` as a stream: on S3, one GET whose body is read as it arrives
        (:class:`_S3RangeStream`); elsewhere one ranged read, in memory."""
        if not self.capabilities.streamed_reads or end <= start:
            return super().open_range(path, start, end)
        return _S3RangeStream(self, path, start, end)  # type: ignore[return-value]

    def local_path(self, path: str) -> str | None:
        """The file's own path on fsspec's local filesystem; None elsewhere."""
        return self._key(path) if self.traits.kind == "local" else None

    def list(self, prefix: str) -> Iterator[str]:
        """Every object under the folder of ``prefix`` whose path starts with ``prefix``."""
        for path, _ in self.list_sizes(prefix):
            yield path

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int | None]]:
        """:meth:`list` with the sizes the listing carries (one listing, no HEADs)."""
        folder = prefix.rpartition("/")[0]
        base = f"{self.root}/{folder}" if folder else self.root
        skip = len(self.root) + 1
        try:
            found = self._call(
                "list " + (prefix or "the store"), lambda: self.fs.find(base, withdirs=False, detail=True)
            )
        except NotFoundError:
            return
        for key, info in found.items():
            relative = key[skip:]
            if relative.startswith(prefix) and TMP_MARK not in relative.rpartition("/")[2]:
                size = info.get("size")
                yield relative, None if size is None else int(size)

    # -- writing ---------------------------------------------------------------------

    def open_append(self, path: str) -> Any:
        """A native appender on local files; elsewhere a :class:`WholeObjectAppender`."""
        if self.traits.kind == "local":
            return _LocalAppender(self._key(path), self.url)
        return WholeObjectAppender(self, path)

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """Replace the object atomically: one upload on object stores, a temporary name and a move elsewhere.

        Streams up to ``WHOLE_PUT`` bytes are uploaded in one call (s3fs splits large
        ones into concurrent parts itself); longer ones are copied through the
        filesystem's own writer (a multipart upload, committed when it closes), so they
        never sit whole in memory.
        """
        key = self._key(path)
        head, rest = split_body(data, WHOLE_PUT)
        direct = self.traits.kind in ("object", "memory")
        target = key if direct else f"{key}{TMP_MARK}{uuid.uuid4().hex}"

        def write() -> None:
            if self.traits.kind == "local":
                self.fs.makedirs(key.rpartition("/")[0], exist_ok=True)
            try:
                if rest is None:
                    self.fs.pipe_file(target, head)
                else:
                    with self.fs.open(target, "wb") as out:
                        out.write(head)
                        shutil.copyfileobj(rest, out, STREAM_BLOCK)
                if not direct:
                    self.fs.mv(target, key)
            except BaseException:
                if not direct and self.fs.exists(target):
                    self.fs.rm_file(target)
                raise

        self._call("write " + path, write, writing=True)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create the object unless it exists; True if this call created it.

        Object stores: a conditional upload (the server refuses it if the object
        exists). An existing object holding exactly ``data`` counts as created by this
        call: it is what a retried upload whose first attempt landed finds.
        """
        key = self._key(path)
        body = bytes(data)
        kind = self.traits.kind
        if kind == "object" and not self._creates.check(self.root, self._probe_conditional_writes):
            self.capabilities = replace(self.capabilities, atomic_create=False)
        if kind == "local":
            return self._call("create " + path, lambda: self._link_into_place(key, body))
        if kind == "memory":
            with _MEMORY_CREATE:
                if self.fs.exists(key):
                    return False
                self.fs.pipe_file(key, body)
                return True
        if not self.capabilities.atomic_create:
            self._creates.warn()
            if self.exists(path):
                return False
            self.put(path, body)
            return True
        try:
            self._call("create " + path, lambda: self.fs.pipe_file(key, body, mode="create"), writing=True)
            return True
        except FileExistsError:
            return self.read_if_exists(path) == body

    def _link_into_place(self, key: str, body: bytes) -> bool:
        # A hard link never replaces an existing name: the atomic create of POSIX.
        folder = key.rpartition("/")[0]
        os.makedirs(folder, exist_ok=True)
        temporary = f"{key}{TMP_MARK}{uuid.uuid4().hex}"
        with open(temporary, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, key)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def _probe_conditional_writes(self, key: str) -> bool:
        """Whether the server refuses a second conditional create of ``key`` (see
        :class:`~kara_core.remote.ConditionalCreates`): S3-compatible servers that ignore
        ``If-None-Match`` would otherwise let two writers both "create" a lock."""

        def probe() -> bool:
            self.fs.pipe_file(key, b"1", mode="create")
            try:
                self.fs.pipe_file(key, b"2", mode="create")
                return False
            except FileExistsError:
                return True
            finally:
                self.fs.rm_file(key)

        return self._call("check conditional writes", probe, writing=True)

    def delete(self, path: str) -> None:
        """Delete the object; an absent object is not an error."""
        key = self._key(path)
        try:
            self._call("delete " + path, lambda: self.fs.rm_file(key))
        except NotFoundError:
            return

    def cleanup(self, prefix: str, older_than: float) -> int:
        """Remove kara's temporary objects under ``prefix`` last modified over ``older_than`` s ago."""
        folder = prefix.rpartition("/")[0]
        base = f"{self.root}/{folder}" if folder else self.root
        now = time.time()
        removed = 0
        try:
            found = self._call("list " + prefix, lambda: self.fs.find(base, withdirs=False))
        except NotFoundError:
            return 0
        for key in found:
            if TMP_MARK not in key.rpartition("/")[2] or not key[len(self.root) + 1 :].startswith(prefix):
                continue
            modified = self._call("inspect " + key, lambda k=key: self.fs.modified(k))
            if now - modified.timestamp() > older_than:
                self._call("delete " + key, lambda k=key: self.fs.rm_file(k))
                removed += 1
        return removed

    def close(self) -> None:
        """Nothing to release: the filesystem's connections close with it."""
        return None


class _RangedStream(io.RawIOBase):
    """Reads an object forward from an offset, one ranged GET of ``STREAM_BLOCK`` at a time."""

    def __init__(self, backend: FsspecBackend, path: str, start: int, first: bytes) -> None:
        super().__init__()
        self._backend, self._path = backend, path
        self._chunk = memoryview(first)
        self._next = start + len(first)
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._chunk and not self._ended:
            data = self._backend.read(self._path, self._next, self._next + STREAM_BLOCK)
            self._next += len(data)
            self._ended = len(data) < STREAM_BLOCK
            self._chunk = memoryview(data)
        n = min(len(buffer), len(self._chunk))
        memoryview(buffer).cast("B")[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n


class _S3RangeStream(io.RawIOBase):
    """Bytes ``[start, end)`` of an S3 object from one GET, read as they arrive.

    ``read(n)`` gives ``n`` bytes (fewer only at the end of the range, or of the object
    if it ends first: then the next read gives ``b""``, as :meth:`Backend.open_range`
    says), read from the response body on s3fs's event loop. A body that breaks off (a
    dropped connection, a timeout: s3fs's retryable errors) is asked for again from
    where it stopped, up to the filesystem's ``retries`` times in all. An object shorter
    than the range is its reader's to judge (:class:`~kara_core.backend.RangeFeed` calls
    it corrupt; a directory load downloads the blob again, then refuses it).
    """

    def __init__(self, backend: FsspecBackend, path: str, start: int, end: int) -> None:
        super().__init__()
        self._backend, self._path = backend, path
        self._bucket, self._object, _ = backend.fs.split_path(backend._key(path))
        self._position, self._end = start, end
        self._body: Any = None
        self._failures = 0

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        from fsspec.asyn import sync

        fs = self._backend.fs

        def get() -> Any:
            try:
                return sync(
                    fs.loop,
                    fs._call_s3,
                    "get_object",
                    Bucket=self._bucket,
                    Key=self._object,
                    Range=f"bytes={self._position}-{self._end - 1}",
                )
            except OSError as exc:
                if _invalid_range(exc):
                    return None  # 416: the object ends before the range starts
                raise

        answer = self._backend._call("read " + self._path, get)
        if answer is None:
            self._end = self._position
            return
        self._body = answer["Body"]

    def read(self, size: int | None = -1) -> bytes:
        want = self._end - self._position
        if size is not None and size >= 0:
            want = min(want, size)
        if want <= 0:
            return b""
        from fsspec.asyn import sync
        from s3fs.core import S3_RETRYABLE_ERRORS

        def attempt() -> bytes | None:
            try:
                return sync(self._backend.fs.loop, _read_exactly, self._body, want)  # type: ignore[no-any-return]
            except S3_RETRYABLE_ERRORS:
                return None

        while True:
            if self._body is None:
                self._open()
                if self._body is None:
                    return b""  # the object ends before the range
            data = self._backend._call("read " + self._path, attempt)
            if data is None:
                self._drop_body()
                self._failures += 1
                if self._failures >= max(1, getattr(self._backend.fs, "retries", 1)):
                    raise BackendError(
                        f"read {self._path} on {self._backend.url} failed: the answer broke off {self._failures} times"
                    ) from None
                continue
            self._position += len(data)
            if len(data) < want:
                self._end = self._position  # the object ends here
                self._drop_body()
            return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is None:
            return
        loop = self._backend.fs.loop
        if loop is not None and loop.is_running():
            # On s3fs's event loop: the answer's connection is aiohttp's (asyncio is not
            # thread-safe), and this runs on the reader's thread.
            from fsspec.asyn import sync

            sync(loop, body.aclose)
        else:
            body.close()  # no loop left to run it (interpreter exit)

    def close(self) -> None:
        self._drop_body()
        super().close()


def _invalid_range(exc: OSError) -> bool:
    """Whether s3fs's ``exc`` is S3's answer to a range past the object's end (416, ``InvalidRange``)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "InvalidRange"


async def _read_exactly(body: Any, size: int) -> bytes:
    """``size`` bytes of an aiobotocore response body (fewer only at its end)."""
    first = await body.read(size)
    if len(first) == size or not first:
        return bytes(first)
    parts, got = [first], len(first)
    while got < size:
        chunk = await body.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class _LocalAppender:
    """Native appends to a file of fsspec's local filesystem; ``flush`` fsyncs."""

    def __init__(self, file_path: str, url: str) -> None:
        self._url = url
        try:
            os.makedirs(os.path.dirname(file_path), exist_ok=True)
            # Kept open until close(): the appender is the file handle.
            self._file = open(file_path, "ab")
        except OSError as exc:
            raise_disk_error(exc, f"append to {file_path}", url)
            raise
        self._position = self._file.tell()

    @property
    def position(self) -> int:
        return self._position

    def append(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise_disk_error(exc, f"append {len(data)} bytes to {self._file.name}", self._url)
            raise
        self._position += len(data)

    def flush(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise_disk_error(exc, f"make {self._file.name} durable", self._url)
            raise

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


def _reopen(url: str, options: dict[str, Any]) -> FsspecBackend:
    return open_fsspec(url, **options)


def open_fsspec(url: str, **options: Any) -> FsspecBackend:
    """Open ``url`` through fsspec whatever plugin owns its scheme (``memory://``, ``local://``...)."""
    parsed = parse_store_url(url)
    return FsspecBackend.from_url(parsed, FsspecOptions(**options))
