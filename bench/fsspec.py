"""s3:// stores through kara-fsspec and kara-obstore against the raw s3fs calls a user would write, on moto.

moto's S3 server runs in its own process on 127.0.0.1 (``kara_fsspec.testing.s3.main``,
with a request counter). Every measured operation runs in a FRESH Python process (one per
round and workload); the table gives the median and the range (min-max) over the rounds
and the ratio of the medians (peer / kara: above 1 means kara is faster). kara-storage
2.1.5 has no S3 backend, so the peers here are s3fs's own calls on the same bytes:

- sequential read of a 200,000-record version (``small_record`` JSON, read as raw bytes
  so both sides move the same bytes) against ``fs.cat_file`` of each of its blocks;
- ``load_directory`` of the folder of bench/objects.py (2,000 files of 4-64 KiB + 4 x 64
  MiB) into an empty folder against ``fs.get(recursive=True)`` of a plain copy;
- ``save_directory`` of that folder to a new key against ``fs.put(recursive=True)``, with
  an empty hash cache (kara hashes every file; before 2026-12-07 these saves ran on the
  cache the setup's saves had filled, and hashed nothing);
- re-save and re-load of the unchanged folder against the same fsspec calls again
  (fsspec has no way to skip unchanged files);
- ``ds[i]`` read cold: server requests per record (moto's count).

What the s3fs side does: ``fs.cat_file(path)`` without a range sends a HEAD (for the
size: objects over 50 MiB would be fetched as concurrent ranges) then one GET of the
whole object, read into one bytes object; ``fs.ls`` lists each block folder. ``fs.get``
sends one GET per file; a file over 50 MiB (s3fs's default block size) is opened with
an unranged GET, which is closed at once, then fetched as concurrent ranges of 50 MiB.

Diagnostics of the same session: the server requests and the CPU seconds moto spent
on each operation, the client's CPU seconds (user + system of all its threads, from
``getrusage``, over the timed part: moto and the client share the 2 cores, so the
client's CPU decides how close to moto's a load can come); ``seq kara 8 MiB ranges`` (kara's reader as on stores without
streamed reads: 32 MiB windows of 4 concurrent 8 MiB ranged GETs); and ``load floor``,
botocore alone GETting every object of the folder 32 at a time and writing nothing
(and ``load floor: s3fs cat_file``, the same GETs, objects over 32 MiB as 32 MiB ranges,
as 32 threads calling s3fs's ``cat_file``, the client kara's load goes through). moto
answers a ranged GET by reading the whole object and slicing it (moto/s3/responses.py:
``get_object`` returns ``key.value``, then ``_handle_range_header`` cuts the range), so
on moto every ranged GET costs a read of the whole object; the setup prints the time of a
64 KiB ranged GET from a 1 MiB and from a 64 MiB object to show it.

Every sequential read and folder workload also runs through kara-obstore (kara on
obstore, the Rust object_store client; ``KARA_PLUGIN_S3`` picks the plugin in each
round's process), with its own table against the same s3fs calls. With ``--obstore``
the transfers also run as obstore's raw calls (no kara).

    .venv/bin/python bench/fsspec.py [--rounds 5] [--records 200000] [--obstore] [--workloads seq,random,folder]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

_BENCH = os.path.dirname(os.path.abspath(__file__))
# This script is named like the fsspec package: bench/ goes to the end of the path, so
# `import fsspec` finds the package (and `import common` still finds bench/common.py).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _BENCH] + [_BENCH]
ROOT = os.path.dirname(_BENCH)
RANDOM_READS = 200
KEY = "kara-bench-key"
SECRET = "kara-bench-secret-0123456789"


# -- the measured operations (each runs in a fresh process) ------------------------------


def _fs(endpoint: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint, skip_instance_cache=True)


def _store(p: dict[str, Any], prefix: str) -> Any:
    from kara_core import KaraStorage

    # The plugin that opens s3:// in this round: kara-fsspec, or kara-obstore (which would
    # win by itself where installed: it registers s3 by name, kara-fsspec is a fallback).
    os.environ["KARA_PLUGIN_S3"] = p.get("plugin", "fsspec")
    store = KaraStorage(f"s3://{p['bucket']}/{prefix}", endpoint_url=p["endpoint"], key=KEY, secret=SECRET)
    assert type(store.backend).__module__ == f"kara_{p.get('plugin', 'fsspec')}.backend"
    return store


def _blocks(fs: Any, folder: str) -> list[str]:
    return [f"{folder}/{n}.blk" for n in range(len(fs.ls(folder)))]


def task_seq_kara(p: dict[str, Any]) -> dict[str, Any]:
    store = _store(p, "rows")
    start, cpu = time.perf_counter(), _cpu()
    with store.open_dataset("bench", "rows", version="1", serialization="raw") as ds:
        total = sum(len(record) for record in ds)
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "bytes": total}


def task_seq_kara_ranges(p: dict[str, Any]) -> dict[str, Any]:
    import kara_fsspec.backend

    # Diagnostic: kara's reader as on stores without streamed reads (GCS, Azure): 32 MiB
    # windows of 4 concurrent 8 MiB ranged GETs.
    traits = kara_fsspec.backend.Traits.of
    kara_fsspec.backend.Traits.of = classmethod(  # type: ignore[method-assign]
        lambda cls, fs: (t := traits(fs)).__class__(t.kind, replace(t.capabilities, streamed_reads=False))
    )
    return task_seq_kara(p)


def task_seq_cat(p: dict[str, Any]) -> dict[str, Any]:
    fs = _fs(p["endpoint"])
    start, cpu = time.perf_counter(), _cpu()
    base = f"{p['bucket']}/rows/row/bench/rows/1"
    total = 0
    for folder in ("index", "data"):
        for block in _blocks(fs, f"{base}/{folder}"):
            total += len(fs.cat_file(block))
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "bytes": total}


def task_random_kara(p: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    store = _store(p, "rows")
    counter = p["endpoint"] + "/_kara/requests"
    with store.open_dataset("bench", "rows", version="1", serialization="raw") as ds:
        ds[0]  # the dataset's index page: opening costs are not what is counted
        picked = random.Random(p["round"]).sample(range(len(ds)), RANDOM_READS)
        urllib.request.urlopen(urllib.request.Request(counter, method="DELETE")).read()
        start = time.perf_counter()
        for i in picked:
            ds[i]
        seconds = time.perf_counter() - start
        requests = int(urllib.request.urlopen(counter).read())
    return {"seconds": seconds, "requests_per_record": requests / RANDOM_READS}


def _cpu() -> float:
    """CPU seconds (user + system, every thread) this process has used so far."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def task_load_kara(p: dict[str, Any]) -> dict[str, Any]:
    store = _store(p, p.get("prefix", "tree"))
    start, cpu = time.perf_counter(), _cpu()
    store.load_directory("bench", "tree", p["target"], progress_bar=False, workers=p.get("workers"))
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu}


