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

Per sample at 0 workers, more contenders bound what a library can gain there: LitData
(``litdata.StreamingDataset(shuffle=True)`` over the same records written with
``litdata.optimize``, in its own virtualenv ``.venv-litdata``; skipped if absent), and the
**floor**: an ``IterableDataset`` yielding the same records, already decoded and shuffled,
from a Python list built in the shuffled order (consecutive samples are neighbours in
memory, as freshly decoded ones are). "scattered" is the same list built in record order
and then shuffled (the floor before 2026-12-06): its samples lie far apart in memory and
cost the loader 0.07-0.67 s an epoch more to walk (three runs on 2026-12-06). Torch's
own per-sample work (the loader's fetcher, ``default_convert`` of each sample, its
profiling hooks) is all the floor's DataLoader time, so ``2.1.5 / floor`` estimates the
highest per-sample ratio any library can reach against 2.1.5 in that run (an estimate:
where the samples lie in memory moves it, bench/per_sample_floor.py).

Then the scaling check that workers are worth having: with a transform costing about
200 us of CPU per sample (run inside the workers), kara with 2 workers against kara with
none, on the first 20,000 records.

Every round of every contender is a new interpreter (bench/fresh.py).

    .venv/bin/python bench/torch_loader.py [ROUNDS] [WORKLOAD,...] [--before DIR]

``WORKLOAD``: some of batches_0, batches_2, samples_0, samples_2, own, transform (default:
all; a whole run holds the machine for about ten minutes). ``--before DIR`` adds kara
from another source tree (e.g. main exported with ``git archive``) as the contender
"kara --before", taking turns with the others on the kara workloads, and prints this
tree against it (an A/B in the same run).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, small_record, workdir
from fresh import ROUNDS, Clock, Contender, Rounds, Row, measure, print_table, run_once

RECORDS = 200_000
BATCH = 64
TRANSFORM_RECORDS = 20_000
TRANSFORM_SECONDS = 200e-6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LITDATA_PYTHON = os.environ.get("KARA_LITDATA_PYTHON") or os.path.join(ROOT, ".venv-litdata", "bin", "python")


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


def _litdata_sample(i: int) -> dict[str, Any]:
    return small_record(i)


def litdata_write(params: dict[str, Any], clock: Clock) -> None:
    """LitData: write the records with ``litdata.optimize`` (set up, not timed for a table)."""
    import litdata

    with clock.step("write"):
        # num_workers=1: more workers do not start on this machine (bench/peers.py).
        litdata.optimize(
            fn=_litdata_sample,
            inputs=list(range(params["records"])),
            output_dir=params["litdata_dir"],
            chunk_bytes="64MB",
            num_workers=1,
        )


def _litdata_dataset(params: dict[str, Any], **kwargs: Any) -> Any:
    import litdata

    return litdata.StreamingDataset(params["litdata_dir"], shuffle=True)


def _floor_dataset(params: dict[str, Any], **kwargs: Any) -> Any:
    # The records decoded and shuffled beforehand (built outside the clock, see floor_*).
    from torch.utils.data import IterableDataset

    class ListStream(IterableDataset):  # type: ignore[type-arg]
        def __init__(self, samples: list[Any]) -> None:
            self.samples = samples

        def __iter__(self) -> Any:
            return iter(self.samples)

    return ListStream(params["floor_samples"])


def _with_floor_samples(params: dict[str, Any], scattered: bool = False) -> dict[str, Any]:
    import random

    order = list(range(params["records"]))
    random.Random(0).shuffle(order)
    if scattered:
        # Built in record order, then shuffled: consecutive samples lie far apart in
        # memory, so walking them (default_convert) misses the CPU caches.
        built = [small_record(i) for i in range(params["records"])]
        samples = [built[i] for i in order]
    else:
        # Built in the shuffled order: each sample lies next to the previous one, as the
        # samples a library decodes just before yielding them do (the least work).
        samples = [small_record(i) for i in order]
    return {**params, "floor_samples": samples}


def floor_samples_0(params: dict[str, Any], clock: Clock) -> None:
    """Floor: DataLoader(batch_size=None) over a list-backed IterableDataset of decoded records."""
    _epoch(_floor_dataset, _with_floor_samples(params), clock, 0, False)


def floor_own(params: dict[str, Any], clock: Clock) -> None:
    """Floor: the list-backed IterableDataset iterated without a DataLoader."""
    _own(_floor_dataset, _with_floor_samples(params), clock)


def scattered_samples_0(params: dict[str, Any], clock: Clock) -> None:
    """The floor's records built in record order then shuffled (the floor before 2026-12-06)."""
    _epoch(_floor_dataset, _with_floor_samples(params, scattered=True), clock, 0, False)


def scattered_own(params: dict[str, Any], clock: Clock) -> None:
    """The scattered floor iterated without a DataLoader."""
    _own(_floor_dataset, _with_floor_samples(params, scattered=True), clock)


def litdata_samples_0(params: dict[str, Any], clock: Clock) -> None:
    """LitData: DataLoader(batch_size=None) over its StreamingDataset, shuffle on."""
    _epoch(_litdata_dataset, params, clock, 0, False)


