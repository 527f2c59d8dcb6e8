"""The CLI for daily use: missing stores, dead and slow remotes, options and tokens,
damaged entries, empty imports, and the messages of mistyped or missing commands."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kara_http.testing import GatewayServer
from kara_oss.testing import OSSTestServer

import kara_core
from kara_core.cli import cli
from kara_core.plugins import reset_plugins, unregister_plugin

BIN = Path(sys.executable).parent
TOKEN = "daily-use-token"


def _kara(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KARA_", "OSS_ACCESS"))}
    return subprocess.run(
        [str(BIN / "kara"), *args], capture_output=True, text=True, env={**clean, **(env or {})}, cwd=cwd, timeout=120
    )


# -- a store URL that points at nothing ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["ls"], ["verify"], ["obj", "ls"], ["ls", "--kind", "row"], ["cat", "{url}", "ns", "k"]],
    ids=" ".join,
)
def test_a_url_pointing_at_nothing_fails_with_one_line(kara, tmp_path, args):
    url = f"file://{tmp_path / 'nostore'}"
    argv = [a.format(url=url) for a in args] if "{url}" in args else [*args, url]
    result = kara(*argv)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("kara: error: ")
    assert "nothing at" in result.stderr or "does not exist" in result.stderr
    assert not (tmp_path / "nostore").exists()


# -- remote stores that are dead or slow ---------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port on 127.0.0.1 whose listen queue is full: connections hang until they time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@pytest.mark.slow
def test_an_unreachable_remote_fails_within_seconds_naming_host_and_cause(black_hole):
    started = time.monotonic()
    result = _kara("ls", f"http://127.0.0.1:{black_hole}/store")
    took = time.monotonic() - started
    assert result.returncode == 1
    assert f"127.0.0.1:{black_hole}" in result.stderr and "timed out (ConnectTimeout)" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert took < 20, took  # ~5 s connect timeout, never the two-minute retry budget


def test_timeout_option_and_env_shorten_the_wait(black_hole):
    for extra, env in ((["--timeout", "1"], None), ([], {"KARA_TIMEOUT": "1"})):
        started = time.monotonic()
        result = _kara("ls", f"http://127.0.0.1:{black_hole}/store", *extra, env=env)
        assert result.returncode == 1
        # the budget is the option's 1 s (not the 5 s default); the elapsed time is whatever the
        # loaded machine took for one attempt, 1.0 s or a little more
        assert "retry budget 1s" in result.stderr, result.stderr
        assert re.search(r"failed after 1 attempt\(s\) in 1\.\ds", result.stderr), result.stderr
        assert time.monotonic() - started < 12


@pytest.mark.slow
def test_a_slow_but_live_store_still_answers():
    with OSSTestServer() as server:
        storage = kara_core.KaraStorage(server.url("s"), **server.options)
        with storage.open_dataset("ns", "k", "w", version="1") as ds:
            ds.write({"a": 1})
        server.latency = 0.5  # every answer takes longer than --timeout
        creds = ["--app-key", server.access_key_id, "--app-secret", server.access_key_secret]
        result = _kara("cat", server.url("s"), "ns", "k", "--timeout", "0.25", *creds)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"a": 1}


# -- options, tokens, writes through kara serve -------------------------------------------------------


def test_backend_options_by_o_and_env(kara, store_url):
    with OSSTestServer() as server:
        kara_core.KaraStorage(server.url("s"), **server.options).open_dataset("ns", "k", "w", version="1").close()
        opts = ["-o", f"app_key={server.access_key_id}", "-o", f"app_secret={server.access_key_secret}"]
        assert _kara("ls", server.url("s"), *opts, "-o", "read_timeout=30").returncode == 0
        env = {"KARA_STORE_OPTIONS": f"app_key={server.access_key_id} app_secret={server.access_key_secret}"}
        listed = _kara("ls", server.url("s"), env=env)
        assert listed.returncode == 0 and "ns" in listed.stdout
    bad = kara("ls", store_url, "-o", "fsync=maybe")
    assert bad.exit_code == 1 and "fsync" in bad.stderr
    unknown = kara("ls", store_url, "-o", "bogus=1")
    assert unknown.exit_code == 1 and "unknown option 'bogus'" in unknown.stderr
    malformed = kara("ls", store_url, "-o", "novalue")
    assert malformed.exit_code == 2 and "expected NAME=VALUE" in malformed.stderr


def test_writes_through_kara_serve_with_a_token(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"i": 1}\n{"i": 2}\n')
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "w.bin").write_bytes(b"w")
    with GatewayServer(f"file://{tmp_path / 'store'}", token=TOKEN) as gateway:
        refused = _kara("import", gateway.url, "ns", "k", "-v", "1", str(tmp_path / "in.jsonl"))
        assert refused.returncode == 1 and "read-only" in refused.stderr
        imported = _kara("import", gateway.url, "ns", "k", "-v", "1", str(tmp_path / "in.jsonl"), "--token", TOKEN)
        assert imported.returncode == 0, imported.stderr
        saved = _kara("obj", "save", gateway.url, "m", "b", str(tmp_path / "ckpt"), env={"KARA_TOKEN": TOKEN})
        assert saved.returncode == 0 and saved.stdout == "0\n", saved.stderr
        printed = _kara("cat", gateway.url, "ns", "k")
        assert [json.loads(line) for line in printed.stdout.splitlines()] == [{"i": 1}, {"i": 2}]
    assert kara_core.KaraStorage(f"file://{tmp_path / 'store'}").list_versions("m", "b", "obj") == ["0"]


# -- damaged entries ---------------------------------------------------------------------------


@pytest.fixture
def damaged_store(tmp_path) -> str:
    url = f"file://{tmp_path / 'store'}"
    storage = kara_core.KaraStorage(url)
    for key in ("good", "odd", "back\\slash"):
        with storage.open_dataset("ns", key, "w", version="1") as ds:
            ds.write({"key": key})
    root = tmp_path / "store" / "row" / "ns"
    (root / "bad").mkdir()
    (root / "bad" / "meta.json").write_text("{not json")
    meta = json.loads((root / "odd" / "meta.json").read_text())
    meta["versions"].append("..")
    (root / "odd" / "meta.json").write_text(json.dumps(meta))
    return url


def test_ls_reports_damaged_entries_and_lists_the_rest(kara, damaged_store):
    result = kara("ls", damaged_store, "ns")
    assert result.exit_code == 3
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["back\\slash", "good", "odd"]
    assert "kara: damaged: row ns/bad: corrupt data" in result.stderr
    versions = kara("ls", damaged_store, "ns", "odd")
    assert versions.exit_code == 3
    assert [line.split()[1] for line in versions.stdout.splitlines()[1:]] == ["1"]
    assert "kara: damaged: row ns/odd version '..'" in versions.stderr
    assert kara("ls", damaged_store).exit_code == 0


def test_verify_reports_damaged_entries_and_checks_the_rest(kara, damaged_store):
    result = kara("verify", damaged_store, "--json")
    assert result.exit_code == 3
    outcome = {r["key"]: r["ok"] for r in json.loads(result.stdout)["results"]}
    assert outcome == {"back\\slash": True, "bad": False, "good": True, "odd": False}


def test_info_reports_a_damaged_entry(kara, damaged_store):
    assert kara("info", damaged_store, "ns", "good").exit_code == 0
    result = kara("info", damaged_store, "ns", "bad")
    assert result.exit_code == 3 and "kara: damaged: row ns/bad" in result.stderr


# -- import, mistyped and missing commands ----------------------------------------------------------


def test_import_of_an_empty_input_creates_nothing_and_keeps_latest(kara, tmp_path, store_url):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    fresh = f"file://{tmp_path / 'fresh'}"
    result = kara("import", fresh, "ns", "k", "-v", "1", str(tmp_path / "empty.jsonl"))
    assert result.exit_code == 0 and "nothing imported" in result.stderr and "latest unchanged" in result.stderr
    assert not (tmp_path / "fresh").exists()
    kara("import", store_url, "ns", "zh", "-v", "9", str(tmp_path / "empty.jsonl"))
    meta = kara_core.KaraStorage(store_url).get_row_meta("ns", "zh")
    assert (meta["latest"], meta["versions"]) == ("2", ["1", "2"])


def test_an_unknown_action_after_the_url_is_named(kara, store_url):
    result = kara("obj", store_url, "frob", "ns", "k", "x")
    assert result.exit_code == 2
    assert f"no action 'frob' after {store_url}: choose one of gc, load, ls, rm, save" in result.stderr
    assert "No such command" not in result.stderr


def test_serve_without_kara_http_names_the_package_to_install(kara):
    cli.reset_plugin_commands()
    unregister_plugin("http")
    try:
        result = kara("serve", "file:///tmp/x", "--port", "0")
    finally:
        reset_plugins()
        cli.reset_plugin_commands()
    assert result.exit_code == 1
    assert result.stderr.startswith("kara: error: no command 'kara serve': pip install 'kara-http[server]'")
