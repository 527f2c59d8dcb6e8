"""Which record each rank and each DataLoader worker yields, computed from positions alone.

Nothing here reads data or imports torch. Three layers:

1. :class:`EpochOrder`: the global order ``G`` of one epoch, a permutation of the
   ``n`` records of the slice. With shuffling it is a pure function of
   ``(n, seed, epoch, buffer_size, shuffle_ratio, block_size)``: the slice is cut into
   blocks of ``block_size`` consecutive records, the blocks are permuted, and the
   resulting stream runs through a shuffle buffer of ``buffer_size`` records that emits
   ``shuffle_ratio`` of its content, chosen at random, each time it is full. Blocks keep
   reads sequential; permuting them mixes the whole slice, not just a window.
2. :class:`RankPlan`: ``G`` cut into global batches of ``world_size * batch_size``
   samples, each dealt round-robin to the ranks, ``batch_size`` samples per rank. Reading
   the ranks' outputs batch by batch in rank order gives back ``G`` itself, whatever the
   world size. Every rank gets the same number of samples: the remainder is dropped, or
   (``pad``) filled by repeating samples from the start of ``G``.
3. :func:`worker_positions`: a rank's sequence cut into batches of ``batch_size``, batch
   ``k`` to worker ``k % num_workers``: exactly how a DataLoader round-robins its workers,
   so the batches it delivers are the rank's sequence whatever ``num_workers`` is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kara_core.errors import ConfigurationError

__all__ = [
    "EpochOrder",
    "OrderCursor",
    "RankPlan",
    "ShuffleParams",
    "worker_positions",
]

#: Fewest blocks a shuffled slice is cut into (when it has enough records): the
#: correlation between a record's index and its output position is about
#: ``1 / sqrt(blocks)``, so 4096 blocks keep it near 0.016.
MIN_BLOCKS = 4096
#: Fewest records per block: small slices have few blocks anyway, but then they fit in
#: the shuffle buffer, which permutes them completely.
MIN_BLOCK_SIZE = 16
#: Mixed into every seed so kara's streams differ from other users of the same seed.
_SALT = 0x6B617261


@dataclass(frozen=True)
class ShuffleParams:
    """The knobs of the shuffle (the defaults are kara-storage 2.x's).

    ``block_size=None`` picks ``n // 4096`` records per block, at least 16 and at most
    one refresh of the buffer (``buffer_size * shuffle_ratio``).
    """

    seed: int = 0
    buffer_size: int = 10240
    shuffle_ratio: float = 0.1
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be at least 1, got {self.buffer_size}")
        if not 0.0 < self.shuffle_ratio <= 1.0:
            raise ConfigurationError(f"shuffle_ratio must be in (0, 1], got {self.shuffle_ratio}")
        if self.block_size is not None and self.block_size < 1:
            raise ConfigurationError(f"block_size must be at least 1, got {self.block_size}")

    @property
    def refresh(self) -> int:
        """How many records the buffer emits each time it is full."""
        return max(1, min(self.buffer_size, round(self.buffer_size * self.shuffle_ratio)))

    def block_size_for(self, n: int) -> int:
        """The block size used for a slice of ``n`` records."""
        if self.block_size is not None:
            return self.block_size
        return max(1, min(self.refresh, max(MIN_BLOCK_SIZE, n // MIN_BLOCKS)))


class EpochOrder:
    """The global order of one epoch over records ``0 .. n-1`` of the slice."""

    def __init__(self, n: int, epoch: int, shuffle: bool, params: ShuffleParams) -> None:
        self.n = n
        self.epoch = epoch
        self.shuffle = shuffle
        self.params = params

    def chunks(self) -> Iterator[np.ndarray]:
        """Yield the order as consecutive int64 arrays (together a permutation of ``range(n)``)."""
        if not self.shuffle:
            step = 1 << 16
            for start in range(0, self.n, step):
                yield np.arange(start, min(self.n, start + step), dtype=np.int64)
            return
        yield from self._shuffled()

    def _shuffled(self) -> Iterator[np.ndarray]:
        n, params = self.n, self.params
        # Raw 64-bit outputs of PCG64 are stable across numpy versions (unlike the
        # Generator methods), so the order only depends on the arguments.
        bits = np.random.PCG64(np.random.SeedSequence([_SALT, params.seed % (1 << 64), self.epoch]))
        block = params.block_size_for(n)
        blocks = -(-n // block)
        block_order = np.argsort(bits.random_raw(blocks), kind="stable")
        offsets = np.arange(block, dtype=np.int64)
        capacity, refresh = params.buffer_size, params.refresh
        step = max(1, refresh // block)
        pool = np.empty(0, dtype=np.int64)
        for first in range(0, blocks, step):
            incoming = (block_order[first : first + step, None] * block + offsets).ravel()
            pool = np.concatenate((pool, incoming[incoming < n]))
            while len(pool) >= capacity:
                chosen = _distinct(bits, len(pool), refresh)
                yield pool[chosen]
                keep = np.ones(len(pool), dtype=bool)
                keep[chosen] = False
                pool = pool[keep]
        if len(pool):
            yield pool[np.argsort(bits.random_raw(len(pool)), kind="stable")]

    def head(self, count: int) -> np.ndarray:
        """The first ``count`` entries of the order (``count <= n``)."""
        taken, have = [np.empty(0, dtype=np.int64)], 0
        for chunk in self.chunks():
            if have >= count:
                break
            taken.append(chunk)
            have += len(chunk)
        return np.concatenate(taken)[:count]


class OrderCursor:
    """Reads an :class:`EpochOrder` at ascending positions in one pass.

    It holds only the part of the order between the last position taken and the
    furthest one asked for, so a worker never materialises the order of a whole epoch.
    """

    def __init__(self, order: EpochOrder) -> None:
        self._order = order
        self._chunks = order.chunks()
        self._buffer = np.empty(0, dtype=np.int64)
        self._base = 0
        self._head: np.ndarray | None = None  # the start of G, which padding repeats

    def take(self, positions: np.ndarray) -> np.ndarray:
        """``G[positions]``; positions ascend across calls, and ``n, n+1, ...`` (padding)
        stand for ``G[0], G[1], ...``."""
        n = self._order.n
        if not self._order.shuffle or not len(positions):
            return positions % n if n else positions
        regular = positions[positions < n]
        values = self._regular(regular)
        if len(regular) == len(positions):
            return values
        need = min(n, int(positions[-1]) - n + 1)
        if self._head is None or len(self._head) < need:
            self._head = self._order.head(need)
        return np.concatenate((values, self._head[(positions[len(regular) :] - n) % n]))

    def _regular(self, positions: np.ndarray) -> np.ndarray:
        if not len(positions):
            return positions
        last = int(positions[-1])
        pieces = [self._buffer]
        have = self._base + len(self._buffer)
        while have <= last:
            chunk = next(self._chunks)
            pieces.append(chunk)
            have += len(chunk)
        buffer = np.concatenate(pieces) if len(pieces) > 1 else self._buffer
        values = buffer[positions - self._base]
        self._buffer = buffer[last + 1 - self._base :]
        self._base = last + 1
        return values


def _distinct(bits: np.random.PCG64, n: int, k: int) -> np.ndarray:
    """``k`` distinct integers of ``range(n)`` in random order (drawn uniformly)."""
    if k >= n:
        return np.argsort(bits.random_raw(n), kind="stable")
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < k:
        # Draw a few more than needed, keep first occurrences in draw order; repeats
        # are rare (k^2 / 2n expected), so one round almost always suffices.
        draws = (bits.random_raw(k - len(chosen) + k // 16 + 16) >> 11).astype(np.float64) * (n / 2.0**53)
        candidates = np.concatenate((chosen, draws.astype(np.int64)))
        _, first = np.unique(candidates, return_index=True)
        chosen = candidates[np.sort(first)]
    return chosen[:k]


@dataclass(frozen=True)
class RankPlan:
    """Which positions of ``G`` one rank yields, starting at global position ``start``.

    ``start`` is where an epoch resumes (all ranks having consumed ``G[:start]``); a
    fresh epoch has ``start=0``. The ``n - start`` remaining positions are dealt in
    rounds of ``world_size * batch_size``; the last, shorter round is split evenly, so
    every rank gets :attr:`length` samples. With ``pad`` the remaining count is rounded
    up to a multiple of ``world_size`` with positions ``n, n+1, ...`` which stand for
    ``G[0], G[1], ...`` again.
    """

    n: int
    world_size: int
    rank: int
    batch_size: int
    pad: bool = False
    start: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigurationError(f"rank {self.rank} is not in a world of size {self.world_size}")
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def length(self) -> int:
        """Samples this rank yields (the same on every rank)."""
        remaining = max(0, self.n - self.start)
        if self.pad:
            return -(-remaining // self.world_size)
        return remaining // self.world_size

    def positions(self, i: np.ndarray) -> np.ndarray:
        """Global positions of this rank's samples ``i`` (0-based in its sequence)."""
        batch, length = self.batch_size, self.length
        full = length // batch
        tail = length - full * batch
        in_full = i < full * batch
        round_size = self.world_size * batch
        regular = self.start + (i // batch * self.world_size + self.rank) * batch + i % batch
        last_round = self.start + full * round_size + self.rank * tail + (i - full * batch)
        return np.where(in_full, regular, last_round)


def worker_positions(
    plan: RankPlan, offset: int, num_workers: int, worker: int, skip: int = 0, group: int = 1024
) -> Iterator[np.ndarray]:
    """Yield, in groups of about ``group``, the global positions one worker yields.

    The rank's sequence from ``offset`` on is cut into batches of ``plan.batch_size``;
    worker ``w`` takes batches ``w, w + num_workers, ...``. ``skip`` of the worker's own
    samples are left out (they were yielded before a resume).
    """
    batch, length = plan.batch_size, plan.length
    batches = max(0, -(-(length - offset) // batch))
    first = worker + (skip // batch) * num_workers
    skip %= batch
    per_group = max(1, group // batch)
    within = np.arange(batch, dtype=np.int64)
    for k in range(first, batches, per_group * num_workers):
        ks = np.arange(k, min(batches, k + per_group * num_workers), num_workers, dtype=np.int64)
        i = (offset + ks[:, None] * batch + within).ravel()
        i = i[i < length][skip:]
        skip = 0
        if len(i):
            yield plan.positions(i)
