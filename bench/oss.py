"""oss:// stores: kara against kara-storage 2.1.5 on the OSS test server, one run.

The server (``python -m kara_oss.testing``) runs in its own process on 127.0.0.1 with
5 ms added to every request, standing in for the round trip to a real OSS endpoint.
Both libraries talk to it through oss2. It stands in for OSS's own machines but shares
this one's two cores with the client, so it is kept cheap per request (no copies of
stored objects; requests parsed by the standard library's ``http.server``) and runs with
``--derived-etags``: ETags from the CRC64 it computes anyway instead of an MD5 pass over
every uploaded byte, which on OSS runs on OSS's machines (about 0.35 s of this machine's
CPU per folder save). It still checks everything it checks in the tests (signatures,
CRC64, append positions, multipart rules); neither library looks at what an ETag is made
of, and both use the same server, so this helps both alike. Workloads: write 200,000
``small_record`` JSON records (one ``write`` per record), read them all in order, 2,000
random ``ds[i]``; save the folder of bench/objects.py (2,000 files of 4-64 KiB + 4 x 64
MiB) and load it into an empty folder. The random reads are timed in ``RANDOM_ROUNDS``
rounds that alternate between the libraries (each round opens the dataset afresh, so
kara's page cache starts cold every time); the table shows the best round of each.

The scratch folder gets ext4's top-directory hint (``chattr +T``), so that the folders
made in it (the source, each library's load target) are placed in block groups of their
own. This VM's ext4 has no journal; there, ext4 will not reuse an inode freed in the
last one to six minutes and scans past every such inode on each file creation. The
benchmarks several people run here delete tens of thousands of files in bench/.work
every few minutes, which made each file a load creates cost about 0.5 ms of kernel time
(measured: the 2,000 small files of the load take 1.5 s next to recently deleted
folders, 1.0-1.2 s in a fresh block group). That cost comes from this machine's history,
not from loading a folder (a journaled ext4 never makes that check); both libraries
load into folders placed the same way.

    .venv/bin/python bench/oss.py          (scripts/bench oss)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from typing import TYPE_CHECKING

# Import the other bench modules from bench/, but after the standard library: a bench
# script named like a stdlib module (bench/http.py) must not shadow it.
_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH] + [_BENCH]

from common import k215_python, print_table, remove_workdir, run_k215, small_record, timer, workdir  # noqa: E402
from objects import BIG_FILES, SMALL_FILES, make_folder  # noqa: E402

if TYPE_CHECKING:
    from kara_core import KaraStorage

RECORDS = 200_000
RANDOM_READS = 2_000
RANDOM_ROUNDS = 3
LATENCY = 0.005

K215_CODE = """
import kara_storage

def small_record(i):
    return {"id": i, "text": "sample text number %d " % i * 4, "tokens": list(range(i % 32))}

store = kara_storage.KaraStorage(PARAMS["url"], app_key=PARAMS["app_key"], app_secret=PARAMS["app_secret"])
records = [small_record(i) for i in range(PARAMS["records"])]
times = {}
t = time.perf_counter()
ds = store.open_dataset("bench", "small", "w", version="1")
for rec in records:
    ds.write(rec)
ds.close()
times["write"] = time.perf_counter() - t

t = time.perf_counter()
ds = store.open_dataset("bench", "small", "r", version="1")
n = sum(1 for _ in ds)
ds.close()
times["read"] = time.perf_counter() - t
assert n == len(records), n

ds = store.open_dataset("bench", "small", "r", version="1")
t = time.perf_counter()
for i in PARAMS["indices"]:
    assert ds[i]["id"] == i
times["random"] = time.perf_counter() - t
ds.close()

t = time.perf_counter()
store.save_directory("bench", "dir", PARAMS["src"], progress_bar=False)
times["save"] = time.perf_counter() - t
t = time.perf_counter()
store.load_directory("bench", "dir", PARAMS["dst"], progress_bar=False)
times["load"] = time.perf_counter() - t
print(json.dumps(times))
"""

K215_RANDOM_CODE = """
import kara_storage

