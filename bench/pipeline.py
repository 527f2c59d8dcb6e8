"""The pretraining pipeline: mixtures, packed tokens, compressed and array records.

Four comparisons, each a ratio of two measurements taken in the same run, every round a
fresh Python process (rounds of the two sides alternate), reported as median and range
(min-max) over ROUNDS rounds:

1. A DataLoader over a 3-source mixture (``kara_core.mix`` of 100,000, 60,000 and 40,000
   records weighted by size, ``exhausted="stop"``: one pass, about 200,000 samples)
   against the same loader over one dataset of 200,000 records (shuffled);
   ``common.small_record`` records, batch 64, 0 and 2 workers. Target: mixture >= 0.9x
   the samples/s.
2. Packed token samples (``kara_core.pack``, seq_len 2048, tokens stored with the
   ``numpy`` serializer) against LitData's ``StreamingDataset`` with ``TokensLoader``
   on the same tokens, written by LitData's own ``optimize(num_workers=1)``; both read in
   stored order through a DataLoader (batch 8), 0 and 2 workers. Target: >= 1.5x tokens/s.
   LitData runs in its own virtualenv (``.venv-litdata``, made by ``scripts/bench``).
   kara is measured twice: as above (the DataLoader collates 8 samples per batch), and
   with ``make_torch_dataset(..., batches=True)`` and ``DataLoader(batch_size=None)``
   (kara makes each batch as one tensor gathered from the records, in shared memory in
   workers). The floor is the same DataLoader over an IterableDataset that yields one
   preallocated (8, 2048) int32 tensor again and again, as many batches: what the
   DataLoader itself costs, which no dataset can beat.
3. ``json+zstd`` (a dictionary trained on 1% of the records) against ``json`` on 200,000
   small records: bytes on disk (target >= 3x smaller) and one sequential read of every
   record (target >= 0.7x of json's records/s).
4. ``numpy`` records of 2,048 int32 tokens read sequentially, each summed, against plain
   file I/O of the same bytes (8 KiB ``readinto`` per record, summed the same way).
   Target: >= 0.8x of plain file I/O.

kara's sources are byte-compiled first (as an installed package is). KARA_BENCH_ONLY (a
comma-separated subset of mix, packed, zstd, numpy) runs only those comparisons.

    .venv/bin/python bench/pipeline.py          (or: bash scripts/bench pipeline)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import ROOT, remove_workdir, small_record, workdir  # noqa: E402

# bench/ has modules named like standard ones (http.py): keep it off the path from here on.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH]

ROUNDS = int(os.environ.get("KARA_BENCH_ROUNDS", "5"))
#: The comparisons to run (KARA_BENCH_ONLY, comma-separated; default all).
PARTS = ("mix", "packed", "zstd", "numpy")
ONLY = [part for part in os.environ.get("KARA_BENCH_ONLY", ",".join(PARTS)).split(",") if part]
BATCH = 64
MIX_SIZES = {"web": 100_000, "code": 60_000, "books": 40_000}
MIX_WEIGHTS = {"web": 0.5, "code": 0.3, "books": 0.2}
SINGLE_RECORDS = 200_000
SEQ_LEN = 2048
PACK_BATCH = 8
DOCUMENTS = 6_000
COMPRESS_RECORDS = 200_000
ARRAY_RECORDS = 10_000
ARRAY_TOKENS = 2048
LITDATA_PYTHON = os.environ.get("KARA_LITDATA_PYTHON") or os.path.join(ROOT, ".venv-litdata", "bin", "python")


# -- one round (runs in a fresh process) -----------------------------------------------------


def loader_round(url: str, kind: str, workers: int) -> dict[str, float]:
    """One epoch of the single dataset or the mixture through a DataLoader."""
    from torch.utils.data import DataLoader

    import kara_core

    store = kara_core.KaraStorage(url)
    started = time.perf_counter()
    if kind == "single":
        ds = kara_core.make_torch_dataset(store.open_dataset("mix", "single"), shuffle=True, batch_size=BATCH)
    else:
        sources = {name: store.open_dataset("mix", name) for name in MIX_SIZES}
        mixture = kara_core.mix(sources, MIX_WEIGHTS, seed=1)
        ds = kara_core.make_torch_dataset(mixture, batch_size=BATCH)
    loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=list)
    samples = sum(len(batch) for batch in loader)
    return {"seconds": time.perf_counter() - started, "units": samples}


def packed_round(url: str, workers: int, batches: bool = False) -> dict[str, float]:
    """Every packed sample of the token dataset through a DataLoader, in stored order.

    ``batches``: kara makes the batches (``make_torch_dataset(batches=True)``, the
    DataLoader gets ``batch_size=None``); else the DataLoader collates the samples.
    """
    from torch.utils.data import DataLoader

    import kara_core

    started = time.perf_counter()
    packed = kara_core.pack(kara_core.KaraStorage(url).open_dataset("tok", "docs"), field=None, seq_len=SEQ_LEN)
    ds = kara_core.make_torch_dataset(packed, batch_size=PACK_BATCH, batches=batches)
    loader = DataLoader(ds, batch_size=None if batches else PACK_BATCH, num_workers=workers)
    tokens = sum(batch.numel() for batch in loader)
    return {"seconds": time.perf_counter() - started, "units": tokens}


def floor_round(workers: int, batches: int) -> dict[str, float]:
    """The DataLoader alone: ``batches`` batches of one preallocated (8, 2048) int32 tensor."""
    from torch.utils.data import DataLoader

    started = time.perf_counter()
    loader = DataLoader(_preallocated_class()(batches), batch_size=None, num_workers=workers)
    tokens = sum(batch.numel() for batch in loader)
    return {"seconds": time.perf_counter() - started, "units": tokens}


def _preallocated_class() -> type:
    # Made where torch is imported (the bench's main process never imports it); forked
    # DataLoader workers inherit the class.
    from torch.utils.data import IterableDataset

    class Preallocated(IterableDataset):
        """Yields one tensor again and again, each worker its share of ``batches``."""

        def __init__(self, batches: int) -> None:
            self.batches = batches

        def __iter__(self) -> Any:
            import torch
            from torch.utils.data import get_worker_info

            info = get_worker_info()
            worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
            batch = torch.zeros((PACK_BATCH, SEQ_LEN), dtype=torch.int32)
            for _ in range(worker, self.batches, workers):
                yield batch

    return Preallocated


def read_round(url: str, key: str) -> dict[str, float]:
    """One sequential read of every record of ``cmp/<key>``."""
    import kara_core

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds:
        started = time.perf_counter()
        count = sum(1 for _ in ds)
        return {"seconds": time.perf_counter() - started, "units": count}


def array_round(url: str, path: str, kind: str) -> dict[str, float]:
    """Sum every 2,048-token record: kara's numpy records, or the plain file read 8 KiB at a time."""
    import numpy as np

    import kara_core

    total = 0
    if kind == "kara":
        with kara_core.KaraStorage(url).open_dataset("arr", "tokens") as ds:
            started = time.perf_counter()
            for array in ds:
                total += int(array.sum())
    else:
        started = time.perf_counter()
        buffer = np.empty(ARRAY_TOKENS, dtype=np.int32)
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buffer):
                total += int(buffer.sum())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "units": ARRAY_RECORDS, "checksum": total}


