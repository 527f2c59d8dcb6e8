"""HTTP mirrors: kara against kara-storage 2.1.5 reading the same static server, one run.

A file:// store is written with kara: the 200,000-record dataset of bench/row.py
(``common.small_record``) and the folder of bench/objects.py (2,000 files of 4-64 KiB and
4 files of 64 MiB) saved as a directory version. A static web server with Range support
(``kara_http.testing``, in its own process) serves that folder on 127.0.0.1 and adds
5 ms to every request, like a server a few network hops away. Both libraries then read it
over HTTP: the dataset in order, 2,000 random ``ds[i]`` (same indices), and a load of the
folder into an empty directory. Times are the best of ``REPEAT`` rounds, alternating
between the two libraries.

The server stands in for nginx or a CDN on another machine, whose CPU per request is
tens of microseconds; here it shares 2 cores with the client it serves (it is the
standard library's threaded ``http.server`` with sendfile: see ``kara_http.testing``).
Both libraries read the same server in the same run, so the comparison is fair.

    .venv/bin/python bench/http.py
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

# This file shares its name with the standard library's ``http`` package: keep bench/
# behind the standard library on sys.path, or ``import requests`` would import this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

from common import print_table, remove_workdir, run_k215, small_record, workdir  # noqa: E402
from objects import make_folder  # noqa: E402

RECORDS = 200_000
RANDOM_READS = 2_000
LATENCY = 0.005
#: Rounds per library (best kept): the sequential row, 0.2-0.4 s on 2 cores shared with
#: the server, varies by 20% from round to round.
REPEAT = 3
#: kara's load_directory(workers=...) for the informational row (2.1.5 has no such knob).
FOLDER_WORKERS = 32

K215_CODE = """
import os, shutil
import kara_storage
store = kara_storage.KaraStorage(PARAMS["url"])
times = {}
t = time.perf_counter()
ds = store.open_dataset("bench", "small", "r")
n = sum(1 for _ in ds)
ds.close()
times["sequential"] = time.perf_counter() - t
assert n == PARAMS["records"], n
ds = store.open_dataset("bench", "small", "r")
t = time.perf_counter()
for i in PARAMS["indices"]:
    ds[i]
times["random"] = time.perf_counter() - t
ds.close()
shutil.rmtree(PARAMS["dst"], ignore_errors=True)
os.makedirs(PARAMS["dst"])
t = time.perf_counter()
store.load_directory("bench", "dir", PARAMS["dst"], progress_bar=False)
times["folder"] = time.perf_counter() - t
print(json.dumps(times))
"""


def prepare(store_dir: str, src: str) -> None:
    """Write the dataset and save the folder into a file:// store with kara."""
    from kara_core import KaraStorage

    store = KaraStorage("file://" + store_dir, fsync=False)
    with store.open_dataset("bench", "small", "w", version="1") as ds:
        ds.write_many(small_record(i) for i in range(RECORDS))
    make_folder(src)
    store.save_directory("bench", "dir", src, progress_bar=False)


def kara_round(url: str, indices: list[int], dst: str) -> dict[str, float]:
    """Time the three workloads with kara over HTTP."""
    from kara_core import KaraStorage

    store = KaraStorage(url)
    times: dict[str, float] = {}
    start = time.perf_counter()
    with store.open_dataset("bench", "small") as ds:
        count = sum(1 for _ in ds)
    times["sequential"] = time.perf_counter() - start
    assert count == RECORDS, count
    with store.open_dataset("bench", "small") as ds:
        start = time.perf_counter()
        for i in indices:
            ds[i]
        times["random"] = time.perf_counter() - start
    shutil.rmtree(dst, ignore_errors=True)
    start = time.perf_counter()
    store.load_directory("bench", "dir", dst, progress_bar=False)
    times["folder"] = time.perf_counter() - start
    shutil.rmtree(dst, ignore_errors=True)
    start = time.perf_counter()
    store.load_directory("bench", "dir", dst, progress_bar=False, workers=FOLDER_WORKERS)
    times["folder-workers"] = time.perf_counter() - start
    store.close()
    return times


def start_server(root: str) -> tuple[subprocess.Popen[str], str]:
    """Run the static server in its own process (so it never competes for our GIL)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "kara_http.testing", root, "--latency", str(LATENCY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def load_target_root(work: str) -> str:
    """Where the folder loads write: tmpfs when there is one, so both libraries are timed
    on the transfer rather than on this machine's disk (``cp -r`` of the folder alone
    takes seconds on a busy virtual disk)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return tempfile.mkdtemp(prefix="kara-bench-http-", dir="/dev/shm")
    return work


def main() -> None:
    """Prepare the store, serve it, run both libraries and print the table."""
    work = workdir("http")
    targets = load_target_root(work)
    server = None
    try:
        store_dir = os.path.join(work, "store")
        prepare(store_dir, os.path.join(work, "src"))
        os.environ["KARA_CACHE_DIR"] = os.path.join(work, "cache")
        server, url = start_server(store_dir)
        indices = random.Random(5).choices(range(RECORDS), k=RANDOM_READS)
        best: dict[str, dict[str, float]] = {"kara": {}, "k215": {}}
        for _ in range(REPEAT):
            ours = kara_round(url, indices, os.path.join(targets, "kara-dst"))
            params = {"url": url, "records": RECORDS, "indices": indices, "dst": os.path.join(targets, "k215-dst")}
            theirs = run_k215(K215_CODE, params)
            for side, times in (("kara", ours), ("k215", theirs)):
                for name, seconds in times.items():
                    best[side][name] = min(best[side].get(name, float("inf")), seconds)
        ms = int(LATENCY * 1000)
        where = " (tmpfs)" if targets != work else ""
        print_table(
            f"HTTP static mirror on 127.0.0.1, +{ms} ms per request (best of {REPEAT})",
            [
                (f"sequential read, {RECORDS:,} records", best["kara"]["sequential"], best["k215"]["sequential"], 1.5),
                (f"random ds[i], {RANDOM_READS:,} reads", best["kara"]["random"], best["k215"]["random"], 3.0),
                (f"folder load, 2,000 small + 4 x 64 MiB{where}", best["kara"]["folder"], best["k215"]["folder"], 3.0),
                (
                    f"  same, kara with workers={FOLDER_WORKERS}",
                    best["kara"]["folder-workers"],
                    best["k215"]["folder"],
                    None,
                ),
            ],
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        remove_workdir(work)
        shutil.rmtree(targets, ignore_errors=True)


if __name__ == "__main__":
    main()
