"""Distributed checkpoints: kara's DCP storage against torch's FileSystemWriter/Reader.

Workload: a state dict of ``TENSORS`` float32 tensors, ``TOTAL`` bytes in all (1 GiB by
default), sharded by rows over 2 ranks (DTensor on a gloo group, as FSDP2 holds it), a
file:// store and a local folder on the same disk. In each round, every step runs in a
FRESH 2-rank process group (new processes), after ``os.sync()``:

- ``kara save``: ``dcp.save`` with ``KaraWriter`` into a fresh store (a new version);
- ``kara re-save, half unchanged``: the next generation, where half the tensors are
  unchanged (only the other half is uploaded);
- ``FileSystemWriter``: ``dcp.save`` into a local folder (no versions, no dedup);
- ``FileSystemWriter + save_directory``: the two-step way (the folder above, then
  ``save_directory`` of it by rank 0, cold hash cache);
- ``kara load`` and ``FileSystemReader load``: ``dcp.load`` of the first generation on 2
  ranks.

Durability is the same on both sides: ``FileSystemWriter(sync_files=True)`` (torch's
default, passed explicitly) fsyncs every file it writes before ``dcp.save`` returns, and
the file:// store (``fsync=True``, its default) makes every blob durable (``syncfs``)
before the version is published.

Times are wall times of rank 0 between barriers around the operation. Reported: median
and range (min-max) over the rounds, and the ratios of the medians. kara-storage 2.1.5
has no distributed-checkpoint storage; its only way is the two-step one (its
``save_directory`` after ``FileSystemWriter``), shown as an extra row.

Also reported: rank 0's CPU seconds (user + system) of each step, and the CPU floor of
a first kara save measured in the same round: md5 + sha1 of the rank's bytes in one
pass (what the 2.x blob names require, timed alone after the save, both ranks at once)
plus the system time FileSystemWriter spends writing the same bytes (the copy into the
page cache and the writeback that any writer pays). ``--profile DIR`` writes a cProfile
of every step of every rank and the wall seconds of each phase (planning, serializing,
hashing, writing, commit, publish; :data:`PHASES`) to DIR. ``--lock FILE`` holds an
flock on FILE during each round only (machines shared by several benchmarks).

``--kara-only`` runs only kara's saves, each in a fresh process group: the first save,
then re-saves with half, none and all of the tensors changed (:data:`KARA_CASES`); the
one with nothing changed measures the fixed costs of a save plus the comparisons.
``--spans DIR`` (with ``--kara-only``) records when each phase of each rank ran
(:data:`SPANS`: DCP's planning and gathers, kara's hooks, lease, commit, publish) on
the system-wide monotonic clock and prints the medians and one round's timeline of both
ranks, so waits of one rank for the other show.

    .venv/bin/python bench/checkpoints.py [--rounds 5] [--total-mib 1024] [--lock FILE] [--profile DIR]
    .venv/bin/python bench/checkpoints.py --kara-only [--spans DIR] [--rounds 5] [--total-mib 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import k215_python, remove_workdir, run_k215, workdir  # noqa: E402
from fresh import compile_sources  # noqa: E402

# bench/ has modules named like standard ones (http.py, which torch's import of
# urllib.request would pick up): keep the folder off the import path from here on.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH]

TENSORS = 200


def _local_dtensors(total: int, generation: int, mesh: Any, empty: bool, changed: str = "half") -> dict[str, Any]:
    """The state of ``generation``: odd tensors change from one generation to the next,
    even ones stay (``changed="half"``); ``"all"``: every tensor differs from every
    other generation's."""
    import torch
    from torch.distributed.tensor import DTensor, Shard

    cols = 1024
    rows = max(2, total // TENSORS // (cols * 4)) // 2 * 2
    rank = mesh.get_local_rank()
    model = {}
    for i in range(TENSORS):
        if i % 2 == 0 and changed != "all":
            seed = i * 7 + rank
        else:
            seed = 100_000 * (generation + 1) + i * 7 + rank
        if empty:
            local = torch.zeros(rows // 2, cols)
        else:
            local = torch.randn(rows // 2, cols, generator=torch.Generator().manual_seed(seed))
        model[f"layers.{i}.weight"] = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
    return {"model": model}


#: Functions timed by ``--profile`` (module, attribute path, phase name): wall seconds
#: summed over calls and threads (phases run in parallel threads can sum past the wall).
PHASES = [
    ("kara_torch.checkpoint", "KaraWriter.set_up_storage_writer", "writer: open version (coordinator)"),
    ("kara_torch.checkpoint", "KaraWriter.write_data", "writer: write_data"),
    ("kara_torch.checkpoint", "_save_archive", "  serialize (torch archive)"),
    ("kara_torch.checkpoint", "KaraWriter._previous_blobs", "  previous version's manifest"),
    ("kara_core.obj.stream", "BlobSink._same_as", "  compare with the previous blob"),
    ("kara_core.obj.stream", "hash_views", "  hash"),
    ("kara_core.obj.stream", "BlobSink.__init__", "  sink open (lease)"),
    ("kara_file.backend", "FileBackend.list", "  list blobs"),
    ("kara_file.backend", "FileBatch.put", "  write blobs"),
    ("kara_file.backend", "FileBatch.commit", "  commit (sync, rename)"),
    ("kara_core.obj.stream", "BlobSink.close", "  sink close (lease)"),
    ("kara_torch.checkpoint", "KaraWriter.finish", "writer: finish (coordinator)"),
    ("kara_core.obj.store", "ObjectStore.publish", "  publish"),
    ("kara_torch.checkpoint", "KaraReader.read_metadata", "reader: read_metadata"),
    ("kara_torch.checkpoint", "KaraReader.set_up_storage_reader", "reader: set_up"),
    ("kara_torch.checkpoint", "KaraReader.read_data", "reader: read_data"),
    ("kara_torch.checkpoint", "KaraReader._fetch", "  fetch (threads)"),
    ("torch.distributed.checkpoint.filesystem", "FileSystemWriter.write_data", "fs: write_data"),
    ("torch.distributed.checkpoint.filesystem", "FileSystemWriter.finish", "fs: finish"),
    ("torch.distributed.checkpoint.filesystem", "FileSystemReader.read_data", "fs: read_data"),
]


def _wrap_calls(targets: list[tuple[str, str, str]], report: Any) -> None:
    """Wrap each (module, attribute path, label) of ``targets``: every call ends with
    ``report(label, began, ended)`` (``time.perf_counter`` values), even when it raises."""
    import functools
    import importlib

    def timed(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                report(label, began, time.perf_counter())

        return wrapper

    for module_name, path, label in targets:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, timed(getattr(owner, name), label))


def _time_phases() -> dict[str, float]:
    """Wrap :data:`PHASES` with timers; the returned dict fills as they run."""
    import threading

    spent: dict[str, float] = {}
    lock = threading.Lock()

    def add(phase: str, began: float, ended: float) -> None:
        with lock:
            spent[phase] = spent.get(phase, 0.0) + ended - began

    _wrap_calls(PHASES, add)
    return spent


#: Functions whose every call ``--spans`` records (module, attribute path): start and end
#: on the system-wide monotonic clock, so the ranks' timelines line up.
SPANS = [
    ("torch.distributed.checkpoint.state_dict_saver", "_save_state_dict"),
    ("torch.distributed.checkpoint.default_planner", "DefaultSavePlanner.set_up_planner"),
    ("torch.distributed.checkpoint.default_planner", "DefaultSavePlanner.create_local_plan"),
    ("torch.distributed.checkpoint.default_planner", "DefaultSavePlanner.create_global_plan"),
    ("torch.distributed.checkpoint.default_planner", "DefaultSavePlanner.finish_plan"),
    ("torch.distributed.checkpoint.utils", "_DistWrapper.gather_object"),
    ("torch.distributed.checkpoint.utils", "_DistWrapper.scatter_object"),
    ("torch.distributed.checkpoint.utils", "_DistWrapper.broadcast_object"),
    ("kara_torch.checkpoint", "KaraWriter.set_up_storage_writer"),
    ("kara_torch.checkpoint", "KaraWriter.prepare_local_plan"),
    ("kara_torch.checkpoint", "KaraWriter.prepare_global_plan"),
    ("kara_torch.checkpoint", "KaraWriter.write_data"),
    ("kara_torch.checkpoint", "KaraWriter._previous_blobs"),
    ("kara_torch.checkpoint", "KaraWriter.finish"),
    ("kara_core.obj.stream", "BlobSink.__init__"),
    ("kara_core.obj.stream", "BlobSink.commit"),
    ("kara_core.obj.stream", "BlobSink.close"),
    ("kara_core.obj.stream", "VersionWriter.write_file"),
    ("kara_core.obj.stream", "VersionWriter.publish"),
    ("kara_core.obj.store", "ObjectStore.publish"),
    ("kara_core.obj.store", "ObjectStore.check_new_version"),
    ("kara_file.backend", "FileBackend.list"),
]


def _record_spans(events: list[tuple[str, str, float, float]]) -> None:
    """Wrap :data:`SPANS`; each call appends (name, thread, start, end) to ``events``."""
    import threading

    def append(name: str, began: float, ended: float) -> None:
        events.append((name, threading.current_thread().name, began, ended))

    _wrap_calls([(module, path, path) for module, path in SPANS], append)


def _time_gc(spent: dict[str, float]) -> None:
    """Add the wall seconds of Python's cyclic garbage collections to ``spent`` as they run."""
    import gc

    began: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            name = f"python gc (generation {info['generation']})"
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - began.pop()

    gc.callbacks.append(callback)


def rank_main(params: dict[str, Any]) -> None:
    """One rank of one step (run in a fresh process); rank 0 prints the seconds taken."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from kara_torch.checkpoint import KaraReader, KaraWriter
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
    from torch.distributed.device_mesh import init_device_mesh

    from kara_core import KaraStorage

    rank, world = params["rank"], params["world_size"]
    timeout = datetime.timedelta(seconds=600)
    tcp = dist.TCPStore("127.0.0.1", params["port"], world, False, timeout=timeout)
    dist.init_process_group("gloo", store=tcp, rank=rank, world_size=world, timeout=timeout)
    mesh = init_device_mesh("cpu", (world,))
    step, total = params["step"], params["total"]
    state = _local_dtensors(
        total, params.get("generation", 0), mesh, empty=step.endswith("load"), changed=params.get("changed", "half")
    )
    store = KaraStorage("file://" + params["store"])
    extra = 0.0
    dist.barrier()
    profiler = None
    phases: dict[str, float] = {}
    if params.get("profile"):
        import cProfile

        phases = _time_phases()
        _time_gc(phases)
        profiler = cProfile.Profile()
        profiler.enable()
    events: list[tuple[str, str, float, float]] = []
    if params.get("spans"):
        _record_spans(events)
    cpu_started = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if step == "kara_save":
        version = params.get("version") or f"g{params['generation']}"
        dcp.save(state, storage_writer=KaraWriter(store, "bench", "ckpt", version=version))
    elif step == "fs_save":
        dcp.save(state, storage_writer=FileSystemWriter(params["folder"], sync_files=True))
    elif step == "kara_load":
        reader = KaraReader(store, "bench", "ckpt", version="g0", verify=params.get("verify", False))
        dcp.load(state, storage_reader=reader)
    elif step == "fs_load":
        dcp.load(state, storage_reader=FileSystemReader(params["folder"]))
    saved = time.perf_counter()
    dist.barrier()
    seconds = time.perf_counter() - started
    if params.get("spans"):
        events.append(("dcp.save", "MainThread", started, saved))
        events.append(("barrier after", "MainThread", saved, started + seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {
        "user": usage.ru_utime - cpu_started.ru_utime,
        "sys": usage.ru_stime - cpu_started.ru_stime,
        "minflt": usage.ru_minflt - cpu_started.ru_minflt,
    }
    if profiler is not None:
        profiler.disable()
        name = f"{step}-g{params.get('generation', 0)}-rank{rank}.prof"
        profiler.dump_stats(os.path.join(params["profile"], name))
    hash_cpu = None
    if step == "kara_save" and params.get("generation", 0) == 0:
        # The floor that the 2.x blob names set: md5 and sha1 of every byte this rank
        # saved, in one pass (as kara does), both ranks at once as in the save.
        from kara_core.obj.hashing import hash_views

        views = [memoryview(t.to_local().reshape(-1).view(torch.uint8).numpy()) for t in state["model"].values()]
        dist.barrier()
        began_cpu = time.thread_time()
        for view in views:
            hash_views(["sha1", "md5"], [view])
        hash_cpu = time.thread_time() - began_cpu
        dist.barrier()
    if step == "fs_save" and rank == 0:
        # The second half of the two-step way: the folder into a kara store.
        os.environ["KARA_CACHE_DIR"] = params["cache"]
        os.sync()
        began = time.perf_counter()
        store.save_directory("bench", "folder", params["folder"], progress_bar=False)
        extra = time.perf_counter() - began
    dist.barrier()
    dist.destroy_process_group()
    report = {"seconds": seconds, "save_directory": extra, "cpu": cpu, "hash_cpu": hash_cpu}
    if params.get("spans"):
        # Every rank's spans go to the file of the step; rank 0 prints them.
        name = os.path.join(params["spans"], f"{params.get('version') or step}-rank{rank}.json")
        with open(name, "w") as fh:
            json.dump({"started": started, "events": events}, fh)
    if params.get("profile"):
        report["phases"] = {k: round(v, 4) for k, v in phases.items()}
        with open(os.path.join(params["profile"], f"{step}-g{params.get('generation', 0)}-rank{rank}.json"), "w") as fh:
            json.dump(report, fh)
    if rank == 0:
        print(json.dumps(report))


def launch(params: dict[str, Any], world_size: int = 2) -> dict[str, float]:
    """Run one step on a fresh ``world_size``-rank group; return rank 0's report."""
    import torch.distributed as dist

    os.sync()
    rendezvous = dist.TCPStore(
        "127.0.0.1", 0, is_master=True, timeout=datetime.timedelta(seconds=600), wait_for_workers=False
    )
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--rank-params",
                json.dumps({**params, "port": rendezvous.port, "rank": rank, "world_size": world_size}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in range(world_size)
    ]
    outputs = [proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"a rank failed:\n{err[-4000:]}")
    del rendezvous
    return json.loads(outputs[0][0].strip().splitlines()[-1])


K215_SAVE = """
import kara_storage
store = kara_storage.KaraStorage("file://" + PARAMS["store"])
t = time.perf_counter()
store.save_directory("bench", "folder", PARAMS["folder"], progress_bar=False)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def run_round(work: str, round_: int, total: int, profile: str | None = None) -> dict[str, float]:
    """Every step once, on fresh stores and folders; seconds per step."""
    here = os.path.join(work, f"round{round_}")
    os.makedirs(here)
    base = {
        "total": total,
        "store": os.path.join(here, "kara-store"),
        "folder": os.path.join(here, "dcp-folder"),
        "cache": os.path.join(here, "cache"),
        "profile": profile,
    }
    times: dict[str, float] = {}
    first = launch({**base, "step": "kara_save", "generation": 0})
    times["kara_save"] = first["seconds"]
    resave = launch({**base, "step": "kara_save", "generation": 1})
    times["kara_resave"] = resave["seconds"]
    fs = launch({**base, "step": "fs_save", "store": os.path.join(here, "two-step-store")})
    times["fs_save"] = fs["seconds"]
    # CPU seconds of rank 0 (user + system), and the md5+sha1 floor of a first save.
    times["cpu_kara_save"] = first["cpu"]["user"] + first["cpu"]["sys"]
    times["cpu_kara_resave"] = resave["cpu"]["user"] + resave["cpu"]["sys"]
    times["cpu_fs_save"] = fs["cpu"]["user"] + fs["cpu"]["sys"]
    times["sys_fs_save"] = fs["cpu"]["sys"]
    times["cpu_md5_sha1"] = first["hash_cpu"]
    times["two_step"] = fs["seconds"] + fs["save_directory"]
    os.sync()
    k215 = run_k215(K215_SAVE, {"store": os.path.join(here, "k215-store"), "folder": base["folder"]})
    times["two_step_215"] = fs["seconds"] + k215["seconds"]
    kara_load = launch({**base, "step": "kara_load"})
    fs_load = launch({**base, "step": "fs_load"})
    verified = launch({**base, "step": "kara_load", "verify": True})
    times["kara_load"], times["fs_load"] = kara_load["seconds"], fs_load["seconds"]
    times["kara_load_verified"] = verified["seconds"]
    times["cpu_kara_load"] = kara_load["cpu"]["user"] + kara_load["cpu"]["sys"]
    times["cpu_fs_load"] = fs_load["cpu"]["user"] + fs_load["cpu"]["sys"]
    remove_workdir(here)
    return times


#: ``--kara-only``: the kara saves alone, (label, version, data generation, what changed).
KARA_CASES = [
    ("kara DCP save", "g0", 0, "half"),
    ("re-save, half the tensors unchanged", "g1", 1, "half"),
    ("re-save, nothing changed", "g2", 1, "half"),
    ("re-save, every tensor changed", "g3", 3, "all"),
]


def run_kara_round(work: str, round_: int, total: int, spans: str | None) -> dict[str, float]:
    """The kara saves of :data:`KARA_CASES` in order, each in a fresh process group, on one store."""
    here = os.path.join(work, f"round{round_}")
    os.makedirs(here)
    times: dict[str, float] = {}
    for _, version, generation, changed in KARA_CASES:
        span_dir = None
        if spans:
            span_dir = os.path.join(spans, f"round{round_}")
            os.makedirs(span_dir, exist_ok=True)
        report = launch(
            {
                "total": total,
                "store": os.path.join(here, "kara-store"),
                "step": "kara_save",
                "generation": generation,
                "changed": changed,
                "version": version,
                "spans": span_dir,
            }
        )
        times[version] = report["seconds"]
        times[f"cpu_{version}"] = report["cpu"]["user"] + report["cpu"]["sys"]
    remove_workdir(here)
    return times


def print_spans(spans: str, rounds: int) -> None:
    """Median per rank of each recorded span's total time, and one round's timeline."""
    for _, version, _, _ in KARA_CASES:
        totals: dict[tuple[str, int], list[float]] = {}
        for round_ in range(rounds):
            for rank in (0, 1):
                with open(os.path.join(spans, f"round{round_}", f"{version}-rank{rank}.json")) as fh:
                    data = json.load(fh)
                per: dict[str, float] = {}
                for name, _, began, ended in data["events"]:
                    per[name] = per.get(name, 0.0) + ended - began
                for name, value in per.items():
                    totals.setdefault((name, rank), []).append(value)
        print(f"\n  spans of {version} (ms, median over the rounds: rank 0 / rank 1)")
        for name in dict.fromkeys(n for n, _ in totals):
            r0 = statistics.median(totals.get((name, 0), [0.0])) * 1000
            r1 = statistics.median(totals.get((name, 1), [0.0])) * 1000
            print(f"    {name:<44} {r0:8.1f} / {r1:8.1f}")
        last = rounds - 1
        ranks = []
        for rank in (0, 1):
            with open(os.path.join(spans, f"round{last}", f"{version}-rank{rank}.json")) as fh:
                ranks.append(json.load(fh))
        origin = min(r["started"] for r in ranks)
        print(f"  timeline of {version}, round {last} (ms from the first rank's start: start +duration)")
        rows = sorted(
            (began - origin, rank, name, thread, ended - began)
            for rank, r in enumerate(ranks)
            for name, thread, began, ended in r["events"]
            if not thread.startswith("kara-dcp")
        )
        for began, rank, name, _, took in rows:
            print(f"    rank {rank} {began * 1000:8.1f} +{took * 1000:7.1f}  {name}")


@contextlib.contextmanager
def _locked(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s ({min(values):.2f}-{max(values):.2f})"


def _run_rounds(args: argparse.Namespace, run: Any) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``run(work, round)`` for each round (under ``--lock``), printing each round's times as it ends.

    The sources are byte-compiled first (as an installed package is). Returns each time's
    values over the rounds and their medians, and prints the load average after the run.
    """
    compile_sources(sys.executable)
    work = workdir("checkpoints")
    rounds: list[dict[str, float]] = []
    try:
        for round_ in range(args.rounds):
            with _locked(args.lock):
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                times = run(work, round_)
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S UTC")
            print(
                f"round {round_} ({stamp}, load before {load}): " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()),
                flush=True,
            )
            rounds.append(times)
    finally:
        remove_workdir(work)
    col = {k: [r[k] for r in rounds] for k in rounds[0]}
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return col, {k: statistics.median(v) for k, v in col.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--total-mib", type=int, default=1024)
    parser.add_argument("--lock", metavar="FILE", help="hold an flock on FILE during each round (not between rounds)")
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile of every step of every rank to DIR")
    parser.add_argument(
        "--kara-only",
        action="store_true",
        help="only kara's saves: first save, re-saves with half, none and all of the tensors changed",
    )
    parser.add_argument("--spans", metavar="DIR", help="with --kara-only: record each rank's phases to DIR, print them")
    parser.add_argument("--rank-params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_params:
        rank_main(json.loads(args.rank_params))
        return
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    total = args.total_mib * 1024 * 1024
    if args.kara_only:
        main_kara_only(args, total)
        return
    k215_python()
    profile = args.profile and os.path.abspath(args.profile)
    col, med = _run_rounds(args, lambda work, round_: run_round(work, round_, total, profile))
    print(
        f"distributed checkpoint, 2 ranks, {args.total_mib} MiB in {TENSORS} tensors, file://, "
        f"{args.rounds} rounds (median, range); machine shared with other jobs"
    )
    print("  both sides durable: FileSystemWriter(sync_files=True) fsyncs each file, file:// syncs before publishing")
    rows = [
        ("kara DCP save", "kara_save"),
        ("kara re-save, half the tensors unchanged", "kara_resave"),
        ("FileSystemWriter alone", "fs_save"),
        ("FileSystemWriter + kara save_directory", "two_step"),
        ("FileSystemWriter + 2.1.5 save_directory", "two_step_215"),
        ("kara DCP load (KaraReader)", "kara_load"),
        ("kara DCP load, verify=True", "kara_load_verified"),
        ("FileSystemReader load", "fs_load"),
    ]
    for label, key in rows:
        print(f"  {label:<44} {summary(col[key])}")
    ratios = [
        ("kara save vs FileSystemWriter + save_directory", med["two_step"] / med["kara_save"], 1.5),
        ("kara save vs FileSystemWriter alone", med["fs_save"] / med["kara_save"], 0.8),
        ("re-save (half unchanged) vs first save", med["kara_save"] / med["kara_resave"], 1.8),
        ("kara load vs FileSystemReader", med["fs_load"] / med["kara_load"], 0.9),
        ("kara load, verify=True vs FileSystemReader (no check)", med["fs_load"] / med["kara_load_verified"], None),
        ("kara save vs FileSystemWriter + 2.1.5 save_directory", med["two_step_215"] / med["kara_save"], None),
    ]
    print(f"\n  {'ratio (speed, higher is better)':<56} {'value':>7} {'target':>7}  ok")
    for label, value, target in ratios:
        goal = f"{target:.1f}x" if target else "-"
        ok = "-" if target is None else ("yes" if value >= target else "NO")
        print(f"  {label:<56} {value:6.2f}x {goal:>7}  {ok}")
    mib = args.total_mib / 2
    print(f"\n  CPU seconds of rank 0 ({mib:.0f} MiB of the state), user + system (median, range)")
    for label, key in [
        ("kara DCP save", "cpu_kara_save"),
        ("kara re-save, half the tensors unchanged", "cpu_kara_resave"),
        ("FileSystemWriter alone", "cpu_fs_save"),
        ("  of which system (copy into the page cache, writeback)", "sys_fs_save"),
        ("md5 + sha1 of the rank's bytes, one pass, nothing else", "cpu_md5_sha1"),
        ("kara DCP load", "cpu_kara_load"),
        ("FileSystemReader load", "cpu_fs_load"),
    ]:
        print(f"  {label:<56} {summary(col[key])}   {1000 * med[key] / mib:5.2f} ms/MiB")
    # A first save must hash every byte (the 2.x blob names) and write the same bytes as
    # FileSystemWriter does (its system time). With 2 ranks on 2 cores each rank has one
    # core, so a save cannot take less wall time than that CPU work.
    floor = med["cpu_md5_sha1"] + med["sys_fs_save"]
    print(
        f"  floor of a kara save on one core per rank: md5+sha1 {med['cpu_md5_sha1']:.2f} s + the kernel's write work "
        f"{med['sys_fs_save']:.2f} s = {floor:.2f} s;\n  best possible ratio against FileSystemWriter alone here: "
        f"{med['fs_save']:.2f} s / {floor:.2f} s = {med['fs_save'] / floor:.2f}x (on {os.cpu_count()} cores)"
    )


def main_kara_only(args: argparse.Namespace, total: int) -> None:
    spans = args.spans and os.path.abspath(args.spans)
    col, med = _run_rounds(args, lambda work, round_: run_kara_round(work, round_, total, spans))
    print(f"kara saves, 2 ranks, {args.total_mib} MiB in {TENSORS} tensors, {args.rounds} rounds (median, range)")
    for label, version, _, _ in KARA_CASES:
        ratio = med["g0"] / med[version]
        print(
            f"  {label:<40} {summary(col[version])}  {ratio:5.2f}x of the first save;"
            f"  CPU of rank 0 {summary(col['cpu_' + version])}"
        )
    if spans:
        print_spans(spans, args.rounds)


if __name__ == "__main__":
    main()
