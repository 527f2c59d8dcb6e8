"""RowStore: opening, listing, describing and verifying the row datasets of one store."""

from __future__ import annotations

import re
from typing import Any

from ..backend import Backend
from ..errors import (
    ConfigurationError,
    CorruptDatasetError,
    DatasetNotFoundError,
    ReadOnlyStoreError,
)
from ..locks import LeaseLock
from ..names import NamedEntries
from ..serialization import Serializer, resolve_serializer
from .blocks import DEFAULT_CACHE_SIZE, block_path, open_blocks, probe_streams
from .dataset import RowDataset
from .groups import grouping_writer, open_snapshot
from .layout import (
    ROW_ROOT,
    check_name,
    check_nested_name,
    data_prefix,
    dataset_prefix,
    encode_meta,
    index_prefix,
    meta_lock_path,
    meta_path,
    read_meta,
    resolve_version,
)
from .sidecar import open_serializer
from .snapshot import ENTRY, Snapshot, decode_ends
from .writer import RowWriter

__all__ = ["DEFAULT_BUFFER_SIZE", "DEFAULT_MAX_FILE_SIZE", "RowStore"]

#: Block size at which a new ``N.blk`` starts (2.x's default: 128 MiB).
DEFAULT_MAX_FILE_SIZE = 128 * 1024 * 1024
#: Bytes of records buffered in memory before they are appended to storage. 1 MiB stays
#: in the CPU cache between the serializer writing it and the kernel copying it out, and
#: is faulted in once: 200,000 small records written by a fresh process cost ~6 ms less
#: CPU than with 8 MiB (remote appenders collect larger uploads themselves).
DEFAULT_BUFFER_SIZE = 1024 * 1024
#: A meta.json update holds its lock for milliseconds; older locks are from dead writers.
META_LOCK_TTL = 30.0
META_LOCK_WAIT = 60.0
_OPTIONS = ("buffer_size", "max_file_size", "cache_size")
#: A block's name as ``block_path`` writes it (no leading zero, ASCII digits, nothing after).
_BLOCK = re.compile(r"(index|data)/(0|[1-9][0-9]*)\.blk")


