"""Parallel writes: many part writers in any processes, one commit that publishes a version.

:func:`open_parallel_write` registers a pending write and returns a small picklable
:class:`ParallelWrite` handle. Each task of an engine (Ray, Spark, a process pool) opens
``handle.part(i)`` and writes its records; :meth:`ParallelWrite.commit` then publishes
the version with the parts in order, in the 2.x layout (docs/ingest.md).

**The commit moves data, it does not rewrite it.** Each part's data blocks become the
version's next blocks: renamed on local stores, copied on the server elsewhere
(``Backend.copy``). Only the index is written anew, each part's end offsets shifted by
the size of the parts before it. kara-storage 2.x reads blocks by their actual sizes,
so blocks need not be full.

**Crash safety.** The commit first records its choice of attempts in ``plan.json``
(created once, atomically); then it moves the data blocks, writes the index, adds the
version to ``meta.json``, and only then removes the staging folder (``write.json``
last). Before ``meta.json`` names the version nothing is visible, to kara or 2.x. A
commit interrupted anywhere is completed by running it again (from the same handle,
or from ``open_parallel_write(..., resume=True)``), which follows the recorded plan;
:meth:`ParallelWrite.abort` instead removes everything, moved blocks included.

**Exactly once.** Every ``part(i)`` call is a new attempt with its own id and folder,
so a retried or speculative task never mixes its records with another attempt's. The
commit takes one complete attempt per part (the one the engine reports, else the
first closed) and removes the others.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend
from ..errors import (
    ConfigurationError,
    CorruptDatasetError,
    DatasetLockedError,
    DatasetNotFoundError,
    ParallelWriteError,
    ReadOnlyStoreError,
    VersionExistsError,
)
from ..serialization import Serializer, resolve_serializer
from ..serialization.base import configured, recorded_options
from .blocks import block_path
from .groups import grouping_writer
from .layout import check_name, data_prefix, index_prefix, version_prefix
from .parts import (
    DATA_STEM,
    INDEX_STEM,
    CommitPlan,
    PartDone,
    PartWriter,
    RowPart,
    WriteMarker,
    attempt_prefix,
    check_attempt,
    parts_prefix,
    read_done,
    read_model,
    staging_prefix,
    write_marker_path,
)
from .sidecar import open_serializer
from .snapshot import ENTRY
from .store import DEFAULT_BUFFER_SIZE, DEFAULT_MAX_FILE_SIZE, RowStore

__all__ = ["DEFAULT_PART_BLOCK_SIZE", "CommitReport", "ParallelWrite", "open_parallel_write"]

#: Bytes a part writer buffers before it puts them as one block.
DEFAULT_PART_BLOCK_SIZE = 64 * 1024 * 1024
#: Concurrent copies (and deletes) on stores without local paths.
TRANSFER_THREADS = 16


@dataclass(frozen=True)
class CommitReport:
    """What a commit did: the bytes it moved (data) and the bytes it wrote (the index)."""

    version: str
    records: int
    parts: int
    data_blocks: int
    data_bytes_moved: int
    index_bytes_written: int
    seconds: float
    #: How the data blocks were moved: ``"rename"``, ``"server copy"`` or ``"read and put"``.
    moved_by: str
    #: True when an earlier run had already finished the commit.
    already_committed: bool = False
    #: Seconds of each step: ``plan``, ``move`` (data blocks), ``index`` (rewritten,
    #: durable), ``publish`` (``meta.json``), ``clean`` (the staging folder removed).
    phases: dict[str, float] = field(default_factory=dict)


def _versions(backend: Backend, namespace: str, key: str) -> list[str]:
    try:
        return list(RowStore(backend).get_meta(namespace, key)["versions"])
    except DatasetNotFoundError:
        return []


def open_parallel_write(
    backend: Backend,
    namespace: str,
    key: str,
    version: Any,
    serialization: Serializer | type[Serializer] | str | None = None,
    *,
    resume: bool = False,
    block_size: int = DEFAULT_PART_BLOCK_SIZE,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    sync_at_commit: bool = False,
) -> ParallelWrite:
    """Start a parallel write of a new version (or, with ``resume=True``, take up a pending one).

    ``block_size``: bytes a part buffers per data block it puts; ``max_file_size``: the
    size at which the committed index is cut into blocks (2.x's 128 MiB by default).
    ``sync_at_commit``: parts closed where the write is registered (the same
    :meth:`Backend.sync_scope`: this machine, this boot, this filesystem) put their blocks
    without syncing them, and the commit makes all of them durable at once before it
    records its plan; elsewhere parts sync as they close. On file:// that is one
    ``syncfs`` instead of two fsyncs per put: the writers finish sooner, the commit
    takes longer. A commit refuses (naming them) unsynced parts of another scope, such
    as those closed before the machine restarted. No effect on stores whose puts are
    durable as they return.
    Raises :class:`VersionExistsError` if the version exists, and
    :class:`DatasetLockedError` if a parallel write of it is already pending (pass
    ``resume=True`` to commit or abort that one).
    """
    check_name("namespace", namespace)
    check_name("key", key)
    version = check_name("version", str(version))
    if version == "latest":
        raise ConfigurationError("a parallel write creates a new version: name it ('latest' is a reader's alias)")
    for name, value in (("block_size", block_size), ("max_file_size", max_file_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive integer (bytes), got {value!r}")
    if not backend.capabilities.writable:
        raise ReadOnlyStoreError(backend.url, f"write dataset {namespace}/{key}")
    # Configured for the new version as open_dataset configures a writer's (the commit
    # records these options in the version's sidecar).
    serializer = resolve_serializer(serialization)
    serializer = configured(serializer, recorded_options(serializer))
    options = {"block_size": block_size, "max_file_size": max_file_size}
    marker_path = write_marker_path(namespace, key, version)
    what = f"version {version!r} of {namespace}/{key}"
    if resume:
        marker = read_model(backend, marker_path, WriteMarker)
        if marker is None:
            if version in _versions(backend, namespace, key):
                raise VersionExistsError(f"{what} is already committed: there is no pending parallel write to resume")
            raise ParallelWriteError(f"no parallel write of {what} is pending on {backend.url}")
        return ParallelWrite(backend, namespace, key, version, serializer, marker.write, options)
    if version in _versions(backend, namespace, key):
        raise VersionExistsError(f"{what} already exists: a parallel write creates a new version")
    if backend.exists(block_path(data_prefix(namespace, key, version), 0)):
        raise VersionExistsError(f"{what} already has data blocks (a writer is creating it)")
    write_id = uuid.uuid4().hex
    scope = (backend.sync_scope() or "") if sync_at_commit else ""
    marker = WriteMarker(write=write_id, created=time.time(), serializer=type(serializer).__name__, scope=scope)
    if not backend.put_if_absent(marker_path, marker.model_dump_json().encode()):
        pending = read_model(backend, marker_path, WriteMarker)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(pending.created if pending else 0))
        raise DatasetLockedError(
            f"a parallel write of {what} is pending since {since} (write {pending and pending.write}): commit "
            "or abort it first (open_parallel_write(..., resume=True) returns its handle)"
        )
    return ParallelWrite(backend, namespace, key, version, serializer, write_id, options)


@dataclass(repr=False)
class ParallelWrite:
    """A pending parallel write of one version; small and picklable (send it to every task).

    ``part(i)`` opens part ``i`` for writing in any process that can reach the store;
    ``commit()`` publishes the version with the parts in the order of their numbers;
    ``abort()`` removes everything the write staged. Get one from
    :func:`open_parallel_write` (``KaraStorage.open_parallel_write``).
    """

    backend: Backend
    namespace: str
    key: str
    version: str
    serializer: Serializer
    write_id: str
    #: ``block_size`` and ``max_file_size`` (bytes).
    options: dict[str, int]

    def __repr__(self) -> str:
        return f"<ParallelWrite {self.namespace}/{self.key} version {self.version!r} on {self.backend.url}>"

    @property
    def _what(self) -> str:
        return f"the parallel write of version {self.version!r} of {self.namespace}/{self.key}"

    def _check_pending(self) -> WriteMarker:
        marker = read_model(self.backend, write_marker_path(self.namespace, self.key, self.version), WriteMarker)
        if marker is None or marker.write != self.write_id:
            raise ParallelWriteError(f"{self._what} is no longer pending (it was committed or aborted)")
        return marker

    # -- writing -------------------------------------------------------------------------

    def part(self, part: int, attempt: str | None = None) -> RowPart:
        """Open part ``part`` (0, 1, ...) for writing: a new attempt, complete once closed.

        ``attempt`` names the attempt (default: a random id); an engine may pass its own
        task attempt id. Use it as a context manager: an exception in the block leaves
        the attempt incomplete.
        """
        if isinstance(part, bool) or not isinstance(part, int) or part < 0:
            raise ConfigurationError(f"part must be a non-negative integer, got {part!r}")
        attempt = check_attempt(attempt if attempt is not None else uuid.uuid4().hex)
        marker = self._check_pending()
        # With sync_at_commit, a part in the sync scope of the process that registered
        # the write (the commit's machine, as a rule) is made durable by the commit with
        # every other part at once: its blocks are put without a sync. Elsewhere, and
        # without sync_at_commit, each put syncs.
        scope = self.backend.sync_scope() or ""
        unsynced = scope if scope and scope == marker.scope else ""
        prefix = attempt_prefix(self.namespace, self.key, self.version, part, attempt)
        if self.backend.exists(prefix + "done.json"):
            raise ParallelWriteError(f"attempt {attempt!r} of part {part} of {self._what} is already complete")
        writer = PartWriter(self.backend, prefix, part, attempt, self.options["block_size"], unsynced)
        options = {"buffer_size": DEFAULT_BUFFER_SIZE, "max_file_size": self.options["max_file_size"], "cache_size": 0}
        grouped = grouping_writer(writer, self.serializer)
        return RowPart(grouped, self.backend, self.namespace, self.key, self.version, self.serializer, options)

    def attempts(self) -> dict[int, dict[str, bool]]:
        """Every staged attempt: ``{part: {attempt: complete}}``."""
        prefix = parts_prefix(self.namespace, self.key, self.version)
        found: dict[int, dict[str, bool]] = {}
        for path in self.backend.list(prefix):
            number, attempt, rest = [*path[len(prefix) :].split(".", 2), "", ""][:3]
            if not number.isdigit() or not attempt:
                continue
            complete = found.setdefault(int(number), {}).get(attempt, False)
            found[int(number)][attempt] = complete or rest == "done.json"
        return dict(sorted(found.items()))

    # -- committing ----------------------------------------------------------------------

    def _choose(self, attempts: Mapping[int, str] | None, parts: int | None) -> list[PartDone]:
        staged = self.attempts()
        if parts is not None:
            wanted = list(range(parts))
        elif attempts is not None:
            wanted = sorted(attempts)
        else:
            wanted = sorted(staged)
        chosen: list[PartDone] = []
        problems: list[str] = []
        for part in wanted:
            tried = staged.get(part, {})
            candidates = [a for a, complete in tried.items() if complete]
            if attempts is not None and part in attempts:
                if attempts[part] not in candidates:
                    state = "never closed" if attempts[part] in tried else "was not found"
                    problems.append(f"part {part}: attempt {attempts[part]!r} {state}")
                    continue
                candidates = [attempts[part]]
            if not candidates:
                detail = f"{len(tried)} attempt(s), none closed" if tried else "no attempt was ever opened"
                problems.append(f"part {part} never closed ({detail})")
                continue
            prefixes = [attempt_prefix(self.namespace, self.key, self.version, part, a) for a in candidates]
            dones = [done for prefix in prefixes if (done := read_done(self.backend, prefix)) is not None]
            chosen.append(min(dones, key=lambda d: (d.closed, d.attempt)))
        if problems:
            raise ParallelWriteError(f"cannot commit {self._what}: " + "; ".join(problems))
        return chosen

    def _sync_parts(self, chosen: list[PartDone]) -> None:
        """Make the blocks of the chosen attempts that closed unsynced durable, before the plan names them.

        One :meth:`Backend.sync` for all of them. An attempt closed unsynced in another
        sync scope (another machine, or this one before a restart) cannot be vouched
        for: the commit fails naming it, and changes nothing.
        """
        unsynced = [done for done in chosen if done.unsynced]
        if not unsynced:
            return
        scope = self.backend.sync_scope() or ""
        foreign = [done for done in unsynced if done.unsynced != scope]
        if foreign:
            names = ", ".join(f"part {done.part} (attempt {done.attempt!r})" for done in foreign)
            raise ParallelWriteError(
                f"cannot commit {self._what}: {names} closed without syncing its blocks, in a sync scope this "
                f"process cannot sync ({foreign[0].unsynced!r}, here {scope!r}: another machine, or a restart since, "
                "may have lost them); write those parts again and commit the new attempts"
            )
        paths = []
        for done in unsynced:
            prefix = attempt_prefix(self.namespace, self.key, self.version, done.part, done.attempt)
            paths += [block_path(prefix + DATA_STEM, number) for number in range(len(done.data_blocks))]
            paths += [block_path(prefix + INDEX_STEM, number) for number in range(len(done.index_blocks))]
        self.backend.sync(paths)

    def _plan(self, attempts: Mapping[int, str] | None, parts: int | None) -> list[PartDone]:
        path = staging_prefix(self.namespace, self.key, self.version) + "plan.json"
        recorded = read_model(self.backend, path, CommitPlan)
        if recorded is None:
            chosen = self._choose(attempts, parts)
            if self.backend.exists(block_path(data_prefix(self.namespace, self.key, self.version), 0)):
                raise VersionExistsError(f"cannot commit {self._what}: another writer created the version meanwhile")
            # The plan is the commit's point of no return (reruns follow it): every block
            # it names is durable before it exists.
            self._sync_parts(chosen)
            plan = CommitPlan(write=self.write_id, parts=chosen)
            if self.backend.put_if_absent(path, plan.model_dump_json().encode()):
                return chosen
            recorded = read_model(self.backend, path, CommitPlan)
        if recorded is None or recorded.write != self.write_id:
            raise CorruptDatasetError(f"{self.backend.url}/{path}", None, "the plan of another parallel write")
        return recorded.parts

    def commit(self, attempts: Mapping[int, str] | None = None, *, parts: int | None = None) -> CommitReport:
        """Publish the version: the parts in order, one complete attempt of each.

        ``attempts`` (``{part: attempt}``) names the attempts an engine reports as the
        successful ones; ``parts`` requires parts ``0 .. parts-1``. Without either, every
        part that has an attempt counts. A part with no complete attempt fails the
        commit (:class:`ParallelWriteError` naming it) and changes nothing. Running
        commit again after an interruption completes it; after success it reports
        ``already_committed``.
        """
        started = time.perf_counter()
        backend, namespace, key, version = self.backend, self.namespace, self.key, self.version
        marker = read_model(backend, write_marker_path(namespace, key, version), WriteMarker)
        if marker is None or marker.write != self.write_id:
            if marker is None and version in _versions(backend, namespace, key):
                return CommitReport(version, 0, 0, 0, 0, 0, time.perf_counter() - started, "", already_committed=True)
            raise ParallelWriteError(f"{self._what} is no longer pending (it was aborted, or another write took over)")
        if version in _versions(backend, namespace, key):
            # meta.json names the version only once its blocks are in place: an earlier
            # run got that far and was interrupted while removing the staged files.
            if not backend.exists(staging_prefix(namespace, key, version) + "plan.json"):
                raise VersionExistsError(f"cannot commit {self._what}: another writer created the version")
            self._remove_staging()
            return CommitReport(version, 0, 0, 0, 0, 0, time.perf_counter() - started, "", already_committed=True)
        phases: dict[str, float] = {}
        mark = time.perf_counter()

        def step(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[name], mark = now - mark, now

        plan = self._plan(attempts, parts)
        step("plan")
        moved, blocks, moved_by = self._move_data(plan)
        step("move")
        index_bytes = self._write_index(plan)
        self._sync_version_folder()
        # The version's sidecar (its serializer and options, a zstd group size among
        # them) before meta.json names it: readers then need no serialization=.
        open_serializer(backend, namespace, key, version, self.serializer, record=True)
        step("index")
        RowStore(backend)._register_version(namespace, key, version)
        step("publish")
        self._remove_staging()
        step("clean")
        return CommitReport(
            version=version,
            records=sum(done.records for done in plan),
            parts=len(plan),
            data_blocks=blocks,
            data_bytes_moved=moved,
            index_bytes_written=index_bytes,
            seconds=time.perf_counter() - started,
            moved_by=moved_by,
            phases=phases,
        )

    def _move_data(self, plan: list[PartDone]) -> tuple[int, int, str]:
        backend, target_prefix = self.backend, data_prefix(self.namespace, self.key, self.version)
        moves: list[tuple[str, str, int]] = []
        for done in plan:
            source_prefix = attempt_prefix(self.namespace, self.key, self.version, done.part, done.attempt) + DATA_STEM
            for number, size in enumerate(done.data_blocks):
                moves.append((block_path(source_prefix, number), block_path(target_prefix, len(moves)), size))
        if not moves:
            # 2.x refuses a version without a 0.blk: an empty version has an empty block.
            backend.put(block_path(target_prefix, 0), b"")
            return 0, 1, "rename" if backend.capabilities.local_path else "server copy"
        if backend.capabilities.local_path and backend.local_path(moves[0][1]) is not None:
            done_by = [self._rename(*move) for move in moves]
            folder = backend.local_path(moves[0][1])
            assert folder is not None
            _sync_folder(os.path.dirname(folder))
        else:
            with ThreadPoolExecutor(min(TRANSFER_THREADS, len(moves)), thread_name_prefix="kara-commit") as pool:
                done_by = list(pool.map(lambda move: self._copy(*move), moves))
        moved_by = done_by[0] if len(set(done_by)) == 1 else "mixed"
        return sum(size for _, _, size in moves), len(moves), moved_by

    def _rename(self, source: str, target: str, size: int) -> str:
        local_source, local_target = self.backend.local_path(source), self.backend.local_path(target)
        assert local_source is not None and local_target is not None
        os.makedirs(os.path.dirname(local_target), exist_ok=True)
        try:
            os.replace(local_source, local_target)
        except FileNotFoundError:
            if self.backend.size(target) == size:
                return "rename"  # moved by an earlier, interrupted run of this commit
            raise CorruptDatasetError(
                f"{self.backend.url}/{source}", None, "a staged block of the plan is missing"
            ) from None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self._copy(source, target, size)
        return "rename"

    def _copy(self, source: str, target: str, size: int) -> str:
        backend = self.backend
        how = "server copy" if backend.capabilities.copy else "read and put"
        if backend.size(target) == size:
            return how  # copied by an earlier, interrupted run (copies are atomic)
        backend.copy(source, target)
        return how

    def _write_index(self, plan: list[PartDone]) -> int:
        """Put the version's index: every part's end offsets shifted by the parts before it."""
        import numpy

        # The whole index in one array: each part's blocks read into their place, one
        # addition per part, then put in max_file_size pieces straight from the array.
        backend, limit = self.backend, self.options["max_file_size"]
        ends = numpy.empty(sum(done.records for done in plan), dtype="<u8")
        raw = memoryview(ends).cast("B")
        position = offset = 0
        for done in plan:
            source_prefix = attempt_prefix(self.namespace, self.key, self.version, done.part, done.attempt) + INDEX_STEM
            first = position // ENTRY
            for block, size in enumerate(done.index_blocks):
                self._read_into(block_path(source_prefix, block), raw[position : position + size])
                position += size
            part = ends[first : position // ENTRY]
            self._check_part_end(done, int(part[-1]) if len(part) else 0, source_prefix)
            if offset:
                part += numpy.uint64(offset)
            offset += sum(done.data_blocks)
        target_prefix = index_prefix(self.namespace, self.key, self.version)
        pieces = range(0, len(raw), limit) if len(raw) else range(1)
        for number, start in enumerate(pieces):
            backend.put(block_path(target_prefix, number), raw[start : start + limit])
        return len(raw)

    def _read_into(self, path: str, target: memoryview) -> None:
        # A local block is read straight into its place in the index; others are fetched.
        local = self.backend.local_path(path) if self.backend.capabilities.local_path else None
        if local is None:
            data = self.backend.read(path)
            got = len(data)
            target[: min(got, len(target))] = data[: len(target)]
        else:
            try:
                with open(local, "rb", buffering=0) as fh:
                    # One read() returns at most ~2 GiB on Linux: read until full or EOF.
                    got = 0
                    while got < len(target) and (count := fh.readinto(target[got:])):
                        got += count
                    got += len(fh.read(1)) if got == len(target) else 0
            except FileNotFoundError:
                raise CorruptDatasetError(
                    f"{self.backend.url}/{path}", None, "a staged index block of the plan is missing"
                ) from None
        if got != len(target):
            raise CorruptDatasetError(
                f"{self.backend.url}/{path}", None, f"the index block holds {got} bytes, done.json says {len(target)}"
            )

    def _check_part_end(self, done: PartDone, last: int, source_prefix: str) -> None:
        part_bytes = sum(done.data_blocks)
        if done.records and last != part_bytes:
            raise CorruptDatasetError(
                f"{self.backend.url}/{source_prefix}",
                None,
                f"the index ends at {last}, the part's data blocks hold {part_bytes} bytes",
            )

    def _sync_version_folder(self) -> None:
        # The commit created the version's data/ and index/ folders: their entries in the
        # version folder must be durable too before meta.json names the version (each
        # folder's own entries were synced once, after its renames or by put).
        if not self.backend.capabilities.local_path:
            return
        folder = self.backend.local_path(version_prefix(self.namespace, self.key, self.version).rstrip("/"))
        if folder is not None:
            _sync_folder(folder)

    def _remove_staging(self) -> None:
        backend = self.backend
        staging = staging_prefix(self.namespace, self.key, self.version)
        marker, plan = write_marker_path(self.namespace, self.key, self.version), staging + "plan.json"
        self._delete([path for path in backend.list(staging) if path not in (marker, plan)])
        # The plan, then the marker, last: until they are gone a rerun finishes this clean-up.
        backend.delete(plan)
        backend.delete(marker)
        self._prune(staging_prefix(self.namespace, self.key, self.version))

    def _delete(self, paths: list[str]) -> None:
        if len(paths) < 2 or self.backend.capabilities.local_path:
            for path in paths:
                self.backend.delete(path)
            return
        with ThreadPoolExecutor(min(TRANSFER_THREADS, len(paths)), thread_name_prefix="kara-commit") as pool:
            list(pool.map(self.backend.delete, paths))

    def _prune(self, prefix: str) -> None:
        # Local stores keep empty folders after deletes: remove the empty ones under
        # ``prefix`` and its parents that became empty, up to the store's root.
        backend = self.backend
        if not backend.capabilities.local_path:
            return
        top, rows = backend.local_path(prefix.rstrip("/")), backend.local_path("row")
        if top is None or rows is None:
            return
        for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            _remove_if_empty(dirpath)
        folder, root = os.path.dirname(top), os.path.dirname(rows)
        while len(folder) > len(root) and _remove_if_empty(folder):
            folder = os.path.dirname(folder)

    # -- aborting ------------------------------------------------------------------------

    def abort(self) -> None:
        """Remove everything this write staged (and moved, if a commit was interrupted).

        Idempotent. Raises :class:`ParallelWriteError` if the version was committed.
        """
        backend, namespace, key, version = self.backend, self.namespace, self.key, self.version
        marker = read_model(backend, write_marker_path(namespace, key, version), WriteMarker)
        if marker is None or marker.write != self.write_id:
            if marker is None and version in _versions(backend, namespace, key):
                raise ParallelWriteError(f"{self._what} was committed: abort cannot remove a published version")
            return
        if version in _versions(backend, namespace, key):
            raise ParallelWriteError(f"{self._what} was committed: abort cannot remove a published version")
        if backend.exists(staging_prefix(namespace, key, version) + "plan.json"):
            # An interrupted commit may have moved blocks into the version: every block
            # there is this write's (the plan is only made while the version has none).
            for prefix in (data_prefix(namespace, key, version), index_prefix(namespace, key, version)):
                self._delete(sorted(backend.list(prefix), key=_block_number, reverse=True))
        self._remove_staging()
        self._prune(f"row/{namespace}/{key}/{version}/")


def _block_number(path: str) -> int:
    name = path.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else -1


def _remove_if_empty(folder: str) -> bool:
    try:
        os.rmdir(folder)
    except OSError:
        return False
    return True


def _sync_folder(folder: str) -> None:
    """Make the renames into ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
