"""Scale: versions of 1M, 10M and 100M tiny records on a file:// store, fresh processes.

Records are JSON integers (``0``, ``1``, ... : 1-9 bytes each, 8 more in the index).
For each size, every round a new interpreter:

- ``write_many``: the time to write the whole version (fsync on close, the default);
- open: ``open_dataset`` of the version;
- ``ds[i]``: mean latency of 10,000 random reads of an open dataset;
- ``make_torch_dataset(shuffle=True)`` with a DataLoader of 2 workers (``batch_size=64``,
  ``collate_fn=list``): the time from ``make_torch_dataset`` to the first batch, and the
  private memory of each worker after 200 batches: USS (``Private_Clean +
  Private_Dirty`` of ``/proc/PID/smaps_rollup``, which counts the pages of mapped data
  files only this worker touched) and its anonymous memory (``Anonymous``, what the
  worker allocated itself). Target: first batch under 1 s and a worker's memory
  independent of the number of records.

Sizes run in the order given; 100M needs about 2 GB of disk and minutes per write:

    .venv/bin/python bench/scale.py [ROUNDS] [SIZES...]     (default: 5 1000000 10000000)
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import remove_workdir, workdir
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table, run_once

RANDOM_READS = 10_000
BATCH = 64
#: Batches taken before the workers' memory is read.
BATCHES_BEFORE_MEMORY = 200


def kara_write(params: dict[str, Any], clock: Clock) -> None:
    """Write ``params['records']`` JSON integers with one ``write_many``."""
    from kara_core import KaraStorage

    path = tempfile.mkdtemp(prefix="w-", dir=params["root"])
    store = KaraStorage("file://" + path)
    os.sync()
    with clock.step("write"), store.open_dataset("bench", "tiny", "w", version="1") as ds:
        ds.write_many(range(params["records"]))
    clock.record("store", path)
    if not params.get("keep"):
        shutil.rmtree(path)


def _memory(pid: int) -> tuple[float, float]:
    """(USS, anonymous) MiB of process ``pid``, from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return uss / 1024, fields.get("Anonymous", 0) / 1024


def kara_read(params: dict[str, Any], clock: Clock) -> None:
    """Open, random ``ds[i]``, then a shuffled 2-worker DataLoader: first batch and memory."""
    from torch.utils.data import DataLoader

    from kara_core import KaraStorage, make_torch_dataset

    store = KaraStorage("file://" + params["store"])
    with clock.step("open"):
        rows = store.open_dataset("bench", "tiny")
    n = len(rows)
    assert n == params["records"], n
    indices = random.Random(3).choices(range(n), k=RANDOM_READS)
    with clock.step("random"):
        for i in indices:
            rows[i]
    assert [rows[i] for i in indices[:100]] == indices[:100]
    with clock.step("first_batch"):
        ds = make_torch_dataset(rows, shuffle=True, batch_size=BATCH)
        loader = iter(DataLoader(ds, batch_size=BATCH, num_workers=2, collate_fn=list))
        first = next(loader)
    assert len(first) == BATCH and all(0 <= x < n for x in first)
    for _ in range(BATCHES_BEFORE_MEMORY):
        next(loader)
    memory = [_memory(worker.pid) for worker in loader._workers]  # type: ignore[attr-defined]
    clock.record("worker_uss_mib", [round(uss, 1) for uss, _ in memory])
    clock.record("worker_anon_mib", [round(anon, 1) for _, anon in memory])
    del loader
    rows.close()


CONTENDERS = [Contender("kara", sys.executable, {"write": "kara_write", "read": "kara_read"})]


def main() -> None:
    """Run every size (write rounds, then read rounds on the first written store) and print."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    sizes = [int(arg) for arg in sys.argv[2:]] or [1_000_000, 10_000_000]
    summary = []
    for records in sizes:
        root = workdir(f"scale-{records}")
        try:
            params: dict[str, Any] = {"root": root, "records": records}
            started = time.perf_counter()
            writes = measure("scale", CONTENDERS, params, rounds, workloads=["write"])
            print(f"{records:,} records: write rounds took {time.perf_counter() - started:.0f} s", flush=True)
            # Every write round removed its store: one more, kept, is what the reads open.

            kept = run_once("scale", "kara_write", sys.executable, {**params, "keep": True})
            params["store"] = kept["extra"]["store"]
            reads = measure("scale", CONTENDERS, params, rounds, workloads=["read"])
        finally:
            remove_workdir(root)
        results = {**writes, **reads}
        print_table(
            f"{records:,} tiny records (JSON integers), file://",
            results,
            [
                Row("write_many, whole version", "write", "write"),
                Row("open_dataset", "read", "open"),
                Row(f"random ds[i] x {RANDOM_READS:,}", "read", "random"),
                Row("make_torch_dataset(shuffle=True) -> first batch, 2 workers", "read", "first_batch"),
            ],
            ["kara"],
            "kara",
        )
        runs = reads["kara", "read"].runs
        uss = [max(run["extra"]["worker_uss_mib"]) for run in runs]
        anon = [max(run["extra"]["worker_anon_mib"]) for run in runs]
        print(f"  worker private memory after {BATCHES_BEFORE_MEMORY} batches: USS {uss} MiB, anonymous {anon} MiB")
        write_times = writes["kara", "write"].values("write")
        read_rounds = reads["kara", "read"]
        summary.append(
            (
                records,
                sorted(write_times)[len(write_times) // 2],
                read_rounds.median("open"),
                read_rounds.median("random") / RANDOM_READS * 1e6,
                read_rounds.median("first_batch"),
                sorted(uss)[len(uss) // 2],
                sorted(anon)[len(anon) // 2],
            )
        )
    print("\nside by side (medians):")
    header = ("records", "write_many s", "open ms", "ds[i] us", "1st batch s", "worker USS MiB", "anon MiB")
    print(" ".join(f"{name:>14}" for name in header))
    for records, write, opened, latency, first, uss_mib, anon_mib in summary:
        cells = (f"{records:,}", f"{write:.2f}", f"{opened * 1000:.1f}", f"{latency:.1f}", f"{first:.3f}")
        print(" ".join(f"{cell:>14}" for cell in (*cells, f"{uss_mib:.1f}", f"{anon_mib:.1f}")))


if __name__ == "__main__":
    main()
