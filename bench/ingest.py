"""Parallel ingest: commit cost of a parallel write, Ray Data writing and reading, kara and 2.1.5.

Workloads (1,000,000 ``common.small_record(i)`` JSON records, a file:// store):

- ``commit``: one process writes the records as 8 parts of a parallel write (write time),
  then commits them (commit time). The report counts the data bytes the commit moved
  (renamed) and the bytes it wrote (the index). ``commit_sync``: the same with
  ``sync_at_commit=True`` (parts leave their fsyncs to the commit, as kara-ray's datasink
  does), run last in each round.
- ``kara write_many``: one process writes the same records with ``write_many`` (the rows
  built beforehand in Python); ``ray write``: Ray Data (``ray.init(num_cpus=2)``) writes
  the same rows, held in Ray's object store beforehand, through ``KaraDatasink``.
- ``kara read``: one process reads the version in order; ``ray read``: Ray Data reads it
  through ``KaraDatasource`` in 4 read tasks (``iter_batches``, Arrow batches). ``2.1.5 write``/``2.1.5 read``:
  kara-storage 2.1.5 writing (one ``write`` per record) and reading the same records.

Every round of every workload runs in a fresh process; start-up (interpreter, ``ray.init``)
is not timed. Times are reported as the median and range (min-max) over ``ROUNDS`` rounds.

    .venv/bin/python bench/ingest.py [--rounds 5] [--records 1000000] [--parts 8] [--cases ray_write,kara_write]

``--parts``: parts of the parallel write and blocks of the Ray write (8: the issue's
workload); ``--cases``: run only these workloads (the report then shows only the ratios
whose two sides ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

from common import WORK, run_k215, small_record  # noqa: E402 - found through the path above

# bench/http.py would shadow the standard library's http module for ray and its imports.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != _HERE]

PARTS = 8
ROUNDS = 5

K215_CODE = """
import kara_storage
def small_record(i):
    return {"id": i, "text": "sample text number %d " % i * 4, "tokens": list(range(i % 32))}
store = kara_storage.KaraStorage("file://" + PARAMS["root"])
if PARAMS["what"] == "write":
    records = [small_record(i) for i in range(PARAMS["records"])]
    t = time.perf_counter()
    ds = store.open_dataset("bench", "k215", "w", version=PARAMS["version"])
    for rec in records:
        ds.write(rec)
    ds.close()
else:
    t = time.perf_counter()
    ds = store.open_dataset("bench", "single", "r", version="1")
    n = len(ds)
    for _ in range(n):
        ds.read()  # 2.1.5 raises EOFError past the end
    assert n == PARAMS["records"], n
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _rows_batch(batch: dict[str, Any]) -> dict[str, Any]:
    # The same rows as small_record, built by Ray workers from the ids.
    ids = batch["id"].tolist()
    return {
        "id": ids,
        "text": ["sample text number %d " % i * 4 for i in ids],  # noqa: UP031 - small_record's expression
        "tokens": [list(range(i % 32)) for i in ids],
    }


CASES = ("commit", "kara_write", "ray_write", "kara_read", "ray_read", "k215_write", "k215_read", "commit_sync")
#: Read tasks of the Ray reads (the kara datasource and the in-memory floor alike).
READ_TASKS = 4


def _null_datasink() -> Any:
    """Ray's own floor of a write: a datasink whose tasks take their blocks and write nothing."""
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class NullDatasink(Datasink):
        def __init__(self) -> None:
            self.records = 0

        def write(self, blocks: Any, ctx: Any) -> dict[str, int]:
            return {"records": sum(BlockAccessor.for_block(block).num_rows() for block in blocks)}

        def on_write_complete(self, write_result: Any) -> None:
            self.records = sum(result["records"] for result in write_result.write_returns)

    return NullDatasink()


