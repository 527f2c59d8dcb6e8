"""Fixtures for the CLI tests: a file:// store with known datasets, and a click runner."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

import kara_core
from kara_core.cli import cli

#: Records of ns/zh (JSON with Chinese text) in version "1".
ZH_RECORDS = [{"i": i, "text": "你好\uff0c世界" * (i + 1), "tags": ["中文", "测试"]} for i in range(5)]
#: Records of ns/pk (pickle, not JSON-compatible) in version "1".
PK_RECORDS = [{(i, "元组"): {i, i + 1}} for i in range(3)]


@pytest.fixture
def store_url(tmp_path) -> str:
    """A file:// store holding ns/zh (JSON, versions 1 and 2) and ns/pk (pickle)."""
    url = f"file://{tmp_path / 'store'}"
    storage = kara_core.KaraStorage(url)
    with storage.open_dataset("ns", "zh", "w", "1") as ds:
        ds.write_many(ZH_RECORDS)
    with storage.open_dataset("ns", "zh", "w", "2") as ds:
        ds.write_many(ZH_RECORDS[:2])
    with storage.open_dataset("ns", "pk", "w", "1", serialization="pickle") as ds:
        ds.write_many(PK_RECORDS)
    storage.close()
    return url


@pytest.fixture
def kara(monkeypatch) -> Callable[..., Result]:
    """Run ``kara ARGS`` in-process through click's runner (stdout and stderr kept apart)."""
    monkeypatch.delenv("KARA_URL", raising=False)
    monkeypatch.delenv("OSS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("OSS_ACCESS_KEY_SECRET", raising=False)
    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return run
