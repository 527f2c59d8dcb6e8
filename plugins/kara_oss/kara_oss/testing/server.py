"""An OSS-protocol server on 127.0.0.1 for tests: real OSS semantics, in memory.

It speaks the subset of the OSS REST API that object-storage clients use, the way OSS
answers it: path-style bucket addressing (``http://127.0.0.1:PORT/bucket/key``), V1 and
V4 signatures checked exactly, GetObject ranges in both OSS range behaviours, HeadObject
and GetObjectMeta (errors in the ``x-oss-err`` header), AppendObject with position
checks, ListObjects and ListObjectsV2, multipart uploads, ``x-oss-forbid-overwrite``,
CRC64 (``x-oss-hash-crc64ecma``) on every write and read, and OSS's error XML. Faults
(dropped connections, 5xx, slow answers) and a per-request latency can be injected.
Requests are parsed by the standard library's :mod:`http.server`; ``chunked`` request
bodies are decoded by h11.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import functools
import hashlib
import http.server
import itertools
import socket
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import h11

from ..crc import crc64, crc64_combine
from .signature import check_signature

__all__ = ["FAULT_ACTIONS", "Fault", "OSSServerState", "serve"]

#: What an injected fault does to the request it matches:
#: ``error`` answers with ``status``/``code`` (and ``Retry-After`` if set) without
#: executing the request; ``drop`` closes the connection without executing it;
#: ``drop_after_apply`` executes it and closes the connection instead of answering;
#: ``drop_mid_body`` sends the headers and half the body, then closes; ``slow`` waits
#: ``delay`` seconds before handling the request normally; ``corrupt`` flips one byte of
#: the request body before it is stored, or of the answer body after its CRC64 header
#: was computed (what bit rot on the wire looks like).
FAULT_ACTIONS = ("error", "drop", "drop_after_apply", "drop_mid_body", "slow", "corrupt")

_MAX_SKEW = 15 * 60
_REQUEST_IDS = itertools.count(int(time.time() * 1000) << 32)
_MIN_PART_SIZE = 100 * 1024
_XML = "application/xml"
# Answers up to this size leave in one send (headers and body together); larger bodies
# are sent after the headers rather than copied behind them.
_ONE_SEND = 256 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass
class Fault:
    """One injected fault, matched against the next requests until used ``times`` times.

    ``operation`` is an OSS API name (``GetObject``, ``AppendObject``, ``PutObject``,
    ``UploadPart``, ``ListObjectsV2``...) or None for any; ``key`` matches object keys
    starting with it, or None for any.
    """

    action: str
    operation: str | None = None
    key: str | None = None
    times: int = 1
    status: int = 503
    code: str = "ServiceUnavailable"
    retry_after: float | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, operation: str, key: str) -> bool:
        """Return True if this fault applies to a request of ``operation`` on ``key``."""
        if self.hits >= self.times:
            return False
        if self.operation is not None and self.operation != operation:
            return False
        return self.key is None or key.startswith(self.key)


@dataclass
class _Object:
    data: bytes | bytearray  # bytearray once appended to (appends extend it in place)
    kind: str  # Normal, Appendable or Multipart, as OSS reports x-oss-object-type
    etag: str
    crc: int
    content_type: str
    mtime: float


@dataclass
class _Part:
    data: bytes
    etag: str
    crc: int
    mtime: float


@dataclass
class _Upload:
    key: str
    initiated: float
    parts: dict[int, _Part] = field(default_factory=dict)


class OSSError(Exception):
    """An OSS error answer: HTTP status, OSS code, message and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra
        self.headers: dict[str, str] = {}


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | bytearray | memoryview = b""


class OSSServerState:
    """Buckets, objects, uploads, credentials, faults and the request log of one server."""

    def __init__(
        self,
        buckets: Iterable[str],
        credentials: dict[str, str],
        security_tokens: dict[str, str],
        region: str,
        latency: float,
        md5_etags: bool = True,
    ) -> None:
        self.buckets: dict[str, dict[str, _Object]] = {name: {} for name in buckets}
        self.uploads: dict[str, dict[str, _Upload]] = {name: {} for name in buckets}
        self.credentials = credentials
        self.security_tokens = security_tokens
        self.region = region
        self.latency = latency
        self.md5_etags = md5_etags
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str]] = []

    def etag(self, data: bytes, crc: int) -> str:
        """The ETag of an uploaded object or part: the MD5 of ``data``, as OSS answers.

        With ``md5_etags`` off, one derived from the CRC64 instead: same format, still
        unique per content, but no MD5 pass over every uploaded byte (see
        :class:`~kara_oss.testing.OSSTestServer`).
        """
        return _etag(data) if self.md5_etags else _derived_etag(crc, len(data))

    def take_fault(self, operation: str, key: str) -> Fault | None:
        """Return (and count) the first injected fault matching this request, if any."""
        with self.lock:
            self.log.append((operation, key))
            for fault in self.faults:
                if fault.matches(operation, key):
                    fault.hits += 1
                    return fault
        return None


