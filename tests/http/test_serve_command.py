"""``kara serve`` as users run it: a real process, its output, its logs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kara_core import KaraStorage
from kara_core.errors import PermissionDeniedError

TOKEN = "serve-token-8d2a41c7"
KARA = [sys.executable, "-m", "kara_core.cli"]


class Served:
    """A running ``kara serve`` process and the URL it printed."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [*KARA, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stderr is not None
        self.banner = self.process.stderr.readline()
        match = re.search(r"at (http://\S+)", self.banner)
        assert match, f"no URL in {self.banner!r}: {self.process.stderr.read()}"
        self.url = match.group(1)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/.kara-gateway", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "kara serve did not start"
                time.sleep(0.05)

    def stop(self) -> str:
        """Stop the server and return everything it wrote."""
        self.process.terminate()
        out, err = self.process.communicate(timeout=20)
        return self.banner + out + err


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def served(store_dir: Path, token_file: Path) -> Iterator[Served]:
    server = Served([f"file://{store_dir}", "--port", "0", "--token-file", str(token_file), "--log-level", "debug"])
    yield server
    if server.process.poll() is None:
        server.stop()


def test_kara_serve_binds_loopback_by_default_and_says_so(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:")
    assert "writable with the token" in served.banner


def test_a_client_writes_and_reads_a_dataset_through_kara_serve(served: Served, store_dir: Path) -> None:
    with KaraStorage(served.url, token=TOKEN).open_dataset("ns", "ds", "w", version="1") as ds:
        for i in range(100):
            ds.write({"i": i})
    with KaraStorage(served.url).open_dataset("ns", "ds") as ds:
        assert [r["i"] for r in ds] == list(range(100))
    assert (store_dir / "row" / "ns" / "ds" / "1" / "data" / "0.blk").exists()


def test_tokens_never_appear_in_the_logs_or_errors(served: Served) -> None:
    KaraStorage(served.url, token=TOKEN).backend.put("obj", b"x")
    wrong = KaraStorage(served.url, token="wrong-token-77ab").backend
    with pytest.raises(PermissionDeniedError) as info:
        wrong.delete("obj")
    requests.put(served.url + "/obj", data=b"y", headers={"Authorization": "Bearer wrong-token-77ab"}, timeout=5)
    output = served.stop()
    assert "PUT /obj" in output, "the debug access log should show the requests"
    for secret in (TOKEN, "wrong-token-77ab"):
        assert secret not in output
        assert secret not in str(info.value)
        assert secret not in repr(wrong) + repr(getattr(wrong, "options", ""))


def test_read_token_required_without_a_token_is_a_usage_error(store_dir: Path) -> None:
    proc = subprocess.run(
        [*KARA, "serve", f"file://{store_dir}", "--read-token-required"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "read_token_required needs a token" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_is_listed_in_kara_help() -> None:
    proc = subprocess.run([*KARA, "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert re.search(r"^\s+serve\s", proc.stdout, re.MULTILINE)
