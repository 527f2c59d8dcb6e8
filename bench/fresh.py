"""Fresh-process rounds: every round of every contender runs in a new interpreter.

Users write or read a dataset once per process, so the first round inside a fresh
interpreter is what they get; a best-of-N inside one warm process can hide costs such
as heap growth and page faults. A benchmark names its workloads as functions of a bench
module (``workload(params, clock)``), and :func:`measure` runs each one for each
contender in a new process (kara in this interpreter's virtualenv, kara-storage 2.1.5 in
``.venv-k215``, peers in theirs), alternating the order round by round so that load from
elsewhere on the shared machine hits the contenders alike. Each round reports, per timed
step, wall seconds, CPU seconds and minor page faults, plus the process's peak RSS.

Tables show the median and the range (min-max) over the rounds, the first round alone,
the ratio of medians against a baseline contender, and, as an extra column only, the
best of several rounds run inside one process (what earlier versions of these scripts
reported).

Before the first round, :func:`measure` byte-compiles kara's sources (``compileall``,
in the interpreter of each contender that imports them): with
``PYTHONDONTWRITEBYTECODE=1`` set (as on the benchmark VM) an editable install never
writes ``.pyc`` files, and every fresh process would pay for compiling kara's modules,
which an installed package (2.1.5, the peers: pip compiles at install time) does not.
With ``BENCH_RUNS_LOG=FILE``, every round's raw figures are appended to FILE as JSON
lines (module, contender, workload, round, and the round's result).

A workload module must import only the standard library and bench modules at its top
(2.1.5 and the peers import it in their own virtualenvs); libraries load inside workloads.

    python bench/fresh.py MODULE FUNCTION [REPEAT]   (the child side; params on stdin)
"""

from __future__ import annotations

import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    # Running this file puts bench/ first on sys.path, where bench/http.py would shadow
    # the standard library's http package: bench modules go last instead.
    sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != BENCH] + [BENCH]

import importlib.util  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

#: Rounds per contender and workload unless a script asks for more (the brief: >= 5).
ROUNDS = 5
ROOT = os.path.dirname(BENCH)
#: Where kara's importable sources live (the repository and its plugins).
KARA_SOURCES = [os.path.join(ROOT, "kara_core"), os.path.join(ROOT, "plugins"), os.path.join(ROOT, "examples")]


class Clock:
    """Times the named steps of one round: wall seconds, CPU seconds and minor faults."""

    def __init__(self, attempt: int = 0) -> None:
        #: Which in-process repetition this is (0 in a fresh process): paths may use it.
        self.attempt = attempt
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.faults: dict[str, int] = {}
        self.extra: dict[str, Any] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name``."""
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu[name] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        self.faults[name] = after.ru_minflt - before.ru_minflt

    def record(self, name: str, value: Any) -> None:
        """Report a value that is not a time (bytes on disk, memory of a worker)."""
        self.extra[name] = value


def _load(module: str) -> Any:
    # Under its own name, so that processes the workload spawns can import it again
    # (pickled functions), unless that name is a standard module's (bench/http.py).
    name = f"bench_{module}" if module in sys.stdlib_module_names else module
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, module + ".py"))
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def _child(module: str, function: str, repeat: int) -> None:
    params = json.loads(sys.stdin.read())
    workload: Callable[[dict[str, Any], Clock], None] = getattr(_load(module), function)
    best: Clock | None = None
    for attempt in range(repeat):
        clock = Clock(attempt)
        workload(params, clock)
        if best is None:
            best = clock
        else:
            for name, seconds in clock.seconds.items():
                if seconds < best.seconds.get(name, float("inf")):
                    best.seconds[name], best.cpu[name], best.faults[name] = seconds, clock.cpu[name], clock.faults[name]
    assert best is not None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "seconds": best.seconds,
        "cpu": best.cpu,
        "faults": best.faults,
        "extra": best.extra,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
    sys.stdout.flush()
    print("\n" + json.dumps(result))


@dataclass(frozen=True)
class Contender:
    """One library under test: its name, its interpreter and its workload functions."""

    name: str
    python: str
    #: Workload name (as in tables) -> function name in the bench module.
    functions: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Rounds:
    """The rounds of one contender on one workload (first round first)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    in_process: dict[str, Any] | None = None

    def values(self, step: str, kind: str = "seconds") -> list[float]:
        """The ``kind`` ('seconds', 'cpu', 'faults') of ``step`` in every round."""
        return [run[kind][step] for run in self.runs]

    def median(self, step: str, kind: str = "seconds") -> float:
        """Median over the rounds."""
        return statistics.median(self.values(step, kind))

    def peak_rss(self) -> float:
        """Median peak RSS of the rounds' processes (MiB)."""
        return statistics.median(run["peak_rss_mb"] for run in self.runs)

    def extra(self, name: str) -> Any:
        """A recorded value of the first round."""
        return self.runs[0]["extra"][name]