def _flip_first_byte(data: bytes | bytearray | memoryview) -> bytes:
    return bytes([data[0] ^ 0xFF]) + bytes(data[1:])


def _etag(data: bytes | bytearray) -> str:
    return '"' + hashlib.md5(data).hexdigest().upper() + '"'


def _derived_etag(crc: int, length: int) -> str:
    """An ETag that changes with the content, from its CRC64 and length (no pass over it)."""
    return '"' + hashlib.md5(f"{crc}:{length}".encode()).hexdigest().upper() + '"'


@functools.lru_cache(maxsize=4096)
def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


def _now() -> str:
    """The Date header: formatted once per second."""
    return _http_date(float(int(time.time())))


@functools.lru_cache(maxsize=64)
def _signed_at(date: str) -> float:
    """Seconds since the epoch of a request's ``Date`` (0 if absent or unreadable)."""
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() if date else 0.0
    except (TypeError, ValueError):
        return 0.0


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))


def _xml(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


def _operation(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    if not key:
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads"
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        return "Bucket" + method.title()
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "HEAD":
        return "GetObjectMeta" if "objectMeta" in query else "HeadObject"
    if method == "PUT":
        if "uploadId" in query:
            return "UploadPart"
        return "CopyObject" if "x-oss-copy-source" in headers else "PutObject"
    if method == "POST":
        if "append" in query:
            return "AppendObject"
        if "uploads" in query:
            return "InitiateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return "Unsupported"


def _resolve_range(spec: str, size: int, standard: bool) -> tuple[int, int] | None:
    """Return ``(start, end_exclusive)`` for a Range header, or None for the whole object.

    OSS ignores an invalid range by default (200 with the whole object); with
    ``x-oss-range-behavior: standard`` an end past the object is cut and a start past it
    is 416 InvalidRange.
    """
    if not spec.startswith("bytes=") or "," in spec:
        return None
    first, sep, last = spec[6:].strip().partition("-")
    if not sep or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "" or int(last) == 0 or size == 0:
            return None
        count = int(last)
        if count > size and not standard:
            return None
        return max(0, size - count), size
    start = int(first)
    end = int(last) + 1 if last else size
    if end <= start:
        return None
    if start >= size:
        if standard:
            raise OSSError(416, "InvalidRange", "The requested range cannot be satisfied")
        return None
    if end > size:
        if not standard:
            return None
        end = size
    return start, end


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without TCP_NODELAY, Nagle's algorithm
        # holds the body until the client's delayed ACK (about 40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is in ``state.log``."""

    def handle_one_request(self) -> None:
        """Parse one request with :mod:`http.server` and answer it; hang-ups end the connection."""
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # -- plumbing ------------------------------------------------------------------

    def _fields(self) -> dict[str, str]:
        """The request headers by lower-case name (a repeated header keeps its last value)."""
        return {name.lower(): value.strip(" \t") for name, value in self.headers.items()}

    def _read_body(self, fields: dict[str, str]) -> bytes:
        """The request body, framed by Content-Length or ``chunked`` (decoded by h11)."""
        if "transfer-encoding" in fields:
            return self._read_chunked(fields["transfer-encoding"])
        length = fields.get("content-length", "0") or "0"
        if not (length.isascii() and length.isdigit()):
            raise OSSError(400, "InvalidArgument", "Content-Length is not a valid integer.")
        return self.rfile.read(int(length)) if int(length) else b""

    def _read_chunked(self, coding: str) -> bytes:
        # http.server leaves request bodies to the handler; h11 decodes the chunked
        # framing (a request head carrying only the framing primes it). The connection
        # closes after the answer: bytes h11 received past the body are not handed back.
        self.close_connection = True
        parser = h11.Connection(h11.SERVER)
        parser.receive_data(f"POST / HTTP/1.1\r\nHost: oss\r\nTransfer-Encoding: {coding}\r\n\r\n".encode("latin-1"))
        chunks = []
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    parser.receive_data(self.rfile.read1(65536))
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks)
        except h11.RemoteProtocolError as exc:
            raise OSSError(400, "InvalidArgument", f"The chunked request body is malformed: {exc}") from None

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, answer: _Answer, request_id: str, body_limit: int | None = None) -> None:
        reason = _REASONS.get(answer.status, "")
        headers = {
            "Server": self.server_version,
            "Date": _now(),
            "x-oss-request-id": request_id,
            "x-oss-server-time": "1",
            "Content-Length": str(len(answer.body)),
            **answer.headers,
        }
        if self.close_connection:
            headers["Connection"] = "close"  # the client must not send another request on it
        lines = [f"HTTP/1.1 {answer.status} {reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD" or not answer.body:
            self.wfile.write(head)
            return
        body = memoryview(answer.body)
        if body_limit is not None:
            self.wfile.write(head)
            self.wfile.write(body[:body_limit])
            self._drop()
        elif len(body) <= _ONE_SEND:
            self.wfile.write(head + body)
        else:
            self.wfile.write(head)
            self.wfile.write(body)

    def _error_answer(self, err: OSSError, request_id: str, bucket: str) -> _Answer:
        root = ET.Element("Error")
        _sub(root, "Code", err.code)
        _sub(root, "Message", err.message)
        _sub(root, "RequestId", request_id)
        _sub(root, "HostId", f"{bucket}.{self.headers.get('Host', '127.0.0.1')}" if bucket else "127.0.0.1")
        for tag, text in err.extra.items():
            _sub(root, tag, text)
        body = _xml(root)
        headers = {"Content-Type": _XML, **err.headers}
        if self.command == "HEAD":
            # HEAD answers carry no body: OSS puts the error XML, base64, in x-oss-err.
            headers["x-oss-err"] = base64.b64encode(body).decode()
        return _Answer(err.status, headers, body)

    def _handle(self) -> None:
        state: OSSServerState = self.server.state
        request_id = f"{next(_REQUEST_IDS):024X}"
        raw_path, _, raw_query = self.path.partition("?")
        bucket_raw, _, key_raw = raw_path.lstrip("/").partition("/")
        bucket, key = unquote(bucket_raw), unquote(key_raw)
        query_list = parse_qsl(raw_query, keep_blank_values=True)
        query = dict(query_list)
        operation = _operation(self.command, key, query, self.headers)  # type: ignore[arg-type]
        fault = state.take_fault(operation, key)
        if state.latency:
            time.sleep(state.latency)
        if fault is not None and fault.action == "drop":
            self._drop()
            return
        headers = self._fields()
        try:
            body = self._read_body(headers)
        except OSSError as err:
            self.close_connection = True  # the body was not read: the connection is out of step
            self._send(self._error_answer(err, request_id, bucket), request_id)
            return
        corrupt = fault is not None and fault.action == "corrupt"
        if corrupt and body:
            body = _flip_first_byte(body)
        if fault is not None and fault.action == "slow":
            time.sleep(fault.delay)
        try:
            if fault is not None and fault.action == "error":
                err = OSSError(
                    fault.status,
                    fault.code,
                    "Please reduce your request rate." if fault.status == 503 else "Injected failure.",
                )
                if fault.retry_after is not None:
                    err.headers["Retry-After"] = f"{fault.retry_after:g}"
                raise err
            self._authenticate(state, bucket, key, query_list, headers)
            answer = _Operations(state, bucket, key, query, headers, body).run(operation)
        except OSSError as err:
            answer = self._error_answer(err, request_id, bucket)
        if fault is not None and fault.action == "drop_after_apply":
            self._drop()
            return
        if corrupt and answer.body and self.command == "GET":
            answer.body = _flip_first_byte(answer.body)
        limit = len(answer.body) // 2 if fault is not None and fault.action == "drop_mid_body" else None
        try:
            self._send(answer, request_id, limit)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _authenticate(
        self, state: OSSServerState, bucket: str, key: str, query: list[tuple[str, str]], headers: dict[str, str]
    ) -> None:
        check = check_signature(self.command, bucket, key, query, headers, state.credentials, state.region)
        if check.code is not None:
            extra = {"OSSAccessKeyId": check.access_key_id} if check.access_key_id else {}
            if check.string_to_sign:
                extra["StringToSign"] = check.string_to_sign
            status = 400 if check.code == "InvalidArgument" else 403
            raise OSSError(status, check.code, check.message, **extra)
        stamp = headers.get("x-oss-date", "")
        if stamp and "T" in stamp:
            signed_at = float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
        else:
            signed_at = _signed_at(headers.get("date", ""))
        if abs(time.time() - signed_at) > _MAX_SKEW:
            raise OSSError(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
        token = state.security_tokens.get(check.access_key_id)
        if token is not None and headers.get("x-oss-security-token") != token:
            raise OSSError(403, "InvalidSecurityToken", "The security token you provided is invalid.")


class _Operations:
    """The OSS API operations, each returning an answer or raising :class:`OSSError`."""

    def __init__(
        self, state: OSSServerState, bucket: str, key: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> None:
        self.state, self.bucket, self.key = state, bucket, key
        self.query, self.headers, self.body = query, headers, body

    def run(self, operation: str) -> _Answer:
        if self.bucket not in self.state.buckets:
            raise OSSError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=self.bucket)
        handler = getattr(self, "op_" + operation, None)
        if handler is None:
            raise OSSError(400, "NotImplemented", f"{operation} is not implemented by the kara OSS test server.")
        return handler()

    @property
    def objects(self) -> dict[str, _Object]:
        return self.state.buckets[self.bucket]

    def _no_such_key(self) -> OSSError:
        return OSSError(404, "NoSuchKey", "The specified key does not exist.", Key=self.key)

    def _object_headers(self, obj: _Object) -> dict[str, str]:
        headers = {
            "Content-Type": obj.content_type,
            "ETag": obj.etag,
            "Last-Modified": _http_date(obj.mtime),
            "x-oss-object-type": obj.kind,
            "x-oss-hash-crc64ecma": str(obj.crc),
            "x-oss-storage-class": "Standard",
            "Accept-Ranges": "bytes",
        }
        if obj.kind == "Appendable":
            headers["x-oss-next-append-position"] = str(len(obj.data))
        return headers

    def _forbid_overwrite(self) -> bool:
        return self.headers.get("x-oss-forbid-overwrite", "").lower() == "true"

    def _store(self, data: bytes, kind: str, etag: str, crc: int) -> _Object:
        # Called under the state lock: the check and the write are one atomic step. The
        # ETag and CRC64 are computed before, outside the lock: hashing a large body
        # must not stall every other request.
        if self._forbid_overwrite() and self.key in self.objects:
            raise OSSError(
                409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten."
            )
        obj = _Object(data, kind, etag, crc, self.headers.get("content-type", "application/octet-stream"), time.time())
        self.objects[self.key] = obj
        return obj

    # -- objects -------------------------------------------------------------------

    def op_PutObject(self) -> _Answer:
        crc = crc64(self.body)
        etag = self.state.etag(self.body, crc)
        with self.state.lock:
            obj = self._store(self.body, "Normal", etag, crc)
        return _Answer(200, {"ETag": obj.etag, "x-oss-hash-crc64ecma": str(obj.crc)})

    def op_CopyObject(self) -> _Answer:
        # x-oss-copy-source is "/<bucket>/<url-quoted key>"; OSS refuses appendable sources.
        source_bucket, _, source_key = unquote(self.headers["x-oss-copy-source"]).lstrip("/").partition("/")
        with self.state.lock:
            source = self.state.buckets.get(source_bucket, {}).get(source_key)
            if source is None:
                raise OSSError(404, "NoSuchKey", "The specified key does not exist.", Key=source_key)
            if source.kind == "Appendable":
                raise OSSError(400, "OperationNotSupported", "The operation is not supported for appendable objects.")
            obj = self._store(bytes(source.data), "Normal", source.etag, source.crc)
        root = ET.Element("CopyObjectResult")
        _sub(root, "ETag", obj.etag)
        _sub(root, "LastModified", _iso(obj.mtime))
        return _Answer(200, {"ETag": obj.etag, "x-oss-hash-crc64ecma": str(obj.crc), "Content-Type": _XML}, _xml(root))

    def op_GetObject(self) -> _Answer:
        with self.state.lock:
            obj = self.objects.get(self.key)
            if obj is None:
                raise self._no_such_key()
            headers = self._object_headers(obj)
            if self.headers.get("if-match", obj.etag).strip('"') != obj.etag.strip('"'):
                raise OSSError(
                    412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold."
                )
            data = obj.data
            size = len(data)
            spec = self.headers.get("range", "")
            span = _resolve_range(spec, size, self.headers.get("x-oss-range-behavior") == "standard") if spec else None
            start, end = (0, size) if span is None else span
            if span is not None:
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            status = 200 if span is None else 206
            if isinstance(data, bytes):
                # Immutable: the answer can point into it (a later write replaces the object).
                return _Answer(status, headers, data if span is None else memoryview(data)[start:end])
            # An appendable object grows in place: answer with a snapshot.
            return _Answer(status, headers, bytes(memoryview(data)[start:end]))

    def op_HeadObject(self) -> _Answer:
        with self.state.lock:
            obj = self.objects.get(self.key)
            if obj is None:
                raise self._no_such_key()
            answer = _Answer(200, self._object_headers(obj))
            answer.headers["Content-Length"] = str(len(obj.data))
        return answer

    def op_GetObjectMeta(self) -> _Answer:
        with self.state.lock:
            obj = self.objects.get(self.key)
            if obj is None:
                raise self._no_such_key()
            headers = {
                "Content-Length": str(len(obj.data)),
                "ETag": obj.etag,
                "Last-Modified": _http_date(obj.mtime),
                "x-oss-last-access-time": _http_date(obj.mtime),
            }
        return _Answer(200, headers)

    def op_AppendObject(self) -> _Answer:
        try:
            position = int(self.query.get("position", ""))
        except ValueError:
            raise OSSError(400, "InvalidArgument", "position is not a valid integer.") from None
        crc = crc64(self.body)
        with self.state.lock:
            obj = self.objects.get(self.key)
            if obj is not None and obj.kind != "Appendable":
                raise OSSError(409, "ObjectNotAppendable", "The object is not appendable.")
            length = len(obj.data) if obj is not None else 0
            if position != length:
                err = OSSError(409, "PositionNotEqualToLength", "Position is not equal to file length.")
                err.headers["x-oss-next-append-position"] = str(length)
                raise err
            if obj is None:
                obj = self._store(self.body, "Appendable", _derived_etag(crc, len(self.body)), crc)
            else:
                if isinstance(obj.data, bytes):
                    obj.data = bytearray(obj.data)
                obj.data += self.body
                obj.crc = crc64_combine(obj.crc, crc, len(self.body))
                # OSS documents an appendable object's ETag as unique, not as the MD5 of
                # its content; hashing the whole object on every append would cost
                # time proportional to its size.
                obj.etag = _derived_etag(obj.crc, len(obj.data))
                obj.mtime = time.time()
            headers = {
                "ETag": obj.etag,
                "x-oss-next-append-position": str(len(obj.data)),
                "x-oss-hash-crc64ecma": str(obj.crc),
            }
        return _Answer(200, headers)

    def op_DeleteObject(self) -> _Answer:
        with self.state.lock:
            self.objects.pop(self.key, None)
        return _Answer(204)

    # -- listing -------------------------------------------------------------------

    def _list(self, after: str, limit: int) -> tuple[list[tuple[str, _Object]], list[str], bool]:
        prefix = self.query.get("prefix", "")
        delimiter = self.query.get("delimiter", "")
        contents: list[tuple[str, _Object]] = []
        prefixes: list[str] = []
        with self.state.lock:
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > after)
            objects = dict(self.objects)
        truncated = False
        for key in keys:
            common = None
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
            if common is not None and (common <= after or (prefixes and prefixes[-1] == common)):
                continue
            if len(contents) + len(prefixes) >= limit:
                truncated = True
                break
            if common is not None:
                prefixes.append(common)
            else:
                contents.append((key, objects[key]))
        return contents, prefixes, truncated

    def _max_keys(self) -> int:
        try:
            value = int(self.query.get("max-keys") or 100)
        except ValueError:
            raise OSSError(400, "InvalidArgument", "max-keys is not a valid integer.") from None
        if not 0 < value <= 1000:
            raise OSSError(400, "InvalidArgument", "max-keys must be between 1 and 1000.")
        return value

    def _listing(self, root: ET.Element, contents: list[tuple[str, _Object]], prefixes: list[str], owner: bool) -> None:
        encode = self.query.get("encoding-type") == "url"
        for key, obj in contents:
            node = _sub(root, "Contents")
            _sub(node, "Key", quote(key, safe="") if encode else key)
            _sub(node, "LastModified", _iso(obj.mtime))
            _sub(node, "ETag", obj.etag)
            _sub(node, "Type", obj.kind)
            _sub(node, "Size", len(obj.data))
            _sub(node, "StorageClass", "Standard")
            if owner:
                owner_node = _sub(node, "Owner")
                _sub(owner_node, "ID", "kara-test-owner")
                _sub(owner_node, "DisplayName", "kara-test-owner")
        for common in prefixes:
            _sub(_sub(root, "CommonPrefixes"), "Prefix", quote(common, safe="") if encode else common)

    def _encoded(self, text: str) -> str:
        return quote(text, safe="") if self.query.get("encoding-type") == "url" else text

    def op_ListObjects(self) -> _Answer:
        marker = self.query.get("marker", "")
        limit = self._max_keys()
        contents, prefixes, truncated = self._list(marker, limit)
        root = ET.Element("ListBucketResult")
        _sub(root, "Name", self.bucket)
        _sub(root, "Prefix", self._encoded(self.query.get("prefix", "")))
        _sub(root, "Marker", self._encoded(marker))
        _sub(root, "MaxKeys", limit)
        _sub(root, "Delimiter", self._encoded(self.query.get("delimiter", "")))
        if self.query.get("encoding-type") == "url":
            _sub(root, "EncodingType", "url")
        _sub(root, "IsTruncated", "true" if truncated else "false")
        if truncated:
            last = max([k for k, _ in contents] + prefixes)
            _sub(root, "NextMarker", self._encoded(last))
        self._listing(root, contents, prefixes, owner=True)
        return _Answer(200, {"Content-Type": _XML}, _xml(root))

    def op_ListObjectsV2(self) -> _Answer:
        token = self.query.get("continuation-token", "")
        start_after = self.query.get("start-after", "")
        after = start_after
        if token:
            try:
                after = max(after, base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                raise OSSError(400, "InvalidArgument", "The continuation token provided is incorrect.") from None
        limit = self._max_keys()
        contents, prefixes, truncated = self._list(after, limit)
        root = ET.Element("ListBucketResult")
        _sub(root, "Name", self.bucket)
        _sub(root, "Prefix", self._encoded(self.query.get("prefix", "")))
        if start_after:
            _sub(root, "StartAfter", self._encoded(start_after))
        if token:
            _sub(root, "ContinuationToken", token)
        _sub(root, "MaxKeys", limit)
        _sub(root, "Delimiter", self._encoded(self.query.get("delimiter", "")))
        if self.query.get("encoding-type") == "url":
            _sub(root, "EncodingType", "url")
        _sub(root, "IsTruncated", "true" if truncated else "false")
        _sub(root, "KeyCount", len(contents) + len(prefixes))
        if truncated:
            last = max([k for k, _ in contents] + prefixes)
            _sub(root, "NextContinuationToken", self._encoded(base64.urlsafe_b64encode(last.encode()).decode()))
        self._listing(root, contents, prefixes, owner=self.query.get("fetch-owner") == "true")
        return _Answer(200, {"Content-Type": _XML}, _xml(root))

    # -- multipart -----------------------------------------------------------------

    def _upload(self) -> _Upload:
        upload = self.state.uploads[self.bucket].get(self.query.get("uploadId", ""))
        if upload is None or upload.key != self.key:
            raise OSSError(
                404,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, "
                "or the upload may have been aborted or completed.",
                UploadId=self.query.get("uploadId", ""),
            )
        return upload

    def op_InitiateMultipartUpload(self) -> _Answer:
        upload_id = uuid.uuid4().hex.upper()
        with self.state.lock:
            self.state.uploads[self.bucket][upload_id] = _Upload(self.key, time.time())
        root = ET.Element("InitiateMultipartUploadResult")
        _sub(root, "Bucket", self.bucket)
        _sub(root, "Key", self.key)
        _sub(root, "UploadId", upload_id)
        return _Answer(200, {"Content-Type": _XML}, _xml(root))

    def op_UploadPart(self) -> _Answer:
        try:
            number = int(self.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= 10000:
            raise OSSError(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.")
        crc = crc64(self.body)
        part = _Part(self.body, self.state.etag(self.body, crc), crc, time.time())
        with self.state.lock:
            self._upload().parts[number] = part
        return _Answer(200, {"ETag": part.etag, "x-oss-hash-crc64ecma": str(part.crc)})

    def op_CompleteMultipartUpload(self) -> _Answer:
        try:
            request = ET.fromstring(self.body)
            listed = [
                (int(node.findtext("PartNumber") or ""), (node.findtext("ETag") or "").strip().strip('"'))
                for node in request.findall("Part")
            ]
        except (ET.ParseError, ValueError):
            raise OSSError(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        if not listed:
            raise OSSError(400, "MalformedXML", "The XML you provided was not well-formed.")
        numbers = [n for n, _ in listed]
        if numbers != sorted(set(numbers)):
            raise OSSError(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        with self.state.lock:
            upload = self._upload()
            chosen = []
            for index, (number, etag) in enumerate(listed):
                part = upload.parts.get(number)
                if part is None or part.etag.strip('"') != etag:
                    raise OSSError(
                        400,
                        "InvalidPart",
                        "One or more of the specified parts could not be found.",
                        PartNumber=str(number),
                    )
                if index < len(listed) - 1 and len(part.data) < _MIN_PART_SIZE:
                    raise OSSError(
                        400,
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed size.",
                        PartNumber=str(number),
                    )
                chosen.append(part)
            digest = hashlib.md5(b"".join(bytes.fromhex(p.etag.strip('"')) for p in chosen)).hexdigest().upper()
            crc = chosen[0].crc
            for part in chosen[1:]:
                crc = crc64_combine(crc, part.crc, len(part.data))
            obj = self._store(b"".join(p.data for p in chosen), "Multipart", f'"{digest}-{len(chosen)}"', crc)
            del self.state.uploads[self.bucket][self.query["uploadId"]]
        root = ET.Element("CompleteMultipartUploadResult")
        _sub(root, "Location", f"http://{self.headers.get('host', '')}/{self.bucket}/{quote(self.key)}")
        _sub(root, "Bucket", self.bucket)
        _sub(root, "Key", self.key)
        _sub(root, "ETag", obj.etag)
        return _Answer(200, {"Content-Type": _XML, "ETag": obj.etag, "x-oss-hash-crc64ecma": str(obj.crc)}, _xml(root))

    def op_AbortMultipartUpload(self) -> _Answer:
        with self.state.lock:
            self._upload()
            del self.state.uploads[self.bucket][self.query["uploadId"]]
        return _Answer(204)

    def op_ListParts(self) -> _Answer:
        try:
            marker = int(self.query.get("part-number-marker") or 0)
            limit = int(self.query.get("max-parts") or 1000)
        except ValueError:
            raise OSSError(400, "InvalidArgument", "part-number-marker and max-parts must be integers.") from None
        with self.state.lock:
            upload = self._upload()
            numbers = sorted(n for n in upload.parts if n > marker)
            parts = [(n, upload.parts[n]) for n in numbers[:limit]]
        truncated = len(numbers) > limit
        root = ET.Element("ListPartsResult")
        _sub(root, "Bucket", self.bucket)
        _sub(root, "Key", self.key)
        _sub(root, "UploadId", self.query["uploadId"])
        _sub(root, "PartNumberMarker", marker)
        _sub(root, "NextPartNumberMarker", parts[-1][0] if parts else marker)
        _sub(root, "MaxParts", limit)
        _sub(root, "IsTruncated", "true" if truncated else "false")
        for number, part in parts:
            node = _sub(root, "Part")
            _sub(node, "PartNumber", number)
            _sub(node, "LastModified", _iso(part.mtime))
            _sub(node, "ETag", part.etag)
            _sub(node, "HashCrc64ecma", part.crc)
            _sub(node, "Size", len(part.data))
        return _Answer(200, {"Content-Type": _XML}, _xml(root))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    state: OSSServerState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, closed pools, injected drops) are routine here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(state: OSSServerState, host: str, port: int) -> _Server:
    """Bind a threaded HTTP server for ``state`` (not yet serving; call serve_forever)."""
    server = _Server((host, port), _Handler)
    server.state = state
    return server
