"""KaraStorage: the SDK facade, with the kara-storage 2.1.5 API."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from .backend import Backend

if TYPE_CHECKING:
    from .obj import ObjectStore
    from .obj.stream import BlobFile, BlobReader, VersionWriter
    from .row import RowDataset, RowStore
    from .row.parallel import ParallelWrite
    from .serialization import Serializer

__all__ = ["KaraStorage"]


class KaraStorage:
    """A store addressed by URL, holding row datasets and directory versions.

    ``KaraStorage("file:///data/store")``, ``KaraStorage("file://relative/store")``,
    ``KaraStorage("oss://endpoint/bucket/prefix", app_key=..., app_secret=...)``,
    ``KaraStorage("https://host/prefix", headers={...})``. Keyword options are validated
    by the plugin that provides the scheme. A :class:`~kara_core.backend.Backend`
    instance may be passed instead of a URL.
    """

    def __init__(self, url: str | Backend, **options: Any) -> None:
        if isinstance(url, Backend):
            if options:
                raise TypeError("options cannot be combined with a Backend instance")
            self._backend = url
        else:
            # kara_core.url holds the pydantic models: imported when a store is opened, so
            # ``import kara_core`` imports no pydantic.
            from .url import open_backend

            self._backend = open_backend(url, **options)
        self._source = url
        self._options = options
        self.url = self._backend.url

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles as "how to open it again", so DataLoader workers and other processes
        # open their own connections. A Backend instance is pickled as it is.
        return (_reopen, (self._source, self._options))

    @property
    def backend(self) -> Backend:
        """The backend this store reads and writes through."""
        return self._backend

    @property
    def prefix(self) -> str:
        """The store URL (kara-storage 2.x exposed its path prefix here)."""
        return self.url

    @cached_property
    def rows(self) -> RowStore:
        """The row-dataset half of the store."""
        from .row import RowStore

        return RowStore(self._backend)

    @cached_property
    def objects(self) -> ObjectStore:
        """The directory-version (object) half of the store."""
        from .obj import ObjectStore

        return ObjectStore(self._backend)

    # -- row datasets ---------------------------------------------------------------

    def open_dataset(
        self,
        namespace: str,
        key: str,
        mode: str = "r",
        version: Any = "latest",
        serialization: Serializer | type[Serializer] | str | None = None,
        **kwargs: Any,
    ) -> RowDataset:
        """Open a row dataset for reading (``mode="r"``) or appending (``mode="w"``).

        ``version="latest"`` is the version most recently opened for writing; opening a
        new dataset for writing needs an explicit version. ``serialization`` is a
        :class:`Serializer`, a Serializer class or a registered name (default JSON).
        Other options: ``buffer_size`` (write/read buffer bytes), ``max_file_size``
        (bytes per block file, default 128 MiB), ``cache_size`` (bytes of the page cache
        random reads use on remote stores, default 64 MiB; 0: none).
        """
        return self.rows.open_dataset(namespace, key, mode, version, serialization, **kwargs)

    def open_parallel_write(
        self,
        namespace: str,
        key: str,
        version: Any,
        serialization: Serializer | type[Serializer] | str | None = None,
        **kwargs: Any,
    ) -> ParallelWrite:
        """Start writing a new version from many processes at once (docs/ingest.md).

        Returns a picklable handle: ``handle.part(i)`` opens part ``i`` in any process,
        ``handle.commit()`` publishes the parts in order, ``handle.abort()`` removes them.
        Options: ``resume=True`` (take up a pending write), ``block_size``, ``max_file_size``,
        ``sync_at_commit`` (parts on this machine leave their fsyncs to the commit).
        """
        from .row.parallel import open_parallel_write

        return open_parallel_write(self._backend, namespace, key, version, serialization, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> RowDataset:
        """Alias of :meth:`open_dataset` (the name the kara-storage README uses)."""
        return self.open_dataset(*args, **kwargs)

    def get_row_meta(self, namespace: str, key: str) -> dict[str, Any]:
        """Return ``meta.json`` of a row dataset (``latest``, ``versions``, ``api``)."""
        return self.rows.get_meta(namespace, key)

    def put_row_meta(self, namespace: str, key: str, meta: dict[str, Any]) -> None:
        """Replace ``meta.json`` of a row dataset (atomically)."""
        self.rows.put_meta(namespace, key, meta)

    # -- directory versions ---------------------------------------------------------

    def save_directory(
        self, namespace: str, key: str, local_path: str, version: Any = None, progress_bar: bool = True, **kwargs: Any
    ) -> str:
        """Save the folder ``local_path`` as a version and return the version name."""
        return self.objects.save_directory(namespace, key, local_path, version, progress_bar=progress_bar, **kwargs)

    def load_directory(
        self,
        namespace: str,
        key: str,
        local_path: str,
        version: Any = "latest",
        progress_bar: bool = True,
        **kwargs: Any,
    ) -> str:
        """Load a saved version into the folder ``local_path`` and return the version name."""
        return self.objects.load_directory(namespace, key, local_path, version, progress_bar=progress_bar, **kwargs)

    def open_file(
        self, namespace: str, key: str, path: str, mode: str = "rb", version: Any = None, **kwargs: Any
    ) -> BlobFile | BlobReader:
        """Open one file of a directory version: ``"rb"`` reads it (seekable), ``"wb"``
        writes a new version holding it, published on close (see :meth:`ObjectStore.open_file`)."""
        return self.objects.open_file(namespace, key, path, mode, version, **kwargs)

    def open_version(self, namespace: str, key: str, version: Any = None, **kwargs: Any) -> VersionWriter:
        """Write a version file by file, published when the ``with`` block succeeds
        (see :meth:`ObjectStore.open_version`)."""
        return self.objects.open_version(namespace, key, version, **kwargs)

    def get_object_meta(self, namespace: str, key: str) -> dict[str, Any]:
        """Return ``meta.json`` of a saved directory (``latest``, ``versions``, ``api``)."""
        return self.objects.get_meta(namespace, key)

    def put_object_meta(self, namespace: str, key: str, meta: dict[str, Any]) -> None:
        """Replace ``meta.json`` of a saved directory (atomically)."""
        self.objects.put_meta(namespace, key, meta)

    # -- listing ----------------------------------------------------------------------

    def _half(self, kind: str) -> RowStore | ObjectStore:
        if kind not in ("row", "obj"):
            raise ValueError(f"kind must be 'row' or 'obj', got {kind!r}")
        return self.rows if kind == "row" else self.objects

    def list_namespaces(self, kind: str = "row") -> list[str]:
        """Return the namespaces holding row datasets (``kind="row"``) or objects (``"obj"``)."""
        return self._half(kind).list_namespaces()

    def list_keys(self, namespace: str, kind: str = "row") -> list[str]:
        """Return the dataset (or object) keys of ``namespace``."""
        return self._half(kind).list_keys(namespace)

    def list_versions(self, namespace: str, key: str, kind: str = "row") -> list[str]:
        """Return the versions of a dataset (or object) in creation order."""
        return self._half(kind).list_versions(namespace, key)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend's resources (connections, thread pools)."""
        self._backend.close()

    def __enter__(self) -> KaraStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KaraStorage({self.url!r})"


def _reopen(source: str | Backend, options: dict[str, Any]) -> KaraStorage:
    return KaraStorage(source, **options)
