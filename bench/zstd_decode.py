"""Ways to decode json+zstd records sequentially, against json (issue 16's 0.7x target).

The records and the dictionary are bench/pipeline.py's: 200,000 small records, json, and
json+zstd with a 16 KiB dictionary trained at level 19 on 1% of them. Every round of every
variant reads all records once in a fresh process (variants alternate, round by round);
the table shows records/s, median and range (min-max) over ROUNDS rounds, and the ratio
of medians against json read by kara (``for record in ds``). Variants:

- ``json``, ``json+zstd``: kara's reader (``for record in ds``), as bench/pipeline.py.
- ``zstd level L``: the same records, dictionary and frames written at level L (lever:
  a faster setting for new writes; bytes on disk are printed with it).
- ``json``/``zstd, 16,384-record refills``: kara's reader with refills of 16,384 records
  (4 MiB read-ahead budget) instead of 4,096 (1 MiB).
- ``zstd decompressobj``: kara's refills (``read_raw_range``), each frame through
  ``ZstdDecompressor.decompressobj()`` instead of ``decompress`` (per-call overhead).
- ``zstd batch tN``: each refill (4,096 records, ``read_raw_joined``) copied with the
  zstd magic number in front of every frame, decompressed by one
  ``multi_decompress_to_buffer(threads=N)`` call, ``orjson.loads`` over a memoryview of
  each decompressed segment (python-zstandard's batch API cannot read magicless frames).
- ``zstd prefetch``: as ``batch t0``, the next refill decompressed by a second Python
  thread (zstd releases the GIL) while this one's records are parsed.

    python bench/zstd_decode.py        (KARA_BENCH_ROUNDS=5 by default; under the bench lock)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import remove_workdir, small_record, workdir  # noqa: E402

sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH]

ROUNDS = int(os.environ.get("KARA_BENCH_ROUNDS", "5"))
RECORDS = 200_000
REFILL = 4096
LEVELS = (3, 1)
MAGIC = b"\x28\xb5\x2f\xfd"


# -- one round (a fresh process) ------------------------------------------------------------


def kara_round(url: str, key: str, refill: int = 0) -> tuple[int, float]:
    """``for record in ds``: kara's sequential reader (``refill``: records per refill
    instead of 4,096, with 256 bytes a record of read-ahead budget)."""
    import kara_core

    if refill:
        from kara_core.row import dataset

        dataset.BATCH_RECORDS, dataset.BATCH_BYTES = refill, refill * 256

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds:
        started = time.perf_counter()
        return sum(1 for _ in ds), time.perf_counter() - started


def decompressobj_round(url: str, key: str) -> tuple[int, float]:
    """Kara's refills, each frame decompressed by a new decompressobj."""
    import orjson
    import zstandard

    import kara_core

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds:
        context = _context(ds, magicless=True)
        started, count = time.perf_counter(), 0
        for start in range(0, len(ds), REFILL):
            frames = ds.read_raw_range(start, start + REFILL)
            count += sum(1 for _ in (orjson.loads(context.decompressobj().decompress(f)) for f in frames))
        assert isinstance(context, zstandard.ZstdDecompressor)
        return count, time.perf_counter() - started


def batch_round(url: str, key: str, threads: int) -> tuple[int, float]:
    """One multi_decompress_to_buffer call per refill (magic numbers copied in)."""
    import orjson

    import kara_core

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds:
        batch = _context(ds, magicless=False).multi_decompress_to_buffer
        _with_magic(*ds.read_raw_joined(0, 1))  # numpy's import, outside the clock
        started, count = time.perf_counter(), 0
        for start in range(0, len(ds), REFILL):
            frames = batch(_with_magic(*ds.read_raw_joined(start, start + REFILL)), threads=threads)
            count += sum(1 for _ in map(orjson.loads, map(memoryview, frames)))
        return count, time.perf_counter() - started


def prefetch_round(url: str, key: str) -> tuple[int, float]:
    """As batch_round with threads=0, the next refill decompressed in a second thread."""
    from concurrent.futures import ThreadPoolExecutor

    import orjson

    import kara_core

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds, ThreadPoolExecutor(1) as pool:
        batch = _context(ds, magicless=False).multi_decompress_to_buffer

        def decompressed(start: int) -> Any:
            return batch(_with_magic(*ds.read_raw_joined(start, start + REFILL)))

        _with_magic(*ds.read_raw_joined(0, 1))  # numpy's import, outside the clock
        started, count = time.perf_counter(), 0
        starts: Iterator[int] = iter(range(0, len(ds), REFILL))
        pending = pool.submit(decompressed, next(starts))
        for start in [*starts, None]:
            frames = pending.result()
            if start is not None:
                pending = pool.submit(decompressed, start)
            count += sum(1 for _ in map(orjson.loads, map(memoryview, frames)))
        return count, time.perf_counter() - started


