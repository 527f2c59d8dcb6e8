"""kara ls / info / cat / import / verify on row datasets, through click's runner."""

from __future__ import annotations

import json
import pickle

import pytest

import kara_core

from .conftest import PK_RECORDS, ZH_RECORDS


def test_ls_lists_namespaces(kara, store_url):
    result = kara("ls", store_url, "--kind", "row")
    assert result.exit_code == 0
    assert result.stdout.split() == ["KIND", "NAMESPACE", "row", "ns"]


def test_ls_namespace_lists_keys_with_version_count_and_latest(kara, store_url):
    result = kara("ls", store_url, "ns", "--kind", "row", "--json")
    assert result.exit_code == 0
    entries = {e["key"]: e for e in json.loads(result.stdout)}
    assert entries["zh"]["versions"] == 2 and entries["zh"]["latest"] == "2"
    assert entries["pk"]["versions"] == 1


def test_ls_key_lists_versions_with_records_sizes_and_latest_marker(kara, store_url):
    result = kara("ls", store_url, "ns", "zh", "--kind", "row")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "VERSION", "RECORDS/FILES", "SIZE", "LATEST"]
    assert lines[1].split()[:3] == ["row", "1", "5"] and not lines[1].endswith("*")
    assert lines[2].split()[:3] == ["row", "2", "2"] and lines[2].endswith("*")


def test_ls_key_json_has_byte_sizes(kara, store_url):
    versions = json.loads(kara("ls", store_url, "ns", "zh", "--json", "--kind", "row").stdout)
    expected = sum(len(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()) for r in ZH_RECORDS)
    assert versions[0]["bytes"] == expected and versions[0]["latest"] is False


def test_url_comes_from_kara_url_when_omitted(kara, store_url):
    result = kara("ls", "ns", "--kind", "row", env={"KARA_URL": store_url})
    assert result.exit_code == 0
    assert "zh" in result.stdout


def test_info_describes_the_latest_version(kara, store_url):
    result = kara("info", store_url, "ns", "zh", "--kind", "row")
    assert result.exit_code == 0
    assert "version   2 (latest)" in result.stdout
    assert "records   2" in result.stdout
    assert "versions  1, 2" in result.stdout


def test_info_json_for_a_chosen_version(kara, store_url):
    result = kara("info", store_url, "ns", "zh", "-v", "1", "--kind", "row", "--json")
    [facts] = json.loads(result.stdout)
    assert facts["records"] == 5 and facts["version"] == "1" and facts["versions"] == ["1", "2"]


def test_cat_prints_json_lines(kara, store_url):
    result = kara("cat", store_url, "ns", "zh", "-v", "1")
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == ZH_RECORDS


def test_cat_begin_and_end_select_a_range_and_negative_counts_from_the_end(kara, store_url):
    assert [
        json.loads(x)
        for x in kara("cat", store_url, "ns", "zh", "-v", "1", "--begin", "1", "--end", "3").stdout.splitlines()
    ] == ZH_RECORDS[1:3]
    assert [
        json.loads(x) for x in kara("cat", store_url, "ns", "zh", "-v", "1", "--begin", "-1").stdout.splitlines()
    ] == ZH_RECORDS[-1:]


def test_cat_repr_decodes_pickle(kara, store_url):
    result = kara("cat", store_url, "ns", "pk", "-s", "pickle", "--format", "repr")
    assert result.stdout.splitlines() == [repr(r) for r in PK_RECORDS]


def test_cat_hex_dumps_the_stored_bytes(kara, store_url):
    result = kara("cat", store_url, "ns", "pk", "--format", "hex", "--end", "1")
    raw = pickle.dumps(PK_RECORDS[0])
    assert result.stdout.splitlines()[0] == f"# record 0: {len(raw)} bytes"
    assert result.stdout.splitlines()[1].startswith("00000000  80 ")


def test_cat_jsonl_of_a_pickle_dataset_is_an_error_suggesting_another_format(kara, store_url):
    result = kara("cat", store_url, "ns", "pk")
    assert result.exit_code == 1
    assert result.stderr.startswith("kara: error: record 0 cannot be decoded as json")
    assert "--format hex" in result.stderr
    assert "Traceback" not in result.stderr


def test_cat_jsonl_of_pickled_objects_that_are_not_json_is_an_error(kara, store_url):
    result = kara("cat", store_url, "ns", "pk", "-s", "pickle")
    assert result.exit_code == 1
    assert "record 0 is a dict, not JSON" in result.stderr


def test_missing_dataset_is_one_line_error(kara, store_url):
    result = kara("cat", store_url, "ns", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"kara: error: dataset ns/nope does not exist in {store_url}"]


def test_bad_version_names_the_available_ones(kara, store_url):
    result = kara("cat", store_url, "ns", "zh", "-v", "9")
    assert result.exit_code == 1
    assert result.stderr.strip() == "kara: error: version '9' of ns/zh does not exist; available: '1', '2'"


