"""Every error kara raises on purpose, each with a message a user can act on.

All of them derive from :class:`KaraError`. Where kara-storage 2.x raised a builtin
exception for the same situation, the kara class also derives from that builtin, so
``except ValueError`` / ``except FileNotFoundError`` in existing scripts keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BackendError",
    "BlobIntegrityError",
    "ConfigurationError",
    "CorruptDatasetError",
    "DatasetClosedError",
    "DatasetLockedError",
    "DatasetNotFoundError",
    "EndOfDatasetError",
    "KaraError",
    "MissingPluginError",
    "ModeError",
    "NotFoundError",
    "ParallelWriteError",
    "PermissionDeniedError",
    "PluginLoadError",
    "ReadOnlyStoreError",
    "RecordIndexError",
    "SerializationError",
    "SerializerMismatchError",
    "StorageFullError",
    "UnknownSchemeError",
    "UnsafePathError",
    "VersionExistsError",
    "VersionNotFoundError",
    "WriterFailedError",
]


class KaraError(Exception):
    """Base class of every error raised by kara."""


class ConfigurationError(KaraError, ValueError):
    """Bad options for a known store scheme, serializer or call (wrong name, type, value)."""


class UnknownSchemeError(KaraError, ValueError):
    """A store URL whose scheme no kara plugin (installed or known) provides."""

    def __init__(self, url: str, scheme: str, installed: Iterable[str]) -> None:
        self.url = url
        self.scheme = scheme
        names = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"unknown store scheme {scheme + '://'!r} in {url!r}: no kara plugin provides it (installed: {names})"
        )


class MissingPluginError(KaraError, ImportError):
    """A known feature (scheme, integration) whose plugin distribution is not installed."""

    def __init__(self, what: str, package: str, installed: Iterable[str]) -> None:
        self.what = what
        self.package = package
        names = ", ".join(sorted(installed)) or "none"
        super().__init__(f"no {what}: pip install {package} (installed: {names})")


class PluginLoadError(KaraError, ImportError):
    """A plugin failed to load and ``KARA_STRICT_PLUGINS=1`` makes that fatal."""


class NotFoundError(KaraError, FileNotFoundError):
    """An object, dataset or version does not exist."""


class DatasetNotFoundError(NotFoundError, ValueError):
    """The namespace/key has no dataset (row) or no saved directory (obj)."""

    def __init__(self, kind: str, namespace: str, key: str, url: str = "") -> None:
        self.kind, self.namespace, self.key = kind, namespace, key
        where = f" in {url}" if url else ""
        what = "dataset" if kind == "row" else "object"
        super().__init__(f"{what} {namespace}/{key} does not exist{where}")


class VersionNotFoundError(NotFoundError, ValueError):
    """The requested version is not listed for this dataset or object."""

    def __init__(self, kind: str, namespace: str, key: str, version: str, available: Iterable[str]) -> None:
        self.kind, self.namespace, self.key, self.version = kind, namespace, key, version
        versions = list(available)
        shown = ", ".join(repr(v) for v in versions[-10:]) or "none"
        more = f" (and {len(versions) - 10} more)" if len(versions) > 10 else ""
        super().__init__(f"version {version!r} of {namespace}/{key} does not exist; available: {shown}{more}")


class VersionExistsError(KaraError, ValueError):
    """Saving under a version name that already exists without asking to overwrite."""


class ReadOnlyStoreError(KaraError, PermissionError, ValueError):
    """A write was attempted on a store (or dataset) that cannot be written.

    Also a ValueError: 2.x raised one when asked to write to an http(s):// store.
    """

    def __init__(self, url: str, what: str = "write") -> None:
        self.url = url
        super().__init__(f"cannot {what}: store {url} is read-only")


class PermissionDeniedError(KaraError, PermissionError, RuntimeError):
    """The storage service refused the credentials (HTTP 401/403, OSS AccessDenied).

    Also a RuntimeError: 2.x raised one for any unexpected HTTP status.
    """


class BackendError(KaraError, OSError, RuntimeError):
    """The storage service failed and retries did not help (network, 5xx, timeouts).

    Also a RuntimeError: 2.x raised one for any unexpected HTTP status.
    """


class StorageFullError(BackendError):
    """The disk under a store or a load's folder has no room left (``ENOSPC``, ``EDQUOT``).

    Raised as ``StorageFullError(errno, message)``, so ``exc.errno`` is the operating
    system's (``except OSError`` with ``errno.ENOSPC`` keeps working). Nothing is
    published by the operation that raised it; what was stored before stays readable.
    """


class ModeError(KaraError, RuntimeError):
    """A read on a dataset opened for writing, or a write on one opened for reading."""


class DatasetClosedError(KaraError, ValueError, RuntimeError):
    """An operation on a dataset that was already closed (a RuntimeError in 2.x)."""


class EndOfDatasetError(KaraError, EOFError):
    """``read()`` past the last record (2.x raised EOFError there too).

    Iterating (``for record in ds``) stops cleanly instead; ``read(default=None)``
    returns the default.
    """


class RecordIndexError(KaraError, IndexError, EOFError):
    """``ds[i]`` or ``pread(i)`` out of range.

    An IndexError (as ``ds[i]`` raised in 2.x) and an EOFError (as 2.x's ``pread`` raised).
    """


class SerializationError(KaraError, ValueError):
    """A record cannot be stored by the serializer, or stored bytes are not one of its records."""


class SerializerMismatchError(ConfigurationError):
    """A version is opened with another serializer than the one it was written with."""

    def __init__(self, what: str, given: str, recorded: str) -> None:
        self.given, self.recorded = given, recorded
        super().__init__(
            f"{what} was written with serializer {recorded!r}, not {given!r}: open it without "
            f"serialization= (it remembers {recorded!r}) or with serialization={recorded!r}"
        )


class DatasetLockedError(KaraError, RuntimeError):
    """Another writer holds the lock on this dataset version."""


class WriterFailedError(KaraError, RuntimeError):
    """A write or flush on a dataset writer whose earlier append to storage failed.

    A failed append may have left part of its bytes on storage, so the writer takes no
    more records: the version keeps what was flushed before the failure, and opening it
    again with mode ``"w"`` cuts the rest off and goes on from there.
    """


class ParallelWriteError(KaraError, RuntimeError):
    """A parallel write cannot commit (a part never closed) or is no longer pending."""


class CorruptDatasetError(KaraError, RuntimeError):
    """Stored data is inconsistent; the message names the file and the byte offset."""

    def __init__(self, path: str, offset: int | None, detail: str) -> None:
        self.path, self.offset = path, offset
        at = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"corrupt data in {path}{at}: {detail}")


class BlobIntegrityError(KaraError, RuntimeError):
    """A stored blob does not match its content hash (after retrying the download)."""


class UnsafePathError(KaraError, ValueError):
    """A path (in a manifest, URL or request) that would escape its root."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"unsafe path {path!r}: {reason}")
