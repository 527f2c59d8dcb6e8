"""Packs of small files: how a save groups them, how a load reads them, what a damaged one costs."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

from kara_core.errors import UnsafePathError
from kara_core.obj import ObjectStore
from kara_core.obj.packs import (
    PACK_GAP,
    PACK_MAX,
    PACK_MEMBER_MAX,
    PACK_TARGET,
    pack_name,
    plan_packs,
    read_ranges,
)
from kara_core.testing.obj import read_tree, write_tree

KEY = Path("obj/ns/ckpt")


def _blob(i: int, salt: str = "") -> str:
    data = f"{i}{salt}".encode()
    return f"{hashlib.md5(data).hexdigest()}_{hashlib.sha1(data).hexdigest()}"


sizes = st.lists(st.integers(0, PACK_MEMBER_MAX * 2), min_size=0, max_size=300)


@settings(max_examples=200, deadline=None)
@given(sizes)
def test_packs_hold_each_small_blob_once_back_to_back(found: list[int]) -> None:
    blobs = [(_blob(i % 250), size) for i, size in enumerate(found)]
    packs = plan_packs(blobs)
    members = [m for pack in packs for m in pack.members]
    first_size = {}
    for blob, size in blobs:
        first_size.setdefault(blob, size)
    small = {blob for blob, size in first_size.items() if size <= PACK_MEMBER_MAX}
    assert {blob for blob, _, _ in members} <= small
    assert len({blob for blob, _, _ in members}) == len(members), "a blob is packed once"
    for pack in packs:
        assert len(pack.members) > 1, "a pack of one file saves nothing"
        assert pack.size <= PACK_MAX
        offset = 0
        for blob, size, start in pack.members:
            assert (start, size) == (offset, first_size[blob])
            offset += size
        assert offset == pack.size
        assert pack.name == pack_name(b for b, _, _ in pack.members)
    # Only a blob that ends up alone in its group is left out.
    assert len(small) - len(members) <= len(packs) + 1 + sum(1 for _ in small) // 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 64 * 1024), min_size=20, max_size=400), st.data())
def test_one_changed_file_changes_at_most_two_packs(found: list[int], data: st.DataObject) -> None:
    blobs = [(_blob(i), size) for i, size in enumerate(found)]
    changed = data.draw(st.integers(0, len(blobs) - 1))
    after = list(blobs)
    after[changed] = (_blob(changed, "changed"), found[changed])
    before_names = {p.name for p in plan_packs(blobs)}
    after_names = {p.name for p in plan_packs(after)}
    # The pack of the changed file, and the next one if the change moved a cut.
    assert len(after_names - before_names) <= 2
    assert len(before_names - after_names) <= 2


def test_packs_average_their_target_size() -> None:
    blobs = [(_blob(i), 32 * 1024) for i in range(20_000)]  # 625 MiB of 32 KiB files
    packs = plan_packs(blobs)
    average = sum(p.size for p in packs) / len(packs)
    assert 0.7 * PACK_TARGET < average < 1.3 * PACK_TARGET
    assert max(p.size for p in packs) <= PACK_MAX


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40 * 1024 * 1024), st.integers(0, 300 * 1024)), max_size=60),
    st.integers(0, 2 * PACK_GAP),
)
def test_ranged_reads_cover_every_member_once(members: list[tuple[int, int]], gap: int) -> None:
    items = [(i, offset, size) for i, (offset, size) in enumerate(members)]
    ranges = read_ranges(items, gap)
    served = [m for r in ranges for m in r.members]
    assert sorted(served) == sorted(items)
    for r in ranges:
        for _, offset, size in r.members:
            assert r.start <= offset and offset + size <= r.end
        assert r.end - r.start <= max(PACK_MAX, max(size for _, _, size in r.members))
    for first, second in itertools.pairwise(ranges):
        assert first.start <= second.start


def test_adjacent_members_share_one_read_and_far_ones_do_not() -> None:
    near = read_ranges([("a", 0, 10), ("b", 10, 10), ("c", 20 + PACK_GAP, 5)])
    assert [(r.start, r.end, [m[0] for m in r.members]) for r in near] == [(0, PACK_GAP + 25, ["a", "b", "c"])]
    far = read_ranges([("a", 0, 10), ("c", 11 + PACK_GAP, 5)])
    assert [(r.start, r.end) for r in far] == [(0, 10), (11 + PACK_GAP, 16 + PACK_GAP)]


# -- save and load on a store without local files (the loads that use packs) --------


class _Remote(NoLocalFilesBackend):
    """The file backend seen as a remote store, every read counted."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int, int | None]] = []
        self.puts: list[str] = []

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        self.reads.append((path, start, end))
        return super().read(path, start, end)

    def open_read(self, path: str, start: int = 0):  # type: ignore[no-untyped-def]
        self.reads.append((path, start, None))
        return super().open_read(path, start)


