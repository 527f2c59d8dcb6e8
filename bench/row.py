"""Row datasets: kara against kara-storage 2.1.5 on a file:// store, fresh processes.

Small records: 200,000 ``common.small_record(i)`` JSON records. Timed: writing them with
one ``write`` per record, writing them with kara's ``write_many`` (2.1.5 has none: its
time is its per-record write), reading them all in order, and 20,000 random ``ds[i]``.

Large records: 1,024 records of 1 MiB (raw bytes), written and read back, against plain
Python file I/O of the same bytes (one ``write``/``read`` per record, fsync before close
as kara's file backend does). 2.1.5 is shown for information.

kara's file backend fsyncs on flush/close (and when taking its writer lock and updating
meta.json); 2.1.5 never fsyncs. The writes are therefore timed twice for kara: with the
default store, and with ``fsync=False`` (the same durability as 2.1.5).

Every round of every contender is a new interpreter (bench/fresh.py): the records are
built, then the one timed workload runs, as in a user's script. Reads use one store
written by kara beforehand (2.x layout: 2.1.5 reads the same files). Every timed write
starts after ``os.sync()`` so that no contender pays for another's dirty pages.

    .venv/bin/python bench/row.py [ROUNDS] [WORKLOAD,...]

``WORKLOAD``: some of write, write_many, read, random, big (default: all).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, small_record, workdir
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table

RECORDS = 200_000
RANDOM_READS = 20_000
BIG_RECORDS = 1024
BIG_SIZE = 1024 * 1024


def _fsync() -> bool:
    return os.environ.get("BENCH_FSYNC", "1") == "1"


def _kara_store(url: str) -> Any:
    from kara_core import KaraStorage

    return KaraStorage(url, fsync=_fsync())


def _k215_store(url: str) -> Any:
    import kara_storage

    return kara_storage.KaraStorage(url)


def _scratch(params: dict[str, Any]) -> str:
    return tempfile.mkdtemp(prefix="w-", dir=params["root"])


def _write(open_store: Any, params: dict[str, Any], clock: Clock, many: bool) -> None:
    records = [small_record(i) for i in range(params["records"])]
    path = _scratch(params)
    store = open_store("file://" + path)
    os.sync()
    with clock.step("write"):
        ds = store.open_dataset("bench", "small", "w", version="1")
        if many:
            ds.write_many(records)
        else:
            for rec in records:
                ds.write(rec)
        ds.close()
    shutil.rmtree(path)


def kara_write(params: dict[str, Any], clock: Clock) -> None:
    """kara: one ``write`` per record."""
    _write(_kara_store, params, clock, many=False)


def kara_write_many(params: dict[str, Any], clock: Clock) -> None:
    """kara: one ``write_many`` of every record."""
    _write(_kara_store, params, clock, many=True)


def k215_write(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: one ``write`` per record."""
    _write(_k215_store, params, clock, many=False)


def _read(open_store: Any, params: dict[str, Any], clock: Clock) -> None:
    store = open_store(params["url"])
    with clock.step("read"):
        ds = store.open_dataset("bench", "small", "r")
        n = sum(1 for _ in ds)
        ds.close()
    assert n == params["records"], n


def kara_read(params: dict[str, Any], clock: Clock) -> None:
    """kara: iterate every record in order."""
    _read(_kara_store, params, clock)


