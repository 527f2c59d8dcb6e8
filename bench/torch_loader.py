"""The PyTorch pipeline: kara-torch against kara-storage 2.1.5, same store, one run.

200,000 ``common.small_record(i)`` JSON records in a file:// store written by kara (the
2.x layout, so 2.1.5 reads the same files). One shuffled epoch through a DataLoader with
``batch_size=64`` and a collate function returning the list of samples (``list``), with
``num_workers`` 0 and 2, for both. 2.1.5 needs torch in its own virtualenv:
``.venv-k215/bin/pip install torch==2.13.0`` (``scripts/bench`` does it).

Then the scaling check that workers are worth having: with a transform costing about
200 us of CPU per sample (run inside the workers), kara with 2 workers against kara with
none, on the first 20,000 records (the rate is what counts; 200,000 would take a minute).

Each time is the best of a few rounds; rounds alternate kara and 2.1.5.

    .venv/bin/python bench/torch_loader.py
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import print_table, remove_workdir, run_k215, small_record, workdir  # noqa: E402

# bench/ has modules named like standard ones (http.py, which torch's import of
# urllib.request would pick up): keep the folder off the import path from here on.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH]

RECORDS = 200_000
BATCH = 64
#: Rounds per number of workers (the 2-worker 2.1.5 epoch alone takes about 20 s).
ROUNDS = {0: 5, 2: 2}
TRANSFORM_RECORDS = 20_000
TRANSFORM_SECONDS = 200e-6
TRANSFORM_ROUNDS = 3

K215_CODE = """
import kara_storage
from torch.utils.data import DataLoader

storage = kara_storage.KaraStorage(PARAMS["url"])
ds = storage.open_dataset("bench", "small", "r", version="1")
t = time.perf_counter()
torch_ds = kara_storage.make_torch_dataset(ds, shuffle=True)
loader = DataLoader(torch_ds, batch_size=PARAMS["batch"], num_workers=PARAMS["workers"], collate_fn=list)
n = sum(len(batch) for batch in loader)
seconds = time.perf_counter() - t
assert n == PARAMS["records"], n
print(json.dumps(seconds))
"""


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


def epoch_seconds(url: str, workers: int, **kwargs: Any) -> float:
    """Time of one shuffled epoch through a DataLoader with ``workers`` workers.

    The clock starts before ``make_torch_dataset``: 2.1.5 fills its shuffle buffer there.
    """
    from torch.utils.data import DataLoader

    import kara_core

    with kara_core.KaraStorage(url).open_dataset("bench", "small") as rows:
        t = time.perf_counter()
        ds = kara_core.make_torch_dataset(rows, shuffle=True, batch_size=BATCH, **kwargs)
        loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=list)
        n = sum(len(batch) for batch in loader)
        seconds = time.perf_counter() - t
    assert n == len(ds), (n, len(ds))
    return seconds


def main() -> None:
    """Write the store, time kara and kara-storage 2.1.5, print the tables."""
    from kara_core import KaraStorage

    root = workdir("torch_loader")
    url = "file://" + os.path.join(root, "store")
    try:
        with KaraStorage(url).open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        # Rounds alternate kara and 2.1.5 so that load from other processes on the
        # machine hits both alike; each keeps its best round.
        ours: dict[int, float] = {}
        theirs: dict[int, float] = {}
        transform: dict[int, float] = {}
        for workers, rounds in ROUNDS.items():
            params = {"url": url, "batch": BATCH, "records": RECORDS, "workers": workers}
            for _ in range(rounds):
                ours[workers] = min(ours.get(workers, float("inf")), epoch_seconds(url, workers))
                theirs[workers] = min(theirs.get(workers, float("inf")), run_k215(K215_CODE, params))
        calibrate()
        cpu: dict[int, tuple[float, float]] = {}
        for _ in range(TRANSFORM_ROUNDS):
            for workers in (0, 2):
                before = os.times()
                seconds = epoch_seconds(url, workers, end=TRANSFORM_RECORDS, transform=busy_transform)
                after = os.times()
                if seconds < transform.get(workers, float("inf")):
                    transform[workers] = seconds
                    cpu[workers] = (
                        after.user + after.system - before.user - before.system,
                        after.children_user + after.children_system - before.children_user - before.children_system,
                    )
    finally:
        remove_workdir(root)
    print_table(
        f"DataLoader over {RECORDS:,} small records, shuffle=True, batch_size={BATCH} (file://, best round)",
        [
            (f"num_workers=0 (best of {ROUNDS[0]})", ours[0], theirs[0], 1.5),
            (f"num_workers=2 (best of {ROUNDS[2]})", ours[2], theirs[2], 10.0),
        ],
    )
    print_table(
        f"Transform of ~200 us CPU per sample, {TRANSFORM_RECORDS:,} records (best of {TRANSFORM_ROUNDS}): "
        "kara 2 workers vs KARA 0 WORKERS (the '2.1.5 s' column is kara with num_workers=0)",
        [("kara num_workers=2 vs num_workers=0", transform[2], transform[0], 1.6)],
    )
    # Wall time can only halve if two cores are free; the CPU seconds show what the
    # workers cost, whatever else the machine is running.
    print(
        f"CPU seconds of those runs: num_workers=0 {cpu[0][0]:.2f}; num_workers=2 main process "
        f"{cpu[2][0]:.2f} + workers {cpu[2][1]:.2f}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
