"""Start-up of a fresh process: import, then open to the first sample, kara against 2.1.5.

Each round of each contender is a new interpreter that imports torch first (as
bench/torch_loader.py's rounds do), then times ``import``, and ``KaraStorage(url)
.open_dataset`` + ``make_torch_dataset(shuffle=True)`` + the first sample through
``DataLoader(ds, batch_size=None)``. ``--before DIR`` adds kara from another source tree
(``git archive COMMIT kara_core plugins examples | tar -x -C DIR``) as a third contender.

    python bench/startup.py [ROUNDS] [--before DIR]

The store (200,000 ``common.small_record`` records, file://) is written first, untimed,
and each kara tree is byte-compiled (``compileall``) as bench/fresh.py does: with
``PYTHONDONTWRITEBYTECODE=1`` a source tree never gets ``.pyc`` files, and each round
would pay for compiling kara's modules (about 35 ms), which an installed package does not.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, small_record, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = 200_000
CODE = r"""
import json, time
import torch
from torch.utils.data import DataLoader
t0 = time.perf_counter()
import {module} as K
t1 = time.perf_counter()
rows = K.KaraStorage(URL).open_dataset("bench", "small"{extra})
ds = K.make_torch_dataset(rows, shuffle=True)
first = next(iter(DataLoader(ds, batch_size=None)))
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t2 - t0]))
"""


def _path(tree: str) -> str:
    return os.pathsep.join(
        [tree, *sorted(glob.glob(os.path.join(tree, "plugins", "*"))), f"{tree}/examples/kara_memory"]
    )


def main() -> None:
    """Write the store, run the rounds, print medians [min-max] in milliseconds."""
    args = sys.argv[1:]
    before = None
    if "--before" in args:
        i = args.index("--before")
        before = os.path.abspath(args[i + 1])
        del args[i : i + 2]
    rounds = int(args[0]) if args else 7
    contenders = [("kara", sys.executable, "kara_core", "", _path(ROOT))]
    if before:
        contenders.insert(0, ("kara --before", sys.executable, "kara_core", "", _path(before)))
    contenders.append(("2.1.5", k215_python(), "kara_storage", ', "r", version="1"', ""))
    from kara_core import KaraStorage

    for name, python, _module, _extra, path in contenders:
        if name.startswith("kara"):
            tree = path.split(os.pathsep)[0]
            folders = [os.path.join(tree, folder) for folder in ("kara_core", "plugins", "examples")]
            subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *folders], check=True, capture_output=True)

    root = workdir("startup")
    url = "file://" + os.path.join(root, "store")
    times: dict[str, list[list[float]]] = {}
    try:
        with KaraStorage(url).open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        for _ in range(rounds):
            for name, python, module, extra, path in contenders:
                code = f"URL = {url!r}\n" + CODE.format(module=module, extra=extra)
                # cwd "/": the source tree comes from PYTHONPATH only, never from the cwd.
                env = dict(os.environ, PYTHONPATH=path)
                done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd="/")
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stderr}")
                times.setdefault(name, []).append(json.loads(done.stdout.splitlines()[-1]))
    finally:
        remove_workdir(root)
    print(f"Fresh-process start-up (torch imported first), ms: median [min-max] over {rounds} rounds")
    for name, runs in times.items():
        cells = [
            f"{label} {statistics.median(col) * 1e3:6.1f} [{min(col) * 1e3:.0f}-{max(col) * 1e3:.0f}]"
            for label, col in zip(("import", "open to first sample", "total"), zip(*runs, strict=True), strict=True)
        ]
        print(f"  {name:<14}" + "   ".join(cells))
    print(f"  load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
