"""Shared pieces of the benchmarks: workloads, timing, the kara-storage 2.1.5 runner, tables.

Every benchmark runs kara and kara-storage 2.1.5 on the same workload in the same run.
2.1.5 runs in its own virtualenv (it forces the multiprocessing start method on import),
found through ``KARA_215_PYTHON`` or ``.venv-k215/bin/python``; ``scripts/bench`` sets it up.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", ".work")
#: When a benchmark last deleted its scratch folder (see :func:`settle_filesystem`).
_DELETED_AT = os.path.join(WORK, ".deleted-at")
#: How long ext4 without a journal avoids reusing a freed inode: 60 s, plus 300 s while
#: the inode table block that holds it is dirty (fs/ext4/ialloc.c, recently_deleted()).
INODE_RECENCY = 60 + 300


def small_record(i: int) -> dict[str, Any]:
    """One record of the row workload (the 200,000-record dataset of bench/row.py)."""
    # The exact expression of the issue (note: ("..." % i) * 4).
    return {"id": i, "text": "sample text number %d " % i * 4, "tokens": list(range(i % 32))}  # noqa: UP031


def k215_python() -> str:
    """Path of the Python interpreter that has kara-storage 2.1.5 installed."""
    path = os.environ.get("KARA_215_PYTHON") or os.path.join(ROOT, ".venv-k215", "bin", "python")
    if not os.path.exists(path):
        sys.exit(f"kara-storage 2.1.5 not found at {path}: run scripts/bench (it creates .venv-k215)")
    return path


def run_k215(code: str, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``code`` under kara-storage 2.1.5; it reads ``PARAMS`` and prints one JSON line last."""
    prelude = "import json, sys, time\nPARAMS = json.loads(sys.stdin.read())\n"
    proc = subprocess.run(
        [k215_python(), "-c", prelude + code],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kara-storage 2.1.5 run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextmanager
def timer(results: dict[str, float], name: str) -> Iterator[None]:
    """Store the wall time of the block in ``results[name]`` (seconds)."""
    start = time.perf_counter()
    yield
    results[name] = time.perf_counter() - start


def workdir(name: str) -> str:
    """A fresh scratch directory under bench/.work (git-ignored), see :func:`spread_subfolders`."""
    os.makedirs(WORK, exist_ok=True)
    path = tempfile.mkdtemp(prefix=name + "-", dir=WORK)
    spread_subfolders(path)
    return path


def remove_workdir(path: str) -> None:
    """Delete a scratch folder of :func:`workdir`; note when, if it held many files.

    See :func:`settle_filesystem`: only mass deletions slow file creation down for long.
    """
    count = sum(len(dirs) + len(files) for _, dirs, files in os.walk(path))
    shutil.rmtree(path, ignore_errors=True)
    if count >= _MANY_DELETED:
        with contextlib.suppress(OSError), open(_DELETED_AT, "w") as fh:
            fh.write(repr(time.time()))


#: The opt-in switch of :func:`settle_filesystem`'s waits (``scripts/bench --settle`` sets it).
SETTLE_ENV = "KARA_BENCH_SETTLE"


def settle_requested() -> bool:
    """Whether the filesystem-settling waits were asked for (``KARA_BENCH_SETTLE=1``)."""
    return os.environ.get(SETTLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def settle_filesystem(work: str) -> None:
    """Write back dirty data; with ``KARA_BENCH_SETTLE=1``, also wait for file creation to be fast.

    The waits are opt-in (see bench/README.md): they can last up to 6 minutes and only
    matter on one kind of filesystem. On an ext4 without a journal (the benchmark VM's
    root filesystem), creating a file skips every
    free inode of the block group that was freed in the last minutes (60 s, 6 minutes
    while its inode table block is dirty), reading each one's deletion time: after tens
    of thousands of files were deleted (an earlier benchmark, a test run), each file
    creation nearby costs 0.3-1 ms instead of 20 us, whichever library runs. A
    benchmark that creates thousands of files therefore starts once that is over: after
    the deletions of earlier benchmarks have aged (:func:`remove_workdir` notes them),
    and once creating files in a new folder of ``work`` (placed as the benchmark's own
    folders are) is fast. The probe files stay until ``work`` is removed.
    """
    os.sync()
    if not settle_requested():
        return
    try:
        with open(_DELETED_AT) as fh:
            deleted_at = float(fh.read())
    except (OSError, ValueError):
        deleted_at = 0.0
    wait = deleted_at + INODE_RECENCY - time.time()
    if wait > 0:
        print(f"waiting {wait:.0f} s: files deleted by an earlier benchmark slow down file creation (ext4)", flush=True)
        time.sleep(wait)
    deadline = time.time() + INODE_RECENCY
    for attempt in itertools.count():
        probe = os.path.join(work, f".settle-{attempt}")
        os.mkdir(probe)
        started = time.perf_counter()
        for i in range(_PROBE_FILES):
            os.close(os.open(os.path.join(probe, str(i)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        per_file = (time.perf_counter() - started) / _PROBE_FILES
        if per_file < _PROBE_SLOW or time.time() > deadline:
            return
        print(f"creating a file costs {per_file * 1e6:.0f} us (recent deletions on this ext4): waiting", flush=True)
        time.sleep(20)


#: Deleted files from which :func:`remove_workdir` notes the deletion.
_MANY_DELETED = 1000
#: Files created per probe of :func:`settle_filesystem`, and the cost per file (seconds)
#: above which the filesystem is not settled (quiet: 15-30 us).
_PROBE_FILES = 500
_PROBE_SLOW = 60e-6


# Linux's FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_TOPDIR_FL (what chattr +T sets).
_GETFLAGS, _SETFLAGS, _TOPDIR = 0x80086601, 0x40086602, 0x00020000


def spread_subfolders(path: str) -> None:
    """Ask ext4 to place the folders made in ``path`` in block groups of their own.

    This is ext4's top-directory hint (``chattr +T``). On an ext4 without a journal,
    as on this VM, ext4 will not reuse an inode freed in the last minutes and scans past
    every such inode on each file creation: next to the folders that benchmarks delete
    every few minutes, creating a file costs ~0.5 ms of kernel time instead of ~0.02 ms.
    That cost comes from the machine's history, not from the library being measured;
    both libraries' folders are placed the same way. Silently does nothing on
    filesystems without inode flags.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = bytearray(4)
        fcntl.ioctl(fd, _GETFLAGS, flags)
        value = int.from_bytes(flags, sys.byteorder) | _TOPDIR
        fcntl.ioctl(fd, _SETFLAGS, value.to_bytes(4, sys.byteorder))
    except OSError:
        pass
    finally:
        os.close(fd)


def print_table(title: str, rows: list[tuple[str, float, float, float | None]]) -> None:
    """Print ``(workload, kara seconds, 2.1.5 seconds, target ratio)`` rows with speedups."""
    print(f"\n{title}")
    print(f"{'workload':<44} {'kara s':>10} {'2.1.5 s':>10} {'speedup':>9} {'target':>8}  ok")
    for name, ours, theirs, target in rows:
        ratio = theirs / ours if ours > 0 else float("inf")
        goal = f"{target:.1f}x" if target else "-"
        ok = "yes" if target is None or ratio >= target else "NO"
        print(f"{name:<44} {ours:>10.3f} {theirs:>10.3f} {ratio:>8.2f}x {goal:>8}  {ok}")
