"""What a ``kara serve`` gateway adds to a plain mirror: discovery, safe appends and creates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from kara_http.testing import GatewayServer, StaticServer

from kara_core import KaraStorage
from kara_core.backend import Backend
from kara_core.errors import BackendError, ReadOnlyStoreError
from kara_core.url import open_backend

TOKEN = "test-token-5f1c9e"


def test_the_discovery_document_describes_the_gateway(gateway: GatewayServer) -> None:
    response = requests.get(gateway.url + "/.kara-gateway", timeout=5)
    assert response.status_code == 200
    assert response.headers["X-Kara-Gateway"] == "1"
    info = response.json()
    assert info["kara_gateway"] == 1
    assert info["writable"] is True
    assert info["read_token_required"] is False
    assert TOKEN not in response.text


def test_a_client_with_the_token_discovers_a_writable_store(remote: Backend) -> None:
    assert remote.capabilities.writable
    assert remote.capabilities.appendable
    assert remote.capabilities.atomic_create


def test_a_client_without_the_token_reads_but_cannot_write(gateway: GatewayServer, remote: Backend) -> None:
    remote.put("obj", b"data")
    anonymous = open_backend(gateway.url)
    try:
        assert anonymous.read("obj") == b"data"
        assert not anonymous.capabilities.writable
        with pytest.raises(ReadOnlyStoreError, match="needs a token"):
            anonymous.put("obj", b"other")
    finally:
        anonymous.close()


def test_a_gateway_started_without_a_token_is_read_only(store_dir: Path) -> None:
    (store_dir / "f").write_bytes(b"x")
    with GatewayServer(f"file://{store_dir}") as server:
        backend = open_backend(server.url, token="anything")
        try:
            assert backend.read("f") == b"x"
            assert not backend.capabilities.writable
            with pytest.raises(ReadOnlyStoreError, match="read-only store"):
                backend.delete("f")
        finally:
            backend.close()
        assert (
            requests.delete(server.url + "/f", headers={"Authorization": "Bearer anything"}, timeout=5).status_code
            == 403
        )
    assert (store_dir / "f").exists()


def test_a_retried_append_is_applied_once(remote: Backend) -> None:
    assert remote.append_at("log.blk", 0, b"first,") == 6  # type: ignore[attr-defined]
    # The same request again, as a client does when the answer to the first was lost.
    assert remote.append_at("log.blk", 0, b"first,") == 6  # type: ignore[attr-defined]
    assert remote.append_at("log.blk", 6, b"second") == 12  # type: ignore[attr-defined]
    assert remote.read("log.blk") == b"first,second"


def test_an_append_at_a_stale_position_is_refused(remote: Backend) -> None:
    remote.append_at("log.blk", 0, b"abc")  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="now has 3 bytes"):
        remote.append_at("log.blk", 0, b"xyz")  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="now has 3 bytes"):
        remote.append_at("log.blk", 1, b"xy")  # type: ignore[attr-defined]
    assert remote.read("log.blk") == b"abc"


def test_a_retried_create_gets_the_answer_of_the_first_attempt(gateway: GatewayServer, remote: Backend) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "If-None-Match": "*", "X-Kara-Request-Id": "req-1"}
    first = requests.put(gateway.url + "/lock", data=b"me", headers=headers, timeout=5)
    retried = requests.put(gateway.url + "/lock", data=b"me", headers=headers, timeout=5)
    other = requests.put(
        gateway.url + "/lock", data=b"me", headers={**headers, "X-Kara-Request-Id": "req-2"}, timeout=5
    )
    assert (first.status_code, retried.status_code, other.status_code) == (201, 201, 412)
    assert remote.read("lock") == b"me"


def test_a_put_larger_than_the_gateway_accepts_fails_before_sending(store_dir: Path) -> None:
    with GatewayServer(f"file://{store_dir}", token=TOKEN, max_body_size=1000) as server:
        backend = open_backend(server.url, token=TOKEN)
        try:
            with pytest.raises(BackendError, match="max-body-size"):
                backend.put("big", b"x" * 1001)
            backend.put("fits", b"x" * 1000)
        finally:
            backend.close()
    assert not (store_dir / "big").exists()
    assert (store_dir / "fits").stat().st_size == 1000


def test_listing_goes_through_the_gateway_under_a_url_prefix(gateway: GatewayServer, remote: Backend) -> None:
    for path in ("sub/a/1", "sub/a/2", "sub/b/3", "other/4"):
        remote.put(path, b"")
    scoped = open_backend(gateway.url + "/sub", token=TOKEN)
    try:
        assert sorted(scoped.list("a/")) == ["a/1", "a/2"]
        assert sorted(scoped.list("")) == ["a/1", "a/2", "b/3"]
        scoped.put("b/5", b"five")
    finally:
        scoped.close()
    assert remote.read("sub/b/5") == b"five"


def test_a_gateway_can_serve_a_read_only_store(static: StaticServer, store_dir: Path) -> None:
    (store_dir / "mirrored.bin").write_bytes(b"from the mirror")
    with GatewayServer(static.url, token=TOKEN) as server:
        backend = open_backend(server.url, token=TOKEN)
        try:
            assert backend.read("mirrored.bin", 5) == b"the mirror"
            assert not backend.capabilities.writable
        finally:
            backend.close()


def test_datasets_written_through_the_gateway_are_plain_layout_for_a_static_mirror(
    remote: Backend, store_dir: Path
) -> None:
    with KaraStorage(remote).open_dataset("ns", "ds", "w", version="1") as ds:
        for i in range(500):
            ds.write({"i": i})
    meta = json.loads((store_dir / "row" / "ns" / "ds" / "meta.json").read_text())
    assert meta["latest"] == "1"
    with StaticServer(str(store_dir)) as mirror:
        with KaraStorage(mirror.url).open_dataset("ns", "ds") as ds:
            assert [r["i"] for r in ds] == list(range(500))


def _worker_records(url: str, options: dict[str, Any]) -> list[int]:
    import torch.utils.data

    import kara_core

    ds = KaraStorage(url, **options).open_dataset("ns", "ds")
    loader = torch.utils.data.DataLoader(
        kara_core.make_torch_dataset(ds, auto_distributed=False),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",
    )
    return sorted(int(r["i"]) for r in loader)


def test_the_torch_pipeline_reads_through_the_gateway_from_worker_processes(gateway: GatewayServer) -> None:
    with KaraStorage(gateway.url, token=TOKEN).open_dataset("ns", "ds", "w", version="1") as ds:
        for i in range(300):
            ds.write({"i": i})
    assert _worker_records(gateway.url, {"token": TOKEN}) == list(range(300))


def test_a_block_read_while_it_grows_never_serves_stale_bytes(remote: Backend) -> None:
    appender = remote.open_append("row/ns/ds/1/data/0.blk")
    appender.append(b"abc")
    appender.flush()
    assert remote.read("row/ns/ds/1/data/0.blk", 0, 3) == b"abc"
    appender.append(b"def")
    appender.close()
    assert remote.read("row/ns/ds/1/data/0.blk", 1, 6) == b"bcdef"
    assert remote.read("row/ns/ds/1/data/0.blk", 0, 2) == b"ab"


def test_a_large_object_is_sent_with_its_length(gateway: GatewayServer, remote: Backend) -> None:
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB: streamed rather than read whole
    remote.put("big.bin", data)
    response = requests.get(gateway.url + "/big.bin", timeout=30)
    assert response.headers["Content-Length"] == str(len(data))
    assert response.content == data


def test_a_failing_store_behind_the_gateway_is_retried_then_reported(static: StaticServer, store_dir: Path) -> None:
    (store_dir / "flaky.bin").write_bytes(b"flaky")
    behind = {"retry_budget": 0.2, "backoff_base": 0.05}
    with GatewayServer(static.url, token=TOKEN, store_options=behind) as server:
        backend = open_backend(server.url, retry_budget=1.0, backoff_base=0.05)
        try:
            static.faults.unavailable_count = 2
            assert backend.read("flaky.bin") == b"flaky"
            static.faults.unavailable_count = 10_000
            with pytest.raises(BackendError, match="HTTP 503"):
                backend.read("flaky.bin")
        finally:
            static.faults.unavailable_count = 0
            backend.close()
