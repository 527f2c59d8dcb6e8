"""A disk that fills up: clear errors (StorageFullError), nothing corrupted, nothing lost;
and a read-only one: every read works, every write is a ReadOnlyStoreError.

Each scenario of ``full_disk_worker.py`` runs in a child process with a small tmpfs of
its own (a private mount namespace, :func:`kara_file.testing.run_with_private_mount`),
so the disk really fills and the kernel really answers ``ENOSPC``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from kara_file.testing import private_mounts_unavailable, run_with_private_mount

WORKER = str(Path(__file__).with_name("full_disk_worker.py"))


def _run(tmp_path: Path, scenario: str, size: str) -> dict:
    mount = tmp_path / "disk"
    mount.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reason = private_mounts_unavailable(mount)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to mount a small tmpfs for the full-disk tests: {reason}")
        pytest.skip(f"no way to mount a small tmpfs here: {reason}")
    proc = run_with_private_mount(
        mount, "tmpfs", f"size={size}", sys.executable, WORKER, scenario, str(mount), str(elsewhere), timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("scenario", ["rows", "rows_fsspec"])
def test_a_row_writer_that_fills_the_disk_stops_and_the_version_goes_on_after_a_reopen(
    tmp_path: Path, scenario: str
) -> None:
    facts = _run(tmp_path, scenario, "3m")
    assert facts["error"] == "StorageFullError"
    # What the last successful flush made durable is what the version kept: neither the
    # records in the failed append nor a garbled copy of them.
    assert facts["kept"] == facts["durable"] > 10_000
    assert facts["final"] == facts["kept"] + 500


def test_a_part_of_a_parallel_write_that_fills_the_disk_never_counts(tmp_path: Path) -> None:
    facts = _run(tmp_path, "parts", "3m")
    assert "part 1" in facts["refused"]
    assert facts["records"] == 4000


def test_an_append_that_does_not_fit_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    assert _run(tmp_path, "append", "2m") == {"size_after_failure": 100 * 1024}


def test_puts_and_batches_that_do_not_fit_leave_the_old_object_and_no_temp_file(tmp_path: Path) -> None:
    assert _run(tmp_path, "put", "1m") == {"listed": ["x/old"]}


def test_a_save_that_does_not_fit_publishes_nothing(tmp_path: Path) -> None:
    assert _run(tmp_path, "save", "3m") == {"version": "0"}


def test_a_load_that_cannot_fit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    messages = _run(tmp_path, "load_refused", "1200k")["messages"]
    assert len(messages) == 2
    # 7 blobs of version 2, and a copy of the one it holds twice.
    assert all("for 8 file(s)" in message for message in messages), messages


def test_a_load_the_disk_fills_under_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    facts = _run(tmp_path, "load_midway", "4m")
    assert len(facts["loaded"]) == 8


def test_a_gateway_on_a_full_disk_answers_507_and_the_client_raises_storage_full(tmp_path: Path) -> None:
    assert _run(tmp_path, "gateway", "1m") == {"position_after_failure": 1000}


def test_on_a_read_only_disk_reads_work_and_writes_are_read_only_store_errors(tmp_path: Path) -> None:
    facts = _run(tmp_path, "read_only", "50m")
    assert facts == {"samples": facts["samples"], "refused": ["append", "new version", "save", "delete"]}
    assert facts["samples"] > 1000
