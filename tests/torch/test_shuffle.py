"""Shuffle quality and read pattern, on a real 100,000-record dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

import kara_core

from .conftest import LARGE


class CountingRows:
    """A real row dataset that counts the ranged reads made through it."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self.reads = 0

    def read_raw_range(self, start: int, stop: int) -> list[bytes]:
        self.reads += 1
        return self.rows.read_raw_range(start, stop)

    def __len__(self) -> int:
        return len(self.rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rows, name)


def epoch_ids(rows: Any, epoch: int = 0, **kwargs: Any) -> np.ndarray:
    ds = kara_core.make_torch_dataset(rows, shuffle=True, **kwargs)
    ds.set_epoch(epoch)
    return np.fromiter((sample["i"] for sample in ds), dtype=np.int64)


def spearman(order: np.ndarray) -> float:
    """Rank correlation between record index and output position (order is a permutation)."""
    position = np.empty(len(order))
    position[order] = np.arange(len(order))
    return float(np.corrcoef(np.arange(len(order)), position)[0, 1])


def test_default_shuffle_decorrelates_index_and_position(large) -> None:
    for epoch in (0, 1, 2):
        order = epoch_ids(large, epoch)
        assert sorted(order.tolist()) == list(range(LARGE))
        assert abs(spearman(order)) < 0.05, f"epoch {epoch}"


def test_shuffle_mixes_the_whole_dataset_not_a_window(large) -> None:
    order = epoch_ids(large)
    # The first tenth of the output draws from every tenth of the dataset.
    first = order[: LARGE // 10]
    assert set((first * 10 // LARGE).tolist()) == set(range(10))
    assert abs(float(np.mean(first)) - LARGE / 2) < LARGE * 0.05


def test_each_epoch_has_its_own_order(large) -> None:
    orders = [epoch_ids(large, epoch, end=20_000) for epoch in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert float(np.mean(orders[a] == orders[b])) < 0.01


def test_records_are_read_in_ranges_not_one_by_one(large) -> None:
    rows = CountingRows(large)
    order = epoch_ids(rows)
    assert len(order) == LARGE
    assert rows.reads * 20 < LARGE