def k215_read(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: iterate every record in order."""
    _read(_k215_store, params, clock)


def _random(open_store: Any, params: dict[str, Any], clock: Clock) -> None:
    store = open_store(params["url"])
    ds = store.open_dataset("bench", "small", "r")
    with clock.step("random"):
        for i in params["indices"]:
            ds[i]
    ds.close()


def kara_random(params: dict[str, Any], clock: Clock) -> None:
    """kara: random ``ds[i]`` (opened before the clock starts)."""
    _random(_kara_store, params, clock)


def k215_random(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: random ``ds[i]`` (opened before the clock starts)."""
    _random(_k215_store, params, clock)


def _big(open_store: Any, params: dict[str, Any], clock: Clock, raw: Any) -> None:
    blob = os.urandom(params["big_size"])
    path = _scratch(params)
    store = open_store("file://" + path)
    os.sync()
    with clock.step("big_write"):
        ds = store.open_dataset("bench", "big", "w", version="1", serialization=raw)
        for _ in range(params["big_records"]):
            ds.write(blob)
        ds.close()
    with clock.step("big_read"):
        ds = store.open_dataset("bench", "big", "r", serialization=raw)
        total = sum(len(r) for r in ds)
        ds.close()
    assert total == params["big_size"] * params["big_records"]
    shutil.rmtree(path)


def kara_big(params: dict[str, Any], clock: Clock) -> None:
    """kara: 1 MiB raw records written then read."""
    _big(_kara_store, params, clock, "raw")


def k215_big(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: 1 MiB raw records written then read."""
    from kara_storage.serialization import NoSerializer

    _big(_k215_store, params, clock, NoSerializer())


def plain_big(params: dict[str, Any], clock: Clock) -> None:
    """Plain Python file I/O of the same 1 MiB records (fsync before close)."""
    path = os.path.join(_scratch(params), "plain.bin")
    blob = os.urandom(params["big_size"])
    os.sync()
    with clock.step("big_write"), open(path, "wb") as fh:
        for _ in range(params["big_records"]):
            fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    total = 0
    with clock.step("big_read"), open(path, "rb") as fh:
        while chunk := fh.read(params["big_size"]):
            total += len(chunk)
    assert total == params["big_size"] * params["big_records"]
    shutil.rmtree(os.path.dirname(path))


CONTENDERS = [
    Contender(
        "kara",
        sys.executable,
        {
            "write": "kara_write",
            "write_many": "kara_write_many",
            "read": "kara_read",
            "random": "kara_random",
            "big": "kara_big",
        },
    ),
    Contender(
        "kara nofsync", sys.executable, {"write": "kara_write", "write_many": "kara_write_many"}, {"BENCH_FSYNC": "0"}
    ),
    Contender(
        "2.1.5", k215_python(), {"write": "k215_write", "read": "k215_read", "random": "k215_random", "big": "k215_big"}
    ),
    Contender("plain I/O", sys.executable, {"big": "plain_big"}),
]


def main() -> None:
    """Prepare the read store, run every contender in fresh processes, print the tables."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    workloads = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    known = {w for c in CONTENDERS for w in c.functions}
    if workloads is not None and not set(workloads) <= known:
        raise SystemExit(f"unknown workloads {sorted(set(workloads) - known)}: choose from {sorted(known)}")
    root = workdir("row")
    try:
        url = "file://" + os.path.join(root, "store")
        store = _kara_store(url)
        with store.open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        rng = random.Random(7)
        params = {
            "root": root,
            "url": url,
            "records": RECORDS,
            "indices": [rng.randrange(RECORDS) for _ in range(RANDOM_READS)],
            "big_records": BIG_RECORDS,
            "big_size": BIG_SIZE,
        }
        results = measure("row", CONTENDERS, params, rounds, in_process=3, workloads=workloads)
    finally:
        remove_workdir(root)
    names = [c.name for c in CONTENDERS]
    print_table(
        f"{RECORDS:,} small JSON records, file:// (kara default fsyncs on close; 'kara nofsync' and 2.1.5 never do)",
        results,
        [
            Row("write (one write() per record)", "write", "write", 1.5),
            Row("write_many (2.1.5: one write() per record)", "write_many", "write", 3.0, "write"),
            Row("sequential read (iterate all)", "read", "read", 2.0),
            Row(f"random ds[i] x {RANDOM_READS:,}", "random", "random", 10.0),
        ],
        names[:3],
        "2.1.5",
    )
    if workloads is not None and "big" not in workloads:
        return
    print_table(
        f"{BIG_RECORDS} records of 1 MiB, kara and plain I/O fsync before close: against PLAIN PYTHON FILE I/O",
        results,
        [Row("write", "big", "big_write", 0.8), Row("read", "big", "big_read", 0.8)],
        ["kara", "plain I/O"],
        "plain I/O",
    )
    print_table(
        f"{BIG_RECORDS} records of 1 MiB: kara vs kara-storage 2.1.5 (information)",
        results,
        [Row("write", "big", "big_write"), Row("read", "big", "big_read")],
        ["kara", "2.1.5"],
        "2.1.5",
    )


if __name__ == "__main__":
    main()
