"""kara against its peers: MosaicML Streaming, LitData and WebDataset, same records, same run.

200,000 ``common.small_record(i)`` records (an int, a ~100-character string and a list
of 0-31 ints), each library writing them with its documented writer and reading them
with its documented reader, on local disk:

- kara: ``write_many`` into a file:// store; ``for rec in ds``; ``ds[i]``;
  ``make_torch_dataset(shuffle=True)`` in a torch ``DataLoader``; twice: with the default
  ``json`` serializer (row ``kara``) and with ``json+zstd`` (row ``kara-zstd``: 16 records
  a zstd frame, the same calls otherwise);
- MosaicML Streaming: ``MDSWriter`` (columns int, str, json); ``StreamingDataset``
  (``local=``, ``predownload`` raised to 65,536 samples: its default, 8 batches, caps an
  iteration sample by sample); a torch ``DataLoader``. Its size with shard compression
  (``compression="zstd"``) is measured too, for the size column only: its reader
  decompresses each shard whole to local disk before reading it, which is another
  workload than kara's record groups read in place;
- LitData: ``optimize`` (``num_workers=1``: more workers do not start on this machine);
  ``StreamingDataset``; its ``StreamingDataLoader``;
- WebDataset: ``ShardWriter`` (20,000 samples a shard, the record as ``.json``);
  ``WebDataset(...).decode()``, shard shuffle plus a 10,240-sample shuffle buffer; a
  torch ``DataLoader``. It has no random access (its ``ds[i]`` cell is empty).

Columns (seconds; median over fresh processes): write; sequential read of every record;
2,000 random ``ds[i]``; one shuffled epoch through a DataLoader with ``batch_size=64``
(``collate_fn=list``) and 0 or 2 workers; the same with ``batch_size=None`` (samples one
at a time, torch's ``default_convert`` on each) and 0 workers; bytes on disk. Every read
checks the records against what was written (the shuffled epochs: every id exactly once).

It runs in its own virtualenv, made by ``scripts/bench-peers`` (torch pinned to the CPU
build). PyPI's torchvision there is a CUDA build that cannot load beside torch's CPU
build, and ``import streaming`` imports it: the benchmark puts empty ``torchvision``
modules in ``sys.modules`` first (nothing here uses images).

    bash scripts/bench-peers && .venv-peers/bin/python bench/peers.py [ROUNDS]
"""

from __future__ import annotations

import importlib.machinery
import os
import random
import shutil
import sys
import tempfile
import types
from collections.abc import Iterable
from typing import Any

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from common import remove_workdir, small_record, workdir
from fresh import ROUNDS, Clock, Contender, Rounds, measure, run_once

RECORDS = int(os.environ.get("BENCH_PEERS_RECORDS", "200000"))
RANDOM_READS = 2_000
BATCH = 64
SHARD_SAMPLES = 20_000
SHUFFLE_BUFFER = 10_240
MOSAIC_PREDOWNLOAD = 65_536
LIBRARIES = ("kara", "kara-zstd", "mosaic", "litdata", "webdataset")
PEERS = ("mosaic", "litdata", "webdataset")
#: written once for its size only (see the module docstring)
SIZE_ONLY = ("mosaic-zstd",)
WORKLOADS = ("write", "read", "random", "loader_0", "loader_2", "samples_0")


def _stub_torchvision() -> None:
    # See the module docstring: streaming's vision module imports these names.
    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.transforms.functional"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__path__ = []
        sys.modules[name] = module
    sys.modules["torchvision.datasets"].VisionDataset = object  # type: ignore[attr-defined]
    sys.modules["torchvision.datasets"].CIFAR10 = object  # type: ignore[attr-defined]
    sys.modules["torchvision.transforms.functional"].to_tensor = None  # type: ignore[attr-defined]


def _records() -> list[dict[str, Any]]:
    return [small_record(i) for i in range(RECORDS)]


# -- writers -------------------------------------------------------------------------------


def _write_kara(out: str, records: list[dict[str, Any]], serialization: str = "json") -> None:
    from kara_core import KaraStorage

    storage = KaraStorage("file://" + out)
    with storage.open_dataset("bench", "small", "w", version="1", serialization=serialization) as ds:
        ds.write_many(records)


def _write_kara_zstd(out: str, records: list[dict[str, Any]]) -> None:
    _write_kara(out, records, "json+zstd")


def _write_mosaic(out: str, records: list[dict[str, Any]], compression: str | None = None) -> None:
    from streaming import MDSWriter

    columns = {"id": "int", "text": "str", "tokens": "json"}
    with MDSWriter(out=out, columns=columns, compression=compression) as writer:
        for record in records:
            writer.write(record)


def _write_mosaic_zstd(out: str, records: list[dict[str, Any]]) -> None:
    _write_mosaic(out, records, "zstd")


