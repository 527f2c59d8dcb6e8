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

    .venv/bin/python bench/checkpoints.py [--rounds 5] [--total-mib 1024]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import k215_python, remove_workdir, run_k215, workdir  # noqa: E402

# bench/ has modules named like standard ones (http.py, which torch's import of
# urllib.request would pick up): keep the folder off the import path from here on.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH]

TENSORS = 200


def _local_dtensors(total: int, generation: int, mesh: Any, empty: bool) -> dict[str, Any]:
    import torch
    from torch.distributed.tensor import DTensor, Shard

    cols = 1024
    rows = max(2, total // TENSORS // (cols * 4)) // 2 * 2
    rank = mesh.get_local_rank()
    model = {}
    for i in range(TENSORS):
        seed = (i * 7 + rank) if i % 2 == 0 else 100_000 * (generation + 1) + i * 7 + rank
        if empty:
            local = torch.zeros(rows // 2, cols)
        else:
            local = torch.randn(rows // 2, cols, generator=torch.Generator().manual_seed(seed))
        model[f"layers.{i}.weight"] = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
    return {"model": model}


def rank_main(params: dict[str, Any]) -> None:
    """One rank of one step (run in a fresh process); rank 0 prints the seconds taken."""
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
    state = _local_dtensors(total, params.get("generation", 0), mesh, empty=step.endswith("load"))
    store = KaraStorage("file://" + params["store"])
    extra = 0.0
    dist.barrier()
    started = time.perf_counter()
    if step == "kara_save":
        dcp.save(state, storage_writer=KaraWriter(store, "bench", "ckpt", version=f"g{params['generation']}"))
    elif step == "fs_save":
        dcp.save(state, storage_writer=FileSystemWriter(params["folder"], sync_files=True))
    elif step == "kara_load":
        dcp.load(state, storage_reader=KaraReader(store, "bench", "ckpt", version="g0"))
    elif step == "fs_load":
        dcp.load(state, storage_reader=FileSystemReader(params["folder"]))
    dist.barrier()
    seconds = time.perf_counter() - started
    if step == "fs_save" and rank == 0:
        # The second half of the two-step way: the folder into a kara store.
        os.environ["KARA_CACHE_DIR"] = params["cache"]
        os.sync()
        began = time.perf_counter()
        store.save_directory("bench", "folder", params["folder"], progress_bar=False)
        extra = time.perf_counter() - began
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps({"seconds": seconds, "save_directory": extra}))


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


def run_round(work: str, round_: int, total: int) -> dict[str, float]:
    """Every step once, on fresh stores and folders; seconds per step."""
    here = os.path.join(work, f"round{round_}")
    os.makedirs(here)
    base = {
        "total": total,
        "store": os.path.join(here, "kara-store"),
        "folder": os.path.join(here, "dcp-folder"),
        "cache": os.path.join(here, "cache"),
    }
    times: dict[str, float] = {}
    times["kara_save"] = launch({**base, "step": "kara_save", "generation": 0})["seconds"]
    times["kara_resave"] = launch({**base, "step": "kara_save", "generation": 1})["seconds"]
    fs = launch({**base, "step": "fs_save", "store": os.path.join(here, "two-step-store")})
    times["fs_save"] = fs["seconds"]
    times["two_step"] = fs["seconds"] + fs["save_directory"]
    os.sync()
    k215 = run_k215(K215_SAVE, {"store": os.path.join(here, "k215-store"), "folder": base["folder"]})
    times["two_step_215"] = fs["seconds"] + k215["seconds"]
    times["kara_load"] = launch({**base, "step": "kara_load"})["seconds"]
    times["fs_load"] = launch({**base, "step": "fs_load"})["seconds"]
    remove_workdir(here)
    return times


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--total-mib", type=int, default=1024)
    parser.add_argument("--rank-params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_params:
        rank_main(json.loads(args.rank_params))
        return
    k215_python()
    total = args.total_mib * 1024 * 1024
    work = workdir("checkpoints")
    rounds: list[dict[str, float]] = []
    try:
        for round_ in range(args.rounds):
            times = run_round(work, round_, total)
            print(f"round {round_}: " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()), flush=True)
            rounds.append(times)
    finally:
        remove_workdir(work)
    col = {k: [r[k] for r in rounds] for k in rounds[0]}
    med = {k: statistics.median(v) for k, v in col.items()}
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
        ("FileSystemReader load", "fs_load"),
    ]
    for label, key in rows:
        print(f"  {label:<44} {summary(col[key])}")
    ratios = [
        ("kara save vs FileSystemWriter + save_directory", med["two_step"] / med["kara_save"], 1.5),
        ("kara save vs FileSystemWriter alone", med["fs_save"] / med["kara_save"], 0.8),
        ("re-save (half unchanged) vs first save", med["kara_save"] / med["kara_resave"], 1.8),
        ("kara load vs FileSystemReader", med["fs_load"] / med["kara_load"], 0.9),
        ("kara save vs FileSystemWriter + 2.1.5 save_directory", med["two_step_215"] / med["kara_save"], None),
    ]
    print(f"\n  {'ratio (speed, higher is better)':<56} {'value':>7} {'target':>7}  ok")
    for label, value, target in ratios:
        goal = f"{target:.1f}x" if target else "-"
        ok = "-" if target is None else ("yes" if value >= target else "NO")
        print(f"  {label:<56} {value:6.2f}x {goal:>7}  {ok}")


if __name__ == "__main__":
    main()
