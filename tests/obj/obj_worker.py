"""Runs one save or load in its own process, for the interruption and concurrency tests.

    python obj_worker.py save|load STORE_DIR NAMESPACE KEY FOLDER [--slow] [--version V] [--wait-for FILE]
                         [--progress]

``--slow`` throttles the file backend (64 KiB per read, 5 ms each, no local paths) so a
test can kill the process in the middle of a transfer. ``--wait-for`` waits until FILE
exists before starting (to start two processes at the same moment). Prints the version.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import time
from typing import BinaryIO

from kara_file.backend import FileBackend
from kara_file.testing import NoLocalFilesBackend

from kara_core.obj import ObjectStore

_STEP = 64 * 1024
_DELAY = 0.005


class _SlowReader(io.RawIOBase):
    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:
        time.sleep(_DELAY)
        view = memoryview(buf)[:_STEP]
        data = self._inner.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        time.sleep(_DELAY)
        return self._inner.read(_STEP if size is None or size < 0 else min(size, _STEP))

    def close(self) -> None:
        self._inner.close()
        super().close()


class SlowFileBackend(NoLocalFilesBackend):
    """The file backend, throttled, without local paths (forces the streaming code paths)."""

    def _write_temp(
        self, full: str, data: bytes | bytearray | memoryview | BinaryIO, sync: bool = True, make_folder: bool = True
    ) -> str:
        # Under every way of writing an object: put, put_if_absent and batches.
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = _SlowReader(data)  # type: ignore[assignment]
        return super()._write_temp(full, data, sync, make_folder)

    def open_read(self, path: str, start: int = 0) -> BinaryIO:
        return _SlowReader(super().open_read(path, start))  # type: ignore[return-value]


def main() -> None:
    # Ctrl+C raises KeyboardInterrupt, as in a terminal, even when this process was started
    # from a shell's background job: those inherit SIGINT ignored, and Python then leaves
    # it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["save", "load"])
    parser.add_argument("store")
    parser.add_argument("namespace")
    parser.add_argument("key")
    parser.add_argument("folder")
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--version", default=None)
    parser.add_argument("--wait-for", default=None)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    backend = (SlowFileBackend if args.slow else FileBackend)(args.store)
    objects = ObjectStore(backend)
    if args.wait_for:
        while not os.path.exists(args.wait_for):
            time.sleep(0.001)
    if args.action == "save":
        version = objects.save_directory(
            args.namespace, args.key, args.folder, args.version, progress_bar=args.progress
        )
    else:
        version = objects.load_directory(
            args.namespace, args.key, args.folder, args.version or "latest", progress_bar=args.progress, workers=2
        )
    print(version, flush=True)


if __name__ == "__main__":
    main()
