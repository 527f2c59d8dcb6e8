"""The ``kara serve`` gateway: any kara store over HTTP, as an ASGI app (starlette).

Reads are a static mirror's (``GET``/``HEAD`` with ``Range`` on ``/<path>``), so any
kara-http client reads it; with the bearer token a client also writes (see
:mod:`kara_http.protocol`). Security rules: writes need the token (reads too with
``read_token_required``), compared in constant time; a gateway started without a token
is read-only; every path is decoded and checked with
:func:`kara_core.backend.check_path` (``..``, ``%2e%2e``, absolute paths, NUL bytes:
``400``; a backslash is a plain character of a name); bodies above ``max_body_size`` get ``413``; tokens never reach
logs or error messages.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from kara_core.backend import Backend, check_path
from kara_core.errors import (
    BackendError,
    ConfigurationError,
    KaraError,
    NotFoundError,
    StorageFullError,
    UnsafePathError,
)
from kara_core.localdisk import FULL_DISK
from kara_core.url import open_backend

from .framing import FramingGuard
from .protocol import DISCOVERY_NAME, GATEWAY_HEADER, PROTOCOL_VERSION, SIZE_HEADER, GatewayInfo

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]

logger = logging.getLogger("kara_http.gateway")

#: Default largest request body (one put or one append batch).
DEFAULT_MAX_BODY_SIZE = 512 * 1024 * 1024
#: Ranges up to this size are read in one call; larger ones are streamed.
_READ_WHOLE = 8 * 1024 * 1024
_STREAM_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 16 * 1024 * 1024
#: How many put-if-absent outcomes are remembered for answering retried requests.
_REMEMBERED_CREATES = 10_000
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class _Refused(Exception):
    """Answer the request with ``status`` and a short message (never containing secrets)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Gateway:
    def __init__(self, backend: Backend, token: str | None, read_token_required: bool, max_body_size: int) -> None:
        self.backend = backend
        self._token = token.encode() if token else None
        self.read_token_required = read_token_required
        self.max_body_size = max_body_size
        writable = token is not None and backend.capabilities.writable
        self.info = GatewayInfo(
            writable=writable,
            write_token_required=True,
            read_token_required=read_token_required,
            max_body_size=max_body_size,
        ).model_dump_json()
        # Striped locks serialise the check-then-write of appends and creates per path.
        self._locks = [threading.Lock() for _ in range(64)]
        self._created: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._created_lock = threading.Lock()

    # -- request handling --------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            response = await self._dispatch(request)
        except _Refused as exc:
            response = PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=exc.headers)
        except ClientDisconnect:
            # The client went away, or its body broke off (uvicorn answered it): nothing
            # was written, and this answer reaches no one.
            response = PlainTextResponse("request body cut off\n", status_code=400)
        except UnsafePathError as exc:
            response = PlainTextResponse(f"{exc}\n", status_code=400)
        except NotFoundError:
            response = PlainTextResponse("not found\n", status_code=404)
        except PermissionError as exc:
            response = PlainTextResponse(f"{exc}\n", status_code=403)
        except StorageFullError as exc:
            # No retry helps until someone frees space: 507, which clients do not retry.
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
            response = PlainTextResponse(f"{type(exc).__name__}: {exc}\n", status_code=507)
        except BackendError as exc:
            # The store behind the gateway failed after its own retries: 503 lets the
            # client retry within its budget.
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
            response = PlainTextResponse(f"{type(exc).__name__}: {exc}\n", status_code=503)
        except KaraError as exc:
            # Anything else (corrupt data, bad configuration) will not improve on retry.
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
            response = PlainTextResponse(f"{type(exc).__name__}: {exc}\n", status_code=422)
        except OSError as exc:
            # The gateway's own disk (where it spools request bodies) is full.
            if exc.errno not in FULL_DISK:
                raise
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
            response = PlainTextResponse(f"the gateway's disk is full: {exc.strerror}\n", status_code=507)
        response.headers[GATEWAY_HEADER] = str(PROTOCOL_VERSION)
        return response

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope["path"]
        if not path.startswith("/"):
            raise _Refused(400, "bad request target")
        path = path[1:]
        root, _, last = path.rpartition("/")
        if last == DISCOVERY_NAME:
            return await self._discovery(request, root)
        if path:
            check_path(path)
        if DISCOVERY_NAME in path.split("/"):
            raise _Refused(400, f"{DISCOVERY_NAME} is reserved")
        method = request.method
        if method in ("GET", "HEAD"):
            self._authorize(request, write=False)
            if not path:
                raise _Refused(404, "not found")
            return await self._read(request, path)
        self._authorize(request, write=True)
        if not path:
            raise _Refused(400, "no object path")
        if method == "PUT":
            return await self._put(request, path)
        if method == "POST" and "append" in request.query_params:
            return await self._append(request, path)
        if method == "DELETE":
            await run_in_threadpool(self.backend.delete, path)
            return Response(status_code=204)
        raise _Refused(405, "method not allowed", {"Allow": "GET, HEAD, PUT, POST, DELETE"})

    def _authorize(self, request: Request, write: bool) -> None:
        if not write and not self.read_token_required:
            return
        if self._token is None:
            raise _Refused(403, "this gateway is read-only (it was started without --token)")
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if not header or scheme.lower() != "bearer":
            raise _Refused(401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="kara"'})
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            raise _Refused(403, "the bearer token is not valid")

    async def _discovery(self, request: Request, root: str) -> Response:
        if root:
            check_path(root)
        if request.method not in ("GET", "HEAD"):
            raise _Refused(405, "method not allowed", {"Allow": "GET, HEAD"})
        if "list" not in request.query_params:
            return Response(self.info, media_type="application/json")
        self._authorize(request, write=False)
        prefix = request.query_params["list"]
        if prefix:
            check_path(prefix[:-1] if prefix.endswith("/") else prefix)
        base = root + "/" if root else ""
        paths = await run_in_threadpool(lambda: [p[len(base) :] for p in self.backend.list(base + prefix)])
        return PlainTextResponse("".join(p + "\n" for p in paths))

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, request: Request, path: str) -> Response:
        size = await run_in_threadpool(self.backend.size, path)
        if size is None:
            raise _Refused(404, "not found")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        wanted = request.headers.get("range")
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(size)})
        if wanted:
            start, end = _parse_range(wanted, size)
            # One backend read: the bytes all come from one version of the object.
            data = await run_in_threadpool(self.backend.read, path, start, end)
            if not data:
                raise _Refused(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{size}"
            return Response(data, status_code=206, headers=headers)
        if size <= _READ_WHOLE:
            # One backend read: the bytes all come from one version of the object.
            data = await run_in_threadpool(self.backend.read, path)
            return Response(data, headers=headers)
        # Content-Length is the size just read (2.x clients need it); the stream sends
        # exactly that many bytes, or breaks the connection if the object got shorter.
        headers["Content-Length"] = str(size)
        return StreamingResponse(self._chunks(path, size), headers=headers)

    def _chunks(self, path: str, size: int) -> Iterator[bytes]:
        # A sync generator: starlette runs it in the thread pool.
        left = size
        with self.backend.open_read(path) as stream:
            while left > 0:
                chunk = stream.read(min(_STREAM_CHUNK, left))
                if not chunk:
                    raise _Refused(500, f"{path} got shorter while it was being sent")
                left -= len(chunk)
                yield chunk

    # -- writes --------------------------------------------------------------------------

    async def _body(self, request: Request) -> BinaryIO:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_size):
            raise _Refused(413, f"request body larger than the gateway's limit of {self.max_body_size} bytes")
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > self.max_body_size:
                    raise _Refused(413, f"request body larger than the gateway's limit of {self.max_body_size} bytes")
                spool.write(chunk)
        except BaseException:
            spool.close()  # a body cut off (ClientDisconnect) or too large
            raise
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def _lock_for(self, path: str) -> threading.Lock:
        return self._locks[hash(path) % len(self._locks)]

    async def _put(self, request: Request, path: str) -> Response:
        body = await self._body(request)
        try:
            if request.headers.get("if-none-match", "").strip() == "*":
                request_id = request.headers.get("x-kara-request-id", "")
                created = await run_in_threadpool(self._create, path, body.read(), request_id)
                return Response(status_code=201 if created else 412)
            await run_in_threadpool(self.backend.put, path, body)
        finally:
            body.close()
        return Response(status_code=201)

    def _create(self, path: str, data: bytes, request_id: str) -> bool:
        key = (request_id, path)
        with self._lock_for(path):
            if request_id:
                with self._created_lock:
                    if key in self._created:
                        return self._created[key]
            created = self.backend.put_if_absent(path, data)
            if request_id:
                with self._created_lock:
                    self._created[key] = created
                    while len(self._created) > _REMEMBERED_CREATES:
                        self._created.popitem(last=False)
            return created

    async def _append(self, request: Request, path: str) -> Response:
        position = request.query_params["append"]
        if not position.isdigit():
            raise _Refused(400, "append needs a non-negative integer position")
        body = await self._body(request)
        try:
            size = await run_in_threadpool(self._append_at, path, int(position), body.read())
        finally:
            body.close()
        return Response(status_code=200, headers={SIZE_HEADER: str(size)})

    def _append_at(self, path: str, position: int, data: bytes) -> int:
        with self._lock_for(path):
            size = self.backend.size(path) or 0
            if size == position + len(data) and data and self.backend.read(path, position, size) == data:
                return size  # a retry of an append that was applied: do not apply it twice
            if size != position:
                raise _Refused(409, f"append at {position} but the object has {size} bytes", {SIZE_HEADER: str(size)})
            appender = self.backend.open_append(path)
            try:
                if appender.position != position:
                    raise _Refused(409, "the object changed during the append", {SIZE_HEADER: str(appender.position)})
                appender.append(data)
            finally:
                appender.close()
            return position + len(data)


