"""Pieces shared by the backends on remote object stores (kara-fsspec, kara-obstore).

Object stores (S3, Azure Blob, GCS) replace objects atomically with one upload, create
them conditionally on the server, and have no append call. What every backend on them
needs, written once:

- :class:`WholeObjectAppender`: appends that upload the object whole on ``flush``;
- :class:`ConditionalCreates`: checks once that the server refuses a second create of
  one object (S3-compatible servers may ignore ``If-None-Match``), and warns once where
  creates are best effort;
- :func:`call_translated`: runs a client call and raises kara's error for the client's,
  keeping none of the client's frames alive;
- :class:`RedactSecrets` and :func:`secret_values`: credentials never reach a log record
  or an error message;
- :func:`split_body`: bytes, or the head and rest of a long stream.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from .backend import Backend
from .errors import BackendError, KaraError

__all__ = [
    "TMP_MARK",
    "ConditionalCreates",
    "RedactSecrets",
    "WholeObjectAppender",
    "call_translated",
    "drop_tracebacks",
    "secret_values",
    "split_body",
]

#: Marks kara's temporary objects (writes in progress, the conditional-write probe):
#: listings skip them, ``cleanup`` removes old ones.
TMP_MARK = ".kara-tmp-"

_Result = TypeVar("_Result")

# Option names that hold credentials, in the spellings of s3fs, adlfs, gcsfs, obstore...
_SECRET_NAME = re.compile(r"secret|password|token|credential|key$|^key|connection_string|sas|account_key", re.I)
# Environment variables whose values are credentials of the common object stores.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
)


def secret_values(options: dict[str, Any]) -> set[str]:
    """Credential strings to mask: option values with secret names, and credential env vars.

    Strings shorter than 8 characters are left out: masking them would mangle every
    message and hides nothing.
    """
    found = {str(v) for k, v in options.items() if _SECRET_NAME.search(k) and isinstance(v, (str, bytes))}
    found.update(os.environ.get(name, "") for name in _SECRET_ENV)
    return {s for s in found if len(s) >= 8}


class RedactSecrets(logging.Filter):
    """Masks registered credentials in log records (add it to the client libraries' loggers)."""

    def __init__(self, loggers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        for name in loggers:
            logging.getLogger(name).addFilter(self)

    def mask(self, text: str) -> str:
        """``text`` with every registered secret replaced by stars."""
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = self.mask(message), ()
        return True


def drop_tracebacks(exc: BaseException) -> None:
    """Drop the traceback of ``exc`` and of the exceptions it chains (their frames, and the
    cycles through them that only the garbage collector would break)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


def call_translated(
    fn: Callable[[], _Result],
    translate: Callable[[Exception], KaraError],
    passthrough: tuple[type[BaseException], ...] = (KaraError,),
) -> _Result:
    """``fn()``, its errors turned into kara's by ``translate`` (``passthrough`` ones raised as they are).

    kara's error keeps nothing of the client library's exception: it is raised outside
    the handler (so the library's exception is not its ``__context__``), and the
    library's traceback, whose frames hold request and response buffers (and, through
    their callers, the caller's), is dropped. ``fn`` and the error leave this frame
    before the raise, so the error's traceback forms no reference cycle: a caught error
    frees every frame at once, without waiting for the garbage collector.
    """
    try:
        return fn()
    except passthrough:
        raise
    except Exception as exc:  # noqa: BLE001 - the client libraries raise their own classes
        error = translate(exc)
        drop_tracebacks(exc)
    del fn
    try:
        raise error
    finally:
        del error


def split_body(data: bytes | bytearray | memoryview | BinaryIO, whole: int) -> tuple[bytes, BinaryIO | None]:
    """``(body, None)`` for bytes and streams up to ``whole`` bytes; ``(first bytes, rest)`` for longer streams."""
    if isinstance(data, bytes):
        return data, None
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data), None
    head = data.read(whole)
    more = data.read(1)  # b"" only at the end, whatever the stream's short reads
    if not more:
        return head, None
    return head + more, data


class ConditionalCreates:
    """Whether a store's conditional creates hold, checked once; a warning where they do not.

    :meth:`check` runs ``probe`` once per store, the first time a create needs it:
    ``probe(key)`` creates the temporary object ``key`` twice with the store's
    conditional create and returns True if the server refused the second (then deletes
    it). A server that accepted both makes :attr:`atomic` False: the backend's creates
    become a check then a write, and :meth:`warn` says so once.
    """

    def __init__(self, url: str, checked: bool = False, atomic: bool = True) -> None:
        self.url = url
        self.atomic = atomic
        self._checked = checked
        self._lock = threading.Lock()
        self._warned = False

    def check(self, root: str, probe: Callable[[str], bool]) -> bool:
        """Whether conditional creates hold (probing under ``root`` the first time)."""
        if not self._checked:
            with self._lock:
                if not self._checked:
                    key = (
                        f"{root}/{TMP_MARK}probe-{uuid.uuid4().hex}" if root else f"{TMP_MARK}probe-{uuid.uuid4().hex}"
                    )
                    self.atomic = probe(key)
                    self._checked = True
        return self.atomic

    def warn(self) -> None:
        """Say once that this store's writer locks and version publishes are best effort."""
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.url}: this filesystem cannot create an object only if it is absent, so kara's "
                "writer locks and version publishes are best effort here: do not let two processes "
                "write the same dataset or directory version at once",
                RuntimeWarning,
                stacklevel=4,
            )


class WholeObjectAppender:
    """Appends to an object on a store that has no append call: ``flush`` uploads it whole.

    Appended bytes wait in memory; ``flush`` uploads the object (its previous content
    read back first, when it had some) as one atomic put. Row writers flush each
    block once (``Capabilities.native_appends`` is off), so nothing is uploaded twice
    there; other callers pay for a second flush with a re-upload.
    """

    def __init__(self, backend: Backend, path: str) -> None:
        self._backend, self.path = backend, path
        size = backend.size(path)
        self._absent = size is None
        self._committed = size or 0
        self._pending = bytearray()
        self._closed = False

    @property
    def position(self) -> int:
        """Bytes in the object once everything appended so far is flushed."""
        return self._committed + len(self._pending)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data`` until the next :meth:`flush`."""
        if self._closed:
            raise ValueError(f"append to closed appender of {self.path}")
        self._pending += data

    def flush(self) -> None:
        """Upload the object with everything appended so far."""
        if not self._pending:
            return
        body = bytes(self._pending)
        if self._committed:
            before = self._backend.read(self.path)
            if len(before) != self._committed:
                raise BackendError(
                    f"{self._backend.url}/{self.path} changed under this appender: expected "
                    f"{self._committed} bytes, found {len(before)} (is another writer appending?)"
                )
            body = before + body
        self._backend.put(self.path, body)
        self._committed = len(body)
        self._absent = False
        del self._pending[:]

    def close(self) -> None:
        """Flush and release the appender; an object opened absent exists afterwards, if empty.

        Like a file opened for appending: a block writer's last block is then there
        even when empty, as 2.x leaves it (2.x refuses to read a stream with no block).
        """
        if not self._closed:
            self.flush()
            if self._absent:
                self._backend.put(self.path, b"")
                self._absent = False
            self._closed = True
