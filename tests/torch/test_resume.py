"""Exact resume: state_dict() after any number of samples continues with exactly the rest."""

from __future__ import annotations

import itertools

import pytest
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

import kara_core
from kara_core.errors import ConfigurationError

from .conftest import as_list, ids, load, run_script

BATCH = 8


def first_batches(ds, num_workers: int, count: int) -> list[int]:
    """Ids of the first ``count`` batches a plain DataLoader delivers (then it is dropped)."""
    loader = DataLoader(ds, batch_size=BATCH, num_workers=num_workers, collate_fn=as_list)
    return ids(itertools.islice(loader, count))


def test_plain_dataloader_resumes_in_a_new_process_with_other_num_workers(small, store_url: str) -> None:
    reference = load(small, batch_size=BATCH, shuffle=True, epoch=1)
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    ds.set_epoch(1)
    taken = first_batches(ds, num_workers=2, count=37)
    state = ds.state_dict(consumed=len(taken))
    rest = run_script(
        "resume_rest.py",
        {"store": store_url, "kwargs": {"shuffle": True}, "state": state, "num_workers": 3, "batch_size": BATCH},
    )
    assert taken + rest == reference


def test_state_without_consumed_is_exact_with_zero_workers_even_mid_batch(small) -> None:
    reference = load(small, batch_size=BATCH, shuffle=True)
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    taken = [sample["i"] for sample in itertools.islice(ds, 101)]
    fresh = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    fresh.load_state_dict(ds.state_dict())
    assert taken + ids(DataLoader(fresh, batch_size=BATCH, collate_fn=as_list)) == reference


def test_a_resumed_run_can_be_interrupted_and_resumed_again(small) -> None:
    reference = load(small, batch_size=BATCH, shuffle=True)
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    taken = first_batches(ds, num_workers=2, count=10)
    again = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    again.load_state_dict(ds.state_dict(consumed=len(taken)))
    more = first_batches(again, num_workers=1, count=20)
    last = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    last.load_state_dict(again.state_dict(consumed=len(more)))
    assert taken + more + load_rest(last, num_workers=2) == reference


def load_rest(ds, num_workers: int) -> list[int]:
    return ids(DataLoader(ds, batch_size=BATCH, num_workers=num_workers, collate_fn=as_list))


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_stateful_dataloader_resumes_exactly(small, num_workers: int) -> None:
    reference = load(small, batch_size=BATCH, shuffle=True, epoch=3)

    def loader() -> StatefulDataLoader:
        ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
        ds.set_epoch(3)
        return StatefulDataLoader(ds, batch_size=BATCH, num_workers=num_workers, collate_fn=as_list)

    first = loader()
    taken = ids(itertools.islice(first, 23))
    state = first.state_dict()
    second = loader()
    second.load_state_dict(state)
    assert taken + ids(second) == reference


def test_state_after_whole_batches_resumes_on_another_world_size(small) -> None:
    reference = load(small, batch_size=BATCH, shuffle=True)
    two = [kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH, rank=r, world_size=2) for r in (0, 1)]
    for ds in two:
        first_batches(ds, num_workers=0, count=5)
    state = two[0].state_dict(consumed=5 * BATCH)
    assert state == two[1].state_dict(consumed=5 * BATCH)
    four = []
    for rank in range(4):
        ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH, rank=rank, world_size=4)
        ds.load_state_dict(state)
        rest = load_rest(ds, num_workers=rank % 2)
        four.append([rest[k : k + BATCH] for k in range(0, len(rest), BATCH)])
    merged = [i for step in zip(*four, strict=True) for batch in step for i in batch]
    done = 5 * BATCH * 2
    assert merged == reference[done : done + len(merged)]
    assert len(reference) - done - len(merged) < 4


def test_state_taken_mid_batch_refuses_another_world_size(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH, rank=0, world_size=2)
    state = ds.state_dict(consumed=BATCH + 3)
    other = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH, rank=0, world_size=4)
    with pytest.raises(ConfigurationError, match="same world_size and batch_size"):
        other.load_state_dict(state)


def test_state_of_another_order_is_rejected(small) -> None:
    state = kara_core.make_torch_dataset(small, shuffle=True, seed=1).state_dict(consumed=10)
    with pytest.raises(ConfigurationError, match="seed: 1 in the state, 2 here"):
        kara_core.make_torch_dataset(small, shuffle=True, seed=2).load_state_dict(state)


def test_resume_point_is_forgotten_when_moving_to_another_epoch(small) -> None:
    ds = kara_core.make_torch_dataset(small, shuffle=True, batch_size=BATCH)
    ds.set_epoch(4)
    ds.load_state_dict(ds.state_dict(consumed=100))
    ds.set_epoch(4)
    assert len(load_rest(ds, num_workers=0)) == len(ds) - 100
    ds.set_epoch(5)
    assert load_rest(ds, num_workers=2) == load(small, batch_size=BATCH, shuffle=True, epoch=5)
