"""Mixtures and packed views through real DataLoader workers and real gloo process groups."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import kara_core
from kara_core.errors import ConfigurationError

from .conftest import as_list, launch_ranks
from .pipeline_views import MIXED, SEQ_LEN, WEIGHTS, build, sample_id, token_record, torch_options

BATCH = 8


def epoch_ids(url: str, kind: str, num_workers: int = 0, epoch: int = 1, batch_size: int = BATCH) -> list[Any]:
    """Sample ids one process's DataLoader delivers in a whole epoch."""
    ds = kara_core.make_torch_dataset(build(url, kind), batch_size=batch_size, **torch_options(kind))
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=as_list)
    return [sample_id(kind, sample) for batch in loader for sample in batch]


def interleave(reports: list[dict[str, Any]]) -> list[Any]:
    """The global sequence: batch k of rank 0, of rank 1, ..., then batch k + 1."""
    return [i for step in zip(*(r["batches"] for r in reports), strict=True) for batch in step for i in batch]


def test_a_mixture_loads_in_its_own_order_whatever_num_workers(pipe_url: str) -> None:
    mixture = build(pipe_url, "mix")
    mixture.set_epoch(1)
    alone = [sample_id("mix", sample) for sample in mixture]
    assert epoch_ids(pipe_url, "mix", 0) == alone
    assert epoch_ids(pipe_url, "mix", 2) == alone


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_mixture_of_small_encoded_records_fetched_in_growing_groups_keeps_its_order(
    pipe_url: str, num_workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small records handed over still encoded are fetched VIEW_FETCH positions first,
    # then in larger groups: the samples (none repeated, none left out) stay the mixture's.
    import kara_torch.dataset

    monkeypatch.setattr(kara_torch.dataset, "VIEW_FETCH", 16)
    monkeypatch.setattr(kara_torch.dataset, "MAX_VIEW_FETCH", 96)
    sizes: list[int] = []
    fetch_size = kara_torch.dataset._fetch_size
    monkeypatch.setattr(kara_torch.dataset, "_fetch_size", lambda *a: sizes.append(fetch_size(*a)) or sizes[-1])
    store = kara_core.KaraStorage(pipe_url)
    mixture = kara_core.mix({name: store.open_dataset("pipe", name) for name in MIXED}, WEIGHTS, seed=5)
    mixture.set_epoch(1)
    alone = list(mixture)
    assert len(alone) > 96 * 4
    ds = kara_core.make_torch_dataset(mixture, batch_size=BATCH)
    ds.set_epoch(1)
    loader = DataLoader(ds, batch_size=BATCH, num_workers=num_workers, collate_fn=as_list)
    assert [sample for batch in loader for sample in batch] == alone
    if num_workers == 0:
        assert sizes == [96]


def test_every_batch_mixes_every_source_in_proportion(pipe_url: str) -> None:
    ds = kara_core.make_torch_dataset(build(pipe_url, "mix"), batch_size=64)
    loader = DataLoader(ds, batch_size=64, num_workers=2, collate_fn=as_list)
    batches = [Counter(name for name, _ in batch) for batch in loader]
    assert len(batches) > 10
    for counts in batches[:-1]:
        for name, weight in WEIGHTS.items():
            assert abs(counts[name] - 64 * weight) <= 1, counts


def test_cycle_serves_every_record_of_every_source(pipe_url: str) -> None:
    seen = Counter(epoch_ids(pipe_url, "mix", 2))
    for name, count in MIXED.items():
        assert {f"{name}:{i}" for i in range(count)} <= set(seen)


def test_a_mixture_refuses_torch_shuffling(pipe_url: str) -> None:
    with pytest.raises(ConfigurationError, match="shuffle=False"):
        kara_core.make_torch_dataset(build(pipe_url, "mix"), shuffle=True)


def test_packed_samples_are_seq_len_tensors_and_an_epoch_is_a_permutation(pipe_url: str) -> None:
    packed = build(pipe_url, "pack")
    ds = kara_core.make_torch_dataset(packed, shuffle=True, batch_size=BATCH)
    loader = DataLoader(ds, batch_size=BATCH, num_workers=2)
    batches = list(loader)
    assert all(isinstance(b, torch.Tensor) and b.shape[1] == SEQ_LEN for b in batches)
    got = torch.cat(batches).numpy()
    assert len(got) == len(packed)
    ordered = got[np.argsort([packed_index(packed, row) for row in got])]
    expected = np.concatenate([np.append(token_record(r), -1) for r in range(len(packed.ends))])
    np.testing.assert_array_equal(ordered.ravel(), expected[: len(packed) * SEQ_LEN])
    assert not (got == ordered).all()  # shuffled


def packed_index(packed: Any, sample: np.ndarray) -> int:
    """Which packed sample ``sample`` is (each starts at a unique position of the stream)."""
    return next(i for i in range(len(packed)) if (packed[i] == sample).all())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mix", "pack"])
def test_resume_mid_epoch_in_another_world_size_with_other_num_workers(pipe_url: str, kind: str) -> None:
    reference = epoch_ids(pipe_url, kind, 0, epoch=2)
    params = {"store": pipe_url, "kind": kind, "batch_size": BATCH, "epoch": 2}
    first = launch_ranks("pipeline_rank.py", {**params, "num_workers": 2, "stop_after": 5}, 2)
    taken = interleave(first)
    assert taken == reference[: 2 * 5 * BATCH]
    state = first[0]["state"]
    assert all(report["state"] == state for report in first)
    rest = launch_ranks("pipeline_rank.py", {**params, "num_workers": 1, "state": state}, 3)
    resumed = interleave(rest)
    # The rest of the epoch, less only the remainder that 3 ranks cannot share evenly.
    assert len(resumed) == (len(reference) - len(taken)) // 3 * 3 > 0
    assert taken + resumed == reference[: len(taken) + len(resumed)]


def test_resume_in_one_process_with_more_workers(pipe_url: str) -> None:
    for kind in ("mix", "pack"):
        reference = epoch_ids(pipe_url, kind, 0)
        ds = kara_core.make_torch_dataset(build(pipe_url, kind), batch_size=BATCH, **torch_options(kind))
        ds.set_epoch(1)
        loader = DataLoader(ds, batch_size=BATCH, num_workers=1, collate_fn=as_list)
        taken = [sample_id(kind, s) for batch in zip(range(7), loader, strict=False) for s in batch[1]]
        fresh = kara_core.make_torch_dataset(build(pipe_url, kind), batch_size=BATCH, **torch_options(kind))
        fresh.load_state_dict(ds.state_dict(consumed=len(taken)))
        loader = DataLoader(fresh, batch_size=BATCH, num_workers=3, collate_fn=as_list)
        assert taken + [sample_id(kind, s) for batch in loader for s in batch] == reference, kind


def test_a_state_of_another_mixture_is_refused(pipe_url: str) -> None:
    ds = kara_core.make_torch_dataset(build(pipe_url, "mix"), batch_size=BATCH)
    state = ds.state_dict(consumed=BATCH)
    other = build(pipe_url, "mix")
    other_mix = kara_core.mix(
        {name: view for name, view in zip(other.names, other.views, strict=True)}, WEIGHTS, seed=6
    )
    with pytest.raises(ConfigurationError, match="different sample order"):
        kara_core.make_torch_dataset(other_mix, batch_size=BATCH).load_state_dict(state)
