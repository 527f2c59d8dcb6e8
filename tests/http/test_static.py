"""http:// stores on a static web server (Range support, read-only): sizes, ranges, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from kara_http import ListingNotSupportedError, RangeNotSupportedError
from kara_http.testing import StaticServer

from kara_core.backend import Backend
from kara_core.errors import ConfigurationError, NotFoundError, PermissionDeniedError, ReadOnlyStoreError
from kara_core.testing import ReadOnlyBackendConformance
from kara_core.url import open_backend


class TestStaticMirrorConformance(ReadOnlyBackendConformance):
    @pytest.fixture
    def source(self, store_dir: Path) -> Backend:
        return open_backend(f"file://{store_dir}", fsync=False)

    @pytest.fixture
    def backend(self, mirror: Backend) -> Backend:
        return mirror


def _write(store_dir: Path, path: str, data: bytes) -> None:
    target = store_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_size_comes_from_a_head_request(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    _write(store_dir, "a/obj.bin", b"x" * 1234)
    assert mirror.size("a/obj.bin") == 1234
    assert [(r.method, r.path) for r in static.log] == [("HEAD", "/a/obj.bin")]


def test_size_falls_back_to_a_ranged_get_where_head_is_not_allowed(
    static: StaticServer, mirror: Backend, store_dir: Path
) -> None:
    _write(store_dir, "a/obj.bin", b"x" * 1234)
    _write(store_dir, "a/empty.bin", b"")
    static.faults.head_not_allowed = True
    assert mirror.size("a/obj.bin") == 1234
    assert mirror.size("a/empty.bin") == 0
    assert mirror.size("a/absent.bin") is None
    assert ("GET", "bytes=0-0") in [(r.method, r.range) for r in static.log]


def test_every_partial_read_is_one_range_request(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    data = bytes(range(256)) * 40
    _write(store_dir, "r.bin", data)
    assert mirror.read("r.bin", 100, 200) == data[100:200]
    assert mirror.read("r.bin", 5000) == data[5000:]
    assert [r.range for r in static.log] == ["bytes=100-199", "bytes=5000-"]


def test_a_server_ignoring_range_is_reported_clearly(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    _write(store_dir, "data/0.blk", b"z" * 100_000)
    static.faults.ignore_range = True
    with pytest.raises(RangeNotSupportedError, match="ignored the Range header"):
        mirror.read("data/0.blk", 10, 20)
    with pytest.raises(RangeNotSupportedError):
        mirror.open_read("data/0.blk", 5)
    assert len(static.log) == 2, "the whole-file answer must not be retried or re-requested"


def test_absent_objects_are_none_and_not_found(mirror: Backend) -> None:
    assert mirror.size("nothing/here.bin") is None
    with pytest.raises(NotFoundError, match=r"nothing/here\.bin"):
        mirror.read("nothing/here.bin", 0, 10)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_permission_denied_without_retrying(
    static: StaticServer, mirror: Backend, store_dir: Path, status: int
) -> None:
    _write(store_dir, "secret.bin", b"s")
    static.faults.status_for["/secret.bin"] = status
    with pytest.raises(PermissionDeniedError, match=str(status)):
        mirror.read("secret.bin")
    with pytest.raises(PermissionDeniedError):
        mirror.size("secret.bin")
    assert len([r for r in static.log if r.path == "/secret.bin"]) == 2


def test_listing_a_static_server_raises_a_clear_error(mirror: Backend) -> None:
    with pytest.raises(ListingNotSupportedError, match="static web server cannot list"):
        list(mirror.list("row/"))


def test_writes_name_the_url_and_say_why(mirror: Backend) -> None:
    with pytest.raises(ReadOnlyStoreError, match="static web server is read-only") as info:
        mirror.put("x", b"1")
    assert mirror.url in str(info.value)


def test_custom_headers_and_token_are_sent(static: StaticServer, store_dir: Path) -> None:
    _write(store_dir, "h.bin", b"h")
    backend = open_backend(static.url, headers={"X-Cdn-Key": "k1"}, token="bearer-secret-1", gateway=False)
    try:
        assert backend.read("h.bin") == b"h"
    finally:
        backend.close()
    assert static.log[0].headers["X-Cdn-Key"] == "k1"
    assert static.log[0].headers["Authorization"] == "Bearer bearer-secret-1"


def test_connections_are_kept_alive_across_requests(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    _write(store_dir, "k.bin", b"k" * 1000)
    for i in range(20):
        mirror.read("k.bin", i, i + 10)
    assert len({r.client_port for r in static.log}) == 1


def test_small_reads_of_block_files_share_one_window_request(
    static: StaticServer, mirror: Backend, store_dir: Path
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: four 256 KiB windows
    _write(store_dir, "data/0.blk", data)
    for start in (10, 5000, 100_000, 200_000, 262_000):
        assert mirror.read("data/0.blk", start, start + 100) == data[start : start + 100]
    assert mirror.read("data/0.blk", 300_000, 300_050) == data[300_000:300_050]
    assert [r.range for r in static.log] == ["bytes=0-262143", "bytes=262144-524287"]


def test_a_read_spanning_two_windows_is_fetched_exactly(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    data = bytes(range(256)) * 2048
    _write(store_dir, "data/0.blk", data)
    assert mirror.read("data/0.blk", 262_100, 262_200) == data[262_100:262_200]
    assert [r.range for r in static.log] == ["bytes=262100-262199"]


def test_other_objects_are_never_served_from_the_window_cache(
    static: StaticServer, mirror: Backend, store_dir: Path
) -> None:
    _write(store_dir, "meta.json", b'{"latest": "1"}')
    assert mirror.read("meta.json", 0, 5) == b'{"lat'
    _write(store_dir, "meta.json", b'{"latest": "2"}')
    assert mirror.read("meta.json", 0, 15) == b'{"latest": "2"}'
    assert [r.range for r in static.log] == ["bytes=0-4", "bytes=0-14"]


def test_the_window_cache_can_be_turned_off(static: StaticServer, store_dir: Path) -> None:
    _write(store_dir, "data/0.blk", b"w" * 10_000)
    backend = open_backend(static.url, window_cache=0)
    try:
        backend.read("data/0.blk", 0, 10)
        backend.read("data/0.blk", 10, 20)
    finally:
        backend.close()
    assert [r.range for r in static.log] == ["bytes=0-9", "bytes=10-19"]


def test_redirects_are_followed_for_sizes_and_reads(static: StaticServer, mirror: Backend, store_dir: Path) -> None:
    _write(store_dir, "elsewhere/real.bin", b"0123456789")
    static.faults.redirects["/moved.bin"] = "/elsewhere/real.bin"
    assert mirror.size("moved.bin") == 10
    assert mirror.read("moved.bin", 2, 5) == b"234"
    assert ("GET", "/elsewhere/real.bin", "bytes=2-4") in [(r.method, r.path, r.range) for r in static.log]


def test_basic_auth_is_sent(static: StaticServer, store_dir: Path) -> None:
    _write(store_dir, "b.bin", b"b")
    backend = open_backend(static.url, username="reader", password="pw-7", gateway=False)
    try:
        assert backend.read("b.bin") == b"b"
    finally:
        backend.close()
    assert static.log[0].headers["Authorization"] == "Basic cmVhZGVyOnB3LTc="


def test_a_mirror_answering_403_for_unknown_keys_is_still_readable(
    static: StaticServer, mirror: Backend, store_dir: Path
) -> None:
    _write(store_dir, "obj.bin", b"readable")
    static.faults.status_for["/.kara-gateway"] = 403
    assert not mirror.capabilities.writable
    assert mirror.read("obj.bin") == b"readable"


def test_gateway_false_never_asks_and_gateway_true_requires_one(static: StaticServer, store_dir: Path) -> None:
    _write(store_dir, "obj.bin", b"x")
    never = open_backend(static.url, gateway=False)
    required = open_backend(static.url, gateway=True)
    try:
        assert not never.capabilities.writable
        assert never.read("obj.bin") == b"x"
        assert all(not r.path.endswith(".kara-gateway") for r in static.log)
        with pytest.raises(ConfigurationError, match="not a kara gateway"):
            required.put("obj.bin", b"y")
    finally:
        never.close()
        required.close()
