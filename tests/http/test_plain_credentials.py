"""Credentials never go over plain http:// to a host that is not loopback, unless allowed."""

from __future__ import annotations

import pytest
from kara_http.backend import refuse_plain_credentials
from kara_transport.testing import RawServer

from kara_core.errors import ConfigurationError
from kara_core.url import open_backend


@pytest.mark.parametrize("url", ["http://10.1.2.3/store", "http://data.example.com:8080/x", "http://[2001:db8::1]/x"])
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_credentials"):
        refuse_plain_credentials(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/x", "http://localhost/x", "http://[::1]:80/x", "https://data.example.com/x"]
)
def test_loopback_and_https_are_allowed(url: str) -> None:
    refuse_plain_credentials(url)


def test_a_backend_with_a_token_refuses_before_any_request() -> None:
    backend = open_backend("http://10.1.2.3/store", token="secret", gateway=False)
    with pytest.raises(ConfigurationError, match="plain http://"):
        backend.read("x")


@pytest.mark.timeout(30)
def test_the_option_lets_credentials_through() -> None:
    # The check is on the host; a loopback server stands in for the trusted remote one
    # (tests touch 127.0.0.1 only), and the option is accepted and forwarded.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with RawServer([answer]) as server:
        backend = open_backend(server.url, token="secret", gateway=False, allow_insecure_credentials=True)
        assert backend.read("x") == b"ok"
    assert b"Authorization: Bearer secret" in server.heads[0]
