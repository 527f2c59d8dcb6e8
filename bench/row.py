"""Row datasets: kara against kara-storage 2.1.5 on a file:// store, same workloads, one run.

Small records: 200,000 ``common.small_record(i)`` JSON records. Timed: writing them with
one ``write`` per record, writing them with kara's ``write_many`` (2.1.5 has none: its
time is its per-record write), reading them all in order, and 20,000 random ``ds[i]``.

Large records: 1,024 records of 1 MiB (raw bytes), written and read back, against plain
Python file I/O of the same bytes (one ``write``/``read`` per record, fsync before close
as kara's file backend does). 2.1.5 is shown for information.

kara's file backend fsyncs on flush/close (and when taking its writer lock and updating
meta.json); 2.1.5 never fsyncs. The small-record workloads are therefore timed twice:
with the default store, and with ``fsync=False`` (the same durability as 2.1.5).

Each time is the best of ``REPEAT`` rounds; the rounds alternate between kara, plain
I/O and 2.1.5 so that load from elsewhere on the machine slows them alike, and every
timed write starts after ``os.sync()`` so that no contender pays for another's dirty pages.

    .venv/bin/python bench/row.py
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_table, remove_workdir, run_k215, small_record, workdir

RECORDS = 200_000
RANDOM_READS = 20_000
BIG_RECORDS = 1024
BIG_SIZE = 1024 * 1024
REPEAT = 5

K215_CODE = """
import random, shutil, os
import kara_storage
from kara_storage.serialization import NoSerializer

def small_record(i):
    return {"id": i, "text": "sample text number %d " % i * 4, "tokens": list(range(i % 32))}

times = {}
records = [small_record(i) for i in range(PARAMS["records"])]
indices = PARAMS["indices"]
best = {}
for run in range(2):  # the first run warms the fresh interpreter up, as kara's earlier rounds do
    root = os.path.join(PARAMS["root"], "k215")
    store = kara_storage.KaraStorage("file://" + root)
    os.sync()
    t = time.perf_counter()
    ds = store.open_dataset("bench", "small", "w", version="1")
    for rec in records:
        ds.write(rec)
    ds.close()
    best["write"] = min(best.get("write", 1e9), time.perf_counter() - t)

    t = time.perf_counter()
    ds = store.open_dataset("bench", "small", "r")
    n = sum(1 for _ in ds)
    ds.close()
    best["read"] = min(best.get("read", 1e9), time.perf_counter() - t)
    assert n == len(records)

    ds = store.open_dataset("bench", "small", "r")
    t = time.perf_counter()
    for i in indices:
        ds[i]
    best["random"] = min(best.get("random", 1e9), time.perf_counter() - t)
    ds.close()

    blob = os.urandom(PARAMS["big_size"])
    os.sync()
    t = time.perf_counter()
    ds = store.open_dataset("bench", "big", "w", version="1", serialization=NoSerializer())
    for _ in range(PARAMS["big_records"]):
        ds.write(blob)
    ds.close()
    best["big_write"] = min(best.get("big_write", 1e9), time.perf_counter() - t)
    t = time.perf_counter()
    ds = store.open_dataset("bench", "big", "r", serialization=NoSerializer())
    total = sum(len(r) for r in ds)
    ds.close()
    best["big_read"] = min(best.get("big_read", 1e9), time.perf_counter() - t)
    assert total == PARAMS["big_size"] * PARAMS["big_records"]
    shutil.rmtree(root)
