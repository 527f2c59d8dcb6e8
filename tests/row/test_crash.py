"""Crash safety: writers killed with SIGKILL at random moments never leave a dataset that
fails to open, lose nothing they flushed, and the next writer continues cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kara_core import KaraStorage
from kara_core.errors import ParallelWriteError

from .conftest import record, run_kara

# A launcher that imports kara once and then, for each "go" on stdin, forks a writer child
# (a real process, killed for real) so that each of the many runs does not pay for a new
# interpreter. The child appends record(i) from wherever the version stands, flushing at
# random points and reporting each flushed count; small blocks and buffers so rollovers
# and buffer spills happen all the time.
LAUNCHER = """
import os, random, sys
from kara_core import KaraStorage
sys.path.insert(0, sys.argv[2])
from conftest import record

def say(*words):
    # One write(2) per line: a child killed mid-line would otherwise leave half a line
    # that the next message runs into.
    os.write(1, (" ".join(map(str, words)) + "\\n").encode())

def write_forever():
    store = KaraStorage("file://" + sys.argv[1])
    ds = store.open_dataset("crash", "rows", "w", version="1", max_file_size=6000, buffer_size=700)
    n = len(ds)
    rng = random.Random()
    say("count", n)
    while True:
        batch = rng.randint(1, 40)
        if rng.random() < 0.5:
            ds.write_many(record(i) for i in range(n, n + batch))
        else:
            for i in range(n, n + batch):
                ds.write(record(i))
        n += batch
        ds.flush()
        say("count", n)

for line in sys.stdin:
    if line.strip() != "go":
        break
    pid = os.fork()
    if pid == 0:
        try:
            write_forever()
        finally:
            os._exit(1)
    say("child", pid)
    _, status = os.waitpid(pid, 0)
    say("exited", os.waitstatus_to_exitcode(status))
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


def _expect(proc: subprocess.Popen[str], word: str) -> list[str]:
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, "a launcher died (see launchers.err in the test's tmp_path)"
        lines.append(line)
        if line.startswith(word):
            return lines


def test_writers_killed_at_random_moments_lose_nothing_flushed(tmp_path: Path) -> None:
    rng = random.Random(20240527)
    tests_dir = str(Path(__file__).parent)
    roots = [tmp_path / f"store{k}" for k in range(STORES)]
    errors = (tmp_path / "launchers.err").open("w")
    launchers = [run_kara(LAUNCHER, str(root), tests_dir, stdin=True, stderr=errors) for root in roots]
    history: list[tuple[int, int]] = []
    try:
        for _ in range(RUNS_PER_STORE):
            # One writer per store at a time, STORES stores in parallel to keep the test short.
            for launcher in launchers:
                assert launcher.stdin is not None
                launcher.stdin.write("go\n")
                launcher.stdin.flush()
            children = []
            for launcher in launchers:
                children.append(int(_expect(launcher, "child")[-1].split()[1]))
                _expect(launcher, "count")  # the writer is open and appending
            time.sleep(rng.uniform(0.0, 0.25))
            for pid in children:
                time.sleep(rng.uniform(0.0, 0.05))
                os.kill(pid, signal.SIGKILL)
            for root, launcher in zip(roots, launchers, strict=True):
                lines = _expect(launcher, "exited")
                assert lines[-1].split()[1] == str(-signal.SIGKILL), "".join(lines[-5:])
                counts = [int(line.split()[1]) for line in lines if line.startswith("count")]
                flushed = counts[-1] if counts else 0
                history.append((flushed, _check(root, flushed)))
    finally:
        for launcher in launchers:
            launcher.kill()
            launcher.communicate()
        errors.close()
    assert len(history) >= 20
    # The kills landed while records were being written, not before the first one.
    assert sum(1 for flushed, _ in history if flushed > 0) >= 20
    for root in roots:
        store = KaraStorage(f"file://{root}")
        with store.open_dataset("crash", "rows", "w", version="1", max_file_size=6000) as ds:
            start = len(ds)
            ds.write_many(record(i) for i in range(start, start + 10))
        assert _check(root, start + 10) == start + 10
        assert store.rows.verify("crash", "rows") == []


_DIES_WITH_WRITERS_OPEN = """
import sys
import kara_core as kara
store = kara.KaraStorage(sys.argv[1])
ds = store.open_dataset("ns", "k", "w", version="1")
ds.write_many({"i": i} for i in range(1000))
handle = store.open_parallel_write("ns", "p", "1")
part = handle.part(0)
part.write_many({"i": i} for i in range(10))
def work():
    local = store.open_dataset("ns", "k2", "w", version="1")
    local.write_many({"i": i} for i in range(500))
    raise RuntimeError("a bug in the user's script")
work()
"""


def test_a_script_that_dies_with_writers_open_flushes_them_and_leaves_no_lock(tmp_path: Path) -> None:
    # Closed at exit while the interpreter still works (an atexit hook): before, their
    # finalizers ran during module teardown, printed "Exception ignored ... NameError:
    # name 'open' is not defined" and left the writer locks behind, which a writer on
    # another host waited out (120 s).
    url = f"file://{tmp_path}/store"
    proc = run_kara(_DIES_WITH_WRITERS_OPEN, url)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "a bug in the user's script" in stderr
    assert "Exception ignored" not in stderr and "NameError" not in stderr, stderr
    assert sorted(p.name for p in (tmp_path / "store").rglob("*.lock")) == []
    store = KaraStorage(url)
    assert [len(store.open_dataset("ns", key)) for key in ("k", "k2")] == [1000, 500]
    # The part left open does not count: its attempt is incomplete.
    handle = store.open_parallel_write("ns", "p", "1", resume=True)
    with pytest.raises(ParallelWriteError, match="part 0"):
        handle.commit(parts=1)
