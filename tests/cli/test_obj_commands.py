"""kara obj save/load (both argument orders), ls, rm, gc, and kara verify on objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (root / "sub" / "说明.txt").write_text("中文说明\n", encoding="utf-8")
    return root


def test_the_url_first_saves_and_loads_a_folder(kara, store_url, folder, tmp_path):
    saved = kara("obj", store_url, "save", "models", "bert", str(folder))
    assert saved.exit_code == 0 and saved.stdout == "0\n"
    target = tmp_path / "loaded"
    loaded = kara("obj", store_url, "load", "models", "bert", str(target))
    assert loaded.exit_code == 0 and loaded.stdout == "0\n"
    assert (target / "sub" / "说明.txt").read_text(encoding="utf-8") == "中文说明\n"
    assert (target / "weights.bin").read_bytes() == b"\x00\x01" * 100


def test_the_url_first_with_a_named_version_and_the_object_alias(kara, store_url, folder, tmp_path):
    assert kara("object", store_url, "save", "models", "bert", str(folder), "-v", "step-1").stdout == "step-1\n"
    result = kara("obj", store_url, "load", "models", "bert", str(tmp_path / "t"), "-v", "step-1")
    assert result.exit_code == 0 and result.stdout == "step-1\n"


def test_canonical_form_saves_and_reports_on_stderr(kara, store_url, folder):
    result = kara("obj", "save", store_url, "models", "bert", str(folder))
    assert result.stdout == "0\n"
    assert result.stderr.strip() == f"saved {folder} as models/bert version 0"


def test_quiet_silences_the_report(kara, store_url, folder):
    result = kara("--quiet", "obj", "save", store_url, "models", "bert", str(folder))
    assert result.stdout == "0\n" and result.stderr == ""


def test_saving_a_named_version_again_replaces_it_unless_no_overwrite(kara, store_url, folder):
    kara("obj", "save", store_url, "models", "bert", str(folder), "-v", "a")
    again = kara("obj", "save", store_url, "models", "bert", str(folder), "-v", "a", "--no-overwrite")
    assert again.exit_code == 1 and again.stderr.startswith("kara: error: ")
    assert kara("obj", "save", store_url, "models", "bert", str(folder), "-v", "a").exit_code == 0
    assert kara("obj", "save", store_url, "models", "bert", str(folder), "-v", "a", "--overwrite").exit_code == 0


def test_load_of_a_missing_version_names_the_available_ones(kara, store_url, folder, tmp_path):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    result = kara("obj", "load", store_url, "models", "bert", str(tmp_path / "t"), "-v", "7")
    assert result.exit_code == 1
    assert result.stderr.strip() == "kara: error: version '7' of models/bert does not exist; available: '0'"


def test_load_dry_run_changes_nothing(kara, store_url, folder, tmp_path):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    target = tmp_path / "t"
    result = kara("obj", "load", store_url, "models", "bert", str(target), "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert plan["version"] == "0" and len(plan["download"]) == 2
    assert not target.exists()


def test_obj_ls_lists_versions_with_files_and_size(kara, store_url, folder):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    kara("obj", "save", store_url, "models", "bert", str(folder))
    versions = json.loads(kara("obj", "ls", store_url, "models", "bert", "--json").stdout)
    assert [(v["version"], v["files"], v["bytes"], v["latest"]) for v in versions] == [
        ("0", 2, 213, False),
        ("1", 2, 213, True),
    ]


def test_ls_shows_rows_and_objects_together(kara, store_url, folder):
    kara("obj", "save", store_url, "ns", "zh", str(folder))
    kinds = [(e["kind"], e["key"]) for e in json.loads(kara("ls", store_url, "ns", "--json").stdout)]
    assert ("row", "zh") in kinds and ("obj", "zh") in kinds


def test_rm_removes_a_version_and_gc_frees_its_blobs(kara, store_url, folder, tmp_path):
    kara("obj", "save", store_url, "models", "bert", str(folder), "--packs")
    (folder / "weights.bin").write_bytes(b"new weights")
    kara("obj", "save", store_url, "models", "bert", str(folder), "--packs")
    assert kara("obj", "rm", store_url, "models", "bert", "-v", "0", "--yes").exit_code == 0
    assert [v["version"] for v in json.loads(kara("obj", "ls", store_url, "models", "bert", "--json").stdout)] == ["1"]
    report = json.loads(kara("obj", "gc", store_url, "models", "bert", "--grace-period", "0", "--json").stdout)
    # The old weights, and version 0's pack of its two small files (200 + 13 bytes).
    assert sorted(name.startswith("pack-") for name in report["removed"]) == [False, True]
    assert report["bytes_freed"] == 200 + 200 + 13


def test_save_writes_packs_to_file_stores_only_when_asked(kara, store_url, folder):
    # file:// loads copy small files from their blobs: packs only serve a store that is
    # also read remotely (a static mirror), so they are written there on request.
    key = Path(store_url[len("file://") :]) / "obj" / "models"
    assert kara("obj", "save", store_url, "models", "plain", str(folder)).exit_code == 0
    assert not (key / "plain" / "kara-packs").exists()
    assert len(list((key / "plain" / "data").iterdir())) == 2
    assert kara("obj", "save", store_url, "models", "packed", str(folder), "--packs").exit_code == 0
    assert len(list((key / "packed" / "kara-packs").iterdir())) == 1
    assert kara("obj", "save", store_url, "models", "none", str(folder), "--no-packs").exit_code == 0
    assert not (key / "none" / "kara-packs").exists()


def test_gc_text_output_says_what_it_removed_and_kept(kara, store_url, folder):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    result = kara("obj", "gc", store_url, "models", "bert", "--grace-period", "0")
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        "removed 0 blob(s) or pack(s), freed 0 B; kept 0 unreferenced blob(s) or pack(s) younger than the grace "
        "period; 2 blob(s) or pack(s) in use; removed 0 leftover temporary file(s) of interrupted saves"
    )


def test_rm_without_yes_asks_and_aborts_on_no(kara, store_url, folder):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    result = kara("obj", "rm", store_url, "models", "bert", "-v", "0", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.stderr
    assert kara("obj", "ls", store_url, "models", "bert").exit_code == 0


def test_verify_detects_a_damaged_blob(kara, store_url, folder):
    kara("obj", "save", store_url, "models", "bert", str(folder))
    assert kara("verify", store_url, "models", "--kind", "obj").exit_code == 0
    blobs = Path(store_url[len("file://") :]) / "obj" / "models" / "bert" / "data"
    for blob in blobs.iterdir():
        blob.write_bytes(b"tampered")
    result = kara("verify", store_url, "models", "bert")
    assert result.exit_code == 3
    assert result.stdout.startswith("FAIL  obj  models/bert")
