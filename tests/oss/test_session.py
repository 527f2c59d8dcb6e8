"""TransportSession: oss2's signed requests through kara_transport, answers and failures alike."""

from __future__ import annotations

import logging

import oss2
import pytest
from kara_oss.session import TransportSession
from kara_oss.testing import OSSTestServer
from kara_transport import MalformedResponseError, Transport, TransportError, UnsafeHeaderError
from kara_transport.testing import RawServer


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def bucket_on(url: str, session: oss2.Session) -> oss2.Bucket:
    return oss2.Bucket(oss2.Auth("id", "secret"), url, "bucket", session=session)


@pytest.mark.timeout(30)
def test_the_request_on_the_wire_is_the_one_oss2_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same request through oss2's own session (requests) and through ours: same
    # request line, same signed headers. One Date for both: the two requests may fall
    # in different seconds, and the signature covers the Date.
    monkeypatch.setattr(oss2.utils, "http_date", lambda timeval=None: "Sat, 05 Dec 2026 12:00:00 GMT")
    answer = head("HTTP/1.1 200 OK", "Content-Length: 0", 'ETag: "e"', "x-oss-request-id: r")
    heads = []
    for session in (oss2.Session(), TransportSession(Transport())):
        with RawServer([answer]) as server:
            bucket = bucket_on(server.url, session)
            bucket.put_object("dir/a b+c.txt", b"body", headers={"Content-Type": "text/plain"})
        if isinstance(session, TransportSession):
            session.close()
        heads.append(server.heads[0])
        assert server.bodies == [b"body"]
    theirs, ours = (dict(_fields(h)) for h in heads)
    assert heads[0].split(b"\r\n")[0] == heads[1].split(b"\r\n")[0]
    for name in ("authorization", "content-type", "content-length", "date", "user-agent"):
        assert theirs[name] == ours[name], name
    assert "accept-encoding" not in ours  # oss2 asks requests not to add one


def _fields(head_: bytes) -> list[tuple[str, str]]:
    pairs = []
    for line in head_.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        pairs.append((name.strip().lower(), value.strip()))
    return pairs


def test_query_parameters_without_value_are_sent_as_requests_sends_them() -> None:
    with OSSTestServer() as server:
        session = TransportSession(Transport())
        auth = oss2.Auth(server.access_key_id, server.access_key_secret)
        bucket = oss2.Bucket(auth, f"http://{server.endpoint}", server.bucket, session=session)
        bucket.put_object("k", b"v")
        upload = bucket.init_multipart_upload("m").upload_id
        assert bucket.list_parts("m", upload).parts == []
        bucket.abort_multipart_upload("m", upload)
        assert server.pending_uploads() == 0
        assert bucket.get_object("k").read() == b"v"
        session.close()


@pytest.mark.timeout(30)
def test_a_connection_failure_is_oss2_request_error_with_the_transport_error_as_cause() -> None:
    with RawServer([b""]) as server:
        url = server.url
    bucket = bucket_on(url, TransportSession(Transport(connect_timeout=1)))
    with pytest.raises(oss2.exceptions.RequestError) as caught:
        bucket.get_object("k")
    assert isinstance(caught.value.__cause__, TransportError)


@pytest.mark.timeout(30)
def test_a_malformed_answer_is_a_request_error_caused_by_malformed_response_error() -> None:
    answer = head("HTTP/1.1 200 OK", "Content-Length: 1_0") + b"0123456789"
    with RawServer([answer], hold=5) as server:
        bucket = bucket_on(server.url, TransportSession(Transport(read_timeout=30)))
        with pytest.raises(oss2.exceptions.RequestError) as caught:
            bucket.get_object("k")
    assert isinstance(caught.value.__cause__, MalformedResponseError)


@pytest.mark.timeout(30)
def test_a_body_cut_short_raises_the_transport_error_while_reading() -> None:
    answer = head("HTTP/1.1 200 OK", "Content-Length: 10", "Connection: close") + b"012"
    with RawServer([answer]) as server:
        result = bucket_on(server.url, TransportSession(Transport())).get_object("k")
        with pytest.raises(MalformedResponseError):
            result.resp.response.raw.read()


@pytest.mark.timeout(30)
def test_header_values_with_line_breaks_are_refused_before_sending() -> None:
    with RawServer([head("HTTP/1.1 200 OK", "Content-Length: 0")]) as server:
        bucket = bucket_on(server.url, TransportSession(Transport()))
        with pytest.raises(UnsafeHeaderError):
            bucket.put_object("k", b"v", headers={"x-oss-meta-a": "1\r\nX-Injected: 1"})
    assert server.heads == []


@pytest.mark.timeout(30)
def test_oss2_debug_logging_still_reports_requests(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oss2")
    with RawServer([head("HTTP/1.1 200 OK", "Content-Length: 0")]) as server:
        bucket_on(server.url, TransportSession(Transport())).put_object("k", b"v")
    assert any("Send request, method: PUT" in record.getMessage() for record in caplog.records)
