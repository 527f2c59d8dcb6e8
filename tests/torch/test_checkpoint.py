"""torch.distributed.checkpoint into kara: real gloo groups of 2 and 4 CPU processes.

Each launch runs ``dcp_rank.py`` once per rank; the test process hosts the rendezvous
TCPStore on a port the OS picks.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.serialization as serialization
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_torch import checkpoint
from kara_torch.checkpoint import KaraReader, KaraWriter, parse_tensor_offsets
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import MetadataIndex

from kara_core import KaraStorage
from kara_core.cli import cli
from kara_core.errors import (
    BlobIntegrityError,
    ConfigurationError,
    CorruptDatasetError,
    DatasetNotFoundError,
    VersionNotFoundError,
)
from kara_core.obj import stream
from kara_core.obj.manifest import KeyLayout
from kara_core.testing.obj import read_tree

from .conftest import HERE, start_ranks
from .dcp_rank import TENSORS, full_tensor

ROOT = HERE.parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:torch.distributed is disabled")]
SHARD_BLOBS = TENSORS * 2  # sharded over 2 ranks: one blob per tensor per rank


def launch(store_url: str, world_size: int, steps: list[dict[str, Any]], timeout: int = 60) -> list[dict[str, Any]]:
    """Run the steps on ``world_size`` ranks; return (returncode, report, stderr) per rank."""
    params = {"store": store_url, "steps": steps, "timeout": timeout}
    rendezvous, procs = start_ranks("dcp_rank.py", params, world_size, timeout)
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout * 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        lines = out.strip().splitlines()
        report = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
        results.append({"returncode": proc.returncode, "report": report, "stderr": err})
    del rendezvous
    return results


def reports(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    for rank, result in enumerate(results):
        assert result["returncode"] == 0, f"rank {rank} failed:\n{result['stderr'][-4000:]}"
    return [result["report"] for result in results]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"file://{tmp_path_factory.mktemp('dcp')}/store"


@pytest.fixture(scope="module")
def runs(store_url: str) -> dict[int, list[list[dict[str, Any]]]]:
    """Saves and loads on 2 ranks, then loads (other world size) and a save on 4 ranks."""
    two = [
        {"op": "save", "kind": "replicated", "key": "rep", "version": "g0"},
        {"op": "save", "kind": "sharded", "version": "g0"},
        {"op": "save", "kind": "sharded", "version": "g1", "generation": 1},
        {"op": "async_save", "kind": "sharded", "key": "async"},
        {"op": "load", "kind": "replicated", "key": "rep", "version": "g0"},
        {"op": "load", "kind": "sharded", "version": "g1", "generation": 1},
        {"op": "load", "kind": "sharded", "key": "async"},
    ]
    four = [
        {"op": "load", "kind": "sharded", "version": "g0"},
        {"op": "load", "kind": "replicated", "key": "rep", "version": "g0"},
        {"op": "save", "kind": "sharded", "key": "four", "generation": 1},
        {"op": "load", "kind": "sharded", "key": "four", "generation": 1},
        {"op": "load", "kind": "sharded", "version": "g0", "verify": True},
    ]
    return {2: reports(launch(store_url, 2, two)), 4: reports(launch(store_url, 4, four))}


def test_replicated_state_dict_saves_on_2_ranks_and_loads_on_2_and_4(runs) -> None:
    assert runs[2][0][0]["version"] == "g0"  # the coordinator knows the published name
    assert all(report[4]["ok"] for report in runs[2])
    assert all(report[1]["ok"] for report in runs[4])


def test_sharded_dtensor_state_dict_round_trips(runs, store_url: str) -> None:
    assert all(report[5]["ok"] for report in runs[2])
    assert KaraStorage(store_url).list_versions("ckpt", "run", kind="obj") == ["g0", "g1"]
    listing = CliRunner().invoke(cli, ["obj", "ls", store_url, "ckpt", "run"], catch_exceptions=False)
    assert listing.exit_code == 0 and "g0" in listing.stdout and "g1" in listing.stdout
    # Saved on 4 ranks, loaded on 4 ranks.
    assert runs[4][0][2]["version"] == "0"
    assert all(report[3]["ok"] for report in runs[4])


def test_a_verified_load_on_another_world_size_reads_whole_items_and_loads_the_same(runs, store_url: str) -> None:
    store = KaraStorage(store_url)
    sizes = {e.relpath: e.size for e in store.objects.read_manifest("ckpt", "run", "g0").files}
    step_file = KaraReader(store, "ckpt", "run", "g0").read_metadata().storage_data[MetadataIndex("step")].relative_path
    shards = sum(size for relpath, size in sizes.items() if relpath not in (".metadata", step_file))
    assert all(report[0]["ok"] and report[4]["ok"] for report in runs[4])
    assert all(report[0]["bytes_read"] < report[4]["bytes_read"] for report in runs[4])
    # Checked against its sha1, a file is read whole: each tensor shard of the 2-rank save
    # by the 2 ranks of 4 that need a quarter of the tensor from it; the metadata and the
    # pickled step by every rank.
    verified = sum(report[4]["bytes_read"] for report in runs[4])
    assert verified == 4 * (sizes[".metadata"] + sizes[step_file]) + 2 * shards


def test_loading_on_another_world_size_reads_only_the_new_shards(runs, store_url: str) -> None:
    store = KaraStorage(store_url)
    manifest = store.objects.read_manifest("ckpt", "run", "g0")
    metadata_size = next(e.size for e in manifest.files if e.relpath == ".metadata")
    metadata = KaraReader(store, "ckpt", "run", "g0").read_metadata()
    step_size = metadata.storage_data[MetadataIndex("step")].length
    for report in runs[4]:
        load = report[0]
        assert load["ok"]
        # A quarter of each tensor (its rows), the metadata and the pickled step: no more.
        assert load["bytes_read"] == load["local_bytes"] + metadata_size + step_size
        assert load["local_bytes"] == TENSORS * full_tensor(0, 0).nbytes // 4


def test_second_save_with_half_the_tensors_unchanged_uploads_only_the_changed_ones(runs, store_url: str) -> None:
    first = [report[1] for report in runs[2]]
    second = [report[2] for report in runs[2]]
    # Generation 0: every shard blob plus the pickled step.
    assert sum(r["uploaded_blobs"] for r in first) == SHARD_BLOBS + 1
    # Generation 1 changes the odd tensors and the step: half of the shards are reused.
    assert sum(r["uploaded_blobs"] for r in second) == SHARD_BLOBS // 2 + 1
    assert sum(r["reused_blobs"] for r in second) == SHARD_BLOBS // 2
    store = KaraStorage(store_url)
    step = [
        KaraReader(store, "ckpt", "run", v).read_metadata().storage_data[MetadataIndex("step")].length
        for v in ("g0", "g1")
    ]
    shard_bytes_first = sum(r["uploaded_bytes"] for r in first) - step[0]
    shard_bytes_second = sum(r["uploaded_bytes"] for r in second) - step[1]
    assert shard_bytes_first > SHARD_BLOBS * full_tensor(0, 0).nbytes // 2
    assert shard_bytes_second * 2 == shard_bytes_first
    # The store holds each distinct blob once: 17 + 9 rank blobs and two .metadata files.
    blobs = {e.file for v in ("g0", "g1") for e in store.objects.read_manifest("ckpt", "run", v).files}
    assert len(blobs) == (SHARD_BLOBS + 1) + (SHARD_BLOBS // 2 + 1) + 2


def test_async_save_completes_and_publishes(runs, store_url: str) -> None:
    assert runs[2][0][3]["version"] == "0"
    assert KaraStorage(store_url).list_versions("ckpt", "async", kind="obj") == ["0"]
    assert all(report[6]["ok"] for report in runs[2])


def _full_state(generation: int | None) -> dict[str, Any]:
    model = {
        f"layer{i}.weight": torch.zeros_like(full_tensor(i, 0)) if generation is None else full_tensor(i, generation)
        for i in range(TENSORS)
    }
    return {"model": model, "step": -1 if generation is None else generation}


def test_load_directory_gives_a_folder_that_filesystem_reader_loads(runs, store_url: str, tmp_path: Path) -> None:
    store = KaraStorage(store_url)
    store.load_directory("ckpt", "run", str(tmp_path / "g1"), "g1", progress_bar=False)
    names = set(os.listdir(tmp_path / "g1"))
    assert ".metadata" in names and {f"__{r}_0.distcp" for r in range(2)} <= names
    state = _full_state(None)
    dcp.load(state, storage_reader=FileSystemReader(str(tmp_path / "g1")), no_dist=True)
    expected = _full_state(1)
    assert state["step"] == 1
    assert all(torch.equal(state["model"][k], expected["model"][k]) for k in expected["model"])


def _k215_python() -> str:
    path = os.environ.get("KARA_215_PYTHON") or str(ROOT / ".venv-k215" / "bin" / "python")
    if not os.path.exists(path):
        pytest.fail(f"kara-storage 2.1.5 is needed at {path} (set KARA_215_PYTHON or run scripts/test)")
    return path


def test_kara_storage_2_1_5_load_directory_gives_the_same_folder(runs, store_url: str, tmp_path: Path) -> None:
    KaraStorage(store_url).load_directory("ckpt", "run", str(tmp_path / "kara"), "g1", progress_bar=False)
    code = (
        "import sys, kara_storage\n"
        "s = kara_storage.KaraStorage(sys.argv[1])\n"
        "s.load_directory('ckpt', 'run', sys.argv[2], 'g1', progress_bar=False)\n"
    )
    proc = subprocess.run(
        [_k215_python(), "-c", code, store_url, str(tmp_path / "k215")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ours = {k: v for k, v in read_tree(tmp_path / "kara").items() if not k.startswith(".kara/")}
    assert read_tree(tmp_path / "k215") == ours
    state = _full_state(None)
    dcp.load(state, storage_reader=FileSystemReader(str(tmp_path / "k215")), no_dist=True)
    assert torch.equal(state["model"]["layer1.weight"], full_tensor(1, 1))


def test_a_rank_killed_mid_save_publishes_nothing_and_the_rerun_succeeds(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    crashed = launch(url, 2, [{"op": "save", "kind": "sharded", "key": "crash", "version": "v1", "die_after": 2}], 20)
    assert crashed[1]["returncode"] == -9  # SIGKILL, after storing two blobs
    assert crashed[0]["returncode"] != 0  # the coordinator never reaches finish
    store = KaraStorage(url)
    with pytest.raises((DatasetNotFoundError, VersionNotFoundError)):
        store.objects.resolve_version("ckpt", "crash", "v1")
    rerun = reports(
        launch(
            url,
            2,
            [
                {"op": "save", "kind": "sharded", "key": "crash", "version": "v1"},
                {"op": "load", "kind": "sharded", "key": "crash", "version": "v1"},
            ],
        )
    )
    assert rerun[0][0]["version"] == "v1"
    assert all(report[1]["ok"] for report in rerun)
    assert store.list_versions("ckpt", "crash", kind="obj") == ["v1"]
    # Blobs the crashed save left behind, if any, are no longer needed: gc removes them.
    report = store.objects.gc("ckpt", "crash", grace_period=0)
    assert store.objects.verify("ckpt", "crash") == []
    assert report.deferred is False


def test_kara_reader_loads_a_filesystem_writer_folder_saved_with_save_directory(tmp_path: Path) -> None:
    state = _full_state(1)
    dcp.save(state, storage_writer=FileSystemWriter(str(tmp_path / "dcp")), no_dist=True)
    store = KaraStorage(f"file://{tmp_path}/store")
    store.save_directory("ckpt", "folder", str(tmp_path / "dcp"), progress_bar=False)
    full = _full_state(None)
    dcp.load(full, storage_reader=KaraReader(store, "ckpt", "folder"), no_dist=True)
    assert full["step"] == 1
    assert all(torch.equal(full["model"][k], state["model"][k]) for k in state["model"])


@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
            max_leaves=10,
        ).map(lambda v: json.dumps({"dcp_tensor_offsets": v}).encode()),
    )
)
@settings(max_examples=300, deadline=None)
def test_the_sidecar_offsets_parser_returns_offsets_or_a_clear_error(raw: bytes) -> None:
    try:
        offsets = parse_tensor_offsets(raw, "fuzz")
    except CorruptDatasetError:
        return
    assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in offsets.items())


@pytest.mark.parametrize(
    "tensor",
    [
        torch.randn(300, 400),
        torch.randn(256, 256).to(torch.bfloat16),
        torch.ones(70_000, dtype=torch.bool),
        torch.arange(12),  # small: copied with the records
        torch.tensor(2.5),
    ],
    ids=["float32", "bfloat16", "bool", "small", "scalar"],
)
def test_item_archives_are_torch_save_without_crc_and_keep_the_tensor_memory(tensor: torch.Tensor) -> None:
    archive = checkpoint._ArchiveParts(tensor)
    checkpoint._save_archive(tensor, archive)
    parts = archive.parts()
    joined = b"".join(bytes(part) for part in parts)
    assert joined == _torch_save_without_crc(tensor)
    assert torch.equal(torch.load(io.BytesIO(joined), weights_only=True), tensor)
    nbytes = tensor.numel() * tensor.element_size()
    assert archive.tensor_offset is not None
    assert archive.tensor_offset == checkpoint._tensor_bytes_offset(memoryview(joined), nbytes)
    views = [p for p in parts if isinstance(p, memoryview)]
    if nbytes >= checkpoint.ZERO_COPY_MIN:
        # The tensor's bytes are handed over as a view of its own memory, not a copy.
        assert len(views) == 1 and np.frombuffer(views[0], dtype=np.uint8).ctypes.data == tensor.data_ptr()
    else:
        assert views == []


def _saved_store(tmp_path: Path) -> tuple[KaraStorage, dict[str, Any]]:
    state = _full_state(1)
    store = KaraStorage(f"file://{tmp_path}/store")
    dcp.save(state, storage_writer=KaraWriter(store, "ckpt", "direct", version="v"), no_dist=True)
    return store, state


@pytest.mark.parametrize("local", [True, False], ids=["local-files", "ranged-reads"])
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "transposed"])
def test_kara_reader_reads_tensors_into_their_destination_or_through_a_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool, contiguous: bool
) -> None:
    store, state = _saved_store(tmp_path)
    if not local:
        capabilities = dataclasses.replace(store.backend.capabilities, local_path=False)
        monkeypatch.setattr(store.backend, "capabilities", capabilities)
    full = _full_state(None)
    if not contiguous:
        full["model"] = {k: torch.zeros(v.shape[::-1]).t() for k, v in full["model"].items()}
    destinations = {v.data_ptr() for v in full["model"].values()}
    reader = KaraReader(store, "ckpt", "direct", "v")
    addresses: list[int] = []
    read_into = reader._read_into

    def spy(relpath: str, start: int, out: memoryview) -> None:
        addresses.append(checkpoint._address(out))
        read_into(relpath, start, out)

    monkeypatch.setattr(reader, "_read_into", spy)
    dcp.load(full, storage_reader=reader, no_dist=True)
    assert full["step"] == 1
    assert all(torch.equal(full["model"][k], state["model"][k]) for k in state["model"])
    assert {v.data_ptr() for v in full["model"].values()} == destinations
    assert len(addresses) == TENSORS
    # Contiguous destinations get the bytes directly; the others go through a buffer.
    assert (set(addresses) == destinations) is contiguous


def test_a_resave_compares_unchanged_items_with_the_previous_blobs_instead_of_hashing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _saved_store(tmp_path)
    from kara_core.obj import stream

    hashed: list[tuple[int, tuple[str, ...]]] = []
    real = stream.hash_views

    def counting(names: list[str], views: list[memoryview]) -> list[str]:
        hashed.append((sum(len(v) for v in views), tuple(sorted(names))))
        return real(names, views)

    monkeypatch.setattr(stream, "hash_views", counting)
    writer = KaraWriter(store, "ckpt", "direct", version="w")
    dcp.save(_full_state(2), storage_writer=writer, no_dist=True)
    # Odd tensors changed: only their items (and the pickled step and .metadata) are
    # hashed, md5 and sha1 in one pass; the unchanged even ones are not hashed at all.
    changed = TENSORS // 2
    assert (writer.stats.reused_blobs, writer.stats.uploaded_blobs) == (TENSORS - changed, changed + 1)
    manifest = store.objects.read_manifest("ckpt", "direct", "w")
    sizes = {entry.relpath: entry.size for entry in manifest.files}
    item_size = max(sizes.values())
    assert [names for n, names in hashed if n == item_size] == [("md5", "sha1")] * changed
    loaded = _full_state(None)
    dcp.load(loaded, storage_reader=KaraReader(store, "ckpt", "direct", "w"), no_dist=True)
    assert all(torch.equal(loaded["model"][k], v) for k, v in _full_state(2)["model"].items())


def test_kara_reader_reports_a_blob_shorter_than_its_manifest(tmp_path: Path) -> None:
    store, _ = _saved_store(tmp_path)
    largest = max(store.objects.read_manifest("ckpt", "direct", "v").files, key=lambda entry: entry.size)
    path = store.backend.local_path(KeyLayout("ckpt", "direct").blob(largest.file))
    os.truncate(path, largest.size // 2)
    with pytest.raises(CheckpointException) as raised:
        dcp.load(_full_state(None), storage_reader=KaraReader(store, "ckpt", "direct", "v"), no_dist=True)
    error = raised.value.failures[0][0]
    assert isinstance(error, CorruptDatasetError) and "shorter than its manifest" in str(error)


def _flip_a_byte(store: KaraStorage, relpath: str, where: float = 0.6) -> None:
    """Damage ``relpath`` of ckpt/<key> version "v" in place (same size): bit rot."""
    entry = next(e for e in store.objects.read_manifest("ckpt", "direct", "v").files if e.relpath == relpath)
    path = store.backend.local_path(KeyLayout("ckpt", "direct").blob(entry.file))
    with open(path, "r+b") as fh:
        fh.seek(int(entry.size * where))
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x10]))


@pytest.mark.parametrize("layout", ["kara-writer", "filesystem-writer"])
@pytest.mark.parametrize("local", [True, False], ids=["local-files", "ranged-reads"])
def test_a_verified_load_refuses_a_damaged_file_and_loads_an_intact_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, local: bool
) -> None:
    if layout == "kara-writer":
        store, state = _saved_store(tmp_path)
    else:  # torch's folder (several items per file) saved as version "v"
        state = _full_state(1)
        dcp.save(state, storage_writer=FileSystemWriter(str(tmp_path / "dcp")), no_dist=True)
        store = KaraStorage(f"file://{tmp_path}/store")
        store.save_directory("ckpt", "direct", str(tmp_path / "dcp"), version="v", progress_bar=False)
    if not local:
        capabilities = dataclasses.replace(store.backend.capabilities, local_path=False)
        monkeypatch.setattr(store.backend, "capabilities", capabilities)
    full = _full_state(None)
    full["model"] = {
        k: torch.zeros(v.shape[::-1]).t() if i % 2 else v for i, (k, v) in enumerate(full["model"].items())
    }
    reader = KaraReader(store, "ckpt", "direct", "v", verify=True)
    addresses: list[int] = []
    read_into = reader._read_into
    monkeypatch.setattr(reader, "_read_into", lambda *a: addresses.append(checkpoint._address(a[2])) or read_into(*a))
    contiguous = {v.data_ptr() for v in full["model"].values() if v.is_contiguous()}
    dcp.load(full, storage_reader=reader, no_dist=True)
    assert full["step"] == 1 and all(torch.equal(full["model"][k], state["model"][k]) for k in state["model"])
    # KaraWriter's shards go straight into the contiguous destinations, checked there.
    assert set(addresses) == (contiguous if layout == "kara-writer" else set())
    files = store.objects.read_manifest("ckpt", "direct", "v").files
    # Every file is read whole once; a file of several items is streamed through sha1
    # first, then its items are read from it.
    read = reader.bytes_read
    items = sum(info.length for info in reader.read_metadata().storage_data.values())
    assert read == sum(e.size for e in files) + (items if layout == "filesystem-writer" else 0)
    largest = max((e for e in files if e.relpath != ".metadata"), key=lambda e: e.size).relpath
    _flip_a_byte(store, largest)
    with pytest.raises(CheckpointException) as raised:
        dcp.load(_full_state(None), storage_reader=KaraReader(store, "ckpt", "direct", "v", verify=True), no_dist=True)
    error = raised.value.failures[0][0]
    assert isinstance(error, BlobIntegrityError) and f"({largest!r} of version 'v') does not match its sha1" in str(
        error
    )
    # Without verify only sizes are checked (as torch's FileSystemReader): the flipped
    # byte is loaded. This is what verify=True is for.
    unchecked = _full_state(None)
    dcp.load(unchecked, storage_reader=KaraReader(store, "ckpt", "direct", "v"), no_dist=True)
    assert not all(torch.equal(unchecked["model"][k], state["model"][k]) for k in state["model"])


def test_a_damaged_metadata_file_is_refused_with_or_without_verify(tmp_path: Path) -> None:
    store, _ = _saved_store(tmp_path)
    _flip_a_byte(store, ".metadata", 0.5)
    for verify in (False, True):
        with pytest.raises(BlobIntegrityError, match=r"'\.metadata' of version 'v'"):
            KaraReader(store, "ckpt", "direct", "v", verify=verify).read_metadata()
    with pytest.raises(ConfigurationError, match="verify must be True or False"):
        KaraReader(store, "ckpt", "direct", "v", verify="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_writer_and_reader_refuse_a_bad_thread_count(tmp_path: Path, threads: Any) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    with pytest.raises(ConfigurationError, match="threads"):
        KaraWriter(store, "ckpt", "k", threads=threads)
    with pytest.raises(ConfigurationError, match="threads"):
        KaraReader(store, "ckpt", "k", threads=threads)


def test_local_stores_default_to_one_thread_per_core_of_each_local_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KaraStorage(f"file://{tmp_path}/store")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert checkpoint._default_threads(store, 4) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert checkpoint._default_threads(store, 4) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert checkpoint._default_threads(store, 4) == 4
    monkeypatch.setattr(
        store.backend, "capabilities", dataclasses.replace(store.backend.capabilities, local_path=False)
    )
    assert checkpoint._default_threads(store, 8) == 8


def _leases(store: KaraStorage) -> list[str]:
    return list(store.backend.list(KeyLayout("ckpt", "direct").leases))


def _wait_for_leases(store: KaraStorage, count: int) -> list[str]:
    """The leases once there are ``count`` of them (at least; none when 0), or after 10 s."""
    deadline = time.monotonic() + 10
    while (len(_leases(store)) < count if count else _leases(store)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _leases(store)


@pytest.mark.parametrize("coordinator", [True, False], ids=["coordinator", "other-rank"])
def test_set_up_takes_the_leases_before_write_data_and_reset_releases_them(tmp_path: Path, coordinator: bool) -> None:
    store, _ = _saved_store(tmp_path)
    assert _leases(store) == []
    writer = KaraWriter(store, "ckpt", "direct", version="w")
    writer.set_up_storage_writer(coordinator, rank=0 if coordinator else 1)
    # While DCP plans the save, every rank already holds its lease (the coordinator also
    # the open version's): write_data starts with them.
    assert len(_wait_for_leases(store, 2 if coordinator else 1)) == (2 if coordinator else 1)
    writer.reset()
    assert _leases(store) == []
    # A writer dropped between set-up and write_data (a failed plan) releases them too,
    # also while its preparation thread is still taking them (the thread then holds the
    # last reference, and the release runs in it).
    writer.set_up_storage_writer(coordinator, rank=0 if coordinator else 1)
    _wait_for_leases(store, 1)
    del writer
    gc.collect()
    assert _wait_for_leases(store, 0) == []


def test_the_lease_and_the_previous_manifest_are_prepared_beside_dcp_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _saved_store(tmp_path)
    threads: dict[str, set[str]] = {"read_manifest": set(), "lease": set()}
    read_manifest = store.objects.read_manifest
    lease = stream.Lease.__init__

    def manifest_spy(*args: Any, **kwargs: Any) -> Any:
        threads["read_manifest"].add(threading.current_thread().name)
        return read_manifest(*args, **kwargs)

    def lease_spy(self: Any, *args: Any, **kwargs: Any) -> None:
        threads["lease"].add(threading.current_thread().name)
        lease(self, *args, **kwargs)

    monkeypatch.setattr(store.objects, "read_manifest", manifest_spy)
    monkeypatch.setattr(stream.Lease, "__init__", lease_spy)
    writer = KaraWriter(store, "ckpt", "direct", version="w")
    dcp.save(_full_state(2), storage_writer=writer, no_dist=True)
    assert threads == {"read_manifest": {"kara-dcp-prepare"}, "lease": {"kara-dcp-prepare"}}
    assert writer.version == "w" and _leases(store) == []
    # The previous version's blobs were used: the unchanged half was compared, not uploaded.
    assert (writer.stats.reused_blobs, writer.stats.uploaded_blobs) == (TENSORS // 2, TENSORS // 2 + 1)


def _torch_save_without_crc(tensor: torch.Tensor) -> bytes:
    serialization.set_crc32_options(False)
    try:
        reference = io.BytesIO()
        torch.save(tensor, reference)
    finally:
        serialization.set_crc32_options(True)
    return reference.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: torch.randn(300, 400, generator=torch.Generator().manual_seed(seed)),
        lambda seed: torch.full((256, 256), float(seed)).to(torch.bfloat16),
        lambda seed: torch.ones(70_000, dtype=torch.bool) if seed else torch.zeros(70_000, dtype=torch.bool),
        lambda seed: (torch.randn(30_000) + seed).as_strided((1, 300, 100), (7, 100, 1)),
    ],
    ids=["float32", "bfloat16", "bool", "odd-stride"],
)
def test_archives_of_one_layout_reuse_the_records_and_stay_torch_save(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialized: list[torch.Tensor] = []
    real = checkpoint._save_archive

    def counting(tensor: torch.Tensor, archive: Any) -> None:
        serialized.append(tensor)
        real(tensor, archive)

    monkeypatch.setattr(checkpoint, "_save_archive", counting)
    templates = checkpoint._ArchiveTemplates()
    tensors = [checkpoint._compact(make(seed)) for seed in range(3)]
    for tensor in tensors:
        parts, offset = templates.parts(tensor)
        joined = b"".join(bytes(part) for part in parts)
        assert joined == _torch_save_without_crc(tensor)
        assert offset == checkpoint._tensor_bytes_offset(memoryview(joined), tensor.numel() * tensor.element_size())
        # The tensor's bytes are a view of its own memory.
        assert checkpoint._address(parts[1]) == tensor.data_ptr()
    # torch's serializer ran for the first tensor of the layout only.
    assert len(serialized) == 1
    # Another layout (shape, dtype, strides) is serialized again.
    other = checkpoint._compact(make(0).reshape(-1).flip(0).clone().reshape(2, -1))
    parts, _ = templates.parts(other)
    assert b"".join(bytes(part) for part in parts) == _torch_save_without_crc(other)
    assert len(serialized) == 2


def test_tensors_that_are_not_plain_are_always_serialized_by_torch() -> None:
    class Marked(torch.Tensor):
        pass

    plain = torch.randn(300, 400)
    attributed = torch.randn(300, 400)
    attributed.note = "kept by torch.save"
    for tensor in [plain.as_subclass(Marked), attributed, torch.randn(300, 400, dtype=torch.complex64).conj()]:
        assert checkpoint._layout_key(tensor) is None
    assert checkpoint._layout_key(torch.randn(10)) is None  # small: copied with the records
    assert checkpoint._layout_key(plain) is not None
    # Strides are part of the layout (torch.save records them), even those of size-1 dims.
    standard = torch.randn(1, 300, 100)
    odd = torch.randn(30_000).as_strided((1, 300, 100), (7, 100, 1))
    assert checkpoint._layout_key(standard) != checkpoint._layout_key(odd)
    templates = checkpoint._ArchiveTemplates()
    for tensor in [standard, odd]:
        parts, _ = templates.parts(tensor)
        assert b"".join(bytes(part) for part in parts) == _torch_save_without_crc(tensor)
