"""Credentials, clear errors for wrong settings, and secrets that never leak."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from kara_oss.testing import OSSTestServer

from kara_core import KaraStorage
from kara_core.errors import BackendError, ConfigurationError, PermissionDeniedError
from kara_core.url import open_backend


def test_wrong_secret_is_permission_denied(oss_server: OSSTestServer) -> None:
    backend = open_backend(oss_server.url("s"), app_key=oss_server.access_key_id, app_secret="not-the-secret")
    with pytest.raises(PermissionDeniedError, match="SignatureDoesNotMatch"):
        backend.size("anything")


def test_wrong_secret_with_v4_signatures_is_permission_denied(oss_server: OSSTestServer) -> None:
    backend = open_backend(
        oss_server.url("s"), app_key=oss_server.access_key_id, app_secret="not-the-secret", region=oss_server.region
    )
    with pytest.raises(PermissionDeniedError, match="SignatureDoesNotMatch"):
        backend.read("anything")


def test_unknown_key_id_is_permission_denied(oss_server: OSSTestServer) -> None:
    backend = open_backend(oss_server.url("s"), app_key="nobody", app_secret=oss_server.access_key_secret)
    with pytest.raises(PermissionDeniedError, match="InvalidAccessKeyId"):
        backend.put("x", b"x")


def test_missing_bucket_is_a_configuration_error_naming_it(oss_server: OSSTestServer) -> None:
    backend = open_backend(oss_server.url("s", bucket="no-such-bucket"), **oss_server.options)
    with pytest.raises(ConfigurationError, match=r"no-such-bucket.*does not exist"):
        backend.size("x")


def test_unreachable_endpoint_fails_after_the_retry_budget_naming_it(oss_server: OSSTestServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = open_backend(f"oss://127.0.0.1:{port}/bucket/p", retry_budget=0.3, **oss_server.options)
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}"):
        backend.size("x")


def test_url_without_a_bucket_is_a_configuration_error(oss_server: OSSTestServer) -> None:
    with pytest.raises(ConfigurationError, match="ENDPOINT/BUCKET"):
        open_backend(f"oss://{oss_server.endpoint}", **oss_server.options)


def test_missing_credentials_name_what_to_set(monkeypatch: pytest.MonkeyPatch, oss_server: OSSTestServer) -> None:
    monkeypatch.delenv("OSS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("OSS_ACCESS_KEY_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match=r"app_secret=.*OSS_ACCESS_KEY_SECRET"):
        open_backend(oss_server.url(), app_key="id-only")
    with pytest.raises(ConfigurationError, match=r"app_key=.*OSS_ACCESS_KEY_ID"):
        open_backend(oss_server.url())


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, oss_server: OSSTestServer) -> None:
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", oss_server.access_key_id)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", oss_server.access_key_secret)
    backend = open_backend(oss_server.url("env"))
    backend.put("x", b"from env")
    assert backend.read("x") == b"from env"


def test_sts_token_is_sent_from_options_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with OSSTestServer(security_token="sts-token-value") as server:
        with pytest.raises(PermissionDeniedError, match="InvalidSecurityToken"):
            open_backend(server.url(), app_key=server.access_key_id, app_secret=server.access_key_secret).size("x")
        open_backend(server.url(), **server.options).put("x", b"1")
        monkeypatch.setenv("OSS_SESSION_TOKEN", "sts-token-value")
        assert (
            open_backend(server.url(), app_key=server.access_key_id, app_secret=server.access_key_secret).size("x") == 1
        )


def test_secrets_never_appear_in_repr_logs_errors_or_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret, token = "very-secret-value-123", "sts-token-secret-456"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    caplog.set_level(logging.DEBUG)
    with OSSTestServer(access_key_secret=secret, security_token=token) as server:
        store = KaraStorage(server.url("leak"), **server.options)
        texts = [repr(store), repr(store.backend), repr(store.backend.options), str(store.backend.options)]
        with store.open_dataset("ns", "rows", "w", version="1") as ds:
            ds.write({"x": 1})
        store.save_directory("ns", "dir", str(folder), progress_bar=False)
        server.inject("error", "GetObject", status=403, code="AccessDenied")
        with pytest.raises(PermissionDeniedError) as denied:
            store.backend.read("row/ns/rows/meta.json")
        texts.append(str(denied.value))
        bad = open_backend(server.url("leak"), app_key=server.access_key_id, app_secret=secret + "x")
        with pytest.raises(PermissionDeniedError) as wrong:
            bad.size("x")
        texts.append(str(wrong.value))
        stored = b"".join(server.get(key) or b"" for key in server.keys())
    texts.append(caplog.text)
    assert any("Send request" in r.getMessage() for r in caplog.records), "oss2 DEBUG logs were not captured"
    for text in texts:
        assert secret not in text and token not in text
    assert secret.encode() not in stored and token.encode() not in stored
