"""Item 4: saving a named version again replaces it atomically, as 2.x did."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from kara_core import KaraStorage
from kara_core.cli import cli
from kara_core.errors import VersionExistsError


def _checkpoint(folder: Path, epoch: int) -> None:
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    (folder / "epoch.txt").write_text(str(epoch))
    (folder / f"only-in-{epoch}.bin").write_bytes(bytes([epoch]) * (1000 + epoch))


def test_a_2x_training_loop_saving_best_every_epoch_keeps_running(tmp_path: Path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    ckpt = tmp_path / "ckpt"
    for epoch in range(3):
        _checkpoint(ckpt, epoch)
        assert storage.save_directory("models", "bert", str(ckpt), version="best", progress_bar=False) == "best"
    assert storage.get_object_meta("models", "bert")["versions"] == ["best"]
    storage.load_directory("models", "bert", str(tmp_path / "out"), version="best", progress_bar=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == ["epoch.txt", "only-in-2.bin"]
    assert (tmp_path / "out" / "epoch.txt").read_text() == "2"


def test_overwrite_false_keeps_the_refusal(tmp_path: Path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    _checkpoint(tmp_path / "ckpt", 0)
    storage.save_directory("models", "bert", str(tmp_path / "ckpt"), version="best", progress_bar=False)
    _checkpoint(tmp_path / "ckpt", 1)
    with pytest.raises(VersionExistsError):
        storage.save_directory("models", "bert", str(tmp_path / "ckpt"), "best", progress_bar=False, overwrite=False)
    manifest = storage.objects.read_manifest("models", "bert", "best")
    assert {"/".join(f.path) for f in manifest.files} == {"epoch.txt", "only-in-0.bin"}


def test_the_old_blobs_stay_until_gc(tmp_path: Path) -> None:
    storage = KaraStorage(f"file://{tmp_path}/store")
    ckpt = tmp_path / "ckpt"
    _checkpoint(ckpt, 0)
    storage.save_directory("models", "bert", str(ckpt), version="best", progress_bar=False)
    blobs = tmp_path / "store" / "obj" / "models" / "bert" / "data"
    first = {p.name for p in blobs.iterdir()}
    _checkpoint(ckpt, 1)
    storage.save_directory("models", "bert", str(ckpt), version="best", progress_bar=False)
    assert first <= {p.name for p in blobs.iterdir()}
    second = {f.file for f in storage.objects.read_manifest("models", "bert", "best").files}
    report = storage.objects.gc("models", "bert", grace_period=0)
    assert set(report.removed) == first - second
    assert len(report.removed) == 2  # epoch.txt and only-in-0.bin of the replaced version


def test_readers_see_the_old_or_the_new_version_never_a_mix(tmp_path: Path) -> None:
    # Versions differ in their empty folders (kept in the sidecar) and their files (the
    # manifest): a reader that combined one save's manifest with another's sidecar
    # would see a file and an empty folder of different epochs.
    storage = KaraStorage(f"file://{tmp_path}/store")
    ckpt = tmp_path / "ckpt"

    def prepare(epoch: int) -> None:
        _checkpoint(ckpt, epoch)
        for d in ckpt.glob("empty-*"):
            d.rmdir()
        (ckpt / f"empty-{epoch}").mkdir()

    prepare(0)
    storage.save_directory("models", "bert", str(ckpt), version="best", progress_bar=False)
    stop = threading.Event()
    seen: list[tuple[str, str]] = []

    def read() -> None:
        reader = KaraStorage(f"file://{tmp_path}/store")
        while not stop.is_set():
            manifest = reader.objects.read_manifest("models", "bert", "best")
            files = {"/".join(f.path) for f in manifest.files}
            epoch_file = next(f for f in files if f.startswith("only-in-"))
            seen.append((epoch_file.split("-")[2].split(".")[0], "/".join(manifest.dirs[0]).split("-")[1]))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for epoch in range(1, 8):
            (ckpt / f"empty-{epoch - 1}").rmdir()
            _checkpoint(ckpt, epoch)
            (ckpt / f"empty-{epoch}").mkdir()
            storage.save_directory("models", "bert", str(ckpt), version="best", progress_bar=False)
    finally:
        stop.set()
        thread.join()
    assert seen and all(files == dirs for files, dirs in seen), [s for s in seen if s[0] != s[1]][:5]


def test_the_cli_saves_best_again(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    runner = CliRunner()
    ckpt = tmp_path / "ckpt"
    for epoch in range(2):
        _checkpoint(ckpt, epoch)
        result = runner.invoke(cli, ["obj", url, "save", "models", "bert", str(ckpt), "-v", "best"])
        assert result.exit_code == 0, result.output
    refused = runner.invoke(cli, ["obj", url, "save", "models", "bert", str(ckpt), "-v", "best", "--no-overwrite"])
    assert refused.exit_code == 1
    listed = runner.invoke(cli, ["obj", "ls", url, "models", "bert", "--json"])
    assert [v["version"] for v in json.loads(listed.stdout)] == ["best"]