store = kara_storage.KaraStorage(PARAMS["url"], app_key=PARAMS["app_key"], app_secret=PARAMS["app_secret"])
ds = store.open_dataset("bench", "small", "r", version="1")
t = time.perf_counter()
for i in PARAMS["indices"]:
    assert ds[i]["id"] == i
elapsed = time.perf_counter() - t
ds.close()
print(json.dumps({"random": elapsed}))
"""


def ensure_k215_oss2() -> None:
    """2.1.5 imports oss2 only for oss:// stores; install it into its environment if absent."""
    python = k215_python()
    if subprocess.run([python, "-c", "import oss2"], capture_output=True, check=False).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "-q", "oss2==2.19.1"], check=True)


def start_server() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the OSS test server in its own process; return it and its connection info."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kara_oss.testing", "--latency", str(LATENCY), "--derived-etags"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def kara_store(info: dict[str, str]) -> KaraStorage:
    """kara's store on the test server."""
    from kara_core import KaraStorage

    return KaraStorage(info["url"] + "/kara", app_key=info["app_key"], app_secret=info["app_secret"])


def kara_random(store: KaraStorage, indices: list[int]) -> float:
    """Seconds for the random ``ds[i]`` reads on a freshly opened dataset."""
    with store.open_dataset("bench", "small", version="1") as ds:
        started = time.perf_counter()
        for i in indices:
            assert ds[i]["id"] == i
        return time.perf_counter() - started


def run_kara(info: dict[str, str], indices: list[int], src: str, dst: str) -> dict[str, float]:
    """Time every workload with kara."""
    store = kara_store(info)
    records = [small_record(i) for i in range(RECORDS)]
    times: dict[str, float] = {}
    with timer(times, "write"):
        with store.open_dataset("bench", "small", "w", version="1") as ds:
            for rec in records:
                ds.write(rec)
    with timer(times, "read"):
        with store.open_dataset("bench", "small", version="1") as ds:
            n = sum(1 for _ in ds)
    assert n == RECORDS, n
    times["random"] = kara_random(store, indices)
    with timer(times, "save"):
        store.save_directory("bench", "dir", src, progress_bar=False)
    with timer(times, "load"):
        store.load_directory("bench", "dir", dst, progress_bar=False)
    store.close()
    return times


def main() -> None:
    """Run both libraries against one server process and print the table."""
    ensure_k215_oss2()
    work = workdir("oss")
    proc, info = start_server()
    try:
        src = os.path.join(work, "src")
        make_folder(src)
        os.environ["KARA_CACHE_DIR"] = os.path.join(work, "cache")
        rng = random.Random(7)
        indices = [rng.randrange(RECORDS) for _ in range(RANDOM_READS)]
        started = time.perf_counter()
        ours = run_kara(info, indices, src, os.path.join(work, "kara-dst"))
        print(f"kara done in {time.perf_counter() - started:.1f} s", flush=True)
        params = {
            "url": info["url"] + "/k215",
            "app_key": info["app_key"],
            "app_secret": info["app_secret"],
            "records": RECORDS,
            "indices": indices,
            "src": src,
            "dst": os.path.join(work, "k215-dst"),
        }
        theirs = run_k215(K215_CODE, params)
        store = kara_store(info)
        for _ in range(RANDOM_ROUNDS - 1):
            ours["random"] = min(ours["random"], kara_random(store, indices))
            theirs["random"] = min(theirs["random"], run_k215(K215_RANDOM_CODE, params)["random"])
        store.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        remove_workdir(work)
    print_table(
        f"oss:// on the OSS test server, {LATENCY * 1000:g} ms per request: kara vs kara-storage 2.1.5",
        [
            (f"write {RECORDS:,} records", ours["write"], theirs["write"], 1.2),
            ("sequential read (iterate all)", ours["read"], theirs["read"], 1.5),
            (f"random ds[i] x {RANDOM_READS:,} (best of {RANDOM_ROUNDS})", ours["random"], theirs["random"], 3.0),
            (f"save folder ({SMALL_FILES} small + {BIG_FILES} x 64 MiB)", ours["save"], theirs["save"], 3.0),
            ("load it into an empty folder", ours["load"], theirs["load"], 3.0),
        ],
    )


if __name__ == "__main__":
    main()
