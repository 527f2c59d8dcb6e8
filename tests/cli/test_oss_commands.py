"""The seed's commands over oss:// (kara-oss's OSS-protocol test server on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest
from kara_oss.testing import OSSTestServer


@pytest.fixture
def oss():
    with OSSTestServer() as server:
        yield server


def test_seed_obj_save_and_load_with_app_key_and_secret(kara, oss, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "模型.txt").write_text("权重", encoding="utf-8")
    creds = ["--app-key", oss.access_key_id, "--app-secret", oss.access_key_secret]
    url = oss.url("store")
    assert kara("obj", url, "save", "models", "m", str(src), "-v", "v1", *creds).stdout == "v1\n"
    result = kara("obj", url, "load", "models", "m", str(tmp_path / "dst"), "-v", "v1", *creds)
    assert result.exit_code == 0
    assert (tmp_path / "dst" / "模型.txt").read_text(encoding="utf-8") == "权重"


def test_credentials_come_from_the_oss_environment_variables(kara, oss):
    env = {"OSS_ACCESS_KEY_ID": oss.access_key_id, "OSS_ACCESS_KEY_SECRET": oss.access_key_secret}
    url = oss.url("store")
    assert kara("import", url, "ns", "k", "-v", "1", "-", input='{"文": 1}\n', env=env).exit_code == 0
    assert kara("cat", url, "ns", "k", env=env).stdout == '{"文":1}\n'
    assert json.loads(kara("info", url, "ns", "k", "--json", env=env).stdout)[0]["records"] == 1


def test_wrong_secret_is_one_line_error_without_the_secret(kara, oss):
    result = kara("ls", oss.url("store"), "--app-key", oss.access_key_id, "--app-secret", "not-the-secret")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("kara: error: ")
    assert "not-the-secret" not in result.stderr