def task_get_raw(p: dict[str, Any]) -> dict[str, Any]:
    fs = _fs(p["endpoint"])
    start, cpu = time.perf_counter(), _cpu()
    fs.get(f"{p['bucket']}/raw/", p["target"] + "/", recursive=True)
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu}


def task_save_kara(p: dict[str, Any]) -> dict[str, Any]:
    if p.get("cold"):
        # A first save hashes every file, as fs.put's caller would have to: its own empty
        # hash cache (a re-save keeps the bench's warm one, which the setup's saves filled).
        os.environ["KARA_CACHE_DIR"] = p["cold"]
    store = _store(p, p["prefix"])
    start, cpu = time.perf_counter(), _cpu()
    store.save_directory("bench", "tree", p["source"], progress_bar=False, pack_small_files=p.get("packs", True))
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu}


def task_get_floor(p: dict[str, Any]) -> dict[str, Any]:
    """The floor of a folder download on this server: botocore (the library under s3fs)
    lists the plain copy and GETs every object, 32 at a time, reading each body and
    writing nothing; the client is made inside the timed part, as in the other tasks."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    start, cpu = time.perf_counter(), _cpu()
    client = boto3.client(
        "s3",
        endpoint_url=p["endpoint"],
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(max_pool_connections=32),
    )
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=p["bucket"], Prefix="raw/")
        for item in page.get("Contents", [])
    ]

    def get(key: str) -> int:
        return len(client.get_object(Bucket=p["bucket"], Key=key)["Body"].read())

    with ThreadPoolExecutor(32) as pool:
        total = sum(pool.map(get, keys))
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "bytes": total}


def task_get_floor_s3fs(p: dict[str, Any]) -> dict[str, Any]:
    """The same floor through s3fs (aiobotocore), the client kara's load uses: 32 threads
    each calling ``fs.cat_file`` with a range, writing nothing; objects over 32 MiB as
    ranges of 32 MiB (kara's load streams them as such)."""
    from concurrent.futures import ThreadPoolExecutor

    start, cpu = time.perf_counter(), _cpu()
    fs = _fs(p["endpoint"])
    part = 32 << 20
    ranges = [
        (key, offset, min(offset + part, int(info["size"])))
        for key, info in fs.find(f"{p['bucket']}/raw/", detail=True).items()
        for offset in range(0, int(info["size"]), part)
    ]

    def get(item: tuple[str, int, int]) -> int:
        key, begin, end = item
        return len(fs.cat_file(key, start=begin, end=end))

    with ThreadPoolExecutor(32) as pool:
        total = sum(pool.map(get, ranges))
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu, "bytes": total}