def _parse_range(header: str, size: int) -> tuple[int, int]:
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise _Refused(416, "only single byte ranges are supported", {"Content-Range": f"bytes */{size}"})
    first, last = match.groups()
    if first == "":
        return max(0, size - int(last)), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        raise _Refused(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
    return start, end


def create_app(
    store_url: str,
    *,
    token: str | None = None,
    read_token_required: bool = False,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    store_options: dict[str, Any] | None = None,
) -> Starlette:
    """Build the gateway ASGI app serving the store at ``store_url``.

    ``token``: the bearer token clients need for writes (``None``: read-only gateway);
    ``read_token_required``: reads need it too; ``max_body_size``: largest request body
    in bytes; ``store_options``: keyword options for the store (as for ``KaraStorage``).
    """
    if read_token_required and not token:
        raise ConfigurationError("read_token_required needs a token (kara serve --token)")
    if max_body_size < 1:
        raise ConfigurationError("max_body_size must be at least 1 byte")
    backend = open_backend(store_url, **(store_options or {}))
    gateway = _Gateway(backend, token, read_token_required, max_body_size)
    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        backend.close()

    app = Starlette(
        routes=[Route("/{path:path}", gateway.handle, methods=methods)],
        lifespan=lifespan,
        middleware=[Middleware(FramingGuard)],
    )
    app.state.gateway = gateway
    return app