def _litdata_sample(i: int) -> dict[str, Any]:
    return small_record(i)


def _write_litdata(out: str, records: list[dict[str, Any]]) -> None:
    import litdata

    # optimize calls the function once per input, in its worker: it builds record i.
    litdata.optimize(
        fn=_litdata_sample, inputs=list(range(len(records))), output_dir=out, chunk_bytes="64MB", num_workers=1
    )


def _write_webdataset(out: str, records: list[dict[str, Any]]) -> None:
    import webdataset as wds

    with wds.ShardWriter(os.path.join(out, "shard-%05d.tar"), maxcount=SHARD_SAMPLES, verbose=0) as sink:
        for i, record in enumerate(records):
            sink.write({"__key__": f"{i:09d}", "json": record})


WRITERS = {
    "kara": _write_kara,
    "kara-zstd": _write_kara_zstd,
    "mosaic": _write_mosaic,
    "mosaic-zstd": _write_mosaic_zstd,
    "litdata": _write_litdata,
    "webdataset": _write_webdataset,
}


def _library() -> str:
    return os.environ["BENCH_LIBRARY"]


def write(params: dict[str, Any], clock: Clock) -> None:
    """Write the records with the library's documented writer (into a new folder)."""
    _stub_torchvision()
    records = _records()
    out = tempfile.mkdtemp(prefix=_library() + "-", dir=params["root"])
    if _library() in ("mosaic", "mosaic-zstd", "litdata"):
        os.rmdir(out)  # these writers create their folder themselves
    os.sync()
    with clock.step("write"):
        WRITERS[_library()](out, records)
    clock.record("path", out)
    clock.record("bytes", sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(out) for f in files))
    if not params.get("keep"):
        shutil.rmtree(out)


# -- readers -------------------------------------------------------------------------------


def _open(path: str, shuffle: bool, batch_size: int | None) -> Any:
    """The library's dataset over ``path``: a torch dataset when ``shuffle``."""
    library = _library()
    if library in ("kara", "kara-zstd"):
        from kara_core import KaraStorage, make_torch_dataset

        # The serializer is the version's own (its sidecar names json+zstd).
        rows = KaraStorage("file://" + path).open_dataset("bench", "small")
        return make_torch_dataset(rows, shuffle=True, batch_size=batch_size or 1) if shuffle else rows
    if library == "mosaic":
        from streaming import StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        # It asks for the DataLoader's batch size even without a DataLoader (1: samples one by one).
        return StreamingDataset(local=path, shuffle=shuffle, batch_size=batch_size or 1, predownload=MOSAIC_PREDOWNLOAD)
    if library == "litdata":
        import litdata

        return litdata.StreamingDataset(path, shuffle=shuffle)
    import webdataset as wds

    shards = sorted(os.path.join(path, name) for name in os.listdir(path) if name.endswith(".tar"))
    pipeline = wds.WebDataset(shards, shardshuffle=len(shards) if shuffle else False, empty_check=False)
    if shuffle:
        pipeline = pipeline.shuffle(SHUFFLE_BUFFER)
    # to_tuple first: WebDataset's map() copies the sample's __key__ into a dict it returns.
    return pipeline.decode().to_tuple("json").map(_first)


def _first(sample: tuple[Any, ...]) -> Any:
    return sample[0]


def _loader(ds: Any, batch_size: int | None, workers: int) -> Iterable[Any]:
    from torch.utils.data import DataLoader

    if _library() == "litdata" and batch_size is not None:
        import litdata

        return litdata.StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=list)
    if batch_size is None:
        return DataLoader(ds, batch_size=None, num_workers=workers)
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=list)


def read(params: dict[str, Any], clock: Clock) -> None:
    """Every record in order with the library's reader; checked against what was written."""
    _stub_torchvision()
    with clock.step("read"):
        got = list(_open(params["paths"][_library()], False, None))
    assert got == _records(), f"{_library()}: the records read differ from those written"


def random_reads(params: dict[str, Any], clock: Clock) -> None:
    """Random ``ds[i]`` (the dataset opened before the clock starts)."""
    _stub_torchvision()
    if _library() == "webdataset":
        return
    ds = _open(params["paths"][_library()], False, None)
    indices = params["indices"]
    with clock.step("random"):
        got = [ds[i] for i in indices]
    assert got[:200] == [small_record(i) for i in indices[:200]], f"{_library()}: ds[i] differs"


