"""Azurite (Microsoft's Azure Storage emulator, from npm) on 127.0.0.1, on a random port.

The executable is ``$KARA_AZURITE``, else ``.tools/node_modules/.bin/azurite-blob`` in
the repository (``scripts/test`` installs it there), else ``azurite-blob`` on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "AzuriteError", "find_azurite", "start_azurite"]

#: Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Blob service successfully listens on http://[\d.]+:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite is not installed or did not start."""


def find_azurite() -> str:
    """Path of the azurite-blob executable; raises :class:`AzuriteError` naming the install."""
    configured = os.environ.get("KARA_AZURITE")
    if configured:
        return configured
    for parent in Path(__file__).resolve().parents:
        candidate = parent / ".tools" / "node_modules" / ".bin" / "azurite-blob"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise AzuriteError(
        "Azurite is not installed: run scripts/test (it runs `npm install azurite` into .tools/), "
        "or set KARA_AZURITE to an azurite-blob executable"
    )


def start_azurite(timeout: float = 60.0) -> tuple[subprocess.Popen[str], int, str]:
    """Start Azurite's blob service in memory; return the process, its port and a scratch folder."""
    workdir = tempfile.mkdtemp(prefix="kara-azurite-")
    process = subprocess.Popen(
        [
            find_azurite(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            match = _LISTENING.search(line)
            if match and not port:
                port.append(int(match.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=watch, name="azurite-output", daemon=True).start()
    if not ready.wait(timeout) or not port:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        raise AzuriteError("Azurite did not start:\n" + "".join(seen[-20:]))
    return process, port[0], workdir
