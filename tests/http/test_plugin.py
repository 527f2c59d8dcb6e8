"""kara-http as a plugin: registration, cheap imports, URLs, options, secrets, pickling."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kara_http import HTTPOptions
from kara_http.testing import StaticServer

from kara_core.errors import ConfigurationError
from kara_core.plugins import get_backend_spec
from kara_core.url import open_backend


def test_http_and_https_are_registered_by_kara_http() -> None:
    for scheme in ("http", "https"):
        spec = get_backend_spec(scheme)
        assert spec.plugin == "http"
        assert spec.options_model is HTTPOptions


def test_loading_the_plugin_imports_no_http_or_server_library() -> None:
    code = (
        "import sys, kara_core\n"
        "from kara_core.plugins import get_backend_spec, get_plugin_manager\n"
        "get_backend_spec('http')\n"
        "heavy = [m for m in ('requests', 'urllib3', 'uvicorn', 'starlette', 'oss2', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == ""


def test_the_url_keeps_host_port_and_prefix_without_trailing_slash() -> None:
    backend = open_backend("https://mirror.example.com:8443/data/store/")
    assert backend.url == "https://mirror.example.com:8443/data/store"
    assert backend.url_of("row/ns/数据 集/meta.json") == (  # type: ignore[attr-defined]
        "https://mirror.example.com:8443/data/store/row/ns/%E6%95%B0%E6%8D%AE%20%E9%9B%86/meta.json"
    )


@pytest.mark.parametrize(
    "url",
    ["http://", "http:///prefix", "http://user:hunter2@host/prefix", "http://host/prefix?x=1"],
)
def test_malformed_urls_are_configuration_errors_that_echo_no_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_backend(url)
    assert "hunter2" not in str(info.value)


def test_secrets_never_appear_in_reprs_or_option_errors() -> None:
    options = HTTPOptions(token="tok-secret-1", headers={"X-Key": "hdr-secret-2"})
    basic = HTTPOptions(username="me", password="pw-secret-3")
    shown = repr(options) + str(options) + repr(basic) + str(basic)
    for secret in ("tok-secret-1", "hdr-secret-2", "pw-secret-3"):
        assert secret not in shown
    with pytest.raises(ConfigurationError) as info:
        open_backend("http://host/p", token="tok-secret-1", username="me")
    assert "tok-secret-1" not in str(info.value)


def test_unknown_options_are_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option 'timeout'.*read_timeout"):
        open_backend("http://host/p", timeout=3)


def test_a_backend_pickles_as_its_url_and_reopens_with_its_own_session(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"pickled")
    with StaticServer(str(tmp_path)) as server:
        backend = open_backend(server.url, headers={"X-A": "1"}, read_timeout=7.0)
        assert backend.read("f.bin") == b"pickled"
        payload = pickle.dumps(backend)
        assert b"Transport" not in payload and b"httpcore" not in payload
        clone = pickle.loads(payload)
        try:
            assert clone.read("f.bin") == b"pickled"
            assert clone.options.read_timeout == 7.0  # type: ignore[attr-defined]
            assert clone.transport is not backend.transport  # type: ignore[attr-defined]
        finally:
            clone.close()
            backend.close()


def test_a_backend_built_by_hand_pickles_too(tmp_path: Path) -> None:
    from kara_http import HTTPBackend

    (tmp_path / "f.bin").write_bytes(b"by hand")
    with StaticServer(str(tmp_path)) as server:
        backend = HTTPBackend(server.url, HTTPOptions(read_timeout=3.0))
        backend.read("f.bin")
        clone = pickle.loads(pickle.dumps(backend))
        try:
            assert clone.read("f.bin") == b"by hand"
            assert clone.options.read_timeout == 3.0
        finally:
            clone.close()
            backend.close()


def _read_in_forked_child(backend: Any, queue: Any) -> None:
    queue.put(backend.read("f.bin", 1, 5))


def test_a_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"0123456789")
    with StaticServer(str(tmp_path)) as server:
        backend = open_backend(server.url, gateway=False)
        try:
            assert backend.read("f.bin", 0, 2) == b"01"
            context = multiprocessing.get_context("fork")
            queue = context.Queue()
            child = context.Process(target=_read_in_forked_child, args=(backend, queue))
            child.start()
            assert queue.get(timeout=30) == b"1234"
            child.join(timeout=30)
            assert backend.read("f.bin", 8) == b"89"
        finally:
            backend.close()
        ports = [r.client_port for r in server.log]
    assert ports[0] == ports[2] != ports[1]
