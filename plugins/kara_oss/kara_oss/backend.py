"""The oss:// backend on oss2: ranged and parallel reads, appends, atomic puts, listing.

One ``oss2.Bucket`` (one connection pool) is shared by every thread; every call goes
through :class:`~kara_oss.retry.Retrier`. Every upload, part, append and whole-object
download is checked against OSS's CRC64 (``x-oss-hash-crc64ecma``). kara computes the
CRCs itself, in C over whole buffers, instead of oss2's per-8-KiB Python adapters
(``enable_crc``), which cost more CPU than the transfer; bodies are read in one call.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import BinaryIO, TypeVar

import oss2
from kara_transport import Transport
from oss2.credentials import StaticCredentialsProvider
from oss2.models import PartInfo

from kara_core.backend import Backend, Capabilities, check_path
from kara_core.errors import BackendError, ConfigurationError, NotFoundError
from kara_core.url import StoreURL

from .crc import crc64, crc64_combine
from .options import OSSOptions, resolve_credentials
from .retry import Retrier, ShortReadError
from .session import TransportSession

__all__ = ["OSSAppender", "OSSBackend"]

_FORBID_OVERWRITE = {"x-oss-forbid-overwrite": "true"}
# Without it OSS answers an out-of-range Range with the whole object (200); with it the
# range is cut at the end and a start past the end is 416, as for files.
_STANDARD_RANGE = {"x-oss-range-behavior": "standard"}
# Marks kara's temporary objects (backups while a normal object becomes appendable);
# listings skip them, as the file backend skips its temporary files.
_CONVERT_MARK = ".kara-tmp-append"
# open_read reads answers up to this size whole, at once: a directory load opens one
# stream per small file, and a buffered stream over the connection costs more than the
# transfer (a 1 MiB buffer, two reads through the transport per file).
_WHOLE_READ = 1024 * 1024
# CopyObject copies objects up to 1 GiB, and never appendable ones: other sources are
# read and put through the client.
_COPY_LIMIT = 1024 * 1024 * 1024


def _check_crc(what: str, expected: int, headers: object) -> None:
    """Raise InconsistentError (retried like a dropped connection) on a CRC64 mismatch."""
    stated = headers.get("x-oss-hash-crc64ecma")  # type: ignore[attr-defined]
    if stated is not None and int(stated) != expected:
        raise oss2.exceptions.InconsistentError(f"CRC64 mismatch on {what}: OSS has {stated}, kara sent {expected}", "")


_Result = TypeVar("_Result", bound=oss2.models.RequestResult)


def _released(result: _Result) -> _Result:
    """Hand the connection of a HEAD answer back to the pool.

    oss2 leaves it checked out when the answer states a Content-Length (HEAD states the
    object's), so without this every HEAD would open a new connection.
    """
    raw = result.resp.response.raw
    raw.read()
    raw.release_conn()
    return result


def _body(result: oss2.models.RequestResult) -> bytes:
    """The whole body of a streamed answer, read in one call; the connection goes back to the pool."""
    raw = result.resp.response.raw
    data = raw.read()
    raw.release_conn()
    expected = result.resp.headers.get("content-length")
    if expected is not None and len(data) != int(expected):
        raise ShortReadError(f"got {len(data)} of {expected} bytes")
    return data


def _read_answer(result: oss2.models.RequestResult, what: str, whole: bool) -> bytes:
    """The body of ``result`` (see :func:`_body`), checked against the object's CRC64 when
    it is the ``whole`` object."""
    data = _body(result)
    if whole:
        _check_crc(what, crc64(data), result.headers)
    return data


class _RedactSecrets(logging.Filter):
    """Masks registered secrets in oss2's own log records (its DEBUG logs print headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "**********")
            record.msg, record.args = message, ()
        return True


_REDACT = _RedactSecrets()
for _name in ("oss2", "oss2.api", "oss2.auth", "oss2.http", "oss2.utils", "oss2.models", "oss2.credentials"):
    logging.getLogger(_name).addFilter(_REDACT)


class OSSBackend(Backend):
    """A store under ``prefix`` in one OSS bucket (``oss://ENDPOINT/BUCKET/prefix``)."""

    capabilities = Capabilities(writable=True, appendable=True, atomic_create=True, parallel_reads=True, copy=True)

    def __init__(self, endpoint: str, bucket: str, prefix: str, options: OSSOptions) -> None:
        credentials = resolve_credentials(options)
        self.options = options
        self.endpoint, self.bucket_name = endpoint, bucket
        self.prefix = prefix.strip("/")
        self.url = f"oss://{endpoint}/{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._key_prefix = self.prefix + "/" if self.prefix else ""
        token = credentials.token.get_secret_value() if credentials.token else None
        # Masking a very short string would mangle every log line and hides nothing.
        _REDACT.secrets.update(s for s in (credentials.secret.get_secret_value(), token) if s and len(s) >= 8)
        provider = StaticCredentialsProvider(credentials.key_id, credentials.secret.get_secret_value(), token)
        auth = oss2.ProviderAuthV4(provider) if options.region else oss2.ProviderAuth(provider)
        scheme = "https" if options.use_ssl else "http"
        endpoint_url = f"{scheme}://{endpoint}"
        # Directory loads keep up to 32 downloads in flight (kara_core.obj's default for
        # stores with parallel reads); a smaller pool would close and reopen connections.
        # Proxies and the CA bundle come from the environment, read once by the transport.
        transport = Transport(
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            max_connections=max(64, 2 * options.parallelism),
        )
        session = TransportSession(transport)
        try:
            self._bucket = oss2.Bucket(
                auth,
                endpoint_url,
                bucket,
                session=session,
                connect_timeout=(options.connect_timeout, options.read_timeout),
                enable_crc=False,
                region=options.region,
            )
        except oss2.exceptions.ClientError as exc:
            raise ConfigurationError(f"invalid OSS endpoint {endpoint!r} in {self.url}: {exc.body}") from None
        self._session = session
        self._retrier = Retrier(options.retry_budget, self.url, endpoint, bucket)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: StoreURL, options: OSSOptions) -> OSSBackend:
        """Build from ``oss://ENDPOINT/BUCKET/prefix`` (the prefix may be empty)."""
        endpoint, _, rest = url.location.partition("/")
        bucket, _, prefix = rest.partition("/")
        if not endpoint or not bucket:
            raise ConfigurationError(
                f"{url.raw!r} must name an endpoint and a bucket: oss://ENDPOINT/BUCKET/prefix, "
                "for example oss://oss-cn-hangzhou.aliyuncs.com/my-bucket/datasets"
            )
        if not oss2.utils.is_valid_bucket_name(bucket):
            raise ConfigurationError(
                f"{bucket!r} in {url.raw!r} is not a valid OSS bucket name "
                "(3-63 lower-case letters, digits and hyphens)"
            )
        prefix = prefix.strip("/")
        if prefix:
            check_path(prefix)
        return cls(endpoint, bucket, prefix, options)

    # -- helpers ---------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self._key_prefix + check_path(path)

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        return self._retrier.call(what, fn)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.parallelism, thread_name_prefix="kara-oss")
            return self._pool

    def _get(self, key: str, start: int, end: int | None, etag: str | None = None) -> oss2.models.GetObjectResult:
        if start == 0 and end is None and etag is None:
            return self._bucket.get_object(key)
        headers = dict(_STANDARD_RANGE)
        if etag is not None:
            headers["If-Match"] = etag
        return self._bucket.get_object(key, byte_range=(start, None if end is None else end - 1), headers=headers)

    def _fetch(self, key: str, start: int, end: int | None) -> bytes:
        """One GET of ``[start, end)``; raises on a truncated body or a CRC mismatch."""
        try:
            result = self._get(key, start, end)
        except oss2.exceptions.ServerError as exc:
            if exc.status == 416:
                return b""
            raise
        return _read_answer(result, "read " + key, start == 0 and end is None)

    # -- reading ---------------------------------------------------------------------

    def size(self, path: str) -> int | None:
        """Size from GetObjectMeta (a HEAD request); None if the object is absent."""
        key = self._key(path)
        try:
            meta = self._call("get the size of " + path, lambda: _released(self._bucket.get_object_meta(key)))
        except NotFoundError:
            return None
        return meta.content_length  # type: ignore[attr-defined]

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Ranged GET; a large range is split into ``parallelism`` concurrent GETs."""
        key = self._key(path)
        if end is not None and end <= start:
            return self._read_empty_range(path)
        chunk = self.options.part_size
        if end is not None and end - start > 2 * chunk and self.options.parallelism > 1:
            bounds = [(s, min(s + chunk, end)) for s in range(start, end, chunk)]
            pieces = self._executor().map(
                lambda b: self._call(f"read {path}", lambda: self._fetch(key, b[0], b[1])), bounds
            )
            return b"".join(pieces)  # type: ignore[arg-type]
        return self._call(f"read {path}", lambda: self._fetch(key, start, end))  # type: ignore[return-value]

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        """A stream that resumes with a ranged GET (same ETag) when the connection drops.

        Up to 1 MiB from ``start`` is read at once into memory (CRC64-checked when
        that is the whole object).
        """
        raw = _ResumingReader(self, path, self._key(path), start)
        if raw.remaining is not None and raw.remaining <= _WHOLE_READ:
            with raw:
                return io.BytesIO(raw.read_rest())  # type: ignore[return-value]
        return io.BufferedReader(raw, buffer_size=1024 * 1024)  # type: ignore[return-value]

    def list(self, prefix: str) -> Iterator[str]:
        """ListObjectsV2 pages of 1,000 keys, following continuation tokens."""
        full = self._key_prefix + prefix
        token, what = "", "list " + (prefix or "the store")
        while True:
            page = self._call(
                what, lambda t=token: self._bucket.list_objects_v2(prefix=full, continuation_token=t, max_keys=1000)
            )
            for info in page.object_list:  # type: ignore[attr-defined]
                if not info.key.startswith(full):
                    raise BackendError(f"{what} on {self.url}: the server listed {info.key!r}, outside {full!r}")
                if not info.key.endswith(_CONVERT_MARK):
                    yield info.key[len(self._key_prefix) :]
            if not page.is_truncated:  # type: ignore[attr-defined]
                return
            following = page.next_continuation_token  # type: ignore[attr-defined]
            if not following or following == token:
                # Asking again would get the same page for ever.
                raise BackendError(
                    f"{what} on {self.url}: the server says the listing goes on but gives "
                    + ("no continuation token" if not following else "the same continuation token again")
                )
            token = following

    # -- writing ---------------------------------------------------------------------

    def open_append(self, path: str) -> OSSAppender:
        """An appender writing with AppendObject at the object's current length."""
        return OSSAppender(self, path, self._key(path))

    def put(self, path: str, data: bytes | bytearray | memoryview | BinaryIO) -> None:
        """PutObject, or a parallel multipart upload above ``multipart_threshold``."""
        key = self._key(path)
        threshold = self.options.multipart_threshold
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data).cast("B")
            if len(view) <= threshold:
                self._put_object(path, key, data if isinstance(data, bytes) else bytes(view))
                return
            part = self.options.part_size
            self._multipart(path, key, (bytes(view[i : i + part]) for i in range(0, len(view), part)))
            return
        head = _read_up_to(data, threshold + 1)
        if len(head) <= threshold:
            self._put_object(path, key, head)
            return
        self._multipart(path, key, _stream_parts(head, data, self.options.part_size))

    def _put_object(self, path: str, key: str, body: bytes) -> None:
        crc = crc64(body)

        def put() -> None:
            _check_crc("write " + path, crc, self._bucket.put_object(key, body).headers)

        self._call("write " + path, put)

    def _multipart(self, path: str, key: str, parts: Iterator[bytes]) -> None:
        upload_id: str = self._call(  # type: ignore[assignment]
            "start a multipart upload of " + path, lambda: self._bucket.init_multipart_upload(key).upload_id
        )
        pool = self._executor()
        done: list[PartInfo] = []
        pending: set[Future[PartInfo]] = set()
        try:
            for number, body in enumerate(parts, start=1):
                if len(pending) >= self.options.parallelism:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    done.extend(f.result() for f in finished)
                pending.add(pool.submit(self._upload_part, path, key, upload_id, number, body))
            finished, _ = wait(pending)
            pending = set()
            done.extend(f.result() for f in finished)
            self._complete(path, key, upload_id, sorted(done, key=lambda p: p.part_number))
        except BaseException:
            for future in pending:
                future.cancel()
            wait(pending)
            self._abort(key, upload_id)
            raise

    def _upload_part(self, path: str, key: str, upload_id: str, number: int, body: bytes) -> PartInfo:
        crc = crc64(body)

        def upload() -> str:
            result = self._bucket.upload_part(key, upload_id, number, body)
            _check_crc(f"part {number} of {path}", crc, result.headers)
            return result.etag

        etag: str = self._call(f"upload part {number} of {path}", upload)  # type: ignore[assignment]
        return PartInfo(number, etag, size=len(body), part_crc=crc)

    def _complete(self, path: str, key: str, upload_id: str, parts: list[PartInfo]) -> None:
        attempts = 0
        size = sum(p.size for p in parts)
        crc = parts[0].part_crc
        for part in parts[1:]:
            crc = crc64_combine(crc, part.part_crc, part.size)

        def complete() -> None:
            nonlocal attempts
            attempts += 1
            try:
                _check_crc(
                    "complete " + path, crc, self._bucket.complete_multipart_upload(key, upload_id, parts).headers
                )
            except oss2.exceptions.NoSuchUpload:
                # An earlier attempt may have completed it and lost the answer: the
                # object is then there with exactly our size and CRC.
                if attempts > 1:
                    head = _released(self._bucket.head_object(key))
                    if head.content_length == size and head.server_crc == crc:
                        return
                raise

        self._call("complete the multipart upload of " + path, complete)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._bucket.abort_multipart_upload(key, upload_id)
        except oss2.exceptions.OssError:
            # Best effort: the upload is already failing; an unfinished upload only costs
            # storage until the bucket's lifecycle rule removes it.
            logging.getLogger("kara_oss").warning("could not abort multipart upload of %s", key)

    def copy(self, source: str, target: str) -> None:
        """CopyObject on the server (CRC64-checked); appendable or >1 GiB sources are read and put."""
        source_key, target_key = self._key(source), self._key(target)
        head = self._call("look up " + source, lambda: _released(self._bucket.head_object(source_key)))
        if head.object_type == "Appendable" or head.content_length > _COPY_LIMIT:  # type: ignore[attr-defined]
            super().copy(source, target)
            return
        crc = head.server_crc  # type: ignore[attr-defined]

        def copy() -> None:
            result = self._bucket.copy_object(self.bucket_name, source_key, target_key)
            if crc is not None:
                _check_crc(f"copy {source} to {target}", crc, result.headers)

        self._call(f"copy {source} to {target}", copy)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """PutObject with ``x-oss-forbid-overwrite: true``; False on FileAlreadyExists.

        If an attempt failed in a way that leaves its outcome unknown and the retry finds
        the object existing with exactly our bytes, the earlier attempt created it: True.
        """
        key = self._key(path)
        body = bytes(data)
        attempts = 0

        def create() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                self._bucket.put_object(key, body, headers=_FORBID_OVERWRITE)
                return True
            except oss2.exceptions.ServerError as exc:
                if exc.status == 409 and exc.code == "FileAlreadyExists":
                    return attempts > 1 and self._fetch(key, 0, None) == body
                raise

        return self._call("create " + path, create)  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        """DeleteObject (OSS answers 204 for absent objects too)."""
        key = self._key(path)
        self._call("delete " + path, lambda: self._bucket.delete_object(key))

    def close(self) -> None:
        """Stop the transfer threads and close the connection pool."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._session.close()


class OSSAppender:
    """Appends to one OSS object with AppendObject; ``flush`` sends what is buffered.

    A retried AppendObject whose first attempt landed (the answer was lost) gets
    PositionNotEqualToLength; it is recognised as ours when the object ends exactly where
    our bytes end and its CRC64 is the CRC of what we appended, and is not written twice.
    """

    def __init__(self, backend: OSSBackend, path: str, key: str) -> None:
        self._backend, self.path, self._key = backend, path, key
        self._sent, self._crc = 0, 0
        self._buffer = bytearray()
        self._closed = False
        head = self._head(key)
        backup = key + _CONVERT_MARK
        if head is None:
            pending = self._head(backup)
            if pending is not None:
                # A conversion (below) was interrupted between deleting the object and
                # rewriting it: finish it from the backup.
                self._rewrite(backend._call("read " + path, lambda: backend._fetch(backup, 0, None)), backup)  # type: ignore[arg-type]
        elif head.object_type != "Appendable":  # type: ignore[attr-defined]
            # OSS only appends to objects created by AppendObject. A normal object (a
            # block rewritten by a truncation, or uploaded by another tool) becomes
            # appendable by rewriting it, with a backup so a crash loses nothing.
            content: bytes = backend._call("read " + path, lambda: backend._fetch(key, 0, None))  # type: ignore[assignment]
            backend._call("back up " + path, lambda: backend._bucket.put_object(backup, content))
            backend._call("delete " + path, lambda: backend._bucket.delete_object(key))
            self._rewrite(content, backup)
        else:
            self._sent = head.content_length  # type: ignore[attr-defined]
            self._crc = head.server_crc or 0  # type: ignore[attr-defined]

    def _head(self, key: str) -> object | None:
        try:
            return self._backend._call(
                "open " + self.path + " for appending", lambda: _released(self._backend._bucket.head_object(key))
            )
        except NotFoundError:
            return None

    def _rewrite(self, content: bytes, backup: str) -> None:
        self._buffer += content
        self.flush()
        self._backend._call("delete the backup of " + self.path, lambda: self._backend._bucket.delete_object(backup))

    @property
    def position(self) -> int:
        """Bytes in the object once everything appended so far is flushed."""
        return self._sent + len(self._buffer)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data``; send it when the buffer reaches ``append_buffer`` bytes."""
        if self._closed:
            raise ValueError(f"append to closed appender of {self.path}")
        self._buffer += data
        if len(self._buffer) >= self._backend.options.append_buffer:
            self.flush()

    def flush(self) -> None:
        """Send the buffered bytes with one AppendObject (retried safely)."""
        if not self._buffer:
            return
        chunk = bytes(self._buffer)
        position, crc = self._sent, self._crc
        expected_crc = crc64(chunk, crc)
        bucket = self._backend._bucket
        attempts = 0

        def append() -> int:
            nonlocal attempts
            attempts += 1
            try:
                result = bucket.append_object(self._key, position, chunk)
                _check_crc("append to " + self.path, expected_crc, result.headers)
            except oss2.exceptions.PositionNotEqualToLength as exc:
                if attempts > 1 and exc.next_position == position + len(chunk):
                    head = _released(bucket.head_object(self._key))
                    if head.server_crc == expected_crc:
                        return exc.next_position
                raise BackendError(
                    f"{self._backend.url}/{self.path} changed under this appender: expected it to be "
                    f"{position} bytes long, OSS says {exc.next_position} (is another writer appending?)"
                ) from None
            except oss2.exceptions.InconsistentError:
                raise BackendError(
                    f"CRC64 mismatch after appending to {self._backend.url}/{self.path} at offset {position}: "
                    "the object is corrupt from there on"
                ) from None
            return result.next_position

        self._sent = self._backend._call(f"append to {self.path}", append)  # type: ignore[assignment]
        self._crc = expected_crc
        del self._buffer[:]

    def close(self) -> None:
        """Flush and release the appender."""
        if not self._closed:
            self.flush()
            self._closed = True


