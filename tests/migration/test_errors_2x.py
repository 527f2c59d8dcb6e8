"""Item 2: every error 2.1.5 raises on a documented call is still caught by the same ``except``.

tests/migration/errors_2x.py runs each failing call under 2.1.5 and under kara and
reports the builtin exception classes raised; kara's error must derive from every
builtin 2.1.5's did (it may derive from more).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kara_http.testing import StaticServer

from .conftest import HERE, run_script

SCRIPT = HERE / "errors_2x.py"
SCENARIOS = [
    "read_after_close",
    "seek_after_close",
    "pread_after_close",
    "write_after_close",
    "flush_after_close",
    "read_past_the_end",
    "read_after_seek_to_the_end",
    "pread_past_the_end",
    "index_past_the_end",
    "index_with_a_string",
    "read_in_write_mode",
    "tell_in_write_mode",
    "slice_in_write_mode",
    "write_in_read_mode",
    "open_a_missing_dataset",
    "open_a_missing_version",
    "create_without_a_version",
    "row_meta_of_a_missing_dataset",
    "object_meta_of_a_missing_key",
    "load_a_missing_key",
    "load_a_missing_version",
    "save_a_missing_folder",
    "unknown_scheme",
    "raw_serializer_given_a_dict",
    "json_serializer_given_an_object",
    "http_open_for_writing",
    "http_save_directory",
    "http_open_a_missing_dataset",
]


def _raised(python: str, folder: Path) -> dict[str, Any]:
    store = folder / "store"
    store.mkdir(parents=True)
    with StaticServer(str(store)) as server:
        return json.loads(run_script(python, SCRIPT, str(store), server.url + "/"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, python_215: str, python_kara: str) -> dict[str, Any]:
    return {
        "2.1.5": _raised(python_215, tmp_path_factory.mktemp("k215")),
        "kara": _raised(python_kara, tmp_path_factory.mktemp("kara")),
    }


def test_both_libraries_ran_every_scenario(outcomes: dict[str, Any]) -> None:
    assert sorted(outcomes["2.1.5"]) == sorted(outcomes["kara"]) == sorted(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kara_raises_what_2x_code_catches(outcomes: dict[str, Any], scenario: str) -> None:
    theirs, ours = outcomes["2.1.5"][scenario], outcomes["kara"][scenario]
    assert theirs, f"2.1.5 raised nothing for {scenario}: the scenario tests nothing"
    assert ours, f"kara raised nothing for {scenario}, 2.1.5 raised {theirs}"
    assert set(theirs) <= set(ours), f"{scenario}: 2.1.5 raised {theirs}, kara's error is only {ours}"
