"""The PyTorch pipeline: kara-torch against kara-storage 2.1.5, same store, fresh processes.

200,000 ``common.small_record(i)`` JSON records in a file:// store written by kara (the
2.x layout, so 2.1.5 reads the same files). One shuffled epoch through a DataLoader:

- batches: ``batch_size=64`` and a collate function returning the list of samples;
- per sample: ``DataLoader(ds, batch_size=None)``, samples one at a time (the loader
  then runs torch's ``default_convert`` on each sample);
- own path: the dataset iterated without a DataLoader (what each library costs itself).

each with ``num_workers`` 0 and 2, for both libraries. 2.1.5 needs torch in its own
virtualenv (``scripts/bench`` installs it). The clock starts before
``make_torch_dataset`` (2.1.5 fills its shuffle buffer there).

Then the scaling check that workers are worth having: with a transform costing about
200 us of CPU per sample (run inside the workers), kara with 2 workers against kara with
none, on the first 20,000 records.

Every round of every contender is a new interpreter (bench/fresh.py).

    .venv/bin/python bench/torch_loader.py [ROUNDS]
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, small_record, workdir
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table

RECORDS = 200_000
BATCH = 64
TRANSFORM_RECORDS = 20_000
TRANSFORM_SECONDS = 200e-6


def _kara_dataset(params: dict[str, Any], **kwargs: Any) -> Any:
    import kara_core

    rows = kara_core.KaraStorage(params["url"]).open_dataset("bench", "small")
    return kara_core.make_torch_dataset(rows, shuffle=True, **kwargs)


def _k215_dataset(params: dict[str, Any], **kwargs: Any) -> Any:
    import kara_storage

    rows = kara_storage.KaraStorage(params["url"]).open_dataset("bench", "small", "r", version="1")
    return kara_storage.make_torch_dataset(rows, shuffle=True)


def _epoch(make: Any, params: dict[str, Any], clock: Clock, workers: int, batched: bool) -> None:
    from torch.utils.data import DataLoader

    with clock.step("epoch"):
        if batched:
            ds = make(params, batch_size=BATCH)
            loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=list)
            n = sum(len(batch) for batch in loader)
        else:
            ds = make(params)
            n = sum(1 for _ in DataLoader(ds, batch_size=None, num_workers=workers))
    assert n == params["records"], n


def _own(make: Any, params: dict[str, Any], clock: Clock) -> None:
    import torch  # noqa: F401  (imported before the clock, as the DataLoader rows do)

    with clock.step("epoch"):
        n = sum(1 for _ in make(params))
    assert n == params["records"], n


_DATASETS = {"kara": _kara_dataset, "k215": _k215_dataset}


def __getattr__(name: str) -> Any:
    """The epoch workloads, named ``LIBRARY_KIND_WORKERS``: ``kara_batches_2``, ``k215_samples_0``...

    ``batches``: batch_size=64 with collate_fn=list; ``samples``: batch_size=None.
    """
    library, _, rest = name.partition("_")
    kind, _, workers = rest.partition("_")
    if library not in _DATASETS or kind not in ("batches", "samples") or not workers.isdigit():
        raise AttributeError(name)

    def workload(params: dict[str, Any], clock: Clock) -> None:
        _epoch(_DATASETS[library], params, clock, int(workers), kind == "batches")

    return workload


def kara_own(params: dict[str, Any], clock: Clock) -> None:
    """kara: the torch dataset iterated without a DataLoader."""
    _own(_kara_dataset, params, clock)


def k215_own(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: the torch dataset iterated without a DataLoader."""
    _own(_k215_dataset, params, clock)


#: Loop iterations worth TRANSFORM_SECONDS of CPU, set by calibrate() (forked workers inherit it).
WORK_LOOPS = 0


def calibrate() -> None:
    """Find how many loop iterations take TRANSFORM_SECONDS of CPU time on this machine.

    The transform does a fixed amount of work, not "spin until 200 us have passed": on a
    busy machine a clock-based spin would finish early whenever the process is preempted.
    """
    global WORK_LOOPS
    loops = 100_000
    spent = float("inf")
    for _ in range(5):
        t = time.process_time()
        for _ in range(loops):
            pass
        spent = min(spent, time.process_time() - t)
    WORK_LOOPS = max(1, round(loops * TRANSFORM_SECONDS / spent))


