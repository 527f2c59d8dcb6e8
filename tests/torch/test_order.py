"""The position arithmetic of kara_torch.order, over many shapes (no data, no torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from kara_torch.order import EpochOrder, OrderCursor, RankPlan, ShuffleParams, worker_positions

SHAPES = [
    (n, world, batch, pad, start)
    for n in (0, 1, 7, 50, 1003)
    for world in (1, 2, 3, 4)
    for batch in (1, 3, 8)
    for pad in (False, True)
    for start in (0, 5)
    if start <= n
]


def worker_stream(plan: RankPlan, offset: int, workers: int, worker: int, skip: int = 0) -> list[int]:
    return [int(q) for group in worker_positions(plan, offset, workers, worker, skip, group=16) for q in group]


def as_dataloader(plan: RankPlan, workers: int, offset: int = 0) -> list[int]:
    """What a DataLoader delivers: batch k from worker k % workers, in turn."""
    streams = [worker_stream(plan, offset, workers, w) for w in range(workers)]
    batches = [[s[i : i + plan.batch_size] for i in range(0, len(s), plan.batch_size)] for s in streams]
    ordered = [b for turn in itertools.zip_longest(*batches) for b in turn if b is not None]
    return [q for batch in ordered for q in batch]


@pytest.mark.parametrize(("n", "world", "batch", "pad", "start"), SHAPES)
def test_interleaved_ranks_give_back_the_global_positions_in_order(n, world, batch, pad, start) -> None:
    plans = [RankPlan(n, world, rank, batch, pad, start) for rank in range(world)]
    assert len({plan.length for plan in plans}) == 1
    per_rank = [as_dataloader(plan, workers=1) for plan in plans]
    batches = [[s[i : i + batch] for i in range(0, len(s), batch)] for s in per_rank]
    merged = [q for turn in zip(*batches, strict=True) for b in turn for q in b]
    remaining = n - start
    expected = -(-remaining // world) * world if pad else remaining - remaining % world
    assert merged == list(range(start, start + expected))


@pytest.mark.parametrize(("n", "world", "batch", "pad", "start"), SHAPES)
def test_dataloader_order_is_the_same_for_any_number_of_workers(n, world, batch, pad, start) -> None:
    plan = RankPlan(n, world, world - 1, batch, pad, start)
    reference = as_dataloader(plan, workers=1)
    for workers in (2, 3, 4):
        assert as_dataloader(plan, workers) == reference


def test_skip_leaves_out_exactly_the_first_samples_of_a_worker() -> None:
    plan = RankPlan(1003, 2, 1, 8)
    full = worker_stream(plan, 3, 3, 2)
    for skip in (0, 1, 8, 13, len(full) - 1, len(full)):
        assert worker_stream(plan, 3, 3, 2, skip) == full[skip:]


def test_shuffled_order_is_a_permutation_for_any_size() -> None:
    for n in (1, 15, 16, 17, 1000, 20_000):
        for params in (ShuffleParams(), ShuffleParams(buffer_size=1), ShuffleParams(buffer_size=64, shuffle_ratio=1.0)):
            order = OrderCursor(EpochOrder(n, 0, True, params)).take(np.arange(n))
            assert sorted(order.tolist()) == list(range(n))


def test_padding_positions_repeat_the_start_of_the_order() -> None:
    order = EpochOrder(100, 3, True, ShuffleParams())
    assert OrderCursor(order).take(np.arange(98, 103)).tolist()[2:] == order.head(3).tolist()


def test_cursor_reads_the_order_in_pieces_as_a_whole() -> None:
    order = EpochOrder(20_000, 1, True, ShuffleParams(buffer_size=500))
    whole = OrderCursor(order).take(np.arange(20_000))
    cursor = OrderCursor(order)
    pieces = [np.arange(start, min(20_000, start + 777), 3) for start in range(0, 20_000, 777)]
    taken = [cursor.take(piece) for piece in pieces]
    assert np.concatenate(taken).tolist() == whole[np.concatenate(pieces)].tolist()
