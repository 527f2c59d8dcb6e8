"""Directory versions: kara against kara-storage 2.1.5 on a file:// store.

Workload: a folder of 2,000 files of 4-64 KiB (in 20 sub-folders) plus 4 files of
64 MiB. Both libraries, in the same run: save, re-save unchanged, load into an empty
folder, re-load unchanged, in alternating rounds (best time per step). The folder is
generated under bench/.work and deleted after.

- With ``KARA_BENCH_SETTLE=1`` (``scripts/bench --settle``), the run starts once the
  deletions of earlier benchmarks are old enough not to slow file creation down
  (``settle_filesystem`` in common.py, see bench/README.md): ext4 without a journal
  skips recently freed inodes, which would penalise both libraries' thousands of
  creations. Rounds are deleted only at the end either way.
- Every step starts after ``os.sync()``, so no step pays for writing back the dirty
  pages the previous one left (2.1.5 never fsyncs, kara's file:// store does): each is
  timed from a quiet disk, page cache still warm.

    .venv/bin/python bench/objects.py
"""

from __future__ import annotations

import os
import random

from common import print_table, remove_workdir, run_k215, settle_filesystem, timer, workdir

SMALL_FILES = 2000
BIG_FILES = 4
BIG_SIZE = 64 * 1024 * 1024

K215_CODE = """
import os
import kara_storage
store = kara_storage.KaraStorage("file://" + PARAMS["store"])
times = {}
steps = [
    ("save", lambda: store.save_directory("bench", "dir", PARAMS["src"], progress_bar=False)),
    ("resave", lambda: store.save_directory("bench", "dir", PARAMS["src"], progress_bar=False)),
    ("load", lambda: store.load_directory("bench", "dir", PARAMS["dst"], "0", progress_bar=False)),
    ("reload", lambda: store.load_directory("bench", "dir", PARAMS["dst"], "0", progress_bar=False)),
]
for name, step in steps:
    os.sync()
    t = time.perf_counter(); step(); times[name] = time.perf_counter() - t
print(json.dumps(times))
"""


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


def run_kara(src: str, store_dir: str, dst: str) -> dict[str, float]:
    """Time the four operations with kara (progress bars off, as for 2.1.5)."""
    from kara_core import KaraStorage

    store = KaraStorage("file://" + store_dir)
    times: dict[str, float] = {}
    steps = [
        ("save", lambda: store.save_directory("bench", "dir", src, progress_bar=False)),
        ("resave", lambda: store.save_directory("bench", "dir", src, progress_bar=False)),
        ("load", lambda: store.load_directory("bench", "dir", dst, "0", progress_bar=False)),
        ("reload", lambda: store.load_directory("bench", "dir", dst, "0", progress_bar=False)),
    ]
    for name, step in steps:
        os.sync()
        with timer(times, name):
            step()
    return times


ROUNDS = 3


def run_round(src: str, here: str, k215_first: bool) -> tuple[dict[str, float], dict[str, float]]:
    """One round: both libraries on fresh stores and folders under ``here``; (kara, 2.1.5) times."""
    # A cold hash cache: the first kara save hashes every file, like 2.1.5.
    os.environ["KARA_CACHE_DIR"] = os.path.join(here, "cache")
    params = {"src": src, "store": os.path.join(here, "k215-store"), "dst": os.path.join(here, "k215-dst")}
    theirs = run_k215(K215_CODE, params) if k215_first else {}
    ours = run_kara(src, os.path.join(here, "kara-store"), os.path.join(here, "kara-dst"))
    return ours, theirs or run_k215(K215_CODE, params)


def main() -> None:
    """Run both libraries on the same folder, alternating, and print the best of each step."""
    work = workdir("objects")
    # Thousands of files are created per step: with KARA_BENCH_SETTLE=1, not right after
    # thousands were deleted.
    settle_filesystem(work)
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    try:
        src = os.path.join(work, "src")
        make_folder(src)
        # The machine is shared: the libraries take turns going first and each step keeps
        # its best time, so neither one always runs in the other's wake.
        for round_ in range(ROUNDS):
            here = os.path.join(work, f"round{round_}")
            for name, best, times in zip(
                ("kara", "2.1.5"), (ours, theirs), run_round(src, here, round_ % 2 == 0), strict=True
            ):
                # Every round is shown: on a shared machine the spread says how far to trust the best.
                print(
                    f"round {round_} {name:<6}", "  ".join(f"{step} {seconds:.3f}" for step, seconds in times.items())
                )
                for step, seconds in times.items():
                    best[step] = min(seconds, best.get(step, seconds))
    finally:
        remove_workdir(work)
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_table(
        f"directory versions, file:// store ({SMALL_FILES} files of 4-64 KiB + {BIG_FILES} x 64 MiB)",
        [
            ("save", ours["save"], theirs["save"], 1.5),
            ("re-save unchanged", ours["resave"], theirs["resave"], 3.0),
            ("load into an empty folder", ours["load"], theirs["load"], 1.2),
            ("re-load unchanged", ours["reload"], theirs["reload"], 3.0),
        ],
    )


if __name__ == "__main__":
    main()
