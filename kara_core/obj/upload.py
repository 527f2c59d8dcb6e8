"""One blob written as a stream, named by its content only once it is complete.

A blob's name is the hash of its content (``data/<md5>_<sha1>``), known only after the
last byte. :class:`StreamedUpload` therefore writes the bytes, as they arrive, to a
staging object ``data/upload-<uuid>`` of the key while it hashes them, and at the end
moves the staging object to its content name (:meth:`Backend.move`: a rename on
file://, a server-side copy and delete on object stores). Memory stays bounded by one
write plus :data:`WRITE_CHUNK`, whatever the size of the blob.

- On stores whose appends extend the object in place (``native_appends``) and that
  move without sending the bytes again (a rename, or ``capabilities.copy``: file://,
  OSS) the staging object is appended to as the bytes arrive.
- Other stores (S3, GCS, Azure block blobs through fsspec, which would re-upload a
  whole appended object at each flush; the http gateway, whose move would send the
  bytes twice) get the bytes in a spool (memory up to
  :data:`SPOOL_IN_MEMORY`, then a local temporary file) that ``finish`` uploads with one
  streamed ``put`` (multipart where the store does it) under the content name.

Content the store already has (same sha1, md5 and size) is not moved: the staging
object is deleted. :meth:`StreamedUpload.abort` deletes it too; a process killed in the
middle leaves only the staging object, which no manifest names: garbage collection
removes it after the grace period like any unreferenced blob.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

from ..backend import Backend
from .hashing import Hasher

if TYPE_CHECKING:
    from ..backend import Appender
    from .stream import BlobSink, StoredBlob

__all__ = ["SPOOL_IN_MEMORY", "STAGING_PREFIX", "WRITE_CHUNK", "StreamedUpload"]

#: Name prefix (under the key's ``data/``) of the objects of uploads in progress.
STAGING_PREFIX = "upload-"

#: Small writes are gathered up to this size before they go to the staging object;
#: larger ones go straight from the caller's buffer.
WRITE_CHUNK = 1024 * 1024

#: Where there is no in-place append, content stays in memory up to this size, then in a
#: local temporary file until it is uploaded.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def _stages(backend: Backend) -> bool:
    """Whether uploads to ``backend`` go through an appended staging object."""
    caps = backend.capabilities
    cheap_move = caps.copy or type(backend).move is not Backend.move
    return caps.writable and caps.appendable and caps.native_appends and cheap_move


class StreamedUpload:
    """A blob of ``sink``'s key written piece by piece: ``write``, then ``finish`` or ``abort``.

    ``sha256`` adds sha256 to the digests (manifest entries of files record it). Not
    thread safe: one writer at a time.
    """

    def __init__(self, sink: BlobSink, *, sha256: bool = True) -> None:
        self._sink = sink
        backend = sink.backend
        self._hasher = Hasher(sha256)
        self.size = 0
        self._done = False
        self._pending = bytearray()
        self._appender: Appender | None = None
        self._spool: Any = None
        self.staging: str | None = None
        if _stages(backend):
            self.staging = f"{sink.layout.data}{STAGING_PREFIX}{uuid.uuid4().hex}"
            self._appender = backend.open_append(self.staging)
        else:
            self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="kara-upload-")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Hash and store the next bytes; return how many (all of them)."""
        if self._done:
            raise ValueError("write to a finished upload")
        view = memoryview(data).cast("B")
        self._hasher.update(view)
        self.size += len(view)
        if self._spool is not None:
            self._spool.write(view)
        elif len(view) >= WRITE_CHUNK:
            self._drain()
            self._append(view)
        else:
            self._pending += view
            if len(self._pending) >= WRITE_CHUNK:
                self._drain()
        return len(view)

    def _append(self, view: memoryview | bytearray) -> None:
        assert self._appender is not None
        self._appender.append(view)

    def _drain(self) -> None:
        if self._pending:
            self._append(self._pending)
            self._pending = bytearray()

    def finish(self) -> StoredBlob:
        """Make the blob durable under its content name (unless the store has it) and return it."""
        if self._done:
            raise ValueError("the upload is already finished")
        digests = self._hasher.digests()
        try:
            if self._spool is not None:
                self._spool.seek(0)
                return self._sink.store_stream(self._spool, digests, self.size)
            self._drain()
            assert self._appender is not None and self.staging is not None
            self._appender.close()  # flushed: durable before it gets a name
            self._appender = None
            return self._sink.store_staged(self.staging, digests, self.size)
        finally:
            self._done = True
            self._release()

    def abort(self) -> None:
        """Drop the content: nothing is stored (the staging object is deleted)."""
        if self._done:
            return
        self._done = True
        self._release()

    def _release(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._appender is not None:
            with contextlib.suppress(Exception):
                self._appender.close()
            self._appender = None
        if self.staging is not None and self._sink.backend.exists(self.staging):
            # Best effort: what is left behind is removed by garbage collection.
            with contextlib.suppress(Exception):
                self._sink.backend.delete(self.staging)