def _tree(count: int = 60) -> dict[str, bytes]:
    files = {f"small/{i:03d}.txt": f"file {i}\n".encode() * (i + 1) for i in range(count)}
    files["small/same.txt"] = files["small/000.txt"]
    files["big.bin"] = os.urandom(PACK_MEMBER_MAX + 1)
    return files


@pytest.fixture
def remote(tmp_path: Path) -> _Remote:
    return _Remote(str(tmp_path / "store"))


def _data_reads(backend: _Remote) -> list[str]:
    return [path for path, _, _ in backend.reads if path.startswith(f"{KEY.as_posix()}/data/")]


def _pack_reads(backend: _Remote) -> list[tuple[str, int, int | None]]:
    return [read for read in backend.reads if read[0].startswith(f"{KEY.as_posix()}/kara-packs/")]


def test_a_load_reads_small_files_from_their_pack(remote: _Remote, tmp_path: Path) -> None:
    tree = _tree()
    objects = ObjectStore(remote)
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "src", tree)), progress_bar=False)
    manifest = objects.read_manifest("ns", "ckpt", "0")
    assert len(manifest.packs) == 1
    packed = [f for f in manifest.files if f.pack]
    assert {f.relpath for f in packed} == {p for p in tree if p.startswith("small/")}
    assert all(f.pack is None for f in manifest.files if f.size > PACK_MEMBER_MAX)
    remote.reads.clear()
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == tree
    assert len(_pack_reads(remote)) == 1, "60 small files, one ranged read"
    assert _data_reads(remote) == [f"{KEY.as_posix()}/data/{manifest.files[0].file}"]  # big.bin only


def test_a_load_of_some_files_reads_only_the_ranges_it_needs(remote: _Remote, tmp_path: Path) -> None:
    rnd = random.Random(0)  # contents whose hashes end no pack early: 4 MB, one pack
    tree = {f"f{i:03d}": rnd.randbytes(200 * 1024) for i in range(20)}
    src = write_tree(tmp_path / "src", tree)
    objects = ObjectStore(remote)
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    assert len(objects.read_manifest("ns", "ckpt", "0").packs) == 1
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    for name in ("f002", "f003", "f015"):  # two neighbours, one far away
        (out / name).write_bytes(b"changed")
    remote.reads.clear()
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == tree
    reads = sorted((start, end) for _, start, end in _pack_reads(remote))
    assert reads == [(2 * 200 * 1024, 4 * 200 * 1024), (15 * 200 * 1024, 16 * 200 * 1024)]
    assert _data_reads(remote) == []


def test_a_damaged_pack_costs_requests_not_files(remote: _Remote, tmp_path: Path) -> None:
    tree = _tree()
    objects = ObjectStore(remote)
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "src", tree)), progress_bar=False)
    manifest = objects.read_manifest("ns", "ckpt", "0")
    (pack,) = manifest.packs
    victim = next(f for f in manifest.files if f.relpath == "small/007.txt")
    path = tmp_path / "store" / KEY / "kara-packs" / pack
    raw = bytearray(path.read_bytes())
    raw[victim.pack_offset or 0] ^= 0x01
    path.write_bytes(bytes(raw))
    problems = objects.verify("ns", "ckpt")
    assert len(problems) == 1 and pack in problems[0] and "small/007.txt" in problems[0]
    remote.reads.clear()
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == tree
    assert sorted(p.rpartition("/")[2] for p in _data_reads(remote)) == sorted(
        {victim.file, next(f.file for f in manifest.files if f.relpath == "big.bin")}
    )

    path.unlink()
    assert any(p.startswith(f"missing pack {pack}") for p in objects.verify("ns", "ckpt"))
    remote.reads.clear()
    objects.load_directory("ns", "ckpt", str(tmp_path / "out2"), progress_bar=False)
    assert read_tree(tmp_path / "out2") == tree
    assert len(_data_reads(remote)) == len({f.file for f in manifest.files})


def test_a_resave_writes_only_the_pack_of_the_changed_file(tmp_path: Path) -> None:
    rnd = random.Random(7)
    tree = {f"f{i:04d}": rnd.randbytes(8192) for i in range(4200)}  # 34 MB: more than 2 packs
    src = write_tree(tmp_path / "src", tree)
    objects = ObjectStore(_Remote(str(tmp_path / "store")))
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    packs = tmp_path / "store" / KEY / "kara-packs"
    first = {p.name for p in packs.iterdir()}
    assert len(first) >= 2
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    assert {p.name for p in packs.iterdir()} == first, "an unchanged folder writes no pack"
    (src / "f2000").write_bytes(b"new content")  # a file inside a pack, not at its end
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    added = {p.name for p in packs.iterdir()} - first
    assert 1 <= len(added) <= 2
    assert objects.read_manifest("ns", "ckpt", "2").packs - first == added