def busy_transform(sample: dict[str, Any]) -> dict[str, Any]:
    """A per-sample transform costing about 200 us of CPU (as decoding or augmenting would)."""
    for _ in range(WORK_LOOPS):
        pass
    return sample


def _transform(params: dict[str, Any], clock: Clock, workers: int) -> None:
    from torch.utils.data import DataLoader

    calibrate()
    before = os.times()
    with clock.step("epoch"):
        ds = _kara_dataset(params, batch_size=BATCH, end=TRANSFORM_RECORDS, transform=busy_transform)
        n = sum(len(batch) for batch in DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=list))
    after = os.times()
    assert n == TRANSFORM_RECORDS, n
    clock.record("main_cpu", after.user + after.system - before.user - before.system)
    clock.record(
        "workers_cpu", after.children_user + after.children_system - before.children_user - before.children_system
    )


def kara_transform_0(params: dict[str, Any], clock: Clock) -> None:
    """kara: a 200 us transform per sample, no workers."""
    _transform(params, clock, 0)


def kara_transform_2(params: dict[str, Any], clock: Clock) -> None:
    """kara: a 200 us transform per sample, 2 workers."""
    _transform(params, clock, 2)


_WORKLOADS = ("batches_0", "batches_2", "samples_0", "samples_2", "own")
CONTENDERS = [
    Contender("kara", sys.executable, {w: f"kara_{w}" for w in _WORKLOADS}),
    Contender("2.1.5", k215_python(), {w: f"k215_{w}" for w in _WORKLOADS}),
]
TRANSFORM = [
    Contender("kara 2 workers", sys.executable, {"transform": "kara_transform_2"}),
    Contender("kara 0 workers", sys.executable, {"transform": "kara_transform_0"}),
]


def main() -> None:
    """Write the store, time kara and kara-storage 2.1.5 in fresh processes, print the tables."""
    from kara_core import KaraStorage

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    root = workdir("torch_loader")
    url = "file://" + os.path.join(root, "store")
    try:
        with KaraStorage(url).open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        params = {"url": url, "records": RECORDS}
        results = measure("torch_loader", CONTENDERS, params, rounds)
        scaling = measure("torch_loader", TRANSFORM, params, rounds)
    finally:
        remove_workdir(root)
    print_table(
        f"DataLoader over {RECORDS:,} small records, shuffle=True, one epoch (file://)",
        results,
        [
            Row(f"batch_size={BATCH}, collate_fn=list, num_workers=0", "batches_0", "epoch", 1.5),
            Row(f"batch_size={BATCH}, collate_fn=list, num_workers=2", "batches_2", "epoch", 10.0),
            Row("batch_size=None (per sample), num_workers=0", "samples_0", "epoch", 1.2),
            Row("batch_size=None (per sample), num_workers=2", "samples_2", "epoch", 1.0),
            Row("no DataLoader: iterating the dataset itself", "own", "epoch"),
        ],
        ["kara", "2.1.5"],
        "2.1.5",
    )
    print_table(
        f"Transform of ~200 us CPU per sample, {TRANSFORM_RECORDS:,} records: kara 2 workers vs KARA 0 WORKERS",
        scaling,
        [Row("kara num_workers=2 vs num_workers=0", "transform", "epoch", 1.6)],
        ["kara 2 workers", "kara 0 workers"],
        "kara 0 workers",
    )
    two = scaling["kara 2 workers", "transform"].runs[0]["extra"]
    zero = scaling["kara 0 workers", "transform"].runs[0]["extra"]
    # Wall time can only halve if two cores are free; the CPU seconds show what the
    # workers cost, whatever else the machine is running.
    print(
        f"CPU seconds (first round): num_workers=0 {zero['main_cpu']:.2f}; num_workers=2 main process "
        f"{two['main_cpu']:.2f} + workers {two['workers_cpu']:.2f}"
    )


if __name__ == "__main__":
    main()
