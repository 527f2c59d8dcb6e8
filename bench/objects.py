"""Directory versions: kara against kara-storage 2.1.5 on a file:// store.

Workload: a folder of 2,000 files of 4-64 KiB (in 20 sub-folders) plus 4 files of
64 MiB. Both libraries, in the same run: save, re-save unchanged, load into an empty
folder, re-load unchanged, each round of each library in a fresh interpreter
(bench/fresh.py), libraries alternating. The folder is generated under bench/.work and
deleted after.

- With ``KARA_BENCH_SETTLE=1`` (``scripts/bench --settle``), the run starts once the
  deletions of earlier benchmarks are old enough not to slow file creation down
  (``settle_filesystem`` in common.py, see bench/README.md): ext4 without a journal
  skips recently freed inodes, which would penalise both libraries' thousands of
  creations. Rounds are deleted only at the end either way.
- Every step starts after ``os.sync()``, so no step pays for writing back the dirty
  pages the previous one left (2.1.5 never fsyncs, kara's file:// store does): each is
  timed from a quiet disk, page cache still warm.

    .venv/bin/python bench/objects.py [ROUNDS]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, settle_filesystem, workdir
from fresh import ROUNDS, Clock, Contender, Row, measure, print_table

SMALL_FILES = 2000
BIG_FILES = 4
BIG_SIZE = 64 * 1024 * 1024


def make_folder(root: str) -> None:
    """Write the workload folder (deterministic sizes, random contents)."""
    rng = random.Random(1)
    for i in range(SMALL_FILES):
        sub = os.path.join(root, f"part{i % 20:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"file{i:05d}.bin"), "wb") as fh:
            fh.write(os.urandom(rng.randint(4 * 1024, 64 * 1024)))
    chunk = 8 * 1024 * 1024
    for i in range(BIG_FILES):
        with open(os.path.join(root, f"big{i}.bin"), "wb") as fh:
            for _ in range(BIG_SIZE // chunk):
                fh.write(os.urandom(chunk))


def _steps(store: Any, params: dict[str, Any], clock: Clock, dst: str) -> None:
    steps = [
        ("save", lambda: store.save_directory("bench", "dir", params["src"], progress_bar=False)),
        ("resave", lambda: store.save_directory("bench", "dir", params["src"], progress_bar=False)),
        ("load", lambda: store.load_directory("bench", "dir", dst, "0", progress_bar=False)),
        ("reload", lambda: store.load_directory("bench", "dir", dst, "0", progress_bar=False)),
    ]
    for name, step in steps:
        os.sync()
        with clock.step(name):
            step()


def kara_steps(params: dict[str, Any], clock: Clock) -> None:
    """kara: save, re-save, load, re-load (progress bars off, as for 2.1.5), cold hash cache."""
    here = tempfile.mkdtemp(prefix="kara-", dir=params["work"])
    # A cold hash cache: the first kara save hashes every file, like 2.1.5.
    os.environ["KARA_CACHE_DIR"] = os.path.join(here, "cache")
    from kara_core import KaraStorage

    _steps(KaraStorage("file://" + os.path.join(here, "store")), params, clock, os.path.join(here, "dst"))


def k215_steps(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: save, re-save, load, re-load."""
    import kara_storage

    here = tempfile.mkdtemp(prefix="k215-", dir=params["work"])
    _steps(kara_storage.KaraStorage("file://" + os.path.join(here, "store")), params, clock, os.path.join(here, "dst"))


CONTENDERS = [
    Contender("kara", sys.executable, {"steps": "kara_steps"}),
    Contender("2.1.5", k215_python(), {"steps": "k215_steps"}),
]


def main() -> None:
    """Run both libraries on the same folder in fresh processes, alternating, and print the table."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    work = workdir("objects")
    # Thousands of files are created per step: with KARA_BENCH_SETTLE=1, not right after
    # thousands were deleted.
    settle_filesystem(work)
    try:
        src = os.path.join(work, "src")
        make_folder(src)
        # Rounds are deleted only at the end (ext4 skips recently freed inodes).
        results = measure("objects", CONTENDERS, {"src": src, "work": work}, rounds)
    finally:
        remove_workdir(work)
    print_table(
        f"directory versions, file:// store ({SMALL_FILES} files of 4-64 KiB + {BIG_FILES} x 64 MiB)",
        results,
        [
            Row("save", "steps", "save", 1.5),
            Row("re-save unchanged", "steps", "resave", 3.0),
            Row("load into an empty folder", "steps", "load", 1.2),
            Row("re-load unchanged", "steps", "reload", 3.0),
        ],
        ["kara", "2.1.5"],
        "2.1.5",
    )


if __name__ == "__main__":
    main()
