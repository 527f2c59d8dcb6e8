"""Item 3: namespaces and keys with '/' (and keys with '\\'), as kara-storage 2.x wrote them.

2.1.5 writes the store (tests/migration/nested_names_2x.py); kara opens, reads, appends,
lists, verifies, views and loads it on every backend: the file:// store itself, a copy
of it on the OSS test server, and the folder served over HTTP (static mirror and
``kara serve`` gateway). Names that escape or are ambiguous stay refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pexpect
import pytest
from kara_http.testing import GatewayServer, StaticServer
from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError
from kara_core.url import open_backend

from .conftest import HERE, run_script

SCRIPT = HERE / "nested_names_2x.py"
TOKEN = "nested-names-token"
FOLDER = {"config.json": b'{"layers": 12}', "weights/part-0.bin": os.urandom(3000), "weights/part-1.bin": b"x" * 99}


def _files(root: Path) -> dict[str, bytes]:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for own in (".kara/state.json", ".kara/load.lock"):  # kara's own (a load keeps them; not part of the version)
        files.pop(own, None)
    return files


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, python_215: str) -> tuple[Path, dict[str, Any]]:
    """A store written by kara-storage 2.1.5 with nested names, and the records it holds."""
    base = tmp_path_factory.mktemp("nested")
    folder = base / "folder"
    for rel, data in FOLDER.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    records = json.loads(run_script(python_215, SCRIPT, str(base / "store"), str(folder)))
    return base / "store", records


@pytest.fixture
def store_dir(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A private copy of the 2.1.5 store (tests append to it)."""
    target = tmp_path / "store"
    shutil.copytree(written[0], target)
    return target


def _copy_to(url: str, options: dict[str, Any], source: Path) -> None:
    backend = open_backend(url, **options)
    try:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            backend.put(path.relative_to(source).as_posix(), path.read_bytes())
    finally:
        backend.close()


BACKENDS = ["file", "oss", "http-static", "http-gateway"]
#: A static web mirror can neither list nor write; the others can.
WRITABLE = ["file", "oss", "http-gateway"]


