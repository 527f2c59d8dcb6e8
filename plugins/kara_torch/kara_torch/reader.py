"""Reads the records one worker yields, block by block, in ranged reads.

A worker knows its sequence of records in advance (the order is computed from
positions alone), a window at a time. Records belong to blocks of consecutive records (the unit the shuffle
permutes). The first time the worker's sequence touches a block, it reads all of its own
records of that block at once and keeps them until their turn: each block costs one
:meth:`~kara_core.row.RowDataset.read_raw_range` call (one index read and one data read)
per worker, instead of one per record. Inside a block, records another worker needs are
read through when they are small (up to :data:`LOCAL_GAP_BYTES` or
:data:`REMOTE_GAP_BYTES` in a row: cheaper than another call) and skipped when large.

On remote stores (no local path) the blocks of the next groups are read by a few threads
while the current group is decoded.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["BlockReader"]

#: Bytes of unneeded records worth reading through to save a read call.
LOCAL_GAP_BYTES = 16 * 1024
REMOTE_GAP_BYTES = 1024 * 1024
#: Threads reading ahead, and groups read ahead, on remote stores.
REMOTE_THREADS = 4
REMOTE_READ_AHEAD = 2
#: Samples per read group.
GROUP = 1024


class BlockReader:
    """Raw bytes of a worker's records, in its order, read block by block."""

    def __init__(self, rows: Any, block_size: int) -> None:
        self._rows = rows
        count = len(rows)
        mean_bytes = max(1, rows.nbytes() // count) if count else 1
        capabilities = getattr(getattr(rows, "backend", None), "capabilities", None)
        local = bool(getattr(capabilities, "local_path", False))
        # Never read through more than a block: beyond that the records belong to
        # blocks that are not due yet.
        self._gap = max(1, min(block_size, (LOCAL_GAP_BYTES if local else REMOTE_GAP_BYTES) // mean_bytes))
        self._threads = 0 if local else REMOTE_THREADS

    def runs(self, ordered: np.ndarray) -> list[tuple[int, int]]:
        """Split sorted record numbers into ``[start, stop)`` runs worth one read each."""
        if not len(ordered):
            return []
        cuts = np.flatnonzero(np.diff(ordered) > self._gap) + 1
        starts = ordered[np.concatenate(([0], cuts))]
        stops = ordered[np.concatenate((cuts - 1, [len(ordered) - 1]))] + 1
        return list(zip(starts.tolist(), stops.tolist(), strict=True))

    def read_in_order(self, records: np.ndarray, blocks: np.ndarray) -> Iterator[list[bytes]]:
        """Yield the raw bytes of ``records``, in order, as consecutive lists.

        ``blocks[k]`` is the block of ``records[k]``. Records of one block are read
        together when the first of them is due; a record may appear several times.
        """
        if not len(records):
            return
        # For each block, the first position in `records` where it is needed; a record
        # is read with the group of positions holding its block's first use.
        first_use = np.full(int(blocks.max()) + 1, len(blocks), dtype=np.int64)
        np.minimum.at(first_use, blocks, np.arange(len(blocks), dtype=np.int64))
        read_group = first_use[blocks] // GROUP
        # Small integer keys make the stable sort a linear-time radix sort.
        narrow = np.int16 if len(records) // GROUP < 2**15 else np.int64
        read_order = np.argsort(read_group.astype(narrow), kind="stable")
        bounds = np.searchsorted(read_group[read_order], np.arange(0, -(-len(records) // GROUP) + 1))
        groups = (read_order[bounds[g] : bounds[g + 1]] for g in range(len(bounds) - 1))
        # Raw bytes wait in `slots` (one per sequence position) from their read to their turn.
        slots = np.empty(len(records), dtype=object)
        emitted = 0
        for members, raws in self._read_groups(records, groups):
            slots[members] = raws
            stop = min(len(records), emitted + GROUP)
            yield slots[emitted:stop].tolist()
            slots[emitted:stop] = None
            emitted = stop

    def _plan(self, records: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        wanted = records[members]
        return wanted, self.runs(np.sort(wanted))

    @staticmethod
    def _pick(wanted: np.ndarray, runs: list[tuple[int, int]], raws: list[list[bytes]]) -> np.ndarray:
        """The entries of ``raws`` (one list per run) holding records ``wanted``."""
        flat = np.fromiter(itertools.chain.from_iterable(raws), dtype=object, count=sum(map(len, raws)))
        run_starts = np.array([start for start, _ in runs], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum([stop - start for start, stop in runs], dtype=np.int64)))
        run_of = np.searchsorted(run_starts, wanted, side="right") - 1
        return flat[offsets[run_of] + wanted - run_starts[run_of]]

    def _read_groups(self, records: np.ndarray, groups: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, Any]]:
        read = self._rows.read_raw_range
        if not self._threads:
            for members in groups:
                wanted, runs = self._plan(records, members)
                yield members, self._pick(wanted, runs, [read(start, stop) for start, stop in runs])
            return
        with ThreadPoolExecutor(self._threads, thread_name_prefix="kara-torch-read") as pool:
            pending: deque[tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[Future]]] = deque()

            def collect() -> tuple[np.ndarray, np.ndarray]:
                members, wanted, runs, futures = pending.popleft()
                return members, self._pick(wanted, runs, [future.result() for future in futures])

            for members in groups:
                wanted, runs = self._plan(records, members)
                pending.append((members, wanted, runs, [pool.submit(read, a, b) for a, b in runs]))
                if len(pending) > REMOTE_READ_AHEAD:
                    yield collect()
            while pending:
                yield collect()
