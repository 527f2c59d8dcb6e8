"""Regression tests for the bugs issue 13 found in kara's former hand-written HTTP clients,
through the stores that had them (http:// and oss://), against raw-socket servers."""

from __future__ import annotations

import pathlib
import time

import pytest
from kara_transport import UnsafeHeaderError
from kara_transport.testing import RawServer

from kara_core.errors import BackendError
from kara_core.url import open_backend

ROOT = pathlib.Path(__file__).resolve().parents[2]


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _oss_options() -> dict[str, object]:
    return {"app_key": "id", "app_secret": "secret", "retry_budget": 1.0, "read_timeout": 30.0}


@pytest.mark.timeout(30)
def test_oss_negative_chunk_size_fails_fast_instead_of_spinning() -> None:
    # kara_oss/wire.py: int("-2", 16) == -2, then _read_chunked spun with no I/O, forever.
    answer = head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "x-oss-request-id: r") + b"-2\r\nabc"
    with RawServer([answer], hold=20) as server:
        backend = open_backend(f"oss://{server.url[7:]}/bucket", **_oss_options())
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"not valid HTTP/1\.1"):
            backend.read("k")
    assert time.monotonic() - started < 10


@pytest.mark.timeout(30)
def test_oss_content_length_with_underscore_is_not_ten() -> None:
    # kara_oss/wire.py accepted "1_0" as 10 (int() allows underscores).
    answer = head("HTTP/1.1 200 OK", "Content-Length: 1_0", "x-oss-request-id: r") + b"0123456789"
    with RawServer([answer], hold=20) as server:
        backend = open_backend(f"oss://{server.url[7:]}/bucket", **_oss_options())
        with pytest.raises(BackendError, match=r"not valid HTTP/1\.1"):
            backend.read("k")


@pytest.mark.timeout(30)
def test_http_superscript_content_length_is_a_backend_error_not_value_error() -> None:
    # kara_http/wire.py: "²".isdigit() is True, int("²") raised ValueError past the retries.
    answer = "HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\nab".encode()
    with RawServer([answer], hold=20) as server:
        backend = open_backend(server.url, gateway=False, retry_budget=1.0, read_timeout=30.0)
        with pytest.raises(BackendError, match=r"not valid HTTP/1\.1"):
            backend.read("k")
    assert len(server.heads) >= 2, "a malformed answer is retried within the budget"


@pytest.mark.timeout(30)
def test_http_token_with_line_breaks_never_injects_headers() -> None:
    # kara_http/wire.py wrote a token with CR/LF verbatim: extra request headers.
    with RawServer([head("HTTP/1.1 200 OK", "Content-Length: 0")]) as server:
        backend = open_backend(server.url, gateway=False, token="t0ken\r\nX-Injected: 1")
        with pytest.raises(UnsafeHeaderError) as caught:
            backend.read("k")
        time.sleep(0.1)
    assert server.heads == []
    assert "t0ken" not in str(caught.value)


@pytest.mark.timeout(30)
def test_http_endless_trailers_are_bounded() -> None:
    # kara_http/wire.py read trailer lines in an unbounded loop.
    answer = head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"2\r\nab\r\n0\r\n" + b"X-T: t\r\n" * 50_000
    with RawServer([answer], hold=20) as server:
        backend = open_backend(server.url, gateway=False, retry_budget=0.5, read_timeout=30.0)
        started = time.monotonic()
        with pytest.raises(BackendError):  # the resumed read then meets a server without Range
            backend.read("k")
    assert time.monotonic() - started < 10


def test_no_private_requests_oss2_or_urllib3_internals_are_used() -> None:
    # kara_oss/session.py used requests' _encode_params, oss2's name-mangled
    # _Response__all_read, get_connection_with_tls_context and HTTPResponse(version_string=).
    sources = [
        path.read_text()
        for name in ("kara_oss", "kara_http", "kara_transport")
        for path in (ROOT / "plugins" / name).rglob("*.py")
    ]
    for marker in (
        "_encode_params",
        "_Response__",
        "get_connection_with_tls_context",
        "version_string",
        "import urllib3",
    ):
        assert not any(marker in text for text in sources), marker
    assert not (ROOT / "plugins/kara_http/kara_http/wire.py").exists()
    assert not (ROOT / "plugins/kara_oss/kara_oss/wire.py").exists()
