"""Crash safety: writers killed with SIGKILL at random moments never leave a dataset that
fails to open, lose nothing they flushed, and the next writer continues cleanly."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from kara_core import KaraStorage

from .conftest import record, run_kara

# Appends record(i) from wherever the version stands, flushing at random points and
# reporting each flushed count on stdout; small blocks and buffers so rollovers and
# buffer spills happen all the time.
WRITER = """
import random, sys
from kara_core import KaraStorage
sys.path.insert(0, sys.argv[2])
from conftest import record
store = KaraStorage("file://" + sys.argv[1])
ds = store.open_dataset("crash", "rows", "w", version="1", max_file_size=1500, buffer_size=700)
n = len(ds)
rng = random.Random()
print(n, flush=True)
while True:
    batch = rng.randint(1, 40)
    if rng.random() < 0.5:
        ds.write_many(record(i) for i in range(n, n + batch))
    else:
        for i in range(n, n + batch):
            ds.write(record(i))
    n += batch
    ds.flush()
    print(n, flush=True)
"""

RUNS_PER_STORE = 6
STORES = 4


def _check(root: Path, flushed: int) -> int:
    store = KaraStorage(f"file://{root}")
    with store.open_dataset("crash", "rows") as ds:
        n = len(ds)
        assert n >= flushed, f"{flushed} records were flushed but only {n} read back"
        assert list(ds) == [record(i) for i in range(n)]
    return n


def test_writers_killed_at_random_moments_lose_nothing_flushed(tmp_path: Path) -> None:
    rng = random.Random(20240527)
    tests_dir = str(Path(__file__).parent)
    roots = [tmp_path / f"store{k}" for k in range(STORES)]
    history: list[tuple[int, int]] = []
    for _ in range(RUNS_PER_STORE):
        # One writer per store at a time, STORES stores in parallel to keep the test short.
        procs = [run_kara(WRITER, str(root), tests_dir) for root in roots]
        flushed = []
        for proc in procs:
            assert proc.stdout is not None
            start = proc.stdout.readline()
            assert start, proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
        for proc in procs:
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            out, _ = proc.communicate()
            assert proc.returncode == -signal.SIGKILL
            lines = out.split()
            flushed.append(int(lines[-1]) if lines else 0)
        for root, count in zip(roots, flushed, strict=True):
            history.append((count, _check(root, count)))
    assert len(history) >= 20
    # The kills landed while records were being written, not before the first one.
    assert sum(1 for count, _ in history if count > 0) >= 20
    for root in roots:
        store = KaraStorage(f"file://{root}")
        with store.open_dataset("crash", "rows", "w", version="1", max_file_size=1500) as ds:
            start = len(ds)
            ds.write_many(record(i) for i in range(start, start + 10))
        assert _check(root, start + 10) == start + 10
        assert store.rows.verify("crash", "rows") == []