def litdata_own(params: dict[str, Any], clock: Clock) -> None:
    """LitData: its StreamingDataset (shuffle on) iterated without a DataLoader."""
    _own(_litdata_dataset, params, clock)


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
#: Per sample at 0 workers: the same run measures LitData and the floor beside kara and 2.1.5.
PER_SAMPLE = [
    Contender("LitData", LITDATA_PYTHON, {"samples_0": "litdata_samples_0", "own": "litdata_own"}),
    Contender("floor", sys.executable, {"samples_0": "floor_samples_0", "own": "floor_own"}),
    Contender("scattered", sys.executable, {"samples_0": "scattered_samples_0", "own": "scattered_own"}),
]
TRANSFORM = [
    Contender("kara 2 workers", sys.executable, {"transform": "kara_transform_2"}),
    Contender("kara 0 workers", sys.executable, {"transform": "kara_transform_0"}),
]


def _before(tree: str) -> Contender:
    """kara from the source tree ``tree``, byte-compiled first (as fresh.py does for this one)."""
    plugins = sorted(glob.glob(os.path.join(tree, "plugins", "*")))
    paths = [tree, *plugins, os.path.join(tree, "examples", "kara_memory")]
    sources = [os.path.join(tree, "kara_core"), os.path.join(tree, "plugins"), paths[-1]]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *sources], check=True, capture_output=True)
    env = {"PYTHONPATH": os.pathsep.join(paths)}
    return Contender("kara --before", sys.executable, {w: f"kara_{w}" for w in _WORKLOADS}, env)


def main() -> None:
    """Write the store, time kara and kara-storage 2.1.5 in fresh processes, print the tables."""
    from kara_core import KaraStorage

    args = sys.argv[1:]
    before = None
    if "--before" in args:
        at = args.index("--before")
        before = _before(os.path.abspath(args[at + 1]))
        del args[at : at + 2]
    rounds = int(args[0]) if args else ROUNDS
    chosen = args[1].split(",") if len(args) > 1 else [*_WORKLOADS, "transform"]
    unknown = set(chosen) - {*_WORKLOADS, "transform"}
    if unknown:
        raise SystemExit(f"unknown workloads {sorted(unknown)}: choose from {[*_WORKLOADS, 'transform']}")
    workloads = [w for w in _WORKLOADS if w in chosen]
    root = workdir("torch_loader")
    url = "file://" + os.path.join(root, "store")
    try:
        with KaraStorage(url).open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        params: dict[str, Any] = {"url": url, "records": RECORDS}
        contenders = list(CONTENDERS) + [c for c in PER_SAMPLE if os.path.exists(c.python)]
        if before is not None:
            contenders.insert(1, before)
        if any(c.name == "LitData" for c in contenders) and {"samples_0", "own"} & set(workloads):
            params["litdata_dir"] = os.path.join(root, "litdata")
            run_once("torch_loader", "litdata_write", LITDATA_PYTHON, params)
        results = measure("torch_loader", contenders, params, rounds, workloads=workloads) if workloads else {}
        scaling = measure("torch_loader", TRANSFORM, params, rounds) if "transform" in chosen else {}
    finally:
        remove_workdir(root)
    if results:
        print_results(results)
    if scaling:
        print_scaling(scaling)


def print_results(results: dict[tuple[str, str], Rounds]) -> None:
    """The DataLoader table (kara against 2.1.5), then the per-sample one."""
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
    if any(name == "kara --before" for name, _ in results):
        print_table(
            "This tree against kara --before (ratio above 1: this tree is faster)",
            results,
            [Row(workload, workload, "epoch") for workload in _WORKLOADS if ("kara", workload) in results],
            ["kara --before", "kara"],
            "kara --before",
        )
    if ("kara", "samples_0") in results and ("kara", "own") in results:
        print_per_sample(results)


def print_scaling(scaling: dict[tuple[str, str], Rounds]) -> None:
    """kara with 2 workers against kara with none, on a costly transform."""
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


def print_per_sample(results: dict[tuple[str, str], Rounds]) -> None:
    """Per sample at 0 workers: each library alone, through the DataLoader, and the floor."""
    contenders = ("kara", "2.1.5", "LitData", "floor", "scattered")
    names = [n for n in contenders if (n, "samples_0") in results and (n, "own") in results]
    print(f"\nPer sample (batch_size=None), 0 workers, {RECORDS:,} records: medians, in seconds and us per sample")
    print(f"  {'':<10}{'alone (no DataLoader)':>26}{'through DataLoader':>26}{'DataLoader share':>20}")

    def us(seconds: float) -> float:
        return seconds / RECORDS * 1e6

    for name in names:
        own, loader = results[name, "own"].median("epoch"), results[name, "samples_0"].median("epoch")
        print(
            f"  {name:<10}{own:>12.3f} s {us(own):>7.2f} us{loader:>12.3f} s {us(loader):>7.2f} us"
            f"{us(loader - own):>14.2f} us"
        )
    base, kara = results["2.1.5", "samples_0"].median("epoch"), results["kara", "samples_0"].median("epoch")
    print(f"  kara vs 2.1.5 per sample: {base / kara:.2f}x (target 1.2x)")
    if ("LitData", "samples_0") in results:
        litdata = results["LitData", "samples_0"].median("epoch")
        print(f"  kara vs LitData per sample: {litdata / kara:.2f}x (target: above 1)")
    if ("floor", "samples_0") in results:
        floor = results["floor", "samples_0"].median("epoch")
        print(f"  highest ratio against 2.1.5 any library can reach (2.1.5 / floor, estimated): {base / floor:.2f}x")
        print(f"  kara's time above the floor: {us(kara - floor):.2f} us per sample")


if __name__ == "__main__":
    main()