def test_debug_lets_the_exception_through_for_its_traceback(kara, store_url):
    with pytest.raises(kara_core.errors.VersionNotFoundError):
        kara("--debug", "cat", store_url, "ns", "zh", "-v", "9")


def test_import_writes_json_lines_skipping_blank_lines(kara, store_url):
    result = kara("import", store_url, "ns", "new", "-v", "1", "-", input='{"a": "中"}\n\n[1, 2]\n')
    assert result.exit_code == 0
    assert result.stderr.strip() == "imported 2 records into ns/new version 1"
    with kara_core.KaraStorage(store_url).open_dataset("ns", "new") as ds:
        assert list(ds) == [{"a": "中"}, [1, 2]]


def test_import_from_a_file_with_json_summary(kara, store_url, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ZH_RECORDS), encoding="utf-8")
    result = kara("import", store_url, "ns", "zh", "-v", "3", str(source), "--json")
    assert json.loads(result.stdout)["records"] == 5
    assert [json.loads(x) for x in kara("cat", store_url, "ns", "zh", "-v", "3").stdout.splitlines()] == ZH_RECORDS


def test_import_bad_line_names_it_and_writes_nothing(kara, store_url):
    result = kara(
        "import", store_url, "ns", "zh", "-v", "1", "-", input='{"ok": 1}\n{"ok": 2}\n{"broken": \n{"ok": 4}\n'
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("kara: error: stdin, line 3: not valid JSON")
    assert "nothing was imported" in result.stderr
    with kara_core.KaraStorage(store_url).open_dataset("ns", "zh", version="1") as ds:
        assert len(ds) == len(ZH_RECORDS)


def test_import_needs_a_version(kara, store_url):
    result = kara("import", store_url, "ns", "zh", "-", input="{}\n")
    assert result.exit_code == 2
    assert "Missing option '-v'" in result.stderr


def test_verify_healthy_store_exits_zero(kara, store_url):
    result = kara("verify", store_url, "--kind", "row")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["ok    row  ns/pk", "ok    row  ns/zh"]
    assert "checked 2: all well" in result.stderr


def test_verify_damaged_dataset_exits_three_and_names_the_problem(kara, store_url):
    data = store_url[len("file://") :] + "/row/ns/zh/1/data/0.blk"
    with open(data, "ab") as f:
        f.write(b"garbage")
    result = kara("verify", store_url, "ns", "zh", "--kind", "row", "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert any("torn tail" in p for p in report["results"][0]["problems"])


def test_verify_missing_key_is_an_error(kara, store_url):
    result = kara("verify", store_url, "ns", "nope", "--kind", "row")
    assert result.exit_code == 1
    assert "ns/nope does not exist" in result.stderr


def test_info_of_a_key_that_is_both_kinds_describes_the_one_with_that_version(kara, store_url, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    kara("obj", "save", store_url, "ns", "zh", str(tmp_path / "d"), "-v", "only-obj")
    [facts] = json.loads(kara("info", store_url, "ns", "zh", "-v", "only-obj", "--json").stdout)
    assert facts["kind"] == "obj" and facts["files"] == 1
    assert {f["kind"] for f in json.loads(kara("info", store_url, "ns", "zh", "--json").stdout)} == {"row", "obj"}


def test_info_of_a_version_no_kind_has_is_an_error(kara, store_url):
    result = kara("info", store_url, "ns", "zh", "-v", "9")
    assert result.exit_code == 1
    assert result.stderr.startswith("kara: error: version '9' of ns/zh does not exist")


def test_view_with_the_url_first_without_a_terminal_points_to_cat(kara, store_url):
    result = kara("row", store_url, "view", "ns", "zh")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "kara: error: the viewer needs a terminal; to print records use: kara cat URL NAMESPACE KEY"
    )


def test_view_of_a_missing_dataset_is_an_error(kara, store_url):
    result = kara("row", store_url, "view", "ns", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"kara: error: dataset ns/nope does not exist in {store_url}"


def test_view_begin_out_of_range_is_an_error(kara, store_url):
    result = kara("row", "view", store_url, "ns", "zh", "-v", "1", "--begin", "5")
    assert result.exit_code == 1
    assert "--begin 5 is out of range: ns/zh has 5 records" in result.stderr


def test_ls_of_an_empty_namespace_says_so_on_stderr(kara, store_url):
    result = kara("ls", store_url, "empty")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == f"namespace 'empty' holds no datasets or saved directories in {store_url}"


def test_verify_one_version_across_keys_checks_only_keys_that_have_it(kara, store_url):
    result = kara("verify", store_url, "ns", "-v", "2", "--json")
    assert result.exit_code == 0
    assert [(r["key"], r["ok"]) for r in json.loads(result.stdout)["results"]] == [("zh", True)]
