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

Each time is the best of ``REPEAT`` runs; the store is created anew for each write.

    .venv/bin/python bench/row.py
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_table, run_k215, small_record, workdir

RECORDS = 200_000
RANDOM_READS = 20_000
BIG_RECORDS = 1024
BIG_SIZE = 1024 * 1024
REPEAT = 3

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
for run in range(PARAMS["repeat"]):
    root = os.path.join(PARAMS["root"], "k215-%d" % run)
    store = kara_storage.KaraStorage("file://" + root)
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


def _best(results: dict[str, float], name: str, seconds: float) -> None:
    results[name] = min(results.get(name, float("inf")), seconds)


def run_kara(root: str, indices: list[int], fsync: bool) -> dict[str, float]:
    """Time every workload with kara (best of REPEAT); ``fsync`` is the file store option."""
    from kara_core import KaraStorage

    records = [small_record(i) for i in range(RECORDS)]
    best: dict[str, float] = {}
    for run in range(REPEAT):
        store = KaraStorage("file://" + os.path.join(root, f"kara-{run}"), fsync=fsync)
        t = time.perf_counter()
        with store.open_dataset("bench", "small", "w", version="1") as ds:
            for rec in records:
                ds.write(rec)
        _best(best, "write", time.perf_counter() - t)

        t = time.perf_counter()
        with store.open_dataset("bench", "many", "w", version="1") as ds:
            ds.write_many(records)
        _best(best, "write_many", time.perf_counter() - t)

        t = time.perf_counter()
        with store.open_dataset("bench", "small") as ds:
            n = sum(1 for _ in ds)
        _best(best, "read", time.perf_counter() - t)
        assert n == RECORDS

        with store.open_dataset("bench", "small") as ds:
            t = time.perf_counter()
            for i in indices:
                ds[i]
            _best(best, "random", time.perf_counter() - t)

        blob = os.urandom(BIG_SIZE)
        t = time.perf_counter()
        with store.open_dataset("bench", "big", "w", version="1", serialization="raw") as ds:
            for _ in range(BIG_RECORDS):
                ds.write(blob)
        _best(best, "big_write", time.perf_counter() - t)
        t = time.perf_counter()
        with store.open_dataset("bench", "big", serialization="raw") as ds:
            total = sum(len(r) for r in ds)
        _best(best, "big_read", time.perf_counter() - t)
        assert total == BIG_SIZE * BIG_RECORDS
        store.close()
        shutil.rmtree(os.path.join(root, f"kara-{run}"))
    return best


def run_plain(root: str) -> dict[str, float]:
    """Time plain Python file I/O of the 1 MiB records (best of REPEAT)."""
    best: dict[str, float] = {}
    path = os.path.join(root, "plain.bin")
    for _ in range(REPEAT):
        blob = os.urandom(BIG_SIZE)
        t = time.perf_counter()
        with open(path, "wb") as fh:
            for _ in range(BIG_RECORDS):
                fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        _best(best, "big_write", time.perf_counter() - t)
        t = time.perf_counter()
        total = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(BIG_SIZE):
                total += len(chunk)
        _best(best, "big_read", time.perf_counter() - t)
        assert total == BIG_SIZE * BIG_RECORDS
        os.unlink(path)
    return best


def main() -> None:
    """Run kara, plain file I/O and kara-storage 2.1.5 and print the tables."""
    root = workdir("row")
    try:
        rng = random.Random(7)
        indices = [rng.randrange(RECORDS) for _ in range(RANDOM_READS)]
        ours = run_kara(root, indices, fsync=True)
        nosync = run_kara(root, indices, fsync=False)
        plain = run_plain(root)
        params = {
            "root": root,
            "records": RECORDS,
            "indices": indices,
            "repeat": REPEAT,
            "big_records": BIG_RECORDS,
            "big_size": BIG_SIZE,
        }
        theirs = run_k215(K215_CODE, params)
    finally:
        shutil.rmtree(root, ignore_errors=True)
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