def _timed(sink: Any) -> Any:
    """``sink`` whose write tasks also report their process and start and end times (``sink.tasks``)."""
    base = type(sink)

    class Timed(base):  # type: ignore[misc, valid-type]
        def write(self, blocks: Any, ctx: Any) -> Any:
            start = time.time()
            result = base.write(self, blocks, ctx)
            times = {"pid": os.getpid(), "start": start, "end": time.time()}
            return {**result, **times}

        def on_write_complete(self, write_result: Any) -> None:
            self.tasks = list(write_result.write_returns)
            base.on_write_complete(self, write_result)

    sink.__class__ = Timed
    return sink


def _serial_write(store: Any, blocks: Any) -> float:
    """Seconds of the datasink's own work without Ray: every block encoded and written as a
    part, one after the other, on one Arrow thread (a Ray worker's), then the commit."""
    import pyarrow as pa
    import ray
    from kara_ray.datasink import SINK_BLOCK_SIZE
    from kara_ray.rows import write_block

    tables = [ray.get(ref) for ref in blocks.to_arrow_refs()]
    threads = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        start = time.perf_counter()
        # As the datasink opens it: its block size, parts synced by the commit.
        handle = store.open_parallel_write(
            "bench", "serial_w", f"s{os.getpid()}", sync_at_commit=True, block_size=SINK_BLOCK_SIZE
        )
        for number, table in enumerate(tables):
            with handle.part(number) as part:
                write_block(part, table, None)
        handle.commit()
        return time.perf_counter() - start
    finally:
        pa.set_cpu_count(threads)


def _serial_read(store: Any, records: int, batch: int) -> float:
    """Seconds of the datasource's own work without Ray: every batch read and parsed by
    Arrow's JSON reader, one after the other, on one Arrow thread (a Ray worker's)."""
    import pyarrow as pa
    from kara_ray.datasource import KaraDatasource, _block

    source = KaraDatasource(store.url, "bench", "single", "1")
    threads = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        start = time.perf_counter()
        with store.open_dataset("bench", "single", version="1") as ds:
            rows = sum(
                _block(source, *ds.read_raw_joined(a, min(records, a + batch))).num_rows
                for a in range(0, records, batch)
            )
        assert rows == records
        return time.perf_counter() - start
    finally:
        pa.set_cpu_count(threads)


def _warm_imports() -> int:
    """Import what a kara write task uses (the write_many process has it imported before its clock)."""
    import kara_ray.datasink
    import kara_ray.rows  # noqa: F401

    from kara_core.row import parallel  # noqa: F401

    time.sleep(0.2)  # long enough that the tasks spread over every worker
    return os.getpid()


def _warm_workers(ray: Any) -> None:
    """Start every worker Ray will use and import kara in it (not timed, like ``ray.init``)."""
    warm = ray.remote(num_cpus=1)(_warm_imports)
    pids = set(ray.get([warm.remote() for _ in range(8)]))
    assert len(pids) >= 2, pids


