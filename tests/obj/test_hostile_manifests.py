"""A manifest or sidecar from a hostile store is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kara_file.backend import FileBackend

from kara_core.errors import ConfigurationError, UnsafePathError
from kara_core.obj import ObjectStore

GOOD = {
    "md5": "b1946ac92492d2347c6235b4d2611184",
    "sha1": "f572d396fae9206628714fb2ce00f72e94f2258f",
    "file": "b1946ac92492d2347c6235b4d2611184_f572d396fae9206628714fb2ce00f72e94f2258f",
    "path": ["ok.txt"],
    "size": 6,
}

HOSTILE_ENTRIES = {
    "parent component": {**GOOD, "path": ["..", "escaped.txt"]},
    "nested parent component": {**GOOD, "path": ["sub", "..", "..", "escaped.txt"]},
    "absolute path": {**GOOD, "path": ["/tmp", "escaped.txt"]},
    "drive path": {**GOOD, "path": ["C:", "escaped.txt"]},
    "empty component": {**GOOD, "path": ["sub", "", "x.txt"]},
    "empty path": {**GOOD, "path": []},
    "backslash": {**GOOD, "path": ["..\\escaped.txt"]},
    "separator inside a component": {**GOOD, "path": ["sub/../../escaped.txt"]},
    "kara's state folder": {**GOOD, "path": [".kara", "state.json"]},
    "blob name with a path": {**GOOD, "file": "../../../../etc/passwd"},
    "blob name not matching the hashes": {**GOOD, "file": "0" * 32 + "_" + "0" * 40},
    "md5 that is not hex": {**GOOD, "md5": "zz" * 16, "file": "zz" * 16 + "_" + GOOD["sha1"]},
    # A regex's `$` also matches before a final line break: these were accepted.
    "md5 with a line break after it": {
        **GOOD,
        "path": ["b.txt"],
        "md5": GOOD["md5"] + "\n",
        "file": GOOD["md5"] + "\n_" + GOOD["sha1"],
    },
    "sha1 with a line break after it": {
        **GOOD,
        "path": ["b.txt"],
        "sha1": GOOD["sha1"] + "\n",
        "file": GOOD["md5"] + "_" + GOOD["sha1"] + "\n",
    },
    "negative size": {**GOOD, "size": -1},
}


@pytest.fixture
def store(tmp_path: Path) -> FileBackend:
    backend = FileBackend(str(tmp_path / "store"))
    backend.put("obj/ns/ckpt/data/" + GOOD["file"], b"hello\n")
    backend.put("obj/ns/ckpt/meta.json", b'{"latest": "0", "versions": ["0"], "api": 2}')
    return backend


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


@pytest.mark.parametrize("entry", HOSTILE_ENTRIES.values(), ids=HOSTILE_ENTRIES.keys())
def test_a_hostile_manifest_entry_is_rejected(store: FileBackend, tmp_path: Path, entry: dict) -> None:
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps([GOOD, entry]))
    with pytest.raises(UnsafePathError):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)


def test_two_entries_at_one_path_are_rejected(store: FileBackend, tmp_path: Path) -> None:
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps([GOOD, GOOD]))
    with pytest.raises(UnsafePathError, match="twice"):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)


def test_a_file_used_as_a_folder_is_rejected(store: FileBackend, tmp_path: Path) -> None:
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps([GOOD, {**GOOD, "path": ["ok.txt", "inner"]}]))
    with pytest.raises(UnsafePathError, match="folder"):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../escaped.txt", "C:\\x", ""])
def test_a_sidecar_link_leaving_the_folder_is_rejected(store: FileBackend, tmp_path: Path, target: str) -> None:
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps([GOOD]))
    store.put("obj/ns/ckpt/kara/0.json", orjson.dumps({"links": [{"path": ["sub", "link"], "target": target}]}))
    with pytest.raises(UnsafePathError):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)


def test_a_sidecar_folder_with_a_parent_component_is_rejected(store: FileBackend, tmp_path: Path) -> None:
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps([GOOD]))
    store.put("obj/ns/ckpt/kara/0.json", orjson.dumps({"dirs": [["..", "outside"]]}))
    with pytest.raises(UnsafePathError):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize(
    "where",
    ["file name", "folder name", "link name", "empty folder", "path length"],
)
def test_a_version_whose_names_the_local_disk_cannot_hold_is_refused_before_anything_is_written(
    store: FileBackend, tmp_path: Path, where: str
) -> None:
    # Object stores take names of up to 1024 bytes (a file streamed in with open_version);
    # the load used to fail half-way with the OS's "File name too long".
    long, sidecar = "n" * 256, {}
    entries = [GOOD]
    if where == "file name":
        entries.append({**GOOD, "path": ["sub", long]})
    elif where == "folder name":
        entries.append({**GOOD, "path": [long, "x.txt"]})
    elif where == "link name":
        sidecar = {"links": [{"path": [long], "target": "ok.txt"}]}
    elif where == "empty folder":
        sidecar = {"dirs": [["d", long]]}
    else:
        entries.append({**GOOD, "path": ["d" * 200] * 21})
    store.put("obj/ns/ckpt/vers/0.json", orjson.dumps(entries))
    if sidecar:
        store.put("obj/ns/ckpt/kara/0.json", orjson.dumps(sidecar))
    with pytest.raises(ConfigurationError, match="this file system takes"):
        ObjectStore(store).load_directory("ns", "ckpt", str(tmp_path / "out"), progress_bar=False)
    _assert_nothing_written(tmp_path)
