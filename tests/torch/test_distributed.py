"""Real torch.distributed process groups (gloo on 127.0.0.1, 2 and 3 CPU processes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import kara_core

from .conftest import SMALL, load, start_ranks

BATCH = 4  # rank_main.BATCH


def launch(store_url: str, world_size: int) -> list[dict[str, Any]]:
    """Run rank_main.py as ``world_size`` processes of one group; return each rank's report."""
    store, procs = start_ranks("rank_main.py", {"store": store_url}, world_size)
    outputs = []
    for rank, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"rank {rank} of {world_size} failed:\n{err[-4000:]}"
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    del store
    return outputs


@pytest.fixture(scope="module")
def groups(store_url: str) -> dict[int, list[dict[str, Any]]]:
    """Reports of every rank, for process groups of 2 and 3 ranks."""
    return {world_size: launch(store_url, world_size) for world_size in (2, 3)}


def interleave(reports: list[dict[str, Any]], scenario: str) -> list[int]:
    """The global sequence: batch k of rank 0, of rank 1, ..., then batch k + 1."""
    per_rank = [report[scenario]["batches"] for report in reports]
    return [i for step in zip(*per_rank, strict=True) for batch in step for i in batch]


def all_ids(report: dict[str, Any], scenario: str) -> list[int]:
    return [i for batch in report[scenario]["batches"] for i in batch]


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_yields_len_samples_and_the_same_count(groups, world_size: int) -> None:
    for scenario in ("shuffled", "shuffled_epoch_1", "padded", "sequential"):
        counts = {len(all_ids(report, scenario)) for report in groups[world_size]}
        lens = {report[scenario]["len"] for report in groups[world_size]}
        assert counts == lens and len(counts) == 1, scenario


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_and_drop_only_the_remainder(groups, world_size: int) -> None:
    everything = [i for report in groups[world_size] for i in all_ids(report, "shuffled")]
    assert len(everything) == len(set(everything)) == SMALL - SMALL % world_size


@pytest.mark.parametrize("world_size", [2, 3])
def test_padding_gives_every_record_and_repeats_only_to_even_out(groups, world_size: int) -> None:
    everything = [i for report in groups[world_size] for i in all_ids(report, "padded")]
    assert set(everything) == set(range(SMALL))
    assert len(everything) == -(-SMALL // world_size) * world_size


@pytest.mark.parametrize("world_size", [2, 3])
def test_global_order_does_not_depend_on_world_size(small, groups, world_size: int) -> None:
    for scenario, epoch, shuffle in (("shuffled", 0, True), ("shuffled_epoch_1", 1, True), ("sequential", 0, False)):
        alone = load(small, batch_size=BATCH, epoch=epoch, shuffle=shuffle)
        merged = interleave(groups[world_size], scenario)
        assert merged == alone[: len(merged)], scenario


def test_global_order_of_four_ranks_is_the_same_too(small) -> None:
    alone = load(small, batch_size=BATCH, shuffle=True)
    ranks = [load(small, batch_size=BATCH, shuffle=True, rank=r, world_size=4, num_workers=r % 3) for r in range(4)]
    batches = [[ids[k : k + BATCH] for k in range(0, len(ids), BATCH)] for ids in ranks]
    merged = [i for step in zip(*batches, strict=True) for batch in step for i in batch]
    assert merged == alone[: len(merged)] and len(merged) == SMALL - SMALL % 4


@pytest.mark.parametrize("world_size", [2, 3])
def test_auto_distributed_false_gives_each_rank_everything(groups, world_size: int) -> None:
    for report in groups[world_size]:
        assert sorted(all_ids(report, "not_distributed")) == list(range(SMALL))


def test_explicit_rank_outside_the_world_is_rejected(small) -> None:
    with pytest.raises(kara_core.errors.ConfigurationError, match="rank 2 is not in a world of size 2"):
        kara_core.make_torch_dataset(small, rank=2, world_size=2)