@pytest.mark.parametrize(
    ("remote", "asked", "packed"),
    [(True, None, True), (True, False, False), (False, None, False), (False, True, True)],
)
def test_packs_by_default_on_remote_stores_and_when_asked(
    remote: bool, asked: bool | None, packed: bool, tmp_path: Path
) -> None:
    backend = _Remote(str(tmp_path / "store")) if remote else FileBackend(str(tmp_path / "store"))
    src = write_tree(tmp_path / "src", _tree())
    ObjectStore(backend).save_directory("ns", "ckpt", str(src), progress_bar=False, pack_small_files=asked)
    assert (tmp_path / "store" / KEY / "kara-packs").exists() == packed
    raw = orjson.loads((tmp_path / "store" / KEY / "vers" / "0.json").read_bytes())
    assert bool([e for e in raw if "pack" in e or "pack_offset" in e]) == packed


def test_gc_removes_the_packs_no_version_names(remote: _Remote, tmp_path: Path) -> None:
    tree = _tree()
    src = write_tree(tmp_path / "src", tree)
    objects = ObjectStore(remote)
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    (src / "small" / "010.txt").write_bytes(b"changed")
    objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    old, new = (objects.read_manifest("ns", "ckpt", v).packs for v in ("0", "1"))
    assert len(old) == len(new) == 1 and old != new
    assert objects.gc("ns", "ckpt", grace_period=0).removed == [], "both versions use their packs"
    objects.delete_version("ns", "ckpt", "0")
    report = objects.gc("ns", "ckpt", grace_period=3600)
    assert report.removed == [] and set(old) <= set(report.kept_recent), "young: kept"
    later = time.time() + 7200
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: later)
        report = objects.gc("ns", "ckpt", grace_period=3600)
    assert set(old) <= set(report.removed) and not set(new) & set(report.removed)
    assert {p.name for p in (tmp_path / "store" / KEY / "kara-packs").iterdir()} == new
    assert objects.verify("ns", "ckpt") == []
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == read_tree(src)


def test_a_file_changed_before_its_pack_is_written_fails_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kara_core.obj import save

    src = write_tree(tmp_path / "src", {"a": b"a" * 100, "b": b"b" * 100})
    objects = ObjectStore(_Remote(str(tmp_path / "store")))
    real = save._FilePipeline.save_packs

    def change_then_pack(self, files, digests, workers):  # type: ignore[no-untyped-def]
        stat = os.stat(src / "a")
        (src / "a").write_bytes(b"A" * 100)  # same size, same mtime: only the bytes tell
        os.utime(src / "a", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return real(self, files, digests, workers)

    monkeypatch.setattr(save._FilePipeline, "save_packs", change_then_pack)
    with pytest.raises(ValueError, match="changed while it was being saved"):
        objects.save_directory("ns", "ckpt", str(src), progress_bar=False)
    assert not (tmp_path / "store" / KEY / "vers").exists(), "nothing was published"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pack": "pack-../../etc"}, "pack"),
        ({"pack": "pack-" + "0" * 40 + "\n", "pack_offset": 0}, "pack"),  # `$` of a regex allowed a line break
        ({"pack": "pack-" + "0" * 40}, "pack and pack_offset"),
        ({"pack_offset": 3}, "pack and pack_offset"),
        ({"pack": "pack-" + "0" * 40, "pack_offset": -1}, "pack_offset"),
    ],
)
def test_a_manifest_with_a_bad_pack_field_is_refused(change: dict[str, object], match: str, tmp_path: Path) -> None:
    objects = ObjectStore(FileBackend(str(tmp_path / "store")))
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "src", {"a": b"a"})), progress_bar=False)
    path = tmp_path / "store" / KEY / "vers" / "0.json"
    entries = orjson.loads(path.read_bytes())
    entries[0].update(change)
    path.write_bytes(orjson.dumps(entries))
    with pytest.raises(UnsafePathError, match=match):
        objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert not (tmp_path / "out").exists()


def test_a_pack_named_for_a_large_file_is_not_read_into_memory(remote: _Remote, tmp_path: Path) -> None:
    tree = {"big1": os.urandom(PACK_MEMBER_MAX + 10), "big2": os.urandom(PACK_MEMBER_MAX + 20)}
    objects = ObjectStore(remote)
    objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / "src", tree)), progress_bar=False)
    path = tmp_path / "store" / KEY / "vers" / "0.json"
    entries = orjson.loads(path.read_bytes())
    for entry in entries:
        entry.update({"pack": "pack-" + "1" * 40, "pack_offset": 0})
    path.write_bytes(orjson.dumps(entries))
    objects.load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    assert read_tree(tmp_path / "out") == tree
    assert _pack_reads(remote) == []
