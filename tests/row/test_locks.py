"""Writer locks and concurrent meta.json updates, with real processes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from kara_core import KaraStorage
from kara_core.errors import DatasetLockedError

from .conftest import record, run_kara

HOLD_WRITER = """
import sys, time
from kara_core import KaraStorage
ds = KaraStorage("file://" + sys.argv[1]).open_dataset("ns", "rows", "w", version="1")
ds.write({"from": "holder"})
ds.flush()
print("locked", flush=True)
time.sleep(60)
"""

LOCK = "row/ns/rows/1/.kara/writer.lock"


def _hold(root: Path):
    proc = run_kara(HOLD_WRITER, str(root))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read() if proc.stderr else ""
    return proc


def test_second_writer_in_another_process_gets_dataset_locked_error(tmp_path: Path) -> None:
    proc = _hold(tmp_path)
    try:
        with pytest.raises(DatasetLockedError, match=rf"pid {proc.pid} on host"):
            KaraStorage(f"file://{tmp_path}").open_dataset("ns", "rows", "w", version="1")
    finally:
        proc.kill()
        proc.wait()


def test_other_versions_of_a_locked_dataset_can_be_written(tmp_path: Path) -> None:
    proc = _hold(tmp_path)
    try:
        with KaraStorage(f"file://{tmp_path}").open_dataset("ns", "rows", "w", version="2") as ds:
            ds.write(record(0))
    finally:
        proc.kill()
        proc.wait()


def test_lock_left_by_a_killed_writer_is_broken(tmp_path: Path) -> None:
    proc = _hold(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = KaraStorage(f"file://{tmp_path}")
    assert store.backend.exists(LOCK)
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write({"from": "next"})
    assert not store.backend.exists(LOCK)
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [{"from": "holder"}, {"from": "next"}]


def _foreign_lock(heartbeat_age: float) -> bytes:
    now = time.time()
    info = {
        "host": "another-host.example",
        "pid": 4242,
        "pid_start": None,
        "token": "t0",
        "created": now - 1000,
        "heartbeat": now - heartbeat_age,
        "what": "dataset ns/rows version '1'",
    }
    return json.dumps(info).encode()


def test_lock_of_another_host_with_a_live_heartbeat_is_respected(store: KaraStorage) -> None:
    store.backend.put(LOCK, _foreign_lock(heartbeat_age=5))
    with pytest.raises(DatasetLockedError, match=r"another-host\.example"):
        store.open_dataset("ns", "rows", "w", version="1")


def test_lock_of_another_host_with_an_expired_heartbeat_is_broken(store: KaraStorage) -> None:
    store.backend.put(LOCK, _foreign_lock(heartbeat_age=3600))
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write(record(1))
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(1)]


@pytest.mark.parametrize("left", [b"", b'{"host": "h", "pi'])
def test_a_lock_a_crash_left_empty_or_torn_is_broken(store: KaraStorage, left: bytes) -> None:
    # Locks are created without fsync (Backend.create_lock): after a crash the file may
    # exist with none or part of its content. It is stale, and the next writer breaks it.
    store.backend.put(LOCK, left)
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write(record(1))
    assert not store.backend.exists(LOCK)
    with store.open_dataset("ns", "rows") as ds:
        assert list(ds) == [record(1)]


def test_a_stale_lock_whose_break_marker_was_left_behind_times_out(store: KaraStorage) -> None:
    # A breaker that crashed between creating its marker and deleting it leaves the
    # marker: the next acquire cannot break the lock, and must wait up to its timeout
    # and raise, not spin forever without sleeping.
    import subprocess
    import sys
    import textwrap

    store.backend.put(LOCK, b"")
    store.backend.put(LOCK + ".break-unreadable", b"{}")
    script = textwrap.dedent(
        f"""
        from kara_core.errors import DatasetLockedError
        from kara_core.locks import LeaseLock
        from kara_core.url import open_backend

        lock = LeaseLock(open_backend({store.backend.url!r}), {LOCK!r}, "test lock", ttl=30, heartbeat=False)
        try:
            lock.acquire(timeout=0.3)
        except DatasetLockedError:
            print("locked")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout == "locked\n", done.stderr


def test_lock_is_released_on_close(store: KaraStorage) -> None:
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        assert store.backend.exists(LOCK)
    assert ds.closed
    assert not store.backend.exists(LOCK)


CREATE_VERSION = """
import sys, time
from kara_core import KaraStorage
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with KaraStorage("file://" + sys.argv[1]).open_dataset("ns", "shared", "w", version=sys.argv[2]) as ds:
    ds.write({"version": sys.argv[2]})
print("done", flush=True)
"""


