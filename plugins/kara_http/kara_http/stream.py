"""A response body read as a stream that resumes where it broke, verified to its length."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from kara_transport import TransportError

from kara_core.errors import BackendError, NotFoundError

from .errors import RangeNotSupportedError

if TYPE_CHECKING:
    from kara_transport import Response

    from .backend import HTTPBackend

__all__ = ["BodyStream"]

_READ_CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"[ \t]*bytes[ \t]+([0-9]+)-([0-9]+)/([0-9]+|\*)[ \t]*", re.IGNORECASE)


class BodyStream(io.RawIOBase):
    """Bytes ``[start, end)`` of one object, streamed from one or more GET responses.

    The first request is made by the constructor, so an absent object raises
    :class:`NotFoundError` there. When a body breaks (connection dropped, timeout, or it
    ends short of the length the server announced), the stream asks again with
    ``Range: bytes=<next byte>-`` under the same retry budget, so the caller sees every
    byte exactly once. A ranged request answered with the whole object raises
    :class:`RangeNotSupportedError` without downloading it.
    """

    def __init__(self, backend: HTTPBackend, path: str, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        self._backend = backend
        self._path = path
        self._pos = start
        self._end = end
        self._response: Response | None = None
        #: ETag (or Last-Modified) of the first response: a resumed request sends it as
        #: If-Range, so bytes of a replaced object are never spliced onto the old ones.
        self._validator: str | None = None
        #: Whether a response was already opened: later ones are resumes.
        self._resumed = False
        self._budget = backend.retry_budget(f"GET {backend.url}/{path}")
        self._open()

    def _open(self) -> None:
        ranged = self._pos > 0 or self._end is not None
        headers = {}
        if ranged:
            last = "" if self._end is None else str(self._end - 1)
            headers["Range"] = f"bytes={self._pos}-{last}"
            if self._validator is not None:
                headers["If-Range"] = self._validator
        response = self._backend.send("GET", self._path, headers=headers, stream=True, budget=self._budget)
        status = response.status
        if status in (404, 410):
            self._backend.discard(response)
            raise NotFoundError(f"{self._backend.url}/{self._path} does not exist")
        if status == 416:
            # The range starts at or past the end: like a file, that reads as empty.
            self._backend.discard(response)
            self._end = self._pos
            return
        if status == 200 and ranged:
            response.close()
            if self._validator is not None:
                raise BackendError(f"{self._backend.url}/{self._path} was replaced while it was being read")
            raise RangeNotSupportedError(
                f"{self._backend.url}/{self._path}: the server ignored the Range header and sent the whole "
                "object; kara needs a server with Range support (it would otherwise download whole block "
                "files for every record)"
            )
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != self._pos:
                response.close()
                raise BackendError(
                    f"{self._backend.url}/{self._path}: bad Content-Range "
                    f"{response.headers.get('Content-Range')!r} for a request from byte {self._pos}"
                )
            last = int(match.group(2)) + 1
            if self._resumed and self._end is not None and last < self._end:
                response.close()
                raise BackendError(f"{self._backend.url}/{self._path} got shorter while it was being read")
            self._end = last if self._end is None else min(self._end, last)
        elif status == 200:
            length = response.headers.get("Content-Length")
            if length is not None and self._end is None:
                self._end = int(length)  # ASCII digits: the transport refuses any other
        else:
            self._backend.discard(response)
            raise BackendError(f"GET {self._backend.url}/{self._path}: unexpected HTTP {status} {response.reason}")
        if self._validator is None:
            etag = response.headers.get("ETag")
            # Weak ETags are not allowed in If-Range (RFC 9110 13.1.5).
            strong = etag if etag and not etag.startswith("W/") else None
            self._validator = strong or response.headers.get("Last-Modified")
        self._response = response
        self._resumed = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read up to ``len(buffer)`` bytes; 0 only at the verified end of the object."""
        view = memoryview(buffer).cast("B")
        while True:
            if self._end is not None:
                remaining = self._end - self._pos
                if remaining <= 0:
                    self._release()
                    return 0
                view = view[:remaining]
            view = view[:_READ_CHUNK]
            if self._response is None:
                self._open()
                continue
            try:
                count = self._response.readinto(view)
            except TransportError as exc:
                reason = f"body broke at byte {self._pos}: {type(exc).__name__}"
            else:
                if count:
                    self._pos += count
                    return count
                if self._end is None:
                    self._release()
                    return 0
                reason = f"body ended at byte {self._pos} of {self._end}"
            self._response.close()
            self._response = None
            self._budget.wait(reason)

    def read_exactly(self) -> bytes:
        """Read everything that is left, in one buffer of the announced size."""
        if self._end is None:
            return self.readall()
        size = self._end - self._pos
        # Received straight into the bytes object returned, with no copy: a BytesIO built
        # on a new bytes object shares it, its buffer writes into it, and getvalue()
        # returns that same object once the buffer is released (CPython; elsewhere it
        # costs one copy). For the 8 MiB ranges of big-file downloads this saves a copy
        # and the page faults of a second buffer per range.
        holder = io.BytesIO(bytes(size))
        view = holder.getbuffer()
        try:
            filled = 0
            while filled < size:
                count = self.readinto(view[filled:])
                if count == 0:
                    raise BackendError(f"GET {self._backend.url}/{self._path}: body ended early at byte {self._pos}")
                filled += count
        finally:
            view.release()
        self._release()
        return holder.getvalue()

    def _release(self) -> None:
        if self._response is not None:
            # Fully read: the connection already went back to the pool.
            self._response.release_conn()
            self._response = None

    def close(self) -> None:
        if self._response is not None:
            # Closing mid-body: the connection cannot be reused, drop it.
            self._response.close()
            self._response = None
        super().close()
