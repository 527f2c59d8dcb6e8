"""make_torch_dataset with real DataLoader workers (fork and spawn, persistent or not)."""

from __future__ import annotations

import itertools
import os
import pickle
from typing import Any

import pytest
from torch.utils.data import DataLoader, IterableDataset

import kara_core
from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, MissingPluginError, ModeError
from kara_core.plugins import reset_plugins, unregister_plugin

from .conftest import SMALL, as_list, ids, load


def tag_with_pid(sample: dict[str, Any]) -> dict[str, Any]:
    """A transform that records which process ran it."""
    return {**sample, "pid": os.getpid()}


def test_make_torch_dataset_returns_an_iterable_dataset_with_the_2x_defaults(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True)
    assert isinstance(ds, IterableDataset)
    assert ds.order_key()["seed"] == 0
    assert ds.order_key()["buffer_size"] == 10240
    assert ds.order_key()["shuffle_ratio"] == 0.1


def test_without_the_plugin_make_torch_dataset_says_what_to_install(small) -> None:
    unregister_plugin("torch")
    try:
        with pytest.raises(MissingPluginError, match="pip install kara-torch"):
            kara_core.make_torch_dataset(small)
    finally:
        reset_plugins()  # the next lookup loads the entry points again


def test_every_record_comes_exactly_once_per_epoch(small) -> None:
    assert sorted(load(small, num_workers=2, shuffle=True)) == list(range(SMALL))


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_order_does_not_depend_on_num_workers(small) -> None:
    reference = load(small, num_workers=0, shuffle=True)
    for workers in (1, 2, 4):
        assert load(small, num_workers=workers, shuffle=True) == reference, f"num_workers={workers}"


def test_unshuffled_order_is_the_dataset_order_with_any_num_workers(small) -> None:
    assert load(small, num_workers=2) == list(range(SMALL))


def test_len_is_what_an_epoch_yields(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=8)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=as_list)
    batches = list(loader)
    assert len(ds) == SMALL == len(ids(batches))
    assert len(loader) == len(batches)


def test_slice_yields_only_records_from_begin_to_end(small) -> None:
    got = load(small, num_workers=2, shuffle=True, begin=100, end=1100)
    assert sorted(got) == list(range(100, 1100))
    assert len(kara_core.make_torch_dataset(small, begin=100, end=1100)) == 1000


def test_slice_outside_the_dataset_is_rejected(small) -> None:
    with pytest.raises(ConfigurationError, match="not a slice"):
        kara_core.make_torch_dataset(small, begin=10, end=SMALL + 1)


def test_a_dataset_open_for_writing_is_refused(store_url: str) -> None:
    with KaraStorage(store_url).open_dataset("torch", "scratch", "w", version="1") as writing:
        with pytest.raises(ModeError, match="mode 'r'"):
            kara_core.make_torch_dataset(writing)


def test_epochs_have_different_orders(small) -> None:
    first, second = load(small, shuffle=True, epoch=0), load(small, shuffle=True, epoch=1)
    assert sorted(first) == sorted(second) and first != second


def test_order_is_reproducible_and_depends_on_the_seed(small) -> None:
    assert load(small, shuffle=True, seed=7) == load(small, shuffle=True, seed=7)
    assert load(small, shuffle=True, seed=7) != load(small, shuffle=True, seed=8)


def test_transform_runs_in_the_workers(small) -> None:
    ds = kara_core.make_torch_dataset(small, transform=tag_with_pid, batch_size=4, end=64)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=as_list)
    pids = {sample["pid"] for batch in loader for sample in batch}
    assert len(pids) == 2 and os.getpid() not in pids


def test_dataset_pickles_as_a_small_description(large) -> None:
    ds = kara_core.make_torch_dataset(large, shuffle=True)
    assert len(pickle.dumps(ds)) < 2048
    clone = pickle.loads(pickle.dumps(ds))
    assert list(itertools.islice(clone, 50)) == list(itertools.islice(ds, 50))


def test_persistent_fork_workers_follow_set_epoch(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=8)
    loader = DataLoader(ds, batch_size=8, num_workers=2, persistent_workers=True, collate_fn=as_list)
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        assert ids(loader) == load(small, shuffle=True, epoch=epoch), f"epoch {epoch}"


def test_persistent_spawn_workers_give_the_same_order_and_follow_set_epoch(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=8, end=500)
    loader = DataLoader(
        ds,
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context="spawn",
        collate_fn=as_list,
    )
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        assert ids(loader) == load(small, shuffle=True, epoch=epoch, end=500), f"epoch {epoch}"


def test_planning_in_small_windows_gives_the_same_order(small, monkeypatch) -> None:
    import kara_torch.dataset

    options = {"shuffle": True, "pad": True, "rank": 1, "world_size": 3}
    reference = load(small, num_workers=2, **options)
    monkeypatch.setattr(kara_torch.dataset, "PLAN_WINDOW", 60)
    assert load(small, num_workers=2, **options) == reference
    assert load(small, num_workers=0, **options) == reference


def test_a_worker_plans_at_most_one_window_of_positions_at_a_time(small, monkeypatch) -> None:
    # What a worker holds of the epoch's order is bounded by the window, not by the
    # number of records (bench/scale.py shows the memory flat from 1M to 100M records).
    import kara_torch.dataset
    from kara_torch.order import OrderCursor

    reference = load(small, num_workers=0, shuffle=True)
    asked: list[int] = []
    take = OrderCursor.take

    def recording_take(self: OrderCursor, positions: Any) -> Any:
        asked.append(len(positions))
        return take(self, positions)

    monkeypatch.setattr(OrderCursor, "take", recording_take)
    monkeypatch.setattr(kara_torch.dataset, "PLAN_WINDOW", 100)
    assert load(small, num_workers=0, shuffle=True) == reference
    assert len(asked) > 1 and max(asked) <= 100