def test_versions_created_by_concurrent_processes_are_all_listed(tmp_path: Path) -> None:
    start = time.time() + 1.0  # every process is past its imports by then
    names = [f"p{k}" for k in range(5)]
    procs = [run_kara(CREATE_VERSION, str(tmp_path), name, str(start)) for name in names]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    store = KaraStorage(f"file://{tmp_path}")
    meta = store.get_row_meta("ns", "shared")
    assert sorted(meta["versions"]) == names
    assert meta["latest"] in names
    for name in names:
        with store.open_dataset("ns", "shared", version=name) as ds:
            assert list(ds) == [{"version": name}]


def test_meta_lock_left_by_a_killed_process_is_broken(store: KaraStorage) -> None:
    proc = run_kara("import time; print('up', flush=True); time.sleep(60)")
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.kill()
    proc.wait()
    stale = {"host": __import__("socket").gethostname(), "pid": proc.pid, "token": "t", "created": time.time()}
    store.backend.put("row/ns/rows/.kara/meta.lock", json.dumps(stale).encode())
    with store.open_dataset("ns", "rows", "w", version="1") as ds:
        ds.write(record(0))
    assert store.get_row_meta("ns", "rows")["versions"] == ["1"]


def test_heartbeat_refreshes_the_lock_and_notices_a_takeover(store: KaraStorage) -> None:
    from kara_core.locks import LeaseLock

    lock = LeaseLock(store.backend, "row/ns/rows/1/.kara/writer.lock", "test lock", ttl=0.4, heartbeat=True)
    lock.acquire()
    try:
        first = json.loads(store.backend.read(LOCK))["heartbeat"]
        time.sleep(0.25)
        assert json.loads(store.backend.read(LOCK))["heartbeat"] > first
        assert not lock.lost
        store.backend.put(LOCK, _foreign_lock(heartbeat_age=0))
        deadline = time.monotonic() + 5
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.lost
    finally:
        lock.release()
    assert json.loads(store.backend.read(LOCK))["host"] == "another-host.example"  # not ours to delete


def test_a_heartbeat_survives_a_failed_refresh_and_reports_a_lease_it_could_not_keep(
    store: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refresh that fails (a transient store error) must not end the heartbeat silently:
    # the lock would go stale for other hosts while ``lost`` says it is still held.
    from kara_core.errors import BackendError
    from kara_core.locks import LeaseLock

    backend = store.backend
    put = backend.put
    failing = {"left": 1}

    def flaky(path: str, data: bytes) -> None:
        if path == LOCK and failing["left"]:
            failing["left"] -= 1
            raise BackendError("the store is unreachable")
        put(path, data)

    monkeypatch.setattr(backend, "put", flaky)
    lock = LeaseLock(backend, LOCK, "test lock", ttl=0.4, heartbeat=True)
    lock.acquire()
    try:
        first = json.loads(backend.read(LOCK))["heartbeat"]
        deadline = time.monotonic() + 5
        while json.loads(backend.read(LOCK))["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failing["left"] == 0
        assert json.loads(backend.read(LOCK))["heartbeat"] > first  # refreshed again after the failure
        assert not lock.lost
        failing["left"] = 10**6  # now no refresh gets through for longer than the lease
        while not lock.lost and time.monotonic() < deadline + 5:
            time.sleep(0.02)
        assert lock.lost
    finally:
        failing["left"] = 0
        lock.release()


def test_a_writer_left_open_does_not_hold_up_the_interpreter_exit(tmp_path: Path) -> None:
    # The heartbeat thread is started with _thread (no wait for it to run): it must not
    # keep a process that forgot to close its writer alive.
    code = """
import sys
from kara_core import KaraStorage
ds = KaraStorage("file://" + sys.argv[1]).open_dataset("ns", "rows", "w", version="1")
ds.write({"left": "open"})
print("written", flush=True)
"""
    proc = run_kara(code, str(tmp_path))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "written"


def test_writer_whose_lock_was_taken_over_refuses_to_flush(store: KaraStorage, monkeypatch) -> None:
    from kara_core.row import writer as writer_module

    monkeypatch.setattr(writer_module, "WRITER_LOCK_TTL", 0.2)  # heartbeat every 50 ms
    ds = store.open_dataset("ns", "rows", "w", version="1")
    ds.write(record(0))
    store.backend.put(LOCK, _foreign_lock(heartbeat_age=0))  # presumed dead, lock taken over
    time.sleep(0.3)
    with pytest.raises(DatasetLockedError, match="taken over"):
        ds.flush()
    with pytest.raises(DatasetLockedError):
        ds.close()
    assert json.loads(store.backend.read(LOCK))["host"] == "another-host.example"


def test_a_forked_copy_of_a_writer_neither_writes_nor_unlocks(store: KaraStorage) -> None:
    import os

    ds = store.open_dataset("ns", "rows", "w", version="1")
    ds.write_many(record(i) for i in range(3))
    pid = os.fork()
    if pid == 0:  # the child closes its copy, then leaves without running other cleanup
        ds.close()
        os._exit(0 if store.backend.exists(LOCK) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.backend.exists(LOCK)
    ds.close()
    with store.open_dataset("ns", "rows") as reader:
        assert list(reader) == [record(i) for i in range(3)]
