"""https:// stores: TLS through the lean client, certificate verification as configured.

The server's certificate (tests/http/tls, self-signed for 127.0.0.1, valid until 2126)
was made with ``openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj
/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1,DNS:localhost``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from kara_http.testing import StaticServer

from kara_core.errors import BackendError
from kara_core.url import open_backend

TLS = Path(__file__).parent / "tls"
DATA = bytes(range(256)) * 4096  # 1 MiB: bodies larger than one TLS record and one buffer


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[StaticServer]:
    (tmp_path / "blob.bin").write_bytes(DATA)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    with StaticServer(str(tmp_path), tls=context) as server:
        yield server


def test_an_https_mirror_is_read_with_the_configured_ca_bundle(secure: StaticServer) -> None:
    assert secure.url.startswith("https://")
    backend = open_backend(secure.url, verify=str(TLS / "cert.pem"), gateway=False)
    try:
        assert backend.size("blob.bin") == len(DATA)
        assert backend.read("blob.bin", 1000, 300_000) == DATA[1000:300_000]
        assert backend.read("blob.bin") == DATA
        with backend.open_read("blob.bin", 5) as stream:
            assert stream.read() == DATA[5:]
    finally:
        backend.close()
    assert len({r.client_port for r in secure.log}) == 1, "TLS connections are kept alive"


def test_an_untrusted_certificate_is_refused(secure: StaticServer) -> None:
    backend = open_backend(secure.url, gateway=False, retry_budget=0)
    try:
        with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
            backend.read("blob.bin", 0, 10)
    finally:
        backend.close()


def test_verify_false_reads_without_checking_the_certificate(secure: StaticServer) -> None:
    backend = open_backend(secure.url, verify=False, gateway=False)
    try:
        assert backend.read("blob.bin", 0, 10) == DATA[:10]
    finally:
        backend.close()
