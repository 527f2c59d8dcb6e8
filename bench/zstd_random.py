"""``ds[i]`` latency of json+zstd with record groups, one frame per record, and json.

The records and the dictionary are bench/pipeline.py's: 200,000 small records; json;
json+zstd with a 16 KiB dictionary trained at level 19 on 1% of them, written with record
groups (the default, 16 records per frame) and with ``group=1`` (one frame per record).
Every round of every side reads the same 20,000 random records once by index in a fresh
process (sides alternate, round by round); the table shows microseconds per ``ds[i]``,
median and range (min-max) over the rounds. A record read alone decompresses its group:
this is the price of the groups' faster sequential reads and smaller size.

    python bench/zstd_random.py [ROUNDS]
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

READS = 20_000
RECORDS = 200_000


def one_round(url: str, key: str) -> float:
    """Microseconds per ``ds[i]`` over READS random records of ``key``."""
    import kara_core

    with kara_core.KaraStorage(url).open_dataset("cmp", key) as ds:
        positions = random.Random(1).sample(range(len(ds)), READS)
        started = time.perf_counter()
        for i in positions:
            ds[i]
        return (time.perf_counter() - started) / READS * 1e6


def main() -> None:
    from pipeline import small_record

    import kara_core
    from kara_core.serialization import ZstdSerializer

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    root = tempfile.mkdtemp(prefix="kara-zstd-random-")
    url = "file://" + root
    store = kara_core.KaraStorage(url)
    records = [small_record(i) for i in range(RECORDS)]
    trained = ZstdSerializer.train(records[::100], "json", level=19, dict_size=16 * 1024)
    sides = {
        "json": "json",
        "json+zstd, groups of 16": trained,
        "json+zstd, group=1": ZstdSerializer(trained.inner, 19, trained.dictionary, group=1),
    }
    keys = {side: f"k{n}" for n, side in enumerate(sides)}
    for side, serializer in sides.items():
        with store.open_dataset("cmp", keys[side], "w", version="1", serialization=serializer) as ds:
            ds.write_many(records)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            code += f"from zstd_random import one_round; print(one_round({url!r}, {keys[side]!r}))"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            times[side].append(float(out.stdout))
    print(f"ds[i] of {READS:,} random records out of {RECORDS:,}, {rounds} fresh-process rounds per side")
    print(f"{'side':28s} {'us per ds[i]: median':>22s} {'range':>16s}")
    for side, values in times.items():
        print(f"{side:28s} {statistics.median(values):22.2f} {min(values):7.2f}-{max(values):.2f}")


if __name__ == "__main__":
    main()
