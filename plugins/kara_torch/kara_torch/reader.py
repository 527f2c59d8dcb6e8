"""Reads the records a worker needs with one ranged read per run of nearby records.

A worker needs a scattered subset of each group of records (its share of the shuffled
blocks). Asking for each record on its own would cost one request per record on a remote
store, so sorted record numbers are merged into runs whenever the records skipped between
two of them weigh less than ``gap_bytes``, and each run is one
:meth:`~kara_core.row.RowDataset.read_raw_range` call (one index read, one data read). On
remote stores the runs of the next groups are read by a few threads while the current
group is decoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["RunReader"]

#: Skipped bytes worth reading to save one more read call, on local and remote stores.
LOCAL_GAP_BYTES = 16 * 1024
REMOTE_GAP_BYTES = 1024 * 1024
#: Threads reading runs ahead, and groups read ahead, on remote stores.
REMOTE_THREADS = 4
REMOTE_READ_AHEAD = 2


class RunReader:
    """Raw bytes of arbitrary records of one row dataset, read in coalesced runs."""

    def __init__(self, rows: Any) -> None:
        self._rows = rows
        count = len(rows)
        mean_bytes = max(1, rows.nbytes() // count) if count else 1
        capabilities = getattr(getattr(rows, "backend", None), "capabilities", None)
        local = bool(getattr(capabilities, "local_path", False))
        self._gap = max(1, (LOCAL_GAP_BYTES if local else REMOTE_GAP_BYTES) // mean_bytes)
        self._threads = 0 if local else REMOTE_THREADS

    def runs(self, unique: np.ndarray) -> list[tuple[int, int]]:
        """Split sorted distinct record numbers into ``[start, stop)`` runs worth one read each."""
        if not len(unique):
            return []
        cuts = np.flatnonzero(np.diff(unique) > self._gap) + 1
        starts = unique[np.concatenate(([0], cuts))]
        stops = unique[np.concatenate((cuts - 1, [len(unique) - 1]))] + 1
        return list(zip(starts.tolist(), stops.tolist(), strict=True))

    def _read_runs(self, runs: list[tuple[int, int]]) -> list[list[bytes]]:
        return [self._rows.read_raw_range(start, stop) for start, stop in runs]

    @staticmethod
    def _pick(indices: np.ndarray, unique: np.ndarray, runs: list[tuple[int, int]], raws: list[list[bytes]]) -> list:
        table: list[bytes] = []
        bounds = [start for start, _ in runs]
        run_of = np.searchsorted(bounds, unique, side="right") - 1
        for index, run in zip(unique.tolist(), run_of.tolist(), strict=True):
            table.append(raws[run][index - runs[run][0]])
        return [table[k] for k in np.searchsorted(unique, indices).tolist()]

    def read(self, indices: np.ndarray) -> list[bytes]:
        """The raw bytes of records ``indices`` (any order, repeats allowed), in that order."""
        unique = np.unique(indices)
        runs = self.runs(unique)
        return self._pick(indices, unique, runs, self._read_runs(runs))

    def read_groups(self, groups: Iterator[np.ndarray]) -> Iterator[list[bytes]]:
        """Yield :meth:`read` of each group, reading ahead on remote stores."""
        if not self._threads:
            for indices in groups:
                yield self.read(indices)
            return
        with ThreadPoolExecutor(self._threads, thread_name_prefix="kara-torch-read") as pool:
            pending: deque[tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[Future]]] = deque()
            for indices in groups:
                unique = np.unique(indices)
                runs = self.runs(unique)
                futures = [pool.submit(self._rows.read_raw_range, start, stop) for start, stop in runs]
                pending.append((indices, unique, runs, futures))
                if len(pending) > REMOTE_READ_AHEAD:
                    yield self._collect(*pending.popleft())
            while pending:
                yield self._collect(*pending.popleft())

    def _collect(
        self, indices: np.ndarray, unique: np.ndarray, runs: list[tuple[int, int]], futures: list[Future]
    ) -> list[bytes]:
        return self._pick(indices, unique, runs, [future.result() for future in futures])
