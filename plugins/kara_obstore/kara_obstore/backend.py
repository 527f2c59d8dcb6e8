"""The backend on obstore: S3 and Azure Blob through Rust's ``object_store``.

Paths map to keys under the URL's prefix (``s3://bucket/prefix`` -> ``prefix/<path>`` in
``bucket``). The requests are made by obstore's Rust client, outside the GIL: what costs
the Python clients (botocore, aiobotocore, azure-storage-blob) about 2-3 ms of CPU per
request costs a fraction of that here, which is what bounds a directory load of many
small files (docs/obstore.md).

- Whole-object appends and conditional creates come from :mod:`kara_core.remote`, as in
  kara-fsspec: ``put(mode="create")`` (S3 ``If-None-Match: *``, Azure ``If-None-Match:
  *``) for locks and version publishes, checked once per store by creating a probe
  object twice (a server ignoring the condition makes creates best effort, with a
  warning); appenders upload whole blocks (``Capabilities.native_appends`` is off).
- Reads: ``read`` is one (ranged) GET; ``open_range`` and ``open_read`` hand out the GET's
  body as obstore streams it (``Capabilities.streamed_reads``), so a directory load
  fetches a large blob as a few concurrent streamed ranges and a sequential reader one
  GET per block. A body that breaks off is asked for again from where it stopped.
- Retries: obstore's own (``retry_config``; by default up to 10 retries with backoff for
  connection errors, 5xx and throttling, within 3 minutes), for every request.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
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

from .options import KIND, ObstoreOptions, store_kwargs

__all__ = ["ObstoreBackend", "open_obstore"]

#: ``put`` uploads bytes and streams up to this size in one request; longer streams are
#: a multipart (S3) or block-list (Azure) upload, committed at once when complete.
WHOLE_PUT = 64 * 1024 * 1024
#: obstore's chunks of a streamed body: at least this many bytes each.
STREAM_CHUNK = 4 * 1024 * 1024
#: ``open_read`` of an object up to this size (from its start) reads it whole in one call.
SMALL_READ = 8 * 1024 * 1024
#: How often a streamed body that breaks off is asked for again (from where it stopped).
BODY_RETRIES = 3

_Result = TypeVar("_Result")
_REDACT = RedactSecrets(("obstore",))


class _Exists(Exception):
    """The object of a conditional create exists (obstore's AlreadyExists / Precondition)."""


class ObstoreBackend(Backend):
    """A store under a prefix of an S3 bucket or Azure container, through obstore."""

    def __init__(self, url: str, store: Any, scheme: str, options: dict[str, Any]) -> None:
        self.url = url
        self.store = store
        self.scheme = scheme
        self._kind = KIND[scheme]
        self._options = options
        # S3 copies on the server (CopyObject, atomic); Azure's copy may complete
        # asynchronously, so it reads and puts (the default).
        self.capabilities = Capabilities(
            parallel_reads=True, native_appends=False, streamed_reads=True, copy=self._kind == "s3"
        )
        self._creates = ConditionalCreates(url)

    @classmethod
    def from_url(cls, url: StoreURL, options: ObstoreOptions) -> ObstoreBackend:
        """Open ``url`` (``s3://bucket/prefix``, ``az://container/prefix``) with ``options``."""
        from obstore.exceptions import BaseError
        from obstore.store import AzureStore, S3Store

        given = dict(options.model_extra or {})
        _REDACT.secrets.update(secret_values(given))
        bucket, _, prefix = url.location.strip("/").partition("/")
        prefix = prefix.strip("/")
        if not bucket:
            raise ConfigurationError(f"{url.raw!r} must name a bucket or container: {url.scheme}://NAME/prefix")
        if prefix:
            check_path(prefix)
        kwargs = store_kwargs(url.scheme, given)
        store_class = S3Store if KIND[url.scheme] == "s3" else AzureStore
        try:
            store = store_class(bucket, prefix=prefix or None, **kwargs)
        except (BaseError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot open {url.scheme}:// store {_REDACT.mask(str(url))}: {_REDACT.mask(_first_line(exc))}"
            ) from None
        return cls(str(url), store, url.scheme, given)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # URL + options: another process (a DataLoader worker) opens its own client.
        return (_reopen, (self.url, self._options))

    # -- helpers ---------------------------------------------------------------------

    def _key(self, path: str) -> str:
        checked = check_path(path)
        if self._kind == "azure" and "\\" in checked:
            raise UnsafePathError(
                path, "Azure Blob Storage turns '\\' into '/' in blob names, so it cannot keep this name"
            )
        return checked

    def _translate(self, what: str, exc: Exception, writing: bool) -> KaraError:
        """kara's error for obstore's ``exc``, with credentials masked.

        A write finding nothing there means the bucket (container) is missing.
        """
        from obstore.exceptions import NotFoundError as ObstoreNotFound
        from obstore.exceptions import PermissionDeniedError as ObstoreDenied
        from obstore.exceptions import UnauthenticatedError

        detail = _REDACT.mask(_first_line(exc))
        if isinstance(exc, (FileNotFoundError, ObstoreNotFound)):
            if writing:
                return BackendError(f"{what} on {self.url} failed: the bucket or container does not exist ({detail})")
            return NotFoundError(f"{what}: {self.url} has no such object")
        # A listing's refusal comes as a generic error carrying the status.
        denied = any(status in str(exc) for status in ("403 Forbidden", "401 Unauthorized"))
        if denied or isinstance(exc, (PermissionError, ObstoreDenied, UnauthenticatedError)):
            return PermissionDeniedError(f"{what} on {self.url}: access denied ({detail})")
        return BackendError(f"{what} on {self.url} failed: {type(exc).__name__}: {detail}")

    def _call(self, what: str, fn: Callable[[], _Result], writing: bool = False) -> _Result:
        """``fn()``, its errors turned into kara's (see :func:`~kara_core.remote.call_translated`)."""
        return call_translated(fn, lambda exc: self._translate(what, exc, writing), (KaraError, _Exists))

    def _get(self, what: str, key: str, start: int = 0, end: int | None = None) -> Any | None:
        """obstore's GetResult of ``[start, end)`` of ``key``; None if the range starts at or
        past the object's end (S3 and Azure answer 416, an empty object's included)."""
        import obstore
        from obstore.exceptions import GenericError

        options: dict[str, Any] = {}
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}

        def get() -> Any:
            try:
                return obstore.get(self.store, key, options=options or None)
            except GenericError as exc:
                if start and _past_the_end(exc):
                    return None
                if not start and "416" in str(exc):
                    return None  # an empty object asked for a range
                raise

        return self._call(what, get)

    # -- reading ---------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        """The object's size (a HEAD); None if absent."""
        import obstore

        key = self._key(path)
        try:
            meta = self._call("get the size of " + path, lambda: obstore.head(self.store, key))
        except NotFoundError:
            return None
        return int(meta["size"])

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """One GET of ``[start, end)`` (ranged unless it is the whole object), cut at the object's end."""
        key = self._key(path)
        if end is not None and end <= start:
            return self._read_empty_range(path)
        result = self._get("read " + path, key, start, end)
        if result is None:  # the range starts at or past the object's end
            return self._read_empty_range(path)
        return bytes(self._call("read " + path, result.bytes))

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        """The object from ``start`` on: one GET, read whole when it is small, else streamed."""
        return self.open_range(path, start, None)

    def open_range(self, path: str, start: int, end: int | None) -> BinaryIO:  # type: ignore[override]
        """Bytes ``[start, end)`` (``end=None``: to the object's end) from one GET, as the body arrives.

        ``read(n)`` gives ``n`` bytes, fewer only where the range or the object ends. An
        object that ends before ``start`` gives an empty stream (a reader that wanted more
        judges that).
        """
        key = self._key(path)
        if end is not None and end <= start:
            return io.BytesIO(b"")  # type: ignore[return-value]
        result = self._get("read " + path, key, start, end)
        if result is None:  # the range starts at or past the object's end
            return io.BytesIO(self._read_empty_range(path))  # type: ignore[return-value]
        first, last = result.range
        if last - first <= SMALL_READ:
            return io.BytesIO(bytes(self._call("read " + path, result.bytes)))  # type: ignore[return-value]
        return _BodyStream(self, path, key, result, first, last)  # type: ignore[return-value]

    def list(self, prefix: str) -> Iterator[str]:
        """Every object under the folder of ``prefix`` whose path starts with ``prefix``."""
        for path, _ in self.list_sizes(prefix):
            yield path

    def list_sizes(self, prefix: str) -> Iterator[tuple[str, int | None]]:
        """:meth:`list` with the sizes the listing carries (one listing, no HEADs)."""
        for meta in self._listing(prefix):
            yield meta["path"], int(meta["size"])

    def _listing(self, prefix: str) -> Iterator[dict[str, Any]]:
        import obstore

        folder = prefix.rpartition("/")[0]
        if folder:
            check_path(folder)

        def listing() -> list[dict[str, Any]]:
            return [meta for batch in obstore.list(self.store, folder or None, chunk_size=1000) for meta in batch]

        try:
            found = self._call("list " + (prefix or "the store"), listing)
        except NotFoundError:
            return
        for meta in found:
            path = meta["path"]
            if path.startswith(prefix) and TMP_MARK not in path.rpartition("/")[2]:
                yield meta

    # -- writing ---------------------------------------------------------------------

    def open_append(self, path: str) -> WholeObjectAppender:
        """A :class:`~kara_core.remote.WholeObjectAppender`: object stores have no append call."""
        self._key(path)
        return WholeObjectAppender(self, path)

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """Replace the object atomically: one PUT up to ``WHOLE_PUT`` bytes, else a multipart
        (block-list) upload that becomes visible whole when obstore completes it (S3
        refuses a single PUT over 5 GiB)."""
        import obstore

        key = self._key(path)
        head, rest = split_body(data, WHOLE_PUT)
        if rest is None and len(head) <= WHOLE_PUT:
            body: Any = head
            multipart: bool | None = False
        else:
            # A multipart upload: parts of ``chunk_size`` sent concurrently by obstore.
            body = head if rest is None else _chunks(head, rest)
            multipart = True
        self._call(
            "write " + path,
            lambda: obstore.put(self.store, key, body, use_multipart=multipart, chunk_size=16 * 1024 * 1024),
            writing=True,
        )

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create the object unless it exists (a conditional PUT); True if this call created it.

        An existing object holding exactly ``data`` counts as created by this call: it
        is what a retried upload whose first attempt landed finds.
        """
        key = self._key(path)
        body = bytes(data)
        if not self._creates.check("", self._probe_conditional_writes):
            self.capabilities = replace(self.capabilities, atomic_create=False)
            self._creates.warn()
            if self.exists(path):
                return False
            self.put(path, body)
            return True
        try:
            self._call("create " + path, lambda: self._create(key, body), writing=True)
            return True
        except _Exists:
            return self.read_if_exists(path) == body

    def _create(self, key: str, body: bytes) -> None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self.store, key, body, mode="create", use_multipart=False)
        except (AlreadyExistsError, PreconditionError, FileExistsError):
            raise _Exists from None

    def _probe_conditional_writes(self, key: str) -> bool:
        """Whether the server refuses a second conditional create of ``key`` (see
        :class:`~kara_core.remote.ConditionalCreates`)."""
        import obstore

        def probe() -> bool:
            self._create(key, b"1")
            try:
                self._create(key, b"2")
                return False
            except _Exists:
                return True
            finally:
                obstore.delete(self.store, key)

        return self._call("check conditional writes", probe, writing=True)

    def copy(self, source: str, target: str) -> None:
        """S3: a server-side copy (atomic, as ``put``); Azure: read and put."""
        if self._kind != "s3":
            super().copy(source, target)
            return
        import obstore

        src, dst = self._key(source), self._key(target)
        self._call("copy " + source, lambda: obstore.copy(self.store, src, dst))

    def delete(self, path: str) -> None:
        """Delete the object; an absent object is not an error."""
        import obstore

        key = self._key(path)
        try:
            self._call("delete " + path, lambda: obstore.delete(self.store, key))
        except NotFoundError:
            return

    def cleanup(self, prefix: str, older_than: float) -> int:
        """Remove kara's temporary objects under ``prefix`` last modified over ``older_than`` s ago."""
        import obstore

        folder = prefix.rpartition("/")[0]
        now = time.time()

        def listing() -> list[dict[str, Any]]:
            return [meta for batch in obstore.list(self.store, folder or None) for meta in batch]

        try:
            found = self._call("list " + prefix, listing)
        except NotFoundError:
            return 0
        removed = 0
        for meta in found:
            path = meta["path"]
            if TMP_MARK not in path.rpartition("/")[2] or not path.startswith(prefix):
                continue
            if now - meta["last_modified"].timestamp() > older_than:
                self._call("delete " + path, lambda p=path: obstore.delete(self.store, p))
                removed += 1
        return removed

    def close(self) -> None:
        """Nothing to release: obstore's connection pool closes with the store."""
        return None


