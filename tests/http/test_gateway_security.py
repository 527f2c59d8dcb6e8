"""The gateway's security rules, one by one, with exact request targets (http.client)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kara_http.testing import GatewayServer

from kara_core.errors import PermissionDeniedError
from kara_core.url import open_backend

TOKEN = "test-token-5f1c9e"


def _request(
    server: GatewayServer,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """Send ``target`` exactly as written (no client-side normalisation)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None and not {"Content-Length", "Transfer-Encoding"} & set(headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secret_outside(tmp_path: Path) -> Path:
    """A file next to the store folder that no request may reach."""
    path = tmp_path / "secret.txt"
    path.write_text("outside the store")
    return path


def test_a_write_without_a_token_is_refused_with_401(gateway: GatewayServer, store_dir: Path) -> None:
    status, _ = _request(gateway, "PUT", "/obj", b"data")
    assert status == 401
    assert not (store_dir / "obj").exists()


def test_a_write_with_a_wrong_token_is_refused_with_403(gateway: GatewayServer, store_dir: Path) -> None:
    status, body = _request(gateway, "PUT", "/obj", b"data", _auth("wrong-token"))
    assert status == 403
    assert b"wrong-token" not in body and TOKEN.encode() not in body
    assert not (store_dir / "obj").exists()


def test_a_token_with_another_scheme_is_refused(gateway: GatewayServer) -> None:
    assert _request(gateway, "DELETE", "/obj", None, {"Authorization": f"Basic {TOKEN}"})[0] == 401


def test_a_write_with_the_token_is_accepted(gateway: GatewayServer, store_dir: Path) -> None:
    assert _request(gateway, "PUT", "/obj", b"data", _auth())[0] == 201
    assert (store_dir / "obj").read_bytes() == b"data"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
def test_every_write_method_needs_the_token(gateway: GatewayServer, method: str) -> None:
    target = "/obj?append=0" if method == "POST" else "/obj"
    assert _request(gateway, method, target, b"x")[0] == 401


def test_reads_are_open_unless_the_read_token_is_required(gateway: GatewayServer, store_dir: Path) -> None:
    (store_dir / "public").write_bytes(b"p")
    assert _request(gateway, "GET", "/public") == (200, b"p")


@pytest.fixture
def private_gateway(store_dir: Path) -> Iterator[GatewayServer]:
    with GatewayServer(f"file://{store_dir}", token=TOKEN, read_token_required=True) as server:
        yield server


def test_with_read_token_required_reads_and_listing_need_the_token(
    private_gateway: GatewayServer, store_dir: Path
) -> None:
    (store_dir / "private").write_bytes(b"p")
    assert _request(private_gateway, "GET", "/private")[0] == 401
    assert _request(private_gateway, "HEAD", "/private")[0] == 401
    assert _request(private_gateway, "GET", "/.kara-gateway?list=")[0] == 401
    assert _request(private_gateway, "GET", "/private", None, _auth("nope"))[0] == 403
    assert _request(private_gateway, "GET", "/private", None, _auth()) == (200, b"p")


def test_a_client_without_the_read_token_gets_a_permission_error(private_gateway: GatewayServer) -> None:
    backend = open_backend(private_gateway.url, token="not-the-token")
    try:
        with pytest.raises(PermissionDeniedError) as info:
            backend.read("private")
    finally:
        backend.close()
    assert "not-the-token" not in str(info.value)


TRAVERSALS = [
    "/../secret.txt",
    "/a/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/a/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "//etc/passwd",
    "/%2fetc/passwd",
    "/a/./b",
    "/a//b",
    "/a%00b",
    "/.kara-gateway/../secret.txt",
    "/../.kara-gateway",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_paths_escaping_the_store_are_refused_with_400(
    gateway: GatewayServer, secret_outside: Path, target: str
) -> None:
    for method, body in (("GET", None), ("HEAD", None), ("PUT", b"overwritten"), ("DELETE", None)):
        status, content = _request(gateway, method, target, body, _auth())
        assert status == 400, (method, target, status)
        assert b"outside the store" not in content
    assert secret_outside.read_text() == "outside the store"


@pytest.mark.parametrize("target", ["/a%5c..%5csecret.txt", "/a\\..\\secret.txt"])
def test_a_backslash_is_a_plain_character_that_stays_in_the_store(
    gateway: GatewayServer, store_dir: Path, secret_outside: Path, target: str
) -> None:
    # kara-storage 2.x names may hold '\\': one file of that name inside the store.
    assert _request(gateway, "GET", target, None, _auth())[0] == 404
    assert _request(gateway, "PUT", target, b"inside", _auth())[0] == 201
    assert (store_dir / "a\\..\\secret.txt").read_bytes() == b"inside"
    assert _request(gateway, "DELETE", target, None, _auth())[0] in (200, 204)
    assert secret_outside.read_text() == "outside the store"


@pytest.mark.parametrize("target", ["/" + "x" * 300, "/row/" + "x" * 300 + "/a", "/" + "%C3%A9" * 120])
def test_names_too_long_for_the_store_are_client_errors(gateway: GatewayServer, store_dir: Path, target: str) -> None:
    # Found by the request fuzzer: the file system's ENAMETOOLONG was a 500.
    assert _request(gateway, "GET", target, None, _auth())[0] == 404
    assert _request(gateway, "HEAD", target, None, _auth())[0] == 404
    status, content = _request(gateway, "PUT", target, b"data", _auth())
    assert status == 400 and b"bytes" in content, (status, content)
    assert _request(gateway, "DELETE", target, None, _auth())[0] in (200, 204)
    assert list(store_dir.rglob("*")) == []


def test_a_path_through_a_file_or_onto_a_folder_is_a_client_error(gateway: GatewayServer, store_dir: Path) -> None:
    # Found by the request fuzzer: a PUT of "/%/%" then a POST to "/%/%/x" was a 500.
    assert _request(gateway, "PUT", "/%25/%25", b"file", _auth())[0] == 201
    for method, target in (("PUT", "/%25/%25/x"), ("POST", "/%25/%25/x?append=0"), ("PUT", "/%25")):
        status, content = _request(gateway, method, target, b"data", _auth())
        assert status == 400 and b"of this store" in content, (method, target, status, content)
    assert (store_dir / "%" / "%").read_bytes() == b"file"
    assert [p.relative_to(store_dir).as_posix() for p in store_dir.rglob("*")] == ["%", "%/%"]


def test_listing_with_an_escaping_prefix_is_refused(gateway: GatewayServer) -> None:
    assert _request(gateway, "GET", "/.kara-gateway?list=../", None, _auth())[0] == 400
    assert _request(gateway, "GET", "/.kara-gateway?list=%2e%2e/", None, _auth())[0] == 400


@pytest.fixture
def small_gateway(store_dir: Path) -> Iterator[GatewayServer]:
    with GatewayServer(f"file://{store_dir}", token=TOKEN, max_body_size=1024) as server:
        yield server


def test_an_oversized_body_is_refused_with_413(small_gateway: GatewayServer, store_dir: Path) -> None:
    assert _request(small_gateway, "PUT", "/big", b"x" * 1025, _auth())[0] == 413
    assert _request(small_gateway, "POST", "/big?append=0", b"x" * 1025, _auth())[0] == 413
    assert _request(small_gateway, "PUT", "/big", b"x" * 1024, _auth())[0] == 201
    assert (store_dir / "big").stat().st_size == 1024


def test_an_oversized_chunked_body_is_refused_with_413(small_gateway: GatewayServer, store_dir: Path) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(4)) + b"0\r\n\r\n"
    status, _ = _request(small_gateway, "PUT", "/chunked", chunks, {**_auth(), "Transfer-Encoding": "chunked"})
    assert status == 413
    assert not (store_dir / "chunked").exists()


def test_a_lying_content_length_is_refused(small_gateway: GatewayServer) -> None:
    assert _request(small_gateway, "PUT", "/x", b"", {**_auth(), "Content-Length": "99999999999"})[0] == 413