print(json.dumps(best))
"""


def kara_round(root: str, records: list[dict], indices: list[int], fsync: bool) -> dict[str, float]:
    """Time every workload once with kara; ``fsync`` is the file store option."""
    from kara_core import KaraStorage

    times: dict[str, float] = {}
    path = os.path.join(root, "kara")
    store = KaraStorage("file://" + path, fsync=fsync)
    os.sync()  # nobody's dirty pages (an earlier contender's) slow this one's writes down
    t = time.perf_counter()
    with store.open_dataset("bench", "small", "w", version="1") as ds:
        for rec in records:
            ds.write(rec)
    times["write"] = time.perf_counter() - t

    os.sync()
    t = time.perf_counter()
    with store.open_dataset("bench", "many", "w", version="1") as ds:
        ds.write_many(records)
    times["write_many"] = time.perf_counter() - t

    t = time.perf_counter()
    with store.open_dataset("bench", "small") as ds:
        n = sum(1 for _ in ds)
    times["read"] = time.perf_counter() - t
    assert n == RECORDS

    with store.open_dataset("bench", "small") as ds:
        t = time.perf_counter()
        for i in indices:
            ds[i]
        times["random"] = time.perf_counter() - t

    blob = os.urandom(BIG_SIZE)
    os.sync()
    t = time.perf_counter()
    with store.open_dataset("bench", "big", "w", version="1", serialization="raw") as ds:
        for _ in range(BIG_RECORDS):
            ds.write(blob)
    times["big_write"] = time.perf_counter() - t
    t = time.perf_counter()
    with store.open_dataset("bench", "big", serialization="raw") as ds:
        total = sum(len(r) for r in ds)
    times["big_read"] = time.perf_counter() - t
    assert total == BIG_SIZE * BIG_RECORDS
    store.close()
    shutil.rmtree(path)
    return times


def plain_round(root: str) -> dict[str, float]:
    """Time plain Python file I/O of the 1 MiB records once."""
    times: dict[str, float] = {}
    path = os.path.join(root, "plain.bin")
    blob = os.urandom(BIG_SIZE)
    os.sync()
    t = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(BIG_RECORDS):
            fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    times["big_write"] = time.perf_counter() - t
    t = time.perf_counter()
    total = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(BIG_SIZE):
            total += len(chunk)
    times["big_read"] = time.perf_counter() - t
    assert total == BIG_SIZE * BIG_RECORDS
    os.unlink(path)
    return times


def _keep_best(best: dict[str, float], times: dict[str, float]) -> None:
    for name, seconds in times.items():
        best[name] = min(best.get(name, float("inf")), seconds)


def main() -> None:
    """Run kara, plain file I/O and kara-storage 2.1.5 in turns and print the tables."""
    root = workdir("row")
    rng = random.Random(7)
    indices = [rng.randrange(RECORDS) for _ in range(RANDOM_READS)]
    records = [small_record(i) for i in range(RECORDS)]
    params = {"root": root, "records": RECORDS, "indices": indices, "big_records": BIG_RECORDS, "big_size": BIG_SIZE}
    ours: dict[str, float] = {}
    nosync: dict[str, float] = {}
    plain: dict[str, float] = {}
    theirs: dict[str, float] = {}
    try:
        # Rounds alternate between the contenders so that a busy machine slows them alike.
        for _ in range(REPEAT):
            _keep_best(ours, kara_round(root, records, indices, fsync=True))
            _keep_best(plain, plain_round(root))
            _keep_best(theirs, run_k215(K215_CODE, params))
            _keep_best(nosync, kara_round(root, records, indices, fsync=False))
    finally:
        remove_workdir(root)
    for label, kara in (("kara default: fsync on flush/close", ours), ("kara fsync=False, like 2.1.5", nosync)):
        print_table(
            f"{RECORDS:,} small JSON records, file://, best of {REPEAT}: {label} vs kara-storage 2.1.5 (never fsyncs)",
            [
                ("write (one write() per record)", kara["write"], theirs["write"], 1.5),
                ("write_many (2.1.5: one write() per record)", kara["write_many"], theirs["write"], 3.0),
                ("sequential read (iterate all)", kara["read"], theirs["read"], 2.0),
                (f"random ds[i] x {RANDOM_READS:,}", kara["random"], theirs["random"], 10.0),
            ],
        )
    print_table(
        f"{BIG_RECORDS} records of 1 MiB, both fsync before close: kara vs PLAIN PYTHON FILE I/O "
        "(the '2.1.5 s' column is plain I/O)",
        [
            ("1 MiB records: write", ours["big_write"], plain["big_write"], 0.8),
            ("1 MiB records: read", ours["big_read"], plain["big_read"], 0.8),
        ],
    )
    print_table(
        f"{BIG_RECORDS} records of 1 MiB: kara (fsync on / off) vs kara-storage 2.1.5 (information)",
        [
            ("1 MiB records: write, kara fsync on", ours["big_write"], theirs["big_write"], None),
            ("1 MiB records: write, kara fsync=False", nosync["big_write"], theirs["big_write"], None),
            ("1 MiB records: read", ours["big_read"], theirs["big_read"], None),
        ],
    )


if __name__ == "__main__":
    main()