class _BodyStream(io.RawIOBase):
    """Bytes ``[first, last)`` of an object from one GET, read as obstore streams the body.

    ``read(n)`` gives ``n`` bytes (fewer only at the end). A body that breaks off is
    asked for again from the byte where it stopped, up to ``BODY_RETRIES`` times; an
    object that turns out shorter ends the stream early (its reader judges that).
    """

    def __init__(self, backend: ObstoreBackend, path: str, key: str, result: Any, first: int, last: int) -> None:
        super().__init__()
        self._backend, self._path, self._key = backend, path, key
        self._chunks: Iterator[Any] | None = iter(result.stream(min_chunk_size=STREAM_CHUNK))
        self._position, self._end = first, last
        self._chunk = memoryview(b"")
        self._failures = 0

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        """Take the body's next chunk into ``_chunk``; False at the end."""
        from obstore.exceptions import BaseError

        while True:
            if self._chunks is None:
                result = self._backend._get("read " + self._path, self._key, self._position, self._end)
                if result is None:
                    self._end = self._position  # the object ends here
                    return False
                self._chunks = iter(result.stream(min_chunk_size=STREAM_CHUNK))
            try:
                chunk = next(self._chunks, None)
            except (BaseError, OSError) as exc:
                self._chunks = None
                self._failures += 1
                if self._failures > BODY_RETRIES:
                    error = self._backend._translate("read " + self._path, exc, writing=False)
                    raise error from None
                continue
            if chunk is None:
                self._end = self._position  # the body (the object) ended
                return False
            self._chunk = memoryview(chunk)
            return True

    def read(self, size: int | None = -1) -> bytes:
        want = self._end - self._position
        if size is not None and size >= 0:
            want = min(want, size)
        parts: list[bytes] = []
        got = 0
        while got < want:
            if not self._chunk and not self._next_chunk():
                break
            take = self._chunk[: want - got]
            parts.append(bytes(take))
            self._chunk = self._chunk[len(take) :]
            got += len(take)
            self._position += len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if not self._chunk and (self._position >= self._end or not self._next_chunk()):
            return 0
        n = min(len(view), len(self._chunk), self._end - self._position)
        view[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        self._position += n
        return n

    def close(self) -> None:
        self._chunks = None
        self._chunk = memoryview(b"")
        super().close()


def _chunks(head: bytes, rest: BinaryIO) -> Iterator[bytes]:
    """``head`` and then ``rest`` in pieces: what obstore's multipart put reads."""
    yield head
    while piece := rest.read(16 * 1024 * 1024):
        yield piece


def _past_the_end(exc: Exception) -> bool:
    """Whether obstore's ``exc`` answers a range starting at or past the object's end."""
    text = str(exc)
    return "416" in text or "InvalidRange" in text or "Wanted range starting at" in text


def _first_line(exc: BaseException) -> str:
    """The first line of obstore's message (the rest is a debug dump of the request)."""
    return str(exc).strip().split("\n", 1)[0]


def _reopen(url: str, options: dict[str, Any]) -> ObstoreBackend:
    return open_obstore(url, **options)


def open_obstore(url: str, **options: Any) -> ObstoreBackend:
    """Open ``url`` through kara-obstore whatever other plugin is installed for its scheme."""
    parsed = parse_store_url(url)
    if parsed.scheme not in KIND:
        raise ConfigurationError(f"kara-obstore opens {', '.join(f'{s}://' for s in KIND)} URLs, not {url!r}")
    return ObstoreBackend.from_url(parsed, ObstoreOptions(**options))