def task_put_raw(p: dict[str, Any]) -> dict[str, Any]:
    fs = _fs(p["endpoint"])
    start, cpu = time.perf_counter(), _cpu()
    fs.put(p["source"] + "/", f"{p['bucket']}/{p['prefix']}/", recursive=True)
    return {"seconds": time.perf_counter() - start, "cpu": _cpu() - cpu}


def moto_range_cost(fs: Any, bucket: str) -> str:
    """Median time of a 64 KiB ranged GET from a 1 MiB and from a 64 MiB object (moto reads
    the whole object for each)."""
    found = []
    for mib in (1, 64):
        key = f"{bucket}/range-cost/{mib}"
        fs.pipe_file(key, os.urandom(mib << 20))
        fs.cat_file(key, start=0, end=65536)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            fs.cat_file(key, start=4096, end=4096 + 65536)
            times.append(time.perf_counter() - start)
        found.append(f"{statistics.median(times) * 1000:.1f} ms from a {mib} MiB object")
    fs.rm(f"{bucket}/range-cost", recursive=True)
    return "a 64 KiB ranged GET on moto: " + ", ".join(found)


def _obstore(p: dict[str, Any]) -> Any:
    from obstore.store import S3Store

    return S3Store(
        p["bucket"],
        endpoint=p["endpoint"],
        access_key_id=KEY,
        secret_access_key=SECRET,
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def task_seq_obstore(p: dict[str, Any]) -> dict[str, Any]:
    import obstore

    store = _obstore(p)
    start = time.perf_counter()
    base = "rows/row/bench/rows/1"
    total = 0
    for folder in ("index", "data"):
        names = sorted(
            (o["path"] for batch in obstore.list(store, f"{base}/{folder}/") for o in batch),
            key=lambda name: int(name.rsplit("/", 1)[1].split(".")[0]),
        )
        for name in names:
            total += len(obstore.get(store, name).bytes())
    return {"seconds": time.perf_counter() - start, "bytes": total}


def _bounded(jobs: list[Any]) -> float:
    """Run the coroutine functions ``jobs`` 32 at a time (as s3fs's batches); return seconds."""
    import asyncio

    async def run() -> None:
        limit = asyncio.Semaphore(32)

        async def one(job: Any) -> None:
            async with limit:
                await job()

        await asyncio.gather(*(one(job) for job in jobs))

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


def task_get_obstore(p: dict[str, Any]) -> dict[str, Any]:
    import obstore

    store = _obstore(p)

    def fetch(name: str) -> Any:
        async def job() -> None:
            data = await (await obstore.get_async(store, name)).bytes_async()
            path = os.path.join(p["target"], name[len("raw/") :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)

        return job

    start = time.perf_counter()
    names = [o["path"] for batch in obstore.list(store, "raw/") for o in batch]
    listed = time.perf_counter() - start
    return {"seconds": listed + _bounded([fetch(name) for name in names])}


def task_put_obstore(p: dict[str, Any]) -> dict[str, Any]:
    import obstore

    store = _obstore(p)

    def send(path: str) -> Any:
        async def job() -> None:
            with open(path, "rb") as fh:
                data = fh.read()
            await obstore.put_async(store, p["prefix"] + "/" + os.path.relpath(path, p["source"]), data)

        return job

    paths = [os.path.join(d, f) for d, _, files in os.walk(p["source"]) for f in files]
    return {"seconds": _bounded([send(path) for path in paths])}


def task_random_obstore(p: dict[str, Any]) -> dict[str, Any]:
    import obstore

    store = _obstore(p)
    block = "rows/row/bench/rows/1/data/0.blk"
    size = obstore.head(store, block)["size"]
    picked = random.Random(p["round"]).sample(range(size - 400), RANDOM_READS)
    start = time.perf_counter()
    for offset in picked:
        obstore.get_range(store, block, start=offset, end=offset + 300)
    return {"seconds": time.perf_counter() - start}


def task_random_s3fs(p: dict[str, Any]) -> dict[str, Any]:
    fs = _fs(p["endpoint"])
    block = f"{p['bucket']}/rows/row/bench/rows/1/data/0.blk"
    size = fs.size(block)
    picked = random.Random(p["round"]).sample(range(size - 400), RANDOM_READS)
    start = time.perf_counter()
    for offset in picked:
        fs.cat_file(block, start=offset, end=offset + 300)
    return {"seconds": time.perf_counter() - start}


TASKS = {name[len("task_") :]: fn for name, fn in globals().items() if name.startswith("task_")}
#: The workloads --workloads picks from: seq (sequential read), random (ds[i] cold),
#: folder (load, save, re-save, re-load).
WORKLOADS = ("seq", "random", "folder")


# -- the driver ------------------------------------------------------------------------------


def run_child(task: str, params: dict[str, Any], python: str = sys.executable) -> dict[str, Any]:
    """Run one measured operation in a fresh process and return what it printed."""
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--child", task],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f} [{min(times):.3f}-{max(times):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--obstore", action="store_true", help="also measure obstore's raw calls (no kara)")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(TASKS[args.child](json.loads(sys.stdin.read()))))
        return
    chosen = set(args.workloads.split(","))
    if not chosen <= set(WORKLOADS):
        parser.error(f"--workloads: unknown {sorted(chosen - set(WORKLOADS))}; choose from {','.join(WORKLOADS)}")
    folder = "folder" in chosen

    from common import remove_workdir, small_record, workdir
    from fresh import compile_sources
    from kara_fsspec.testing import S3TestServer
    from objects import make_folder

    # Each round is a fresh process: kara's modules load from .pyc files, as s3fs's do
    # (with PYTHONDONTWRITEBYTECODE=1 they would otherwise be compiled in the timed part).
    compile_sources(sys.executable)
    obstore_python = sys.executable if args.obstore else None
    work = workdir("fsspec")
    server = S3TestServer(process=True).start()
    try:
        bucket = server.create_bucket("kara-bench")
        base = {"endpoint": server.endpoint_url, "bucket": bucket}
        # The bench's own hash cache, never the user's (~/.cache/kara): warm for re-saves
        # and re-loads; each first save gets an empty one (task_save_kara).
        os.environ["KARA_CACHE_DIR"] = os.path.join(work, "cache")
        print(f"setup: {args.records} records, the folder of bench/objects.py, moto on {server.endpoint_url}")
        source = os.path.join(work, "source")
        if folder:
            make_folder(source)
        store = _store(base, "rows")
        # JSON records stored as raw bytes: kara and cat_file move the same bytes, and the
        # reader opens them with the serializer they were written with.
        with store.open_dataset("bench", "rows", "w", version="1", serialization="raw") as ds:
            ds.write_many(json.dumps(small_record(i)).encode() for i in range(args.records))
        fs = _fs(server.endpoint_url)
        print(moto_range_cost(fs, bucket), flush=True)
        reload_kara, reload_raw = os.path.join(work, "reload-kara"), os.path.join(work, "reload-raw")
        reload_obstore = os.path.join(work, "reload-obstore")
        if folder:
            _store(base, "tree").save_directory("bench", "tree", source, progress_bar=False)
            # The same folder without packs (kara before packs, and what 2.x-only tools see).
            _store(base, "tree-no-packs").save_directory(
                "bench", "tree", source, progress_bar=False, pack_small_files=False
            )
            fs.put(source + "/", f"{bucket}/raw/", recursive=True)
            run_child("load_kara", {**base, "target": reload_kara, "round": 0})
            run_child("load_kara", {**base, "target": reload_obstore, "round": 0, "plugin": "obstore"})
            run_child("get_raw", {**base, "target": reload_raw, "round": 0})

        results: dict[str, list[float]] = {}
        requests: list[float] = []
        served: dict[str, list[int]] = {}
        server_cpu: dict[str, list[float]] = {}
        client_cpu: dict[str, list[float]] = {}

        def measure(name: str, task: str, python: str = sys.executable, **extra: Any) -> dict[str, Any]:
            server.reset_requests()
            cpu = server.cpu_seconds
            out = run_child(task, {**base, **extra}, python)
            server_cpu.setdefault(name, []).append(server.cpu_seconds - cpu)
            served.setdefault(name, []).append(server.requests)
            results.setdefault(name, []).append(out["seconds"])
            if "cpu" in out:
                client_cpu.setdefault(name, []).append(out["cpu"])
            # Every measurement as it comes: an interrupted run still leaves its figures.
            print(
                f"  {name}: {out['seconds']:.3f} s, {served[name][-1]} server requests, "
                f"moto CPU {server_cpu[name][-1]:.2f} s"
                + (f", client CPU {out['cpu']:.2f} s" if "cpu" in out else "")
                + f", load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            return out

        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            if "seq" in chosen:
                measure("seq kara", "seq_kara")
                measure("seq cat_file", "seq_cat")
                measure("seq kara 8 MiB ranges", "seq_kara_ranges")
                measure("seq kara-obstore", "seq_kara", plugin="obstore")
            if "random" in chosen:
                requests.append(measure("random kara", "random_kara", round=r)["requests_per_record"])
                measure("random s3fs cat_file", "random_s3fs", round=r)
            if not folder:
                continue
            for who, task, plugin in (
                ("load kara", "load_kara", "fsspec"),
                ("load fs.get", "get_raw", "fsspec"),
                ("load kara-obstore", "load_kara", "obstore"),
            ):
                target = os.path.join(work, f"{task}-{plugin}-{r}")
                measure(who, task, target=target, plugin=plugin)
                remove_workdir(target)
            target = os.path.join(work, f"no-packs-{r}")
            measure("load kara, no packs", "load_kara", target=target, prefix="tree-no-packs")
            remove_workdir(target)
            measure("load floor: botocore GETs", "get_floor")
            measure("load floor: s3fs cat_file", "get_floor_s3fs")
            for who, task, plugin in (
                ("save kara", "save_kara", "fsspec"),
                ("save fs.put", "put_raw", "fsspec"),
                ("save kara-obstore", "save_kara", "obstore"),
            ):
                cold = os.path.join(work, f"cold-cache-{task}-{plugin}-{r}")
                measure(who, task, source=source, prefix=f"{task}-{plugin}-{r}", plugin=plugin, cold=cold)
                fs.rm(f"{bucket}/{task}-{plugin}-{r}", recursive=True)
            cold = os.path.join(work, f"cold-cache-no-packs-{r}")
            measure("save kara, no packs", "save_kara", source=source, prefix=f"no-packs-{r}", packs=False, cold=cold)
            fs.rm(f"{bucket}/no-packs-{r}", recursive=True)
            measure("resave kara", "save_kara", source=source, prefix="tree")
            measure("resave fs.put", "put_raw", source=source, prefix="raw")
            measure("resave kara-obstore", "save_kara", source=source, prefix="tree", plugin="obstore")
            measure("reload kara", "load_kara", target=reload_kara)
            measure("reload fs.get", "get_raw", target=reload_raw)
            measure("reload kara-obstore", "load_kara", target=reload_obstore, plugin="obstore")
            if obstore_python:
                measure("seq obstore", "seq_obstore", obstore_python)
                measure("random obstore get_range", "random_obstore", obstore_python, round=r)
                target = os.path.join(work, f"obstore-{r}")
                measure("load obstore", "get_obstore", obstore_python, target=target)
                remove_workdir(target)
                measure("save obstore", "put_obstore", obstore_python, source=source, prefix=f"obstore-{r}")
                fs.rm(f"{bucket}/obstore-{r}", recursive=True)
    finally:
        server.stop()
        remove_workdir(work)

    print(
        f"\nkara-fsspec on moto (127.0.0.1), {args.rounds} rounds, each a fresh process; seconds as "
        "median [min-max]; ratio = peer median / kara median. The machine is shared with other "
        "benchmarks and test runs, and moto runs on the same 2 cores: ratios from the same run are "
        "what count."
    )
    print(f"{'workload':<16} {'kara s':>22} {'peer':<22} {'peer s':>22} {'ratio':>7} {'target':>7}  ok")
    rows = [
        ("sequential read", "seq kara", "seq cat_file", 0.9),
        ("load_directory", "load kara", "load fs.get", 1.5),
        ("save_directory", "save kara", "save fs.put", 1.2),
        ("re-save", "resave kara", "resave fs.put", 5.0),
        ("re-load", "reload kara", "reload fs.get", 5.0),
        ("200 x ds[i] cold", "random kara", "random s3fs cat_file", None),
    ]
    for label, ours, theirs, target in rows:
        if ours not in results:
            continue
        ratio = statistics.median(results[theirs]) / statistics.median(results[ours])
        ok = "yes" if target is None or ratio >= target else "NO"
        goal = f"{target:.1f}x" if target else "-"
        print(
            f"{label:<16} {summary(results[ours]):>22} {theirs:<22} {summary(results[theirs]):>22} "
            f"{ratio:>6.2f}x {goal:>7}  {ok}"
        )
    print("\nkara-obstore (kara on obstore, the Rust object_store client) against the same s3fs calls:")
    for label, ours, theirs, target in (
        ("sequential read", "seq kara-obstore", "seq cat_file", 0.9),
        ("load_directory", "load kara-obstore", "load fs.get", 1.5),
        ("save_directory", "save kara-obstore", "save fs.put", 1.2),
        ("re-save", "resave kara-obstore", "resave fs.put", 5.0),
        ("re-load", "reload kara-obstore", "reload fs.get", 5.0),
    ):
        if ours not in results:
            continue
        ratio = statistics.median(results[theirs]) / statistics.median(results[ours])
        ok = "yes" if ratio >= target else "NO"
        print(
            f"{label:<16} {summary(results[ours]):>22} {theirs:<22} {summary(results[theirs]):>22} "
            f"{ratio:>6.2f}x {target:>6.1f}x  {ok}"
        )
    if requests:
        print(f"ds[i] read cold: {statistics.median(requests):.2f} server requests per record (moto's count)")
    if "seq kara 8 MiB ranges" in results:
        ranges = statistics.median(results["seq cat_file"]) / statistics.median(results["seq kara 8 MiB ranges"])
        print(
            f"diagnostic: seq kara with 8 MiB ranged GETs (no streamed reads) "
            f"{summary(results['seq kara 8 MiB ranges'])} s, {ranges:.2f}x of cat_file"
        )
    for floor, what in (
        ("load floor: botocore GETs", "botocore GETs of the folder's objects (no files written)"),
        ("load floor: s3fs cat_file", "through s3fs: 32 threads of fs.cat_file (no files written)"),
    ):
        if floor in results:
            best = statistics.median(results["load fs.get"]) / statistics.median(results[floor])
            print(f"floor {what}: {summary(results[floor])} s; a load taking only that: {best:.2f}x of fs.get")
    for what, ours, theirs in (
        ("load_directory", "load kara, no packs", "load fs.get"),
        ("save_directory", "save kara, no packs", "save fs.put"),
    ):
        if ours in results:
            ratio = statistics.median(results[theirs]) / statistics.median(results[ours])
            packed = "load kara" if what == "load_directory" else "save kara"
            cost = statistics.median(results[packed]) / statistics.median(results[ours])
            print(
                f"{what} of a version without packs: {summary(results[ours])} s, {ratio:.2f}x of {theirs}; "
                f"with packs / without: {cost:.2f}"
            )
    print(
        "server requests (median): "
        + ", ".join(f"{name} {statistics.median(counts):.0f}" for name, counts in served.items())
    )
    print(
        "moto CPU s (median): "
        + ", ".join(f"{name} {statistics.median(spent):.2f}" for name, spent in server_cpu.items())
    )
    print(
        "client CPU s, user + system of every thread in the timed part (median [min-max]): "
        + ", ".join(f"{name} {summary(spent).strip()}" for name, spent in client_cpu.items())
    )
    if obstore_python:
        print("\nobstore (Rust client) on the same transfers, against s3fs:")
        for label, ours, theirs in (
            ("sequential read", "seq obstore", "seq cat_file"),
            ("200 ranged GETs", "random obstore get_range", "random s3fs cat_file"),
            ("folder download", "load obstore", "load fs.get"),
            ("folder upload", "save obstore", "save fs.put"),
        ):
            ratio = statistics.median(results[theirs]) / statistics.median(results[ours])
            print(f"{label:<16} obstore {summary(results[ours])}  s3fs {summary(results[theirs])}  {ratio:.2f}x")
        for label, kara in (("folder download", "load kara"), ("folder upload", "save kara")):
            obstore_name = "load obstore" if "download" in label else "save obstore"
            ratio = statistics.median(results[kara]) / statistics.median(results[obstore_name])
            print(f"{label:<16} obstore vs kara-fsspec: {ratio:.2f}x")


if __name__ == "__main__":
    main()
