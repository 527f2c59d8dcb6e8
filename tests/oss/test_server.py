"""The OSS test server answers the real oss2 client with OSS's own semantics."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import oss2
import pytest
import requests
from kara_oss.testing import OSSTestServer
from oss2.models import PartInfo

KIB = 1024


@pytest.fixture
def bucket(oss_server: OSSTestServer) -> oss2.Bucket:
    return oss2.Bucket(
        oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret),
        "http://" + oss_server.endpoint,
        oss_server.bucket,
    )


def _signed_get(oss_server: OSSTestServer, params: dict[str, str]) -> requests.Response:
    """A bucket-level GET signed by oss2 and sent with plain requests, to see the raw answer."""
    req = oss2.http.Request("GET", f"http://{oss_server.endpoint}/{oss_server.bucket}/", params=params)
    oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret)._sign_request(req, oss_server.bucket, "")
    return requests.get(req.url, params=req.params, headers=dict(req.headers), timeout=5)


def test_range_get_answers_206_with_content_range(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", b"0123456789")
    result = bucket.get_object("r", byte_range=(2, 5))
    assert result.status == 206
    assert result.headers["Content-Range"] == "bytes 2-5/10"
    assert result.read() == b"2345"


def test_invalid_range_is_ignored_as_oss_does(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", b"0123456789")
    for byte_range in [(5, 100), (20, 30)]:
        result = bucket.get_object("r", byte_range=byte_range)
        assert result.status == 200
        assert "Content-Range" not in result.headers
        assert result.read() == b"0123456789"


def test_standard_range_behaviour_cuts_the_end_and_refuses_a_start_past_it(bucket: oss2.Bucket) -> None:
    bucket.put_object("r", b"0123456789")
    standard = {"x-oss-range-behavior": "standard"}
    assert bucket.get_object("r", byte_range=(5, 100), headers=standard).read() == b"56789"
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.get_object("r", byte_range=(20, 30), headers=standard)
    assert (info.value.status, info.value.code) == (416, "InvalidRange")


def test_head_and_object_meta_of_a_missing_key_carry_the_error_in_x_oss_err(bucket: oss2.Bucket) -> None:
    for call in (bucket.head_object, bucket.get_object_meta):
        with pytest.raises(oss2.exceptions.NoSuchKey) as info:
            call("absent")
        error = ET.fromstring(base64.b64decode(info.value.headers["x-oss-err"]))
        assert error.findtext("Code") == "NoSuchKey"


def test_error_xml_has_code_message_request_id_and_host_id(bucket: oss2.Bucket) -> None:
    with pytest.raises(oss2.exceptions.NoSuchKey) as info:
        bucket.get_object("absent")
    error = ET.fromstring(info.value.body)
    assert error.tag == "Error"
    assert {"Code", "Message", "RequestId", "HostId"} <= {child.tag for child in error}
    assert error.findtext("RequestId") == info.value.request_id


def test_append_checks_the_position_and_reports_the_next_one(bucket: oss2.Bucket) -> None:
    assert bucket.append_object("a", 0, b"abc").next_position == 3
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as info:
        bucket.append_object("a", 1, b"x")
    assert info.value.next_position == 3
    assert bucket.append_object("a", 3, b"de").next_position == 5
    assert bucket.head_object("a").object_type == "Appendable"


def test_appending_to_a_normal_object_is_object_not_appendable(bucket: oss2.Bucket) -> None:
    bucket.put_object("n", b"normal")
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        bucket.append_object("n", 6, b"more")


def test_crc64_header_is_the_ecma_crc_of_the_whole_object(bucket: oss2.Bucket) -> None:
    def crc64(data: bytes) -> int:  # what oss2 itself computes
        crc = oss2.utils.Crc64()
        crc.update(data)
        return crc.crc

    assert bucket.put_object("c", b"hello world").crc == crc64(b"hello world")
    bucket.append_object("ca", 0, b"hello ")
    assert bucket.append_object("ca", 6, b"world").crc == crc64(b"hello world")


def test_forbid_overwrite_refuses_an_existing_key(bucket: oss2.Bucket) -> None:
    bucket.put_object("f", b"1", headers={"x-oss-forbid-overwrite": "true"})
    with pytest.raises(oss2.exceptions.ServerError) as info:
        bucket.put_object("f", b"2", headers={"x-oss-forbid-overwrite": "true"})
    assert (info.value.status, info.value.code) == (409, "FileAlreadyExists")
    bucket.put_object("f", b"3")
    assert bucket.get_object("f").read() == b"3"


@pytest.fixture
def tree(bucket: oss2.Bucket) -> list[str]:
    keys = ["a/1", "a/2", "a/sub/3", "a/sub/4", "b/5", "top", "名 字/x+y z"]
    for key in keys:
        bucket.put_object(key, b"x")
    return keys


def test_list_objects_pages_with_markers_and_rolls_up_with_a_delimiter(bucket: oss2.Bucket, tree: list[str]) -> None:
    page = bucket.list_objects(prefix="a/", delimiter="/", max_keys=2)
    assert ([o.key for o in page.object_list], page.prefix_list, page.is_truncated) == (["a/1", "a/2"], [], True)
    page = bucket.list_objects(prefix="a/", delimiter="/", marker=page.next_marker, max_keys=2)
    assert ([o.key for o in page.object_list], page.prefix_list, page.is_truncated) == ([], ["a/sub/"], False)
    assert [o.key for o in oss2.ObjectIterator(bucket, max_keys=1)] == sorted(tree)


def test_list_objects_v2_continues_with_tokens_and_decodes_url_encoding(bucket: oss2.Bucket, tree: list[str]) -> None:
    keys = [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=2)]
    assert keys == sorted(tree)
    page = bucket.list_objects_v2(delimiter="/")
    assert page.prefix_list == ["a/", "b/", "名 字/"]
    assert [o.key for o in page.object_list] == ["top"]


def test_listing_xml_has_no_namespace_and_url_encodes_keys(oss_server: OSSTestServer, tree: list[str]) -> None:
    answer = _signed_get(oss_server, {"list-type": "2", "prefix": "名", "encoding-type": "url"})
    assert answer.status_code == 200
    root = ET.fromstring(answer.content)
    assert root.tag == "ListBucketResult"
    assert root.findtext("EncodingType") == "url"
    assert root.findtext("Contents/Key") == "%E5%90%8D%20%E5%AD%97%2Fx%2By%20z"


def test_multipart_upload_lists_parts_and_completes_in_order(bucket: oss2.Bucket) -> None:
    upload = bucket.init_multipart_upload("m").upload_id
    first = bucket.upload_part("m", upload, 1, b"a" * 100 * KIB)
    second = bucket.upload_part("m", upload, 2, b"b" * 10)
    listed = bucket.list_parts("m", upload).parts
    assert [(p.part_number, p.size) for p in listed] == [(1, 100 * KIB), (2, 10)]
    parts = [
        PartInfo(1, first.etag, size=100 * KIB, part_crc=first.crc),
        PartInfo(2, second.etag, size=10, part_crc=second.crc),
    ]
    bucket.complete_multipart_upload("m", upload, parts)
    assert bucket.get_object("m").read() == b"a" * 100 * KIB + b"b" * 10
    assert bucket.head_object("m").object_type == "Multipart"


def test_etags_of_uploads_are_the_md5_of_the_content(bucket: oss2.Bucket) -> None:
    assert bucket.put_object("k", b"content").etag == hashlib.md5(b"content").hexdigest().upper()
    upload = bucket.init_multipart_upload("m").upload_id
    assert bucket.upload_part("m", upload, 1, b"part").etag == hashlib.md5(b"part").hexdigest().upper()


def test_derived_etags_change_with_the_content_and_still_complete_uploads() -> None:
    with OSSTestServer(md5_etags=False) as server:
        auth = oss2.Auth(server.access_key_id, server.access_key_secret)
        bucket = oss2.Bucket(auth, "http://" + server.endpoint, server.bucket)
        first, second = bucket.put_object("k", b"content").etag, bucket.put_object("k", b"other").etag
        assert len({first, second, hashlib.md5(b"content").hexdigest().upper()}) == 3
        upload = bucket.init_multipart_upload("m").upload_id
        part = bucket.upload_part("m", upload, 1, b"x" * 100 * KIB)
        bucket.complete_multipart_upload("m", upload, [PartInfo(1, part.etag)])
        assert bucket.get_object("m").read() == b"x" * 100 * KIB


def test_multipart_refuses_small_parts_and_wrong_order(bucket: oss2.Bucket) -> None:
    upload = bucket.init_multipart_upload("m").upload_id
    first = bucket.upload_part("m", upload, 1, b"a" * 10)
    second = bucket.upload_part("m", upload, 2, b"b" * 10)
    with pytest.raises(oss2.exceptions.ServerError, match="EntityTooSmall"):
        bucket.complete_multipart_upload("m", upload, [PartInfo(1, first.etag), PartInfo(2, second.etag)])
    with pytest.raises(oss2.exceptions.ServerError, match="InvalidPartOrder"):
        bucket._Bucket__do_object(  # the ordered list oss2 would always send, reversed by hand
            "POST",
            "m",
            params={"uploadId": upload},
            data=oss2.xml_utils.to_complete_upload_request([PartInfo(2, second.etag), PartInfo(1, first.etag)]),
        )


def test_aborted_upload_is_gone(bucket: oss2.Bucket, oss_server: OSSTestServer) -> None:
    upload = bucket.init_multipart_upload("m").upload_id
    bucket.upload_part("m", upload, 1, b"a")
    bucket.abort_multipart_upload("m", upload)
    assert oss_server.pending_uploads() == 0
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket.list_parts("m", upload)


def test_v4_signature_scoped_to_another_region_is_refused(oss_server: OSSTestServer) -> None:
    auth = oss2.AuthV4(oss_server.access_key_id, oss_server.access_key_secret)
    wrong = oss2.Bucket(auth, "http://" + oss_server.endpoint, oss_server.bucket, region="cn-elsewhere")
    with pytest.raises(oss2.exceptions.ServerError) as info:
        wrong.get_object_meta("x")
    assert info.value.status == 403
    right = oss2.Bucket(auth, "http://" + oss_server.endpoint, oss_server.bucket, region=oss_server.region)
    right.put_object("x", b"v4")
    assert right.get_object("x").read() == b"v4"


def test_a_signed_header_changed_after_signing_is_refused(oss_server: OSSTestServer) -> None:
    req = oss2.http.Request(
        "PUT",
        f"http://{oss_server.endpoint}/{oss_server.bucket}/k",
        data=b"x",
        headers={"x-oss-forbid-overwrite": "true"},
    )
    oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret)._sign_request(req, oss_server.bucket, "k")
    headers = dict(req.headers)
    headers["x-oss-forbid-overwrite"] = "false"
    answer = requests.put(req.url, data=b"x", headers=headers, timeout=5)
    assert answer.status_code == 403
    assert ET.fromstring(answer.content).findtext("Code") == "SignatureDoesNotMatch"


def test_standalone_server_prints_how_to_connect_and_stops_when_stdin_closes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kara_oss.testing", "--latency", "0.001"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        bucket = oss2.Bucket(
            oss2.Auth(info["app_key"], info["app_secret"]), "http://" + info["endpoint"], info["bucket"]
        )
        bucket.put_object("k", b"standalone")
        assert bucket.get_object("k").read() == b"standalone"
        assert info["url"] == f"oss://{info['endpoint']}/{info['bucket']}"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0


def _raw_exchange(oss_server: OSSTestServer, request: bytes) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it."""
    import socket

    host, port = oss_server.endpoint.split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_chunked_request_body_is_decoded(bucket: oss2.Bucket) -> None:
    # oss2 sends an iterable body with Transfer-Encoding: chunked (kara-storage 2.1.5 does).
    bucket.put_object("chunked", (part for part in [b"ab", b"", b"cde" * 1000]))
    assert bucket.get_object("chunked").read() == b"ab" + b"cde" * 1000


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
        b"Content-Length: \xc2\xb2\r\n\r\nab",
        b"Content-Length: 1_0\r\n\r\n0123456789",
    ],
)
def test_a_malformed_request_body_framing_is_refused(oss_server: OSSTestServer, framing: bytes) -> None:
    answer = _raw_exchange(oss_server, b"PUT /kara-test/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + framing)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"<Code>InvalidArgument</Code>" in answer
    assert oss_server.keys() == []


def test_a_request_line_http_server_cannot_parse_is_refused(oss_server: OSSTestServer) -> None:
    assert b"400" in _raw_exchange(oss_server, b"NOT HTTP AT ALL\r\n\r\n")
