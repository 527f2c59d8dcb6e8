"""The staging tree of loads: folders the target lacks are moved in whole, leftovers are cleared."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kara_core.obj import ObjectStore
from kara_core.obj.load import STAGING_DIR, STATE_DIR
from kara_core.testing.obj import read_tree, write_tree

V0 = {
    "top.txt": b"top\n",
    "a/x.txt": b"x\n",
    "a/b/c/deep.txt": b"deep\n",
    "a/b/same1.txt": b"same content\n",
    "d/same2.txt": b"same content\n",
}


def _state(out: Path) -> dict:
    return json.loads((out / STATE_DIR / "state.json").read_text())


def _save(objects: ObjectStore, tmp_path: Path, name: str, files: dict[str, bytes]) -> str:
    return objects.save_directory("ns", "ckpt", str(write_tree(tmp_path / name, files)), progress_bar=False)


def test_a_load_into_an_empty_folder_renames_only_its_top_level_entries(
    objects: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(objects, tmp_path, "v0", V0)
    out = tmp_path / "out"
    renames: list[tuple[str, str]] = []
    real_rename, real_replace = os.rename, os.replace

    def rename(src: str, dst: str) -> None:
        renames.append((src, dst))
        real_rename(src, dst)

    def replace(src: str, dst: str) -> None:
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == V0
    placed = sorted(os.path.relpath(dst, out) for src, dst in renames if STAGING_DIR in src)
    assert placed == ["a", "d", "top.txt"]
    # Folders moved in count as kara's: all of them, nested ones included.
    assert set(_state(out)["dirs"]) >= {"a", "a/b", "a/b/c", "d"}
    assert not (out / STAGING_DIR).exists()


def test_folders_kara_moved_in_are_removed_when_the_next_version_drops_them(
    objects: ObjectStore, tmp_path: Path
) -> None:
    _save(objects, tmp_path, "v0", V0)
    v1 = {"top.txt": b"top v1\n", "a/x.txt": b"x\n", "new/n/n.txt": b"n\n"}
    _save(objects, tmp_path, "v1", v1)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), "0", progress_bar=False)
    objects.load_directory("ns", "ckpt", str(out), "1", progress_bar=False)
    assert read_tree(out) == v1
    assert sorted(p.name for p in out.iterdir()) == [STATE_DIR, "a", "new", "top.txt"]
    assert not (out / "a" / "b").exists() and not (out / "d").exists()


def test_new_files_in_existing_folders_and_new_subfolders_are_placed(objects: ObjectStore, tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {"a/mine.txt": b"the user's\n"})
    _save(objects, tmp_path, "v0", {"a/x.txt": b"x\n", "a/sub/y.txt": b"y\n", "b/z.txt": b"z\n"})
    # The user's file stays (it is not in the way: delete=True would remove it).
    with pytest.raises(FileExistsError):
        objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False, delete=True)
    assert read_tree(out) == {"a/x.txt": b"x\n", "a/sub/y.txt": b"y\n", "b/z.txt": b"z\n"}
    # "a" was the user's folder: kara does not claim it, only what it created inside.
    dirs = set(_state(out)["dirs"])
    assert "a" not in dirs and {"a/sub", "b"} <= dirs


def test_a_stale_file_where_the_version_has_a_folder_is_replaced(objects: ObjectStore, tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {"a": b"a stale file\n"})
    _save(objects, tmp_path, "v0", {"a/x.txt": b"x\n"})
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False, delete=True)
    assert read_tree(out) == {"a/x.txt": b"x\n"}


def test_leftovers_of_an_interrupted_load_are_reused_or_cleared(objects: ObjectStore, tmp_path: Path) -> None:
    _save(objects, tmp_path, "v0", V0)
    out = tmp_path / "out"
    staging = out / STAGING_DIR
    write_tree(
        staging,
        {
            "files/a/x.txt": b"x\n",  # complete: kept
            "files/a/b/c/deep.txt": b"de",  # torn: downloaded again
            "files/top.txt": b"not the right content\n",  # another version's: downloaded again
            "files/gone/old.txt": b"not in this version\n",  # removed
            "files/a/x.txt.part-0123": b"x",  # a temporary copy: removed
            "3/3b5d5c3712955042212316173ccf37be_0123": b"older kara's staging layout",  # removed
        },
    )
    _damage_blob(tmp_path, b"x\n")  # only the staged copy of a/x.txt is intact
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == V0
    assert not staging.exists()


def test_the_same_content_at_paths_in_different_new_folders_is_placed_at_each(
    objects: ObjectStore, tmp_path: Path
) -> None:
    files = {"a/1.txt": b"same\n", "b/c/2.txt": b"same\n", "d/3.txt": b"same\n", "top.txt": b"same\n"}
    _save(objects, tmp_path, "v0", files)
    out = tmp_path / "out"
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == files
    # Each is a file of its own, not a link to one copy.
    assert len({(out / rel).stat().st_ino for rel in files}) == len(files)


def test_a_staged_file_in_a_folder_named_like_a_parent_reference_is_reused(
    objects: ObjectStore, tmp_path: Path
) -> None:
    files = {"..x/f.txt": b"f\n", "g.txt": b"g\n"}
    _save(objects, tmp_path, "v0", files)
    _damage_blob(tmp_path, b"f\n")
    out = tmp_path / "out"
    write_tree(out / STAGING_DIR, {"files/..x/f.txt": b"f\n"})
    # Loads although the stored blob is damaged: the staged copy was verified and reused.
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == files


def _damage_blob(tmp_path: Path, content: bytes) -> None:
    blob = f"{hashlib.md5(content).hexdigest()}_{hashlib.sha1(content).hexdigest()}"
    (tmp_path / "store/obj/ns/ckpt/data" / blob).write_bytes(b"X" * len(content))


@pytest.mark.parametrize("where", ["files/a", "files", ""])
def test_links_planted_in_the_staging_folder_send_nothing_elsewhere(
    objects: ObjectStore, tmp_path: Path, where: str
) -> None:
    _save(objects, tmp_path, "v0", V0)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    link = out / STAGING_DIR / where if where else out / STAGING_DIR
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    objects.load_directory("ns", "ckpt", str(out), progress_bar=False)
    assert read_tree(out) == V0
    assert list(outside.iterdir()) == []
