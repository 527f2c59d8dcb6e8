"""Lease locks kept as one object on the store, created with ``Backend.create_lock``.

``create_lock`` is an atomic create like ``put_if_absent`` that need not be durable: a lock
matters only while its holder runs, and after a crash (which ends the holder) the object
is absent, complete or unreadable, and an unreadable one is stale (below).

A lock object holds who took it (host, pid, the pid's start time, a random token) and
when. A writer's lock is refreshed by a heartbeat thread. A lock is *stale* when:

- it was taken on this host and its process is gone (or the pid now belongs to a process
  that started later: pid reuse), or
- it was taken on another host and its heartbeat is older than the lease (``ttl``), or
- it has no heartbeat (a short-lived lock, as for ``meta.json`` updates) and is older than
  the lease.

Breaking a stale lock is itself guarded so that two processes breaking the same stale
lock at once cannot both end up holding the lock: the breaker first creates a
``<lock>.break-<token>`` marker with ``put_if_absent`` (only one process can), re-reads
the lock to check it is still the stale one, deletes it, and then competes for the lock
like anyone else.
"""

from __future__ import annotations

import _thread
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from .backend import Backend
from .errors import DatasetLockedError

__all__ = ["LeaseLock"]

_HOST = socket.gethostname()


def process_start(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat is the start time in clock ticks: with the pid it
    # identifies a process even after the pid is reused. Absent off Linux.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[-1].split()[19].decode()


def process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or process_start(pid) in (None, start)


class LeaseLock:
    """A lock object at ``path`` on ``backend``; ``what`` names the locked thing in errors."""

    def __init__(self, backend: Backend, path: str, what: str, ttl: float, heartbeat: bool) -> None:
        self.backend = backend
        self.path = path
        self.what = what
        self.ttl = ttl
        self._heartbeat = heartbeat
        self._token = uuid.uuid4().hex
        self._held = False
        self._created = 0.0
        self._stop = threading.Event()
        self._beat_lock = threading.Lock()
        #: Set when the heartbeat finds the lock taken over by someone else.
        self.lost = False

    def _content(self, created: float) -> bytes:
        pid = os.getpid()
        info = {
            "host": _HOST,
            "pid": pid,
            "pid_start": process_start(pid),
            "token": self._token,
            "created": created,
            "heartbeat": time.time() if self._heartbeat else None,
            "what": self.what,
        }
        return json.dumps(info).encode()

    def _read(self) -> tuple[bytes, dict[str, Any]] | None:
        raw = self.backend.read_if_exists(self.path)
        if raw is None:
            return None
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
        return raw, info if isinstance(info, dict) else {}

    def _is_stale(self, info: dict[str, Any]) -> bool:
        now = time.time()
        if not info.get("token"):
            return True
        heartbeat = info.get("heartbeat")
        if heartbeat is None and now - float(info.get("created") or 0) > self.ttl:
            return True
        if info.get("host") == _HOST:
            return not process_alive(int(info.get("pid") or 0), info.get("pid_start"))
        return heartbeat is not None and now - float(heartbeat) > self.ttl

    def _break(self, raw: bytes, info: dict[str, Any]) -> bool:
        # False when another breaker's marker is there (it is breaking the lock, or it
        # crashed and left its marker behind): the caller waits as for a live lock.
        marker = f"{self.path}.break-{info.get('token') or 'unreadable'}"
        if not self.backend.put_if_absent(marker, self._content(time.time())):
            return False
        try:
            current = self.backend.read_if_exists(self.path)
            if current == raw:
                self.backend.delete(self.path)
        finally:
            self.backend.delete(marker)
        return True

    def describe(self, info: dict[str, Any]) -> str:
        """A human description of a lock holder."""
        since = info.get("created")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(since))) if since else "an unknown time"
        return f"pid {info.get('pid')} on host {info.get('host')} since {when}"

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise DatasetLockedError if held."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            self._created = time.time()
            if self.backend.create_lock(self.path, self._content(self._created)):
                self._held = True
                if self._heartbeat:
                    # Started without waiting for it to run: threading.Thread.start()
                    # blocks until the new thread is scheduled, which cost an open of a
                    # writer ~5 ms on a busy machine. Like a daemon thread, it does not
                    # hold up the interpreter's exit; release() stops it.
                    _thread.start_new_thread(self._beat, ())
                return
            found = self._read()
            if found is None:
                continue
            raw, info = found
            if self._is_stale(info) and self._break(raw, info):
                continue
            if time.monotonic() >= deadline:
                raise DatasetLockedError(
                    f"{self.what} is locked by another writer ({self.describe(info)}); "
                    f"wait for it to close, or if that process is gone for good and the lock "
                    f"is not detected as stale, delete {self.backend.url}/{self.path}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _beat(self) -> None:
        refreshed = time.monotonic()
        while not self._stop.wait(self.ttl / 4):
            # Checked and refreshed under the beat lock: release() takes it too, so a
            # refresh can never recreate the lock object after release deleted it.
            with self._beat_lock:
                if self._stop.is_set():
                    return
                try:
                    found = self._read()
                    if found is None or found[1].get("token") != self._token:
                        self.lost = True
                        return
                    self.backend.put(self.path, self._content(self._created))
                except Exception:  # noqa: BLE001 - a store error: tried again at the next beat
                    # Unrefreshed for a whole lease, the lock may have been broken by
                    # another host: the writer must know (it refuses to flush).
                    if time.monotonic() - refreshed > self.ttl:
                        self.lost = True
                        return
                    continue
                refreshed = time.monotonic()

    def release(self) -> None:
        """Give the lock up (only if this object still holds it)."""
        if not self._held:
            return
        self._held = False
        with self._beat_lock:
            # No join: the thread sees the event and ends on its own (joining a thread
            # that sleeps in wait() costs a GIL hand-off per writer close).
            self._stop.set()
        found = self._read()
        if found is not None and found[1].get("token") == self._token:
            self.backend.delete(self.path)