LITDATA_ROUND = """
import time
from torch.utils.data import DataLoader
from litdata import StreamingDataset
from litdata.streaming.item_loader import TokensLoader

started = time.perf_counter()
ds = StreamingDataset(PARAMS["dir"], item_loader=TokensLoader(block_size=PARAMS["seq_len"]), shuffle=False)
loader = DataLoader(ds, batch_size=PARAMS["batch"], num_workers=PARAMS["workers"])
tokens = sum(batch.numel() for batch in loader)
print(json.dumps({"seconds": time.perf_counter() - started, "units": tokens}))
"""

LITDATA_OPTIMIZE = """
import numpy as np
import torch
from litdata import optimize
from litdata.streaming.item_loader import TokensLoader

flat = np.load(PARAMS["tokens"])
ends = np.load(PARAMS["ends"])

def document(i):
    start = int(ends[i - 1]) if i else 0
    yield torch.from_numpy(flat[start : int(ends[i])].copy())

if __name__ == "__main__":
    optimize(fn=document, inputs=list(range(len(ends))), output_dir=PARAMS["dir"],
             chunk_size=(PARAMS["seq_len"] + 1) * 256, item_loader=TokensLoader(), num_workers=1)
    print(json.dumps({}))
"""


def run_litdata(code: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``code`` in LitData's virtualenv; it reads ``PARAMS`` and prints one JSON line last."""
    if not os.path.exists(LITDATA_PYTHON):
        sys.exit(f"LitData not found at {LITDATA_PYTHON}: run scripts/bench pipeline (it creates .venv-litdata)")
    script = os.path.join(params["work"], "litdata_job.py")
    with open(script, "w") as fh:
        fh.write("import json, sys\nPARAMS = json.loads(open(sys.argv[1]).read())\n" + code)
    with open(script + ".json", "w") as fh:
        json.dump(params, fh)
    proc = subprocess.run(
        [LITDATA_PYTHON, script, script + ".json"], capture_output=True, text=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"LitData run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fresh_round(job: dict[str, Any]) -> dict[str, Any]:
    """Run one round of ``job`` in a new kara Python process."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--round", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"round {job} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


ROUND_KINDS: dict[str, Callable[..., dict[str, float]]] = {
    "loader": loader_round,
    "packed": packed_round,
    "floor": floor_round,
    "read": read_round,
    "array": array_round,
}


# -- the data -------------------------------------------------------------------------------


def write_data(root: str, url: str) -> dict[str, Any]:
    """Write every dataset and file the rounds read; return paths and facts."""
    import numpy as np

    import kara_core
    from kara_core.serialization import ZstdSerializer

    store = kara_core.KaraStorage(url)
    facts: dict[str, Any] = {}
    if "mix" in ONLY:
        for name, count in {**MIX_SIZES, "single": SINGLE_RECORDS}.items():
            with store.open_dataset("mix", name, "w", version="1") as ds:
                ds.write_many(small_record(i) for i in range(count))

    rng = np.random.default_rng(2024)
    lengths = rng.integers(100, 8000, size=DOCUMENTS)
    flat = rng.integers(0, 50_000, size=int(lengths.sum()), dtype=np.int32)
    if "packed" in ONLY:
        ends = np.cumsum(lengths)
        tokens_path, ends_path = os.path.join(root, "tokens.npy"), os.path.join(root, "ends.npy")
        np.save(tokens_path, flat)
        np.save(ends_path, ends)
        with store.open_dataset("tok", "docs", "w", version="1", serialization="numpy") as ds:
            ds.write_many(np.split(flat, ends[:-1]))
        # The first open counts the tokens and caches the counts in the version's sidecar.
        kara_core.pack(store.open_dataset("tok", "docs"), field=None, seq_len=SEQ_LEN)
        litdata_dir = os.path.join(root, "litdata")
        params = {"work": root, "tokens": tokens_path, "ends": ends_path, "dir": litdata_dir, "seq_len": SEQ_LEN}
        run_litdata(LITDATA_OPTIMIZE, params)
        facts.update(litdata_dir=litdata_dir, tokens=int(flat.size))

    if "zstd" in ONLY:
        records = [small_record(i) for i in range(COMPRESS_RECORDS)]
        trained = ZstdSerializer.train(records[::100], "json", level=19, dict_size=16 * 1024)
        for key, serializer in (("json", "json"), ("json+zstd", trained)):
            with store.open_dataset("cmp", key, "w", version="1", serialization=serializer) as ds:
                ds.write_many(records)
        facts["sizes"] = {key: store.rows.dataset_info("cmp", key)["data_bytes"] for key in ("json", "json+zstd")}

    if "numpy" in ONLY:
        arrays = rng.integers(0, 50_000, size=(ARRAY_RECORDS, ARRAY_TOKENS), dtype=np.int32)
        with store.open_dataset("arr", "tokens", "w", version="1", serialization="numpy") as ds:
            ds.write_many(arrays)
        facts["plain"] = os.path.join(root, "plain.bin")
        arrays.tofile(facts["plain"])
    return facts


# -- reporting ------------------------------------------------------------------------------


def rate_stats(results: list[dict[str, float]]) -> tuple[float, float, float]:
    """Median, min and max of units per second over the rounds."""
    rates = [r["units"] / r["seconds"] for r in results]
    return statistics.median(rates), min(rates), max(rates)


def print_comparison(title: str, rows: list[tuple[str, str, list[dict], str, list[dict], float]], unit: str) -> None:
    """Rows of (workload, ours label, our rounds, theirs label, their rounds, target ratio)."""
    print(f"\n{title}")
    header = f"{'workload':<34} {'side':<22} {'median ' + unit:>16} {'range (min-max)':>26}"
    print(header + f" {'ratio':>8} {'target':>7}  ok")
    for workload, ours_label, ours, theirs_label, theirs, target in rows:
        ours_med, ours_min, ours_max = rate_stats(ours)
        theirs_med, theirs_min, theirs_max = rate_stats(theirs)
        ratio = ours_med / theirs_med
        ok = "yes" if ratio >= target else "NO"
        print(f"{workload:<34} {ours_label:<22} {ours_med:>16,.0f} {f'{ours_min:,.0f}-{ours_max:,.0f}':>26}")
        print(
            f"{'':<34} {theirs_label:<22} {theirs_med:>16,.0f} {f'{theirs_min:,.0f}-{theirs_max:,.0f}':>26}"
            f" {ratio:>7.2f}x {target:>6.1f}x  {ok}"
        )


def alternate(jobs: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """ROUNDS rounds of every job, alternating between them so machine load hits all alike."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    for _ in range(ROUNDS):
        for name, job in jobs.items():
            results[name].append(job())
    return results


def byte_compile() -> None:
    """Byte-compile kara's sources, as installing a package does (pip compiles on install).

    Rounds run in fresh processes; with PYTHONDONTWRITEBYTECODE set and no .pyc files,
    every round would compile kara's modules inside its timed section (kara imports its
    row, pipeline and torch modules and its plugins lazily, when a store is opened), while
    LitData, installed by pip, starts from compiled files. The trees compiled are the ones
    the rounds import (found as they find them), which are not this checkout's when
    PYTHONPATH does not point at it (an editable install of another checkout): that is
    said, since the rounds then measure that checkout's code.
    """
    import compileall
    import importlib.util

    folders = {os.path.join(ROOT, folder) for folder in ("kara_core", "plugins", "examples")}
    names = ["kara_core"] + [
        package
        for parent in (os.path.join(ROOT, "plugins"), os.path.join(ROOT, "examples"))
        for project in sorted(os.listdir(parent))
        if os.path.isdir(os.path.join(parent, project))
        for package in sorted(os.listdir(os.path.join(parent, project)))
        if os.path.isfile(os.path.join(parent, project, package, "__init__.py"))
    ]
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        where = os.path.abspath(next(iter(spec.submodule_search_locations)))
        if not where.startswith(ROOT + os.sep):
            print(f"note: the rounds import {name} from {where}, not from this checkout ({ROOT})", file=sys.stderr)
            folders.add(where)
    for folder in sorted(folders):
        compileall.compile_dir(folder, quiet=1)


def main() -> None:
    """Write the data, run the rounds, print the tables."""
    byte_compile()
    root = workdir("pipeline")
    url = "file://" + os.path.join(root, "store")
    try:
        facts = write_data(root, url)
        loaders: dict[str, list[dict[str, Any]]] = {}
        if "mix" in ONLY:
            loader_jobs: dict[str, Callable[[], dict[str, Any]]] = {}
            for workers in (0, 2):
                for kind in ("single", "mix"):
                    job = {"kind": "loader", "args": [url, kind, workers]}
                    loader_jobs[f"{kind}/{workers}"] = lambda job=job: fresh_round(job)
            loaders = alternate(loader_jobs)
        packed: dict[str, list[dict[str, Any]]] = {}
        if "packed" in ONLY:
            packed_jobs: dict[str, Callable[[], dict[str, Any]]] = {}
            batches = -(-(facts["tokens"] // SEQ_LEN) // PACK_BATCH)
            for workers in (0, 2):
                packed_jobs[f"kara/{workers}"] = lambda w=workers: fresh_round({"kind": "packed", "args": [url, w]})
                packed_jobs[f"batches/{workers}"] = lambda w=workers: fresh_round(
                    {"kind": "packed", "args": [url, w, True]}
                )
                packed_jobs[f"floor/{workers}"] = lambda w=workers: fresh_round({"kind": "floor", "args": [w, batches]})
                params = {"work": root, "dir": facts["litdata_dir"], "seq_len": SEQ_LEN, "batch": PACK_BATCH}
                packed_jobs[f"litdata/{workers}"] = lambda p={**params, "workers": workers}: run_litdata(
                    LITDATA_ROUND, p
                )
            packed = alternate(packed_jobs)
        reads: dict[str, list[dict[str, Any]]] = {}
        if "zstd" in ONLY:
            reads = alternate(
                {key: lambda k=key: fresh_round({"kind": "read", "args": [url, k]}) for key in ("json", "json+zstd")}
            )
        arrays: dict[str, list[dict[str, Any]]] = {}
        if "numpy" in ONLY:
            arrays = alternate(
                {
                    kind: lambda k=kind: fresh_round({"kind": "array", "args": [url, facts["plain"], k]})
                    for kind in ("kara", "plain")
                }
            )
    finally:
        remove_workdir(root)
    load = os.getloadavg()[0]
    print(
        f"\nbench/pipeline.py: {ROUNDS} rounds each, every round a fresh process, sides alternating; "
        f"load average {load:.1f} on {os.cpu_count()} cores (the machine is shared with other jobs: "
        "the ratios, taken in the same run, are what count)"
    )
    if loaders:
        print_comparison(
            f"DataLoader, batch {BATCH}: 3-source mixture (one pass) vs one dataset of {SINGLE_RECORDS:,} records",
            [
                (f"num_workers={w}", "mixture", loaders[f"mix/{w}"], "single dataset", loaders[f"single/{w}"], 0.9)
                for w in (0, 2)
            ],
            "samples/s",
        )
    if packed:
        sides = (("kara", "kara pack (numpy)"), ("batches", "kara, batches=True"), ("floor", "floor: DataLoader only"))
        print_comparison(
            f"Packed tokens, seq_len {SEQ_LEN}, {facts['tokens']:,} tokens in {DOCUMENTS:,} documents "
            f"(batch {PACK_BATCH})",
            [
                (f"num_workers={w}", label, packed[f"{side}/{w}"], "LitData TokensLoader", packed[f"litdata/{w}"], 1.5)
                for w in (0, 2)
                for side, label in sides
            ],
            "tokens/s",
        )
    if reads:
        sizes = facts["sizes"]
        print_comparison(
            f"{COMPRESS_RECORDS:,} small records, one sequential read",
            [("read", "json+zstd (dictionary)", reads["json+zstd"], "json", reads["json"], 0.7)],
            "records/s",
        )
        print(
            f"bytes on disk: json {sizes['json']:,}, json+zstd {sizes['json+zstd']:,}: "
            f"{sizes['json'] / sizes['json+zstd']:.2f}x smaller (target 3.0x) "
            f"{'yes' if sizes['json'] >= 3 * sizes['json+zstd'] else 'NO'}"
        )
    if arrays:
        assert len({r["checksum"] for r in arrays["kara"] + arrays["plain"]}) == 1
        print_comparison(
            f"{ARRAY_RECORDS:,} records of {ARRAY_TOKENS} int32 tokens, read and summed in order",
            [("sequential read", "kara numpy records", arrays["kara"], "plain file I/O", arrays["plain"], 0.8)],
            "records/s",
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--round":
        job = json.loads(sys.argv[2])
        print(json.dumps(ROUND_KINDS[job["kind"]](*job["args"])))
    else:
        main()
