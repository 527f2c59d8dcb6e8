"""What a DataLoader costs per sample, and what kara and 2.1.5 add to it, in fresh processes.

Backs the per-sample section of docs/performance.md. 200,000 ``common.small_record(i)``
records, ``DataLoader(ds, batch_size=None)``, 0 workers, one shuffled epoch. Variants
(each an ``IterableDataset`` over a list built before the clock):

- ``convert``: torch's ``default_convert`` of each sample, no DataLoader;
- ``identity``: the DataLoader with ``collate_fn=lambda x: x`` (its fetcher, sampler and
  profiler range only);
- ``floor``: records built in the shuffled order (as bench/torch_loader.py's floor);
- ``ordered``: records built and yielded in record order;
- ``scattered``: records built in record order, then the list shuffled;
- ``decode32``: the records' JSON (orjson) in shuffled order, decoded 32 at a time with
  ``map(orjson.loads)`` (the least a JSON-storing library does, without any I/O);
- ``decode32 alone``: the same decoding without a DataLoader.

Then the phases of the same epoch for kara and kara-storage 2.1.5 (a kara-written
file:// store): import of the library, open + torch dataset + first sample, the rest.

    .venv/bin/python bench/per_sample_floor.py [ROUNDS]
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import k215_python, remove_workdir, small_record, workdir
from fresh import ROUNDS, Clock, Contender, Rounds, measure

RECORDS = int(os.environ.get("BENCH_FLOOR_RECORDS", "200000"))
DECODE_CHUNK = 32


def _order() -> list[int]:
    import random

    order = list(range(RECORDS))
    random.Random(0).shuffle(order)
    return order


def _stream(samples: list[Any]) -> Any:
    from torch.utils.data import IterableDataset

    class ListStream(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            return iter(samples)

    return ListStream()


def _loader_epoch(clock: Clock, ds: Any, **kwargs: Any) -> None:
    from torch.utils.data import DataLoader

    with clock.step("epoch"):
        n = sum(1 for _ in DataLoader(ds, batch_size=None, **kwargs))
    assert n == RECORDS, n


def _identity(sample: Any) -> Any:
    return sample


def convert(params: dict[str, Any], clock: Clock) -> None:
    """default_convert of each sample (built in the shuffled order), no DataLoader."""
    from torch.utils.data._utils.collate import default_convert

    samples = [small_record(i) for i in _order()]
    with clock.step("epoch"):
        n = sum(1 for _ in map(default_convert, samples))
    assert n == RECORDS, n


def identity(params: dict[str, Any], clock: Clock) -> None:
    """The DataLoader's own machinery: collate_fn returns the sample as it is."""
    _loader_epoch(clock, _stream([small_record(i) for i in _order()]), collate_fn=_identity)


def floor(params: dict[str, Any], clock: Clock) -> None:
    """Records built in the shuffled order (neighbours in memory, as decoded samples are)."""
    _loader_epoch(clock, _stream([small_record(i) for i in _order()]))


def ordered(params: dict[str, Any], clock: Clock) -> None:
    """Records built and yielded in record order."""
    _loader_epoch(clock, _stream([small_record(i) for i in range(RECORDS)]))


def scattered(params: dict[str, Any], clock: Clock) -> None:
    """Records built in record order, then the list shuffled (far apart in memory)."""
    built = [small_record(i) for i in range(RECORDS)]
    _loader_epoch(clock, _stream([built[i] for i in _order()]))


def _decoded(raws: list[bytes]) -> Any:
    import itertools

    import orjson

    chunks = (list(map(orjson.loads, raws[a : a + DECODE_CHUNK])) for a in range(0, len(raws), DECODE_CHUNK))
    return itertools.chain.from_iterable(chunks)


def decode32(params: dict[str, Any], clock: Clock) -> None:
    """Shuffled raw JSON decoded 32 at a time, through the DataLoader."""
    import orjson
    from torch.utils.data import IterableDataset

    raws = [orjson.dumps(small_record(i)) for i in _order()]

    class Decoding(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            return _decoded(raws)

    _loader_epoch(clock, Decoding())


def decode32_alone(params: dict[str, Any], clock: Clock) -> None:
    """The same decoding without a DataLoader."""
    import orjson

    raws = [orjson.dumps(small_record(i)) for i in _order()]
    with clock.step("epoch"):
        n = sum(1 for _ in _decoded(raws))
    assert n == RECORDS, n


def _phases(params: dict[str, Any], clock: Clock, library: str) -> None:
    import torch  # noqa: F401  (loaded before the clock, as for every contender)
    from torch.utils.data import DataLoader

    with clock.step("import"):
        if library == "kara":
            import kara_core as lib
        else:
            import kara_storage as lib  # type: ignore[no-redef]
    with clock.step("open"):
        if library == "kara":
            rows = lib.KaraStorage(params["url"]).open_dataset("bench", "small")
        else:
            rows = lib.KaraStorage(params["url"]).open_dataset("bench", "small", "r", version="1")
        samples = iter(DataLoader(lib.make_torch_dataset(rows, shuffle=True), batch_size=None))
        next(samples)
    with clock.step("rest"):
        n = 1 + sum(1 for _ in samples)
    assert n == RECORDS, n


def kara_phases(params: dict[str, Any], clock: Clock) -> None:
    """kara: import, open to the first sample, the rest of the epoch."""
    _phases(params, clock, "kara")


def k215_phases(params: dict[str, Any], clock: Clock) -> None:
    """2.1.5: import, open to the first sample, the rest of the epoch."""
    _phases(params, clock, "k215")


VARIANTS = ["convert", "identity", "floor", "ordered", "scattered", "decode32", "decode32_alone"]


def main() -> None:
    """Time the variants, then the phases, each round of each in a fresh process."""
    from kara_core import KaraStorage

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    variants = [Contender(name, sys.executable, {"epoch": name}) for name in VARIANTS]
    phases = [
        Contender("kara", sys.executable, {"phases": "kara_phases"}),
        Contender("2.1.5", k215_python(), {"phases": "k215_phases"}),
    ]
    root = workdir("per_sample_floor")
    url = "file://" + os.path.join(root, "store")
    try:
        with KaraStorage(url).open_dataset("bench", "small", "w", version="1") as ds:
            ds.write_many(small_record(i) for i in range(RECORDS))
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        found = measure("per_sample_floor", variants, {}, rounds)
        split = measure("per_sample_floor", phases, {"url": url}, rounds)
    finally:
        remove_workdir(root)
    print(f"\nDataLoader(batch_size=None), 0 workers, {RECORDS:,} records; from {started}, {rounds} rounds")
    for name in VARIANTS:
        print(f"  {name:<16}{_cell(found[name, 'epoch'], 'epoch')}")
    print("\nPhases of the same epoch (seconds, median [min-max])")
    for name in ("kara", "2.1.5"):
        cells = "  ".join(f"{step} {_cell(split[name, 'phases'], step)}" for step in ("import", "open", "rest"))
        print(f"  {name:<7}{cells}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def _cell(rounds: Rounds, step: str) -> str:
    times = rounds.values(step)
    median = rounds.median(step)
    return f"{median:.3f} s [{min(times):.3f}-{max(times):.3f}] {median / RECORDS * 1e6:6.2f} us/sample"


if __name__ == "__main__":
    main()
