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
MiB) and load it into an empty folder. Every round of each library is a fresh interpreter
(bench/fresh.py) writing under a prefix of its own, the libraries alternating.

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

    .venv/bin/python bench/oss.py [ROUNDS]          (scripts/bench oss)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from typing import Any

# Import the other bench modules from bench/, but after the standard library: a bench
# script named like a stdlib module (bench/http.py) must not shadow it.
_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH] + [_BENCH]

from common import k215_python, remove_workdir, small_record, workdir  # noqa: E402
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table  # noqa: E402
from objects import BIG_FILES, SMALL_FILES, make_folder  # noqa: E402

RECORDS = 200_000
RANDOM_READS = 2_000
LATENCY = 0.005


def _steps(store: Any, params: dict[str, Any], clock: Clock, dst: str) -> None:
    records = [small_record(i) for i in range(RECORDS)]
    with clock.step("write"):
        ds = store.open_dataset("bench", "small", "w", version="1")
        for rec in records:
            ds.write(rec)
        ds.close()
    with clock.step("read"):
        ds = store.open_dataset("bench", "small", "r", version="1")
        n = sum(1 for _ in ds)
        ds.close()
    assert n == RECORDS, n
    ds = store.open_dataset("bench", "small", "r", version="1")
    with clock.step("random"):
        for i in params["indices"]:
            assert ds[i]["id"] == i
    ds.close()
    with clock.step("save"):
        if os.environ.get("KARA_BENCH_NO_PACKS") == "1":  # kara before packs (docs/objects.md)
            store.save_directory("bench", "dir", params["src"], progress_bar=False, pack_small_files=False)
        else:
            store.save_directory("bench", "dir", params["src"], progress_bar=False)
    os.makedirs(dst, exist_ok=True)
    with clock.step("load"):
        store.load_directory("bench", "dir", dst, progress_bar=False)


def _prefix(params: dict[str, Any], library: str) -> str:
    # Every round writes under a prefix of its own: a fresh dataset and folder version.
    return f"{params['url']}/{library}-{os.getpid()}"


def kara_steps(params: dict[str, Any], clock: Clock) -> None:
    """kara: write, read, random ds[i], folder save and load on the OSS test server."""
    from kara_core import KaraStorage

    os.environ["KARA_CACHE_DIR"] = tempfile.mkdtemp(prefix="cache-", dir=params["work"])
    url = _prefix(params, "kara")
    store = KaraStorage(url, app_key=params["app_key"], app_secret=params["app_secret"])
    _steps(store, params, clock, tempfile.mkdtemp(prefix="kara-dst-", dir=params["work"]))
    store.close()


def k215_steps(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: the same steps."""
    import kara_storage

    store = kara_storage.KaraStorage(
        _prefix(params, "k215"), app_key=params["app_key"], app_secret=params["app_secret"]
    )
    _steps(store, params, clock, tempfile.mkdtemp(prefix="k215-dst-", dir=params["work"]))


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


CONTENDERS = [
    Contender("kara", sys.executable, {"steps": "kara_steps"}),
    Contender("2.1.5", k215_python(), {"steps": "k215_steps"}),
    # The same kara saving without packs: what packs cost a save and save a load, same run.
    Contender("kara, no packs", sys.executable, {"steps": "kara_steps"}, {"KARA_BENCH_NO_PACKS": "1"}),
]


def main() -> None:
    """Run both libraries against one server process, in fresh processes, and print the table."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    ensure_k215_oss2()
    work = workdir("oss")
    proc, info = start_server()
    try:
        src = os.path.join(work, "src")
        make_folder(src)
        rng = random.Random(7)
        indices = [rng.randrange(RECORDS) for _ in range(RANDOM_READS)]
        params = {**info, "indices": indices, "src": src, "work": work}
        results = measure("oss", CONTENDERS, params, rounds)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        remove_workdir(work)
    print_table(
        f"oss:// on the OSS test server, {LATENCY * 1000:g} ms per request: kara vs kara-storage 2.1.5",
        results,
        [
            Row(f"write {RECORDS:,} records", "steps", "write", 1.2),
            Row("sequential read (iterate all)", "steps", "read", 1.5),
            Row(f"random ds[i] x {RANDOM_READS:,}", "steps", "random", 3.0),
            Row(f"save folder ({SMALL_FILES} small + {BIG_FILES} x 64 MiB)", "steps", "save", 3.0),
            Row("load it into an empty folder", "steps", "load", 3.0),
        ],
        ["kara", "kara, no packs", "2.1.5"],
        "2.1.5",
    )


if __name__ == "__main__":
    main()