def run_once(
    module: str, function: str, python: str, params: dict[str, Any], repeat: int = 1, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``module.function`` in a new ``python`` process (``repeat`` times inside it)."""
    proc = subprocess.run(
        [python, os.path.join(BENCH, "fresh.py"), module, function, str(repeat)],
        input=json.dumps(params),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{function} under {python} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_sources(python: str) -> None:
    """Byte-compile kara's sources with ``python`` (``.pyc`` files beside them, as pip would).

    Explicit, so that it happens whatever ``PYTHONDONTWRITEBYTECODE`` says (an interpreter
    that cannot compile them, one that does not import kara, is ignored); a fresh
    process then loads kara's modules from ``.pyc`` files, as it loads 2.1.5's and the peers'.
    """
    paths = [path for path in KARA_SOURCES if os.path.isdir(path)]
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *paths], check=False, capture_output=True, timeout=600)


def _log_run(module: str, contender: str, workload: str, round_: int, run: dict[str, Any]) -> None:
    path = os.environ.get("BENCH_RUNS_LOG")
    if not path:
        return
    line = {"module": module, "contender": contender, "workload": workload, "round": round_, **run}
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def measure(
    module: str,
    contenders: list[Contender],
    params: dict[str, Any],
    rounds: int = ROUNDS,
    in_process: int = 0,
    workloads: list[str] | None = None,
    between: Callable[[], None] | None = None,
) -> dict[tuple[str, str], Rounds]:
    """Run every workload of every contender ``rounds`` times, each in a fresh process.

    Contenders take turns, starting one later each round. With ``in_process`` > 0, one
    more process per contender and workload runs it that many times and keeps the best
    (the extra column). ``between`` runs before every process (e.g. ``os.sync``).
    Returns ``{(contender, workload): Rounds}``.
    """
    names = workloads or list(dict.fromkeys(w for c in contenders for w in c.functions))
    for python in dict.fromkeys(c.python for c in contenders):
        compile_sources(python)
    results: dict[tuple[str, str], Rounds] = {
        (c.name, w): Rounds() for c in contenders for w in names if w in c.functions
    }
    for round_ in range(rounds):
        turn = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
        for workload in names:
            for contender in turn:
                if workload not in contender.functions:
                    continue
                if between is not None:
                    between()
                run = run_once(module, contender.functions[workload], contender.python, params, env=contender.env)
                results[contender.name, workload].runs.append(run)
                _log_run(module, contender.name, workload, round_, run)
        print(f"  round {round_ + 1}/{rounds} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    if in_process:
        for (name, workload), rounds_ in results.items():
            contender = next(c for c in contenders if c.name == name)
            if between is not None:
                between()
            rounds_.in_process = run_once(
                module, contender.functions[workload], contender.python, params, in_process, contender.env
            )
    return results


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


@dataclass(frozen=True)
class Row:
    """One line of a table: ``step`` of ``workload``; ``target`` ratio (None: information)."""

    label: str
    workload: str
    step: str
    target: float | None = None
    #: The baseline's workload to compare with, when it is named differently.
    baseline_workload: str | None = None


def print_table(
    title: str,
    results: dict[tuple[str, str], Rounds],
    rows: list[Row],
    contenders: list[str],
    baseline: str,
) -> None:
    """Print median [min-max] seconds per contender, first rounds, ratios and peak RSS.

    ``ratio`` is the baseline's median over each contender's median (above 1: faster
    than the baseline), in wall seconds, then in CPU seconds of the timed step (the
    process's own, not its children's: less sensitive to a busy machine, blind to
    workers and waits on the disk); ``in-proc`` is the wall ratio from the best of
    several rounds inside one process, when measured.
    """
    print(f"\n{title}")
    print(f"  seconds: median [min-max] over {len(next(iter(results.values())).runs)} fresh processes each")
    for row in rows:
        base = results.get((baseline, row.baseline_workload or row.workload))
        print(f"  {row.label}")
        for name in contenders:
            rounds = results.get((name, row.workload if name != baseline else row.baseline_workload or row.workload))
            if rounds is None or not rounds.runs:
                continue
            times = rounds.values(row.step)
            cpu = rounds.values(row.step, "cpu")
            faults = rounds.values(row.step, "faults")
            line = (
                f"    {name:<14} {_spread(times):>26} first {times[0]:7.3f}  cpu {statistics.median(cpu):6.3f}"
                f"  faults {int(statistics.median(faults)):>7}  peak RSS {rounds.peak_rss():6.0f} MiB"
            )
            if base is not None and name != baseline:
                ratio = base.median(row.step) / rounds.median(row.step)
                cpu_ratio = base.median(row.step, "cpu") / max(rounds.median(row.step, "cpu"), 1e-9)
                line += f"  ratio {ratio:5.2f}x (cpu {cpu_ratio:4.2f}x)"
                if row.target is not None:
                    line += f" (target {row.target:.1f}x: {'ok' if ratio >= row.target else 'NO'})"
                if rounds.in_process is not None and base.in_process is not None:
                    mine, theirs = rounds.in_process["seconds"][row.step], base.in_process["seconds"][row.step]
                    line += f"  in-proc best {mine:.3f} vs {theirs:.3f} = {theirs / mine:.2f}x"
            print(line)
    print(f"  (machine shared with other workloads: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
