"""make_torch_dataset(batches=True): whole batches made in the workers, equal to the DataLoader's."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import kara_core
from kara_core.errors import ConfigurationError

from .conftest import as_list
from .pipeline_views import build, sample_id, torch_options

BATCH = 8


def per_sample(url: str, kind: str, num_workers: int, **options: Any) -> list[Any]:
    """The batches of a DataLoader that collates samples itself."""
    ds = kara_core.make_torch_dataset(build(url, kind), batch_size=BATCH, **torch_options(kind), **options)
    ds.set_epoch(1)
    collate = None if kind == "pack" else as_list
    return list(DataLoader(ds, batch_size=BATCH, num_workers=num_workers, collate_fn=collate))


def whole(url: str, kind: str, num_workers: int, **options: Any) -> list[Any]:
    """The batches of a DataLoader over batches=True (batch_size=None)."""
    ds = kara_core.make_torch_dataset(
        build(url, kind), batch_size=BATCH, batches=True, **torch_options(kind), **options
    )
    ds.set_epoch(1)
    collate = None if kind == "pack" else as_list
    return list(DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=collate))


@pytest.mark.parametrize("num_workers", [0, 2, 3])
def test_packed_batches_are_one_tensor_each_and_the_loaders_batches(pipe_url: str, num_workers: int) -> None:
    reference = per_sample(pipe_url, "pack", 0)
    got = whole(pipe_url, "pack", num_workers)
    assert len(got) == len(reference) > 10
    for a, b in zip(got, reference, strict=True):
        assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    assert len(got[-1]) == (len(build(pipe_url, "pack")) % BATCH or BATCH)  # the last batch may be short


def test_packed_batches_in_stored_order_and_with_a_transform(pipe_url: str) -> None:
    packed = build(pipe_url, "pack")
    ds = kara_core.make_torch_dataset(packed, batch_size=BATCH, batches=True, transform=lambda b: b * 2)
    got = torch.cat(list(DataLoader(ds, batch_size=None))).numpy()
    expected = np.stack(list(packed)) * 2
    np.testing.assert_array_equal(got, expected)


def test_mixture_batches_are_lists_equal_to_the_loaders_batches(pipe_url: str) -> None:
    reference = [[sample_id("mix", s) for s in batch] for batch in per_sample(pipe_url, "mix", 0)]
    for num_workers in (0, 2):
        got = [[sample_id("mix", s) for s in batch] for batch in whole(pipe_url, "mix", num_workers)]
        assert got == reference


def test_a_resume_counts_samples_not_batches(pipe_url: str) -> None:
    reference = per_sample(pipe_url, "pack", 0)
    ds = kara_core.make_torch_dataset(build(pipe_url, "pack"), batch_size=BATCH, batches=True, shuffle=True)
    ds.set_epoch(1)
    taken = [batch for _, batch in zip(range(5), DataLoader(ds, batch_size=None), strict=False)]
    state = ds.state_dict()  # 0 workers: what this process yielded, 5 batches
    assert state["start"] + state["offset"] == 5 * BATCH
    fresh = kara_core.make_torch_dataset(build(pipe_url, "pack"), batch_size=BATCH, batches=True, shuffle=True)
    fresh.load_state_dict(state)
    rest = list(DataLoader(fresh, batch_size=None, num_workers=2))
    assert all(torch.equal(a, b) for a, b in zip(taken + rest, reference, strict=True))


def test_batches_of_packed_samples_need_one_length(pipe_url: str) -> None:
    store = kara_core.KaraStorage(pipe_url)
    packed = kara_core.pack(store.open_dataset("pipe", "tokens"), field=None, seq_len=100, drop_remainder=False)
    with pytest.raises(ConfigurationError, match="drop_remainder=True"):
        kara_core.make_torch_dataset(packed, batch_size=BATCH, batches=True)
    with pytest.raises(ConfigurationError, match="shorter than seq_len"):
        packed.fetch_batch(np.array([len(packed) - 1]))


def test_batches_made_in_workers_are_gathered_into_shared_memory() -> None:
    from kara_torch.dataset import _shared_tensor

    rows = _shared_tensor((3, 5), np.dtype("<i4"))
    assert rows.shape == (3, 5) and rows.dtype == torch.int32 and rows.is_shared()
    rows.numpy()[:] = np.arange(15).reshape(3, 5)  # what fetch_batch fills
    assert rows.sum().item() == 105 and all(part.is_shared() for part in rows.split(2))


def test_the_first_gathers_grow_from_one_batch(pipe_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first batch comes after gathering one batch, not VIEW_FETCH samples; the
    # batches stay the loader's.
    import kara_torch.dataset

    reference = per_sample(pipe_url, "pack", 0)
    packed_type = type(build(pipe_url, "pack"))
    gathered: list[int] = []
    original = packed_type.fetch_batch

    def recorded(self: Any, positions: np.ndarray, *args: Any) -> np.ndarray:
        gathered.append(len(positions))
        return original(self, positions, *args)

    monkeypatch.setattr(packed_type, "fetch_batch", recorded)
    monkeypatch.setattr(kara_torch.dataset, "VIEW_FETCH", 16 * BATCH)
    got = whole(pipe_url, "pack", 0)
    assert len(reference) > 1 + 8 + 16
    assert gathered[:2] == [BATCH, 8 * BATCH]
    assert set(gathered[2:-1]) == {16 * BATCH} and 0 < gathered[-1] <= 16 * BATCH
    assert sum(gathered) == len(build(pipe_url, "pack"))
    assert all(torch.equal(a, b) for a, b in zip(got, reference, strict=True))


def test_a_gathers_shared_memory_goes_with_the_first_batch_sent_only() -> None:
    # A worker's batches are rows of one shared tensor: the first batch pickled (for the
    # loader's queue) carries its storage, the next ones only their place in it.
    from multiprocessing.reduction import ForkingPickler

    from kara_torch import dataset

    rows = dataset._shared_tensor((6, 4), np.dtype("<i4"))
    rows.numpy()[:] = np.arange(24).reshape(6, 4)
    batches = dataset._GatheredRows.mark(list(rows.split(2)))
    reduced = [dataset._reduce_gathered_rows(batch) for batch in batches]
    assert [args[3] is None for _, args in reduced] == [False, True, True]
    assert [args[2] for _, args in reduced] == [False, False, True]  # the last one says so
    dataset._SENT[0] = -1  # as if those three had not been sent
    got = [ForkingPickler.loads(ForkingPickler.dumps(batch)) for batch in batches]
    assert [type(batch) for batch in got] == [torch.Tensor] * 3
    assert torch.equal(torch.cat(got), torch.arange(24, dtype=torch.int32).reshape(6, 4))
    assert got[1].untyped_storage().data_ptr() == got[0].untyped_storage().data_ptr()  # mapped once
    assert os.getpid() not in dataset._RECEIVED  # released after the last batch
    # A resumed iteration may skip a gather's first batches: the first one sent carries it.
    later = dataset._GatheredRows.mark(list(rows.split(3)))
    assert torch.equal(ForkingPickler.loads(ForkingPickler.dumps(later[1])), rows[3:])


def test_a_batch_received_before_its_gathers_memory_is_refused() -> None:
    from multiprocessing.reduction import ForkingPickler

    from kara_torch import dataset

    rows = dataset._shared_tensor((4, 2), np.dtype("<i4"))
    first, second = dataset._GatheredRows.mark(list(rows.split(2)))
    ForkingPickler.dumps(first)  # sent, but never received
    with pytest.raises(RuntimeError, match="came before that gather's shared memory"):
        ForkingPickler.loads(ForkingPickler.dumps(second))


def test_the_gathers_of_workers_shut_down_early_are_dropped(pipe_url: str) -> None:
    # A loop left early leaves its workers' current gathers unfinished: the main process
    # drops them once those workers have exited (no memory kept per abandoned loop).
    from kara_torch import dataset

    def first_batches(count: int) -> tuple[set[int], list[torch.Tensor]]:
        ds = kara_core.make_torch_dataset(build(pipe_url, "pack"), batch_size=BATCH, batches=True)
        batches = iter(DataLoader(ds, batch_size=None, num_workers=2))
        taken = [next(batches) for _ in range(count)]
        held = {pid for pid in dataset._RECEIVED if pid in {w.pid for w in batches._workers}}
        del batches  # shuts its workers down
        return held, taken

    # Two batches from each worker: its first gather (one batch) is done, its second is not.
    old, taken = first_batches(4)
    assert len(old) == 2 and old <= set(dataset._RECEIVED)
    new, again = first_batches(4)
    assert len(new) == 2 and not old & set(dataset._RECEIVED)
    assert all(torch.equal(a, b) for a, b in zip(taken, again, strict=True))


def _shm_managers() -> set[int]:
    """Process ids of the torch_shm_manager processes running now."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if b"torch_shm_manager" in cmdline.read():
                    found.add(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="lists processes through /proc")
def test_workers_start_no_torch_shm_manager(pipe_url: str) -> None:
    # Named shared memory would start one torch_shm_manager per worker (0.2-0.3 s each).
    before = _shm_managers()
    ds = kara_core.make_torch_dataset(build(pipe_url, "pack"), batch_size=BATCH, batches=True)
    seen: set[int] = set()
    count = 0
    for batch in DataLoader(ds, batch_size=None, num_workers=2):
        seen |= _shm_managers() - before
        count += len(batch)
    assert count == len(build(pipe_url, "pack")) and not seen


def test_the_loader_gets_plain_tensors_from_workers(pipe_url: str) -> None:
    got = whole(pipe_url, "pack", 2)
    assert got and {type(batch) for batch in got} == {torch.Tensor}