class _ResumingReader(io.RawIOBase):
    """Reads an object from an offset; a dropped connection resumes where it stopped."""

    def __init__(self, backend: OSSBackend, path: str, key: str, start: int) -> None:
        super().__init__()
        self._backend, self._path, self._key = backend, path, key
        self._offset = start
        self._end: int | None = None
        self._etag: str | None = None
        self._result: oss2.models.GetObjectResult | None = None
        self._backend._call("read " + path, self._open)

    def _open(self) -> None:
        try:
            result = self._backend._get(self._key, self._offset, None, self._etag)
        except oss2.exceptions.ServerError as exc:
            if exc.status == 416:
                self._result, self._end = None, self._offset
                return
            if exc.status == 412:
                raise BackendError(f"{self._backend.url}/{self._path} was replaced while it was being read") from None
            raise
        self._result = result
        self._etag = result.etag
        if result.content_length is not None:
            self._end = self._offset + result.content_length

    @property
    def remaining(self) -> int | None:
        """Bytes from the current offset to the end, if the server said."""
        return None if self._end is None else self._end - self._offset

    def read_rest(self) -> bytes:
        """Everything from the current offset to the end in one read (retried, resumed).

        A read of the whole object is checked against the object's CRC64.
        """

        def read() -> bytes:
            try:
                if self._result is None:
                    self._open()
                if self._result is None:
                    return b""
                data = _read_answer(self._result, "read " + self._path, self._offset == 0)
            finally:
                self._result = None
            return data

        data: bytes = self._backend._call("read " + self._path, read)  # type: ignore[assignment]
        self._offset += len(data)
        return data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")

        def read() -> bytes:
            if self._result is None:
                self._open()
            if self._result is None:
                return b""
            data = self._result.resp.response.raw.read(len(view))
            if not data and self._end is not None and self._offset < self._end:
                self._result = None
                raise ShortReadError(f"stream of {self._path} ended at {self._offset} of {self._end}")
            return data

        def read_or_reopen() -> bytes:
            try:
                return read()
            except BaseException:
                self._result = None
                raise

        data = self._backend._call("read " + self._path, read_or_reopen)
        n = len(data)  # type: ignore[arg-type]
        view[:n] = data  # type: ignore[index]
        self._offset += n
        return n

    def close(self) -> None:
        if self._result is not None:
            self._result.resp.response.close()
            self._result = None
        super().close()


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _stream_parts(head: bytes, stream: BinaryIO, part_size: int) -> Iterator[bytes]:
    buffer = head
    while True:
        if len(buffer) < part_size:
            buffer += _read_up_to(stream, part_size - len(buffer))
        if not buffer:
            return
        yield buffer[:part_size]
        buffer = buffer[part_size:]