def _options(kwargs: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(f"unknown dataset option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    options = {
        "buffer_size": DEFAULT_BUFFER_SIZE,
        "max_file_size": DEFAULT_MAX_FILE_SIZE,
        "cache_size": DEFAULT_CACHE_SIZE,
    }
    for name, value in kwargs.items():
        # A cache of 0 bytes is a valid choice (no caching); the other sizes must be positive.
        smallest = 0 if name == "cache_size" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            kind = "a non-negative" if smallest == 0 else "a positive"
            raise ConfigurationError(f"{name} must be {kind} integer (bytes), got {value!r}")
        options[name] = value
    return options


def _new_meta(version: str) -> dict[str, Any]:
    return {"latest": version, "versions": [version], "api": 2}


class RowStore(NamedEntries):
    """The row datasets (``row/<namespace>/<key>/...``) of the store behind ``backend``."""

    _root = ROW_ROOT

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- meta.json -------------------------------------------------------------------

    def get_meta(self, namespace: str, key: str) -> dict[str, Any]:
        """Return ``meta.json`` (``latest``, ``versions``, ``api``); DatasetNotFoundError if absent."""
        return read_meta(self.backend, namespace, key)

    def put_meta(self, namespace: str, key: str, meta: dict[str, Any]) -> None:
        """Replace ``meta.json`` atomically (written exactly as 2.x writes it).

        Taken under the same lock as the updates writers make, so it never undoes a
        version that a writer is registering at the same moment.
        """
        lock = self._meta_lock(namespace, key)
        lock.acquire(timeout=META_LOCK_WAIT)
        try:
            self.backend.put(meta_path(namespace, key), encode_meta(meta))
        finally:
            lock.release()

    def _meta_lock(self, namespace: str, key: str) -> LeaseLock:
        return LeaseLock(
            self.backend,
            meta_lock_path(namespace, key),
            f"meta.json of dataset {namespace}/{key}",
            META_LOCK_TTL,
            heartbeat=False,
        )

    def _register_version(self, namespace: str, key: str, version: str) -> None:
        # meta.json is only ever created with put_if_absent and only ever replaced under
        # a short-lived lock after reading it, so two processes creating versions of one
        # dataset at once are both listed. A new dataset needs no lock: creating meta.json
        # is atomic by itself.
        path = meta_path(namespace, key)
        try:
            current = self.get_meta(namespace, key)
        except DatasetNotFoundError:
            if self.backend.put_if_absent(path, encode_meta(_new_meta(version))):
                return
            current = self.get_meta(namespace, key)
        if current["latest"] == version and version in current["versions"]:
            return  # already the latest: nothing to write
        lock = self._meta_lock(namespace, key)
        lock.acquire(timeout=META_LOCK_WAIT)
        try:
            meta = self.get_meta(namespace, key)
            meta["latest"] = version
            if version not in meta["versions"]:
                meta["versions"].append(version)
            self.backend.put(path, encode_meta(meta))
        finally:
            lock.release()

    # -- opening ---------------------------------------------------------------------

    def _snapshot(
        self,
        namespace: str,
        key: str,
        version: str,
        cache_size: int = DEFAULT_CACHE_SIZE,
        serializer: Serializer | None = None,
    ) -> Snapshot:
        ipath, dpath = index_prefix(namespace, key, version), data_prefix(namespace, key, version)
        if serializer is None:
            return Snapshot(self.backend, ipath, dpath, cache_size)
        return open_snapshot(self.backend, ipath, dpath, serializer, cache_size)

    def open_dataset(
        self,
        namespace: str,
        key: str,
        mode: str = "r",
        version: Any = "latest",
        serialization: Serializer | type[Serializer] | str | None = None,
        **kwargs: Any,
    ) -> RowDataset:
        """Open a version for reading (``"r"``) or appending (``"w"``, created if needed).

        ``version`` is converted with ``str()`` as in 2.x; ``"latest"`` is the version
        most recently opened for writing, and creating a dataset needs an explicit one.
        Options (bytes): ``buffer_size``, ``max_file_size``, and ``cache_size``, the budget
        of the page cache random reads use on remote stores (default 64 MiB; 0: none).
        """
        check_nested_name("namespace", namespace)
        check_nested_name("key", key)
        options = _options(kwargs)
        version = str(version)
        if mode == "r":
            version = resolve_version(namespace, key, self.get_meta(namespace, key), version)
            serializer = open_serializer(self.backend, namespace, key, version, serialization)
            snapshot = self._snapshot(namespace, key, version, options["cache_size"], serializer)
            return RowDataset(self.backend, namespace, key, version, serializer, options, snapshot=snapshot)
        if mode != "w":
            raise ConfigurationError(f"mode must be 'r' (read) or 'w' (append), got {mode!r}")
        if not self.backend.capabilities.appendable:
            raise ReadOnlyStoreError(self.backend.url, f"write dataset {namespace}/{key}")
        if version == "latest":
            try:
                latest = self.get_meta(namespace, key).get("latest")
            except DatasetNotFoundError:
                latest = None
            if latest is None:
                raise ConfigurationError(
                    f"dataset {namespace}/{key} has no version yet: pass version=... to create one"
                )
            version = str(latest)
        check_name("version", version)
        resolve_serializer(serialization)  # a bad name fails before the lock is taken
        writer = RowWriter(self.backend, namespace, key, version, options["max_file_size"], options["buffer_size"])
        try:
            serializer = open_serializer(self.backend, namespace, key, version, serialization, record=True)
            self._register_version(namespace, key, version)
        except BaseException:
            writer.abandon()
            raise
        grouped = grouping_writer(writer, serializer)
        return RowDataset(self.backend, namespace, key, version, serializer, options, writer=grouped)

    # -- listing ---------------------------------------------------------------------

    def _inner_folders(self, folder: str) -> frozenset[str]:
        # What a dataset folder holds besides nested datasets: its versions and .kara/.
        namespace, _, key = folder.rpartition("/")
        try:
            versions = self.get_meta(namespace, key)["versions"]
        except (DatasetNotFoundError, CorruptDatasetError):
            versions = []
        return frozenset([".kara", *versions])

    # -- inspection ------------------------------------------------------------------

    def dataset_info(self, namespace: str, key: str, version: Any = "latest") -> dict[str, Any]:
        """Describe one version: records, bytes, blocks, whether it is the latest."""
        meta = self.get_meta(namespace, key)
        version = resolve_version(namespace, key, meta, str(version))
        snap = self._snapshot(namespace, key, version)
        try:
            return {
                "namespace": namespace,
                "key": key,
                "version": version,
                "latest": meta.get("latest") == version,
                "records": snap.count,
                "data_bytes": snap.data_bytes,
                "index_bytes": snap.count * ENTRY,
                "blocks": snap.data_blocks,
                "index_blocks": snap.index_blocks,
                "torn_bytes": (snap.stored_index_bytes - snap.count * ENTRY)
                + (snap.stored_data_bytes - snap.data_bytes),
            }
        finally:
            snap.release()

    def verify(self, namespace: str, key: str, version: Any = None) -> list[str]:
        """Check versions (all listed ones when ``version`` is None); return the problems found.

        Looks for gaps in the block numbering, partial index entries, index entries that
        decrease or point past the data, and data past the last record (torn tails).
        An empty list means healthy.
        """
        meta = self.get_meta(namespace, key)
        versions = meta["versions"] if version is None else [resolve_version(namespace, key, meta, str(version))]
        problems: list[str] = []
        for name in versions:
            try:
                found = self._verify_version(namespace, key, str(name))
            except (ConfigurationError, CorruptDatasetError) as exc:
                found = [str(exc)]  # a version name kara refuses, an unreadable block: this version only
            problems.extend(f"version {name!r}: {problem}" for problem in found)
        return problems

    def _verify_version(self, namespace: str, key: str, version: str) -> list[str]:
        backend = self.backend
        ipath, dpath = index_prefix(namespace, key, version), data_prefix(namespace, key, version)
        problems = self._block_gaps(dataset_prefix(namespace, key) + version + "/")
        index_sizes, data_sizes = probe_streams(backend, [ipath, dpath])
        if not index_sizes:
            problems.append(f"no index blocks ({ipath}0.blk is missing): the version reads as empty")
        if not data_sizes:
            problems.append(f"no data blocks ({dpath}0.blk is missing)")
        index_bytes, data_bytes = sum(index_sizes), sum(data_sizes)
        entries = index_bytes // ENTRY
        if index_bytes % ENTRY:
            problems.append(f"index ends in a partial entry ({index_bytes % ENTRY} stray bytes): torn tail")
        reader = open_blocks(backend, ipath, index_sizes, entries * ENTRY)
        try:
            ends = decode_ends(reader.read(0, entries * ENTRY))
        finally:
            reader.close()
        prev = 0
        for i, end in enumerate(ends):
            if end < prev:
                problems.append(f"index entry {i} (end offset {end}) is before the previous one ({prev})")
                break
            prev = end
        last = ends[-1] if entries else 0
        if last > data_bytes:
            beyond = sum(1 for end in ends if end > data_bytes)
            problems.append(
                f"index points past the data ({last} > {data_bytes} bytes): {beyond} record(s) in a torn tail"
            )
        elif data_bytes > last:
            problems.append(f"{data_bytes - last} bytes of data past the last record: torn tail")
        return problems

    def _block_gaps(self, prefix: str) -> list[str]:
        numbers: dict[str, set[int]] = {"index": set(), "data": set()}
        try:
            paths = list(self.backend.list(prefix))
        except NotImplementedError:
            return []  # a store that cannot list (a static web mirror): gaps go unseen
        for path in paths:
            match = _BLOCK.fullmatch(path[len(prefix) :])
            if match:
                numbers[match.group(1)].add(int(match.group(2)))
        problems = []
        for stream, present in numbers.items():
            missing = sorted(set(range(max(present) + 1)) - present) if present else []
            if missing:
                invisible = sorted(n for n in present if n > missing[0])
                problems.append(
                    f"missing block {prefix}{block_path(stream + '/', missing[0])}: "
                    f"blocks {invisible} after it are invisible to readers"
                )
        return problems