@pytest.fixture(params=BACKENDS)
def opened(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[tuple[str, KaraStorage]]:
    """The 2.1.5 store on each backend (oss: copied there object by object)."""
    with ExitStack() as stack:
        kind = request.param
        if kind == "file":
            storage = KaraStorage(f"file://{store_dir}")
        elif kind == "oss":
            server = stack.enter_context(OSSTestServer())
            _copy_to(server.url("copy"), server.options, store_dir)
            storage = KaraStorage(server.url("copy"), **server.options)
        elif kind == "http-static":
            static = stack.enter_context(StaticServer(str(store_dir)))
            storage = KaraStorage(static.url + "/")
        else:
            gateway = stack.enter_context(GatewayServer(f"file://{store_dir}", token=TOKEN))
            storage = KaraStorage(gateway.url, token=TOKEN)
        stack.callback(storage.close)
        yield kind, storage


def test_nested_datasets_read_the_same_on_every_backend(
    opened: tuple[str, KaraStorage], written: tuple[Path, dict[str, Any]]
) -> None:
    _kind, storage = opened
    records = written[1]
    with storage.open_dataset("team/proj", "data") as ds:
        assert list(ds) == records["team/proj|data"]
    with storage.open_dataset("team", "proj/data") as ds:  # the same stored path, the same dataset
        assert ds[-1] == records["team/proj|data"][-1]
    with storage.open_dataset("ns", "back\\slash") as ds:
        assert list(ds) == records["ns|back\\slash"]
    assert storage.rows.verify("team/proj", "data") == []
    assert storage.rows.verify("ns", "back\\slash") == []
    assert storage.objects.verify("models/v2", "bert") == []


def test_nested_saved_directories_load_on_every_backend(opened: tuple[str, KaraStorage], tmp_path: Path) -> None:
    _kind, storage = opened
    assert storage.load_directory("models/v2", "bert", str(tmp_path / "out"), progress_bar=False) == "0"
    assert _files(tmp_path / "out") == FOLDER


@pytest.mark.parametrize("opened", WRITABLE, indirect=True)
def test_nested_names_are_listed_once_with_the_last_component_as_key(opened: tuple[str, KaraStorage]) -> None:
    _kind, storage = opened
    assert storage.list_namespaces("row") == ["flat", "ns", "team/proj"]
    assert storage.list_keys("team/proj") == ["data"]
    assert storage.list_keys("ns") == ["back\\slash"]
    assert storage.list_keys("team") == []
    assert storage.list_namespaces("obj") == ["models/v2"]
    assert storage.list_keys("models/v2", "obj") == ["bert"]


@pytest.mark.parametrize("opened", WRITABLE, indirect=True)
def test_nested_datasets_take_appends_and_new_versions_on_writable_backends(
    opened: tuple[str, KaraStorage], written: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _kind, storage = opened
    with storage.open_dataset("team/proj", "data", "w", version="v1") as ds:
        ds.write({"appended": True})
    with storage.open_dataset("team/proj", "data", "w", version="v2") as ds:
        ds.write_many([{"v": 2}])
    with storage.open_dataset("team/proj", "data", version="v1") as ds:
        assert list(ds) == [*written[1]["team/proj|data"], {"appended": True}]
    with storage.open_dataset("team/proj", "data") as ds:
        assert (ds.version, list(ds)) == ("v2", [{"v": 2}])
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f.txt").write_text("new")
    assert storage.save_directory("models/v2", "bert", str(tmp_path / "new"), progress_bar=False) == "1"
    assert storage.list_versions("models/v2", "bert", "obj") == ["0", "1"]
    assert storage.rows.verify("team/proj", "data") == []


def test_2x_reads_what_kara_appended_to_a_nested_dataset(store_dir: Path, python_215: str) -> None:
    storage = KaraStorage(f"file://{store_dir}")
    with storage.open_dataset("team/proj", "data", "w", version="v3") as ds:
        ds.write_many([{"k": 1}, {"k": 2}])
    code = (
        "import json, sys, kara_storage\n"
        "s = kara_storage.KaraStorage('file://' + sys.argv[1])\n"
        "ds = s.open_dataset('team/proj', 'data', 'r')\n"
        "print(json.dumps([ds.read() for _ in range(ds.size())]))\n"
    )
    script = store_dir.parent / "read_back.py"
    script.write_text(code)
    assert json.loads(run_script(python_215, script, str(store_dir))) == [{"k": 1}, {"k": 2}]


def test_a_saved_version_named_like_a_key_folder_is_not_listed_as_a_nested_key(tmp_path: Path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a").write_text("a")
    storage.save_directory("models", "bert", str(tmp_path / "f"), version="meta", progress_bar=False)
    with storage.open_dataset("ns", "k", "w", version="meta") as ds:
        ds.write(1)
    assert storage.list_namespaces("obj") == ["models"]
    assert storage.list_namespaces("row") == ["ns"]


BAD_NAMES = ["..", ".", "a/../b", "./a", "a/./b", "a//b", "/abs", "a/", "", "a\x00b"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_names_that_escape_or_are_ambiguous_are_refused(tmp_path: Path, bad: str) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    (tmp_path / "f").mkdir()
    calls = [
        lambda: storage.open_dataset(bad, "k", "w", version="1"),
        lambda: storage.open_dataset("ns", bad, "w", version="1"),
        lambda: storage.open_dataset(bad, "k", "r"),
        lambda: storage.open_dataset("ns", "k", "w", version=bad),
        lambda: storage.save_directory(bad, "k", str(tmp_path / "f"), progress_bar=False),
        lambda: storage.save_directory("ns", bad, str(tmp_path / "f"), progress_bar=False),
        lambda: storage.save_directory("ns", "k", str(tmp_path / "f"), version=bad, progress_bar=False),
    ]
    for call in calls:
        with pytest.raises(ConfigurationError):
            call()
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()] if (tmp_path / "store").exists() else []
    assert written == []


def test_a_version_with_a_slash_is_refused(tmp_path: Path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    with pytest.raises(ConfigurationError, match="must not contain '/'"):
        storage.open_dataset("ns", "k", "w", version="a/b")


def _kara(*args: str) -> tuple[int, str, str]:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "KARA_URL"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "kara"), *args], capture_output=True, text=True, env=env, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_the_cli_lists_verifies_and_prints_nested_names(store_dir: Path, written: tuple[Path, dict[str, Any]]) -> None:
    url = f"file://{store_dir}"
    code, out, _ = _kara("ls", url)
    assert code == 0
    assert out.count("team/proj") == 1 and out.count("models/v2") == 1
    code, out, _ = _kara("ls", url, "team/proj")
    assert code == 0 and "data" in out.split()
    code, out, _ = _kara("ls", url, "team/proj", "data", "--json")
    assert [v["version"] for v in json.loads(out)] == ["v1"]
    code, out, err = _kara("verify", url)
    assert code == 0, err
    assert "row  team/proj/data" in out and "row  ns/back\\slash" in out and "obj  models/v2/bert" in out
    code, out, _ = _kara("cat", url, "team/proj", "data")
    assert [json.loads(line) for line in out.splitlines()] == written[1]["team/proj|data"]
    code, out, _ = _kara("info", url, "ns", "back\\slash", "--json")
    assert json.loads(out)[0]["records"] == 7


def test_the_viewer_opens_a_nested_dataset_with_its_version_in_the_title(store_dir: Path) -> None:
    import pyte

    screen = pyte.Screen(80, 24)
    stream = pyte.ByteStream(screen)
    env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.pop("KARA_URL", None)
    script = str(Path(sys.executable).parent / "kara_storage")
    child = pexpect.spawn(script, ["row", f"file://{store_dir}", "view", "team/proj", "data"], env=env)
    try:
        child.expect("team/proj/data", timeout=15)
        stream.feed(child.before + child.after)
        child.expect(pexpect.TIMEOUT, timeout=0.5)
        stream.feed(child.before)
        title = screen.display[0]
        assert "team/proj/data version v1" in title and "vv1" not in title
        child.send("q")
        child.expect(pexpect.EOF, timeout=15)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