def _epoch(params: dict[str, Any], clock: Clock, batch_size: int | None, workers: int) -> None:
    _stub_torchvision()
    import torch  # noqa: F401  (loaded before the clock, as for every library)

    ids: list[int] = []
    with clock.step("epoch"):
        ds = _open(params["paths"][_library()], True, batch_size)
        if batch_size is None:
            for sample in _loader(ds, None, workers):
                ids.append(sample["id"])
        else:
            for batch in _loader(ds, batch_size, workers):
                ids.extend(sample["id"] for sample in batch)
    clock.record("samples", len(ids))
    clock.record("distinct", len(set(ids)))
    clock.record("ordered", ids[:1000] == sorted(ids[:1000]))
    assert sorted(set(ids)) == list(range(RECORDS)), f"{_library()}: the epoch missed records"


def loader_0(params: dict[str, Any], clock: Clock) -> None:
    """A shuffled epoch, batches of 64, no workers."""
    _epoch(params, clock, BATCH, 0)


def loader_2(params: dict[str, Any], clock: Clock) -> None:
    """A shuffled epoch, batches of 64, 2 workers."""
    _epoch(params, clock, BATCH, 2)


def samples_0(params: dict[str, Any], clock: Clock) -> None:
    """A shuffled epoch, one sample at a time (batch_size=None), no workers."""
    _epoch(params, clock, None, 0)


_FUNCTIONS = {"write": "write", "read": "read", "random": "random_reads"}
CONTENDERS = [
    Contender(library, sys.executable, {w: _FUNCTIONS.get(w, w) for w in WORKLOADS}, {"BENCH_LIBRARY": library})
    for library in LIBRARIES
]
#: (column title, workload, step)
COLUMNS = [
    ("write", "write", "write"),
    ("read all", "read", "read"),
    (f"ds[i] x{RANDOM_READS // 1000}k", "random", "random"),
    ("DL 0 wk", "loader_0", "epoch"),
    ("DL 2 wk", "loader_2", "epoch"),
    ("per-sample 0 wk", "samples_0", "epoch"),
]


def _cell(rounds: Rounds | None, step: str) -> str:
    if rounds is None or not rounds.runs or step not in rounds.runs[0]["seconds"]:
        return "-"
    times = rounds.values(step)
    return f"{rounds.median(step):.2f} ({min(times):.2f}-{max(times):.2f})"


def print_peers(results: dict[tuple[str, str], Rounds], sizes: dict[str, int], rounds: int) -> None:
    """The peers table: median (min-max) seconds per library and column, then ratios."""
    print(f"\n{RECORDS:,} small records, local disk, median (min-max) seconds over {rounds} fresh processes")
    titles = [title for title, _, _ in COLUMNS] + ["MB on disk"]
    print(f"{'library':<12}" + "".join(f"{title:>21}" for title in titles))
    for library in LIBRARIES + SIZE_ONLY:
        cells = [_cell(results.get((library, workload)), step) for _, workload, step in COLUMNS]
        print(f"{library:<12}" + "".join(f"{cell:>21}" for cell in cells) + f"{sizes[library] / 1e6:>21.1f}")
    for mine in ("kara", "kara-zstd"):
        print(f"\n{mine}'s speed-up over each peer (peer median / {mine} median; above 1: {mine} faster)")
        print(f"{'peer':<12}" + "".join(f"{title:>21}" for title in titles))
        for library in PEERS + SIZE_ONLY:
            cells = []
            for _, workload, step in COLUMNS:
                ours, theirs = results.get((mine, workload)), results.get((library, workload))
                if ours is None or theirs is None or not theirs.runs or step not in theirs.runs[0]["seconds"]:
                    cells.append("-")
                else:
                    cells.append(f"{theirs.median(step) / ours.median(step):.2f}x")
            cells.append(f"{sizes[library] / sizes[mine]:.2f}x")
            print(f"{library:<12}" + "".join(f"{cell:>21}" for cell in cells))
    peaks = {library: results[library, "loader_0"].peak_rss() for library in LIBRARIES}
    print("peak RSS of the 0-worker DataLoader processes (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    print(f"(machine shared with other workloads: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    """Write each library's dataset once to read, then time every workload in fresh processes."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    root = workdir("peers")
    try:
        params: dict[str, Any] = {"root": root}
        paths, sizes = {}, {}
        for contender in CONTENDERS:
            kept = run_once("peers", "write", contender.python, {**params, "keep": True}, env=contender.env)
            paths[contender.name] = kept["extra"]["path"]
            sizes[contender.name] = kept["extra"]["bytes"]
        for name in SIZE_ONLY:
            written = run_once("peers", "write", sys.executable, params, env={"BENCH_LIBRARY": name})
            sizes[name] = written["extra"]["bytes"]
        rng = random.Random(11)
        params.update(paths=paths, indices=[rng.randrange(RECORDS) for _ in range(RANDOM_READS)])
        results = measure("peers", CONTENDERS, params, rounds)
    finally:
        remove_workdir(root)
    print_peers(results, sizes, rounds)


if __name__ == "__main__":
    main()