def _context(ds: Any, magicless: bool) -> Any:
    import zstandard

    serializer = ds.serializer
    data = zstandard.ZstdCompressionDict(serializer.dictionary) if serializer.dictionary else None
    form = zstandard.FORMAT_ZSTD1_MAGICLESS if magicless else zstandard.FORMAT_ZSTD1
    return zstandard.ZstdDecompressor(dict_data=data, format=form)


def _with_magic(data: bytes, ends: Any) -> Any:
    """The run's frames with the magic number in front of each, as BufferWithSegments."""
    import numpy as np
    import zstandard

    count = len(ends)
    bounds = np.zeros(count + 1, dtype=np.int64)
    bounds[1:] = np.frombuffer(ends, dtype=np.uint64)
    framed = np.empty(int(bounds[-1]) + 4 * count, dtype=np.uint8)
    starts = bounds[:-1] + 4 * np.arange(count, dtype=np.int64)
    record = np.ones(len(framed), dtype=bool)
    for offset, byte in enumerate(MAGIC):
        framed[starts + offset] = byte
        record[starts + offset] = False
    framed[record] = np.frombuffer(data, dtype=np.uint8)
    segments = np.empty((count, 2), dtype=np.uint64)
    segments[:, 0] = starts
    segments[:, 1] = np.diff(bounds) + 4
    return zstandard.BufferWithSegments(framed, segments)


ROUND_KINDS = {
    "kara": kara_round,
    "decompressobj": decompressobj_round,
    "batch": batch_round,
    "prefetch": prefetch_round,
}


def run_round(job: dict[str, Any]) -> dict[str, float]:
    """One round: the read is timed from the open dataset on (imports and open excluded)."""
    count, seconds = ROUND_KINDS[job["kind"]](*job["args"])
    return {"seconds": seconds, "units": count}


def fresh_round(job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--round", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"round {job} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["units"] == RECORDS, result
    return result


# -- the data and the table -----------------------------------------------------------------


def write_data(url: str) -> dict[str, int]:
    import kara_core
    from kara_core.serialization import ZstdSerializer

    store = kara_core.KaraStorage(url)
    records = [small_record(i) for i in range(RECORDS)]
    trained = ZstdSerializer.train(records[::100], "json", level=19, dict_size=16 * 1024)
    serializers: dict[str, Any] = {"json": "json", "json+zstd": trained}
    for level in LEVELS:
        serializers[f"zstd{level}"] = ZstdSerializer.train(records[::100], "json", level=level, dict_size=16 * 1024)
    for key, serializer in serializers.items():
        with store.open_dataset("cmp", key, "w", version="1", serialization=serializer) as ds:
            ds.write_many(records)
    return {key: store.rows.dataset_info("cmp", key)["data_bytes"] for key in serializers}


def main() -> None:
    import compileall

    for folder in ("kara_core", "plugins"):
        compileall.compile_dir(os.path.join(os.path.dirname(BENCH), folder), quiet=1)
    root = workdir("zstd_decode")
    url = "file://" + os.path.join(root, "store")
    try:
        sizes = write_data(url)
        jobs = {
            "json": {"kind": "kara", "args": [url, "json"]},
            "json+zstd (kara, level 19)": {"kind": "kara", "args": [url, "json+zstd"]},
            **{f"zstd level {lv} (kara)": {"kind": "kara", "args": [url, f"zstd{lv}"]} for lv in LEVELS},
            "json, 16,384-record refills": {"kind": "kara", "args": [url, "json", 16384]},
            "zstd, 16,384-record refills": {"kind": "kara", "args": [url, "json+zstd", 16384]},
            "zstd decompressobj": {"kind": "decompressobj", "args": [url, "json+zstd"]},
            "zstd batch t0": {"kind": "batch", "args": [url, "json+zstd", 0]},
            "zstd batch t2": {"kind": "batch", "args": [url, "json+zstd", 2]},
            "zstd prefetch": {"kind": "prefetch", "args": [url, "json+zstd"]},
        }
        load_start = os.getloadavg()[0]
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
        for _ in range(ROUNDS):
            for name, job in jobs.items():
                results[name].append(fresh_round(job))
        load_end = os.getloadavg()[0]
    finally:
        remove_workdir(root)
    print(
        f"bench/zstd_decode.py: {RECORDS:,} records, {ROUNDS} rounds each in fresh processes, variants "
        f"alternating; load average {load_start:.1f} at the start, {load_end:.1f} at the end, "
        f"{os.cpu_count()} cores"
    )
    rates = {name: [r["units"] / r["seconds"] for r in rounds] for name, rounds in results.items()}
    base = statistics.median(rates["json"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:<28} {median:>12,.0f} records/s ({min(values):,.0f}-{max(values):,.0f})  "
            f"{median / base:.2f}x of json"
        )
    print("bytes on disk: " + ", ".join(f"{key} {size:,}" for key, size in sizes.items()))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--round":
        print(json.dumps(run_round(json.loads(sys.argv[2]))))
    else:
        main()