def _at_once(tasks: list[dict[str, Any]]) -> int:
    """The most write tasks that ran at the same time."""
    events = sorted([(t["start"], 1) for t in tasks] + [(t["end"], -1) for t in tasks])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def _memory_datasource(records: int, batch: int) -> Any:
    """Ray's own floor of a read: read tasks that yield ``records`` rows from memory.

    The same tasks and blocks as the kara read (``READ_TASKS`` tasks, blocks of ``batch``
    rows of ``small_record``): each task yields slices of one Arrow table it is handed,
    so what is timed is Ray moving the blocks to the consumer, no decoding.
    """
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    table = pa.Table.from_pylist([small_record(i) for i in range(batch)])

    def read(start: int, stop: int) -> Any:
        for first in range(start, stop, batch):
            yield table.slice(0, min(stop, first + batch) - first)

    class MemoryDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int:
            return table.nbytes * records // batch

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None):
            bounds = [records * i // parallelism for i in range(parallelism + 1)]
            return [
                ReadTask(
                    lambda a=a, b=b: read(a, b),
                    BlockMetadata(
                        num_rows=b - a, size_bytes=table.nbytes * (b - a) // batch, exec_stats=None, input_files=None
                    ),
                    per_task_row_limit=per_task_row_limit,
                )
                for a, b in pairwise(bounds)
            ]

    return MemoryDatasource()


def child(case: str, root: str, records: int) -> dict[str, Any]:
    """One round of one workload, in this (fresh) process; returns what it measured."""
    from kara_core import KaraStorage

    url = f"file://{root}"
    store = KaraStorage(url)
    if case in ("commit", "commit_sync"):
        # The commit shifts index offsets with numpy when it is there: loaded beforehand, as
        # it is in the Ray and Spark drivers that commit.
        import numpy  # noqa: F401

        rows = [small_record(i) for i in range(records)]
        result: dict[str, Any] = {}
        # Parts synced as they close (the default); or ("commit_sync", a separate case, run
        # last in a round: its extra writes slowed the write_many process run after it)
        # parts left to the commit's one sync, as kara-ray's datasink does.
        for suffix, sync_at_commit in (("", False),) if case == "commit" else (("_sync_at_commit", True),):
            version = f"p{os.getpid()}{suffix}"
            start = time.perf_counter()
            handle = store.open_parallel_write("bench", "parallel", version, sync_at_commit=sync_at_commit)
            cut = [records * p // PARTS for p in range(PARTS + 1)]
            for part in range(PARTS):
                with handle.part(part) as writer:
                    writer.write_many(rows[cut[part] : cut[part + 1]])
            write = time.perf_counter() - start
            report = handle.commit()
            assert report.records == records
            result |= {"write" + suffix: write, "commit" + suffix: report.seconds, "phases" + suffix: report.phases}
        return result | {"moved": report.data_bytes_moved, "written": report.index_bytes_written, "by": report.moved_by}
    if case == "kara_write":
        rows = [small_record(i) for i in range(records)]
        start = time.perf_counter()
        with store.open_dataset("bench", "single_w", "w", version=f"w{os.getpid()}") as ds:
            ds.write_many(rows)
        return {"seconds": time.perf_counter() - start}
    if case == "kara_read":
        start = time.perf_counter()
        with store.open_dataset("bench", "single", version="1") as ds:
            count = sum(1 for _ in ds)
        assert count == records
        return {"seconds": time.perf_counter() - start}
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import kara_ray
    import ray
    from kara_ray import KaraDatasink, KaraDatasource

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    context = ray.data.DataContext.get_current()
    try:
        out: dict[str, Any] = {}
        if case == "ray_write":
            blocks = ray.data.range(records, override_num_blocks=PARTS).map_batches(_rows_batch).materialize()
            blocks.write_datasink(_timed(_null_datasink()))  # not timed: every worker has run a task
            _warm_workers(ray)  # not timed: kara imported in every worker, as in the write_many process
            out["ray_write_serial"] = _serial_write(store, blocks)
            for setting, reservation in (("", True), ("_both", False), ("_entry", True)):
                # A dataset keeps the DataContext it was made with: set it there. "_entry":
                # Ray's defaults, written through kara_ray.write_datasink.
                context.op_resource_reservation_enabled = reservation
                blocks.context.op_resource_reservation_enabled = reservation
                write = kara_ray.write_datasink if setting == "_entry" else type(blocks).write_datasink
                for name, sink in (
                    ("ray_write_floor", _timed(_null_datasink())),
                    ("ray_write", _timed(KaraDatasink(url, "bench", "ray_w", f"r{os.getpid()}{setting}"))),
                ):
                    wall, start = time.time(), time.perf_counter()
                    write(blocks, sink)
                    out[name + setting] = time.perf_counter() - start
                    out[f"{name}{setting}_at_once"] = _at_once(sink.tasks)
                    if os.environ.get("INGEST_TIMELINE"):
                        line = [
                            (t["pid"] % 1000, round(t["start"] - wall, 3), round(t["end"] - wall, 3))
                            for t in sink.tasks
                        ]
                        print(name + setting, round(out[name + setting], 3), line, file=sys.stderr)
                    written = sink.report.records if isinstance(sink, KaraDatasink) else sink.records
                    assert written == records, written
            return out
        if case == "ray_read":
            from kara_ray.datasource import BATCH_RECORDS

            floor = _memory_datasource(records, BATCH_RECORDS)
            out["ray_read_serial"] = _serial_read(store, records, BATCH_RECORDS)
            for setting, reservation in (("", True), ("_both", False), ("_entry", True)):
                context.op_resource_reservation_enabled = reservation
                read = kara_ray.read_datasource if setting == "_entry" else ray.data.read_datasource
                for name in ("ray_read_floor", "ray_read"):
                    # The first read of each starts Ray's workers for it; the timed one is the second.
                    for _ in range(2):
                        start = time.perf_counter()
                        source = floor if name == "ray_read_floor" else KaraDatasource(url, "bench", "single", "1")
                        data = read(source, override_num_blocks=READ_TASKS)
                        batches = data.iter_batches(batch_size=None, batch_format="pyarrow")
                        count = sum(batch.num_rows for batch in batches)
                        out[name + setting] = time.perf_counter() - start
                    assert count == records
            return out
    finally:
        ray.shutdown()
    raise SystemExit(f"unknown case {case!r}")


def _fresh(case: str, root: str, records: int) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", case, "--root", root, "--records", str(records)]
    proc = subprocess.run(
        [*command, "--parts", str(PARTS)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{proc.stderr[-4000:]}")
    if os.environ.get("INGEST_TIMELINE"):  # the child's per-task timelines
        sys.stderr.writelines(line + "\n" for line in proc.stderr.splitlines() if line.startswith("ray_write"))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} ({min(values):.3f}-{max(values):.3f})"


def _rate(records: int, seconds: list[float]) -> str:
    rates = [records / s for s in seconds]
    return f"{statistics.median(rates) / 1000:8.0f} k/s ({min(rates) / 1000:.0f}-{max(rates) / 1000:.0f})"


def _ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """Per-round ratios of records/s (``theirs`` seconds over ``ours`` seconds)."""
    return [b / a for a, b in zip(ours, theirs, strict=True)]


def main() -> None:
    global PARTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=PARTS)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--child")
    parser.add_argument("--root")
    args = parser.parse_args()
    PARTS = args.parts
    cases = tuple(case for case in CASES if case in args.cases.split(","))
    if not cases or set(args.cases.split(",")) - set(CASES):
        parser.error(f"--cases: choose among {', '.join(CASES)}")
    if args.child:
        print(json.dumps(child(args.child, args.root, args.records)))
        return
    print(f"workloads: {', '.join(cases)}; {PARTS} parts", file=sys.stderr)
    records = args.records
    os.makedirs(WORK, exist_ok=True)
    root = tempfile.mkdtemp(prefix="ingest-", dir=WORK)
    try:
        from kara_core import KaraStorage

        with KaraStorage(f"file://{root}").open_dataset("bench", "single", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(records))
        times: dict[str, list[float]] = {}
        commits: list[dict[str, Any]] = []
        synced_commits: list[dict[str, Any]] = []
        for round_number in range(args.rounds):
            # Rounds interleave the workloads, so load from elsewhere slows them alike.
            for case in cases:
                if case.startswith("k215"):
                    what = case.split("_")[1]
                    params = {"root": root, "records": records, "what": what, "version": str(round_number)}
                    out = run_k215(K215_CODE, params)
                else:
                    out = _fresh(case, root, records)
                if case.startswith("ray"):
                    for name, value in out.items():
                        times.setdefault(name, []).append(value)
                elif case == "commit":
                    commits.append(out)
                    times.setdefault("commit_write", []).append(out["write"])
                    times.setdefault("commit", []).append(out["commit"])
                elif case == "commit_sync":
                    synced_commits.append(out)
                    times.setdefault("commit_write_sync", []).append(out["write_sync_at_commit"])
                    times.setdefault("commit_sync", []).append(out["commit_sync_at_commit"])
                else:
                    times.setdefault(case, []).append(out["seconds"])
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        _report(records, times, commits, synced_commits, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _report(
    records: int,
    times: dict[str, list[float]],
    commits: list[dict[str, Any]],
    synced_commits: list[dict[str, Any]],
    rounds: int,
) -> None:
    load = os.getloadavg()[0]
    print(f"\nParallel ingest, {records:,} small JSON records, file:// store, {rounds} fresh-process rounds")
    print(f"(machine shared with other jobs: load average {load:.1f} on {os.cpu_count()} CPUs at the end)")
    print(f"\n{'workload':<34} {'seconds: median (range)':>28} {'records/s: median (range)':>30}")
    names = {
        "commit_write": f"parallel write, {PARTS} parts, 1 process",
        "commit": f"commit of the {PARTS} parts",
        "commit_write_sync": "  the same, sync_at_commit: write",
        "commit_sync": "  sync_at_commit: commit (syncs)",
        "kara_write": "kara write_many, 1 process",
        "ray_write": "Ray write, Ray's defaults",
        "ray_write_floor": "  Ray floor: no-op datasink",
        "ray_write_both": "Ray write, reservation off",
        "ray_write_both_floor": "  Ray floor: no-op datasink",
        "ray_write_entry": "Ray write, kara_ray.write_datasink",
        "ray_write_floor_entry": "  Ray floor: no-op datasink",
        "ray_write_serial": "  kara's work alone, 1 thread",
        "k215_write": "2.1.5 write, 1 process",
        "kara_read": "kara read, 1 process",
        "ray_read": "Ray read, Ray's defaults",
        "ray_read_floor": "  Ray floor: rows from memory",
        "ray_read_both": "Ray read, reservation off",
        "ray_read_both_floor": "  Ray floor: rows from memory",
        "ray_read_entry": "Ray read, kara_ray.read_datasource",
        "ray_read_floor_entry": "  Ray floor: rows from memory",
        "ray_read_serial": "  kara's work alone, 1 thread",
        "k215_read": "2.1.5 read, 1 process",
    }
    for case, name in names.items():
        if case in times:
            print(f"{name:<34} {_spread(times[case]):>28} {_rate(records, times[case]):>30}")
    for setting, label in (("", "Ray's defaults"), ("_both", "reservation off"), ("_entry", "kara_ray's entry")):
        if f"ray_write{setting}_at_once" in times:
            kara, floor = times[f"ray_write{setting}_at_once"], times[f"ray_write_floor{setting}_at_once"]
            print(f"write tasks running at once ({label}): kara {max(kara):.0f}, no-op floor {max(floor):.0f} (most)")
    if commits or synced_commits:
        first = (commits or synced_commits)[0]
        moved, written = first["moved"], first["written"]
        print(f"\ncommit: data bytes moved ({first['by']}) {moved:,}; bytes rewritten (the index) {written:,}")
        print(f"        a commit that concatenated the parts would rewrite {moved + written:,} bytes")
        for suffix, label, runs in (
            ("", "", commits),
            ("_sync_at_commit", " (sync_at_commit: plan includes the sync)", synced_commits),
        ):
            if not runs:
                continue
            phases = {name: [c["phases" + suffix][name] for c in runs] for name in runs[0]["phases" + suffix]}
            print(
                "        commit phases, ms, median: "
                + ", ".join(f"{name} {1000 * statistics.median(values):.1f}" for name, values in phases.items())
                + label
            )
    rows = [
        ("commit time / write time", "commit", "commit_write", 0.05, "<="),
        ("  sync_at_commit: commit / write", "commit_sync", "commit_write_sync", 0.05, "<="),
        ("Ray write / kara write_many (records/s)", "ray_write", "kara_write", 1.3, ">="),
        ("  ceiling: Ray floor / kara write_many", "ray_write_floor", "kara_write", None, ""),
        ("  reservation off: Ray write / write_many", "ray_write_both", "kara_write", 1.3, ">="),
        ("  ceiling: Ray floor / kara write_many", "ray_write_both_floor", "kara_write", None, ""),
        ("  kara_ray.write_datasink / write_many", "ray_write_entry", "kara_write", 1.3, ">="),
        ("  ceiling: Ray floor / kara write_many", "ray_write_floor_entry", "kara_write", None, ""),
        ("Ray read / kara read (records/s)", "ray_read", "kara_read", 0.8, ">="),
        ("  ceiling: Ray floor / kara read", "ray_read_floor", "kara_read", None, ""),
        ("  reservation off: Ray read / kara read", "ray_read_both", "kara_read", 0.8, ">="),
        ("  ceiling: Ray floor / kara read", "ray_read_both_floor", "kara_read", None, ""),
        ("  kara_ray.read_datasource / kara read", "ray_read_entry", "kara_read", 0.8, ">="),
        ("  ceiling: Ray floor / kara read", "ray_read_floor_entry", "kara_read", None, ""),
        ("kara write_many / 2.1.5 write (records/s)", "kara_write", "k215_write", None, ""),
        ("kara read / 2.1.5 read (records/s)", "kara_read", "k215_read", None, ""),
    ]
    print(f"\n{'ratio':<44} {'median (range)':>24} {'target':>8}  ok")
    for name, ours, theirs, target, sense in rows:
        if ours not in times or theirs not in times:
            continue
        if ours in ("commit", "commit_sync"):
            values = [c / w for c, w in zip(times[ours], times[theirs], strict=True)]
        else:
            values = _ratios(times[ours], times[theirs])
        median = statistics.median(values)
        ok = "-" if target is None else ("yes" if (median <= target if sense == "<=" else median >= target) else "NO")
        goal = "-" if target is None else f"{sense}{target:g}"
        print(f"{name:<44} {median:>9.3f} ({min(values):.3f}-{max(values):.3f}) {goal:>8}  {ok}")
    # kara's share of a Ray run: its seconds above Ray's own floor, measured in the same process.
    print()
    # With one task at a time (Ray's defaults here), a Ray run takes at least its floor
    # plus kara's own work done serially: the best ratio that allows, against the target.
    for name, ours, theirs, floor, serial, target in (
        ("write", "ray_write", "kara_write", "ray_write_floor", "ray_write_serial", 1.3),
        ("read", "ray_read", "kara_read", "ray_read_floor", "ray_read_serial", 0.8),
    ):
        if all(key in times for key in (ours, theirs, floor, serial)):
            bound = [t / (f + w) for t, f, w in zip(times[theirs], times[floor], times[serial], strict=True)]
            print(
                f"Ray {name} one task at a time: floor + kara's serial work = "
                f"{statistics.median(times[floor]) + statistics.median(times[serial]):.3f} s, best ratio "
                f"{statistics.median(bound):.3f} ({min(bound):.3f}-{max(bound):.3f}) against the target {target:g}"
            )
    for name, ours in (
        ("Ray write, Ray's defaults", "ray_write"),
        ("Ray write, reservation off", "ray_write_both"),
        ("Ray read, Ray's defaults", "ray_read"),
        ("Ray read, reservation off", "ray_read_both"),
        ("Ray write, kara_ray's entry", "ray_write_entry"),
        ("Ray read, kara_ray's entry", "ray_read_entry"),
    ):
        base, _, setting = ours.partition("_")[2].partition("_")
        floor = f"ray_{base}_floor" + (f"_{setting}" if setting else "")
        if ours in times and floor in times:
            above = [a - b for a, b in zip(times[ours], times[floor], strict=True)]
            print(
                f"{name}: Ray's floor {statistics.median(times[floor]):.3f} s, kara's share above it "
                f"{statistics.median(above):.3f} s ({min(above):.3f}-{max(above):.3f})"
            )


if __name__ == "__main__":
    main()
