"""Fuzz: hostile OSS answers (list results, error documents and codes, multipart replies,
object metadata) to the oss:// backend, played by a raw-socket server. Every call
succeeds or raises a kara error; nothing else escapes, nothing hangs."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_transport.testing import RawServer

from kara_core.errors import KaraError
from kara_core.url import open_backend

_CODES = st.sampled_from(
    [
        "NoSuchKey",
        "NoSuchBucket",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidArgument",
        "Throttling",
        "InternalError",
        "PositionNotEqualToLength",
        "FileAlreadyExists",
        "ObjectNotAppendable",
        "",
        "<",
        "&amp;",
    ]
)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
_NUMBERS = st.sampled_from(["0", "1", "-1", "1_0", "x", "", "99999999999999999999", "1.5"])
_BOOLS = st.sampled_from(["true", "false", "True", "", "yes"])


@st.composite
def list_results(draw: st.DrawFn) -> bytes:
    contents = "".join(
        f"<Contents><Key>{draw(_TEXT)}</Key><Size>{draw(_NUMBERS)}</Size><ETag>{draw(_TEXT)}</ETag>"
        f"<LastModified>{draw(st.sampled_from(['2024-01-01T00:00:00.000Z', 'yesterday', '']))}</LastModified>"
        f"<Type>Normal</Type><StorageClass>Standard</StorageClass></Contents>"
        for _ in range(draw(st.integers(0, 3)))
    )
    token = draw(
        st.one_of(st.just(""), st.builds(lambda t: f"<NextContinuationToken>{t}</NextContinuationToken>", _TEXT))
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix></Prefix>'
        f"<MaxKeys>{draw(_NUMBERS)}</MaxKeys><IsTruncated>{draw(_BOOLS)}</IsTruncated>{token}"
        f"<KeyCount>{draw(_NUMBERS)}</KeyCount>{contents}</ListBucketResult>"
    ).encode("utf-8", "surrogatepass")


@st.composite
def error_documents(draw: st.DrawFn) -> bytes:
    extra = draw(st.sampled_from(["", "<Endpoint>oss-x.example</Endpoint>", "<Endpoint></Endpoint>"]))
    return (
        f'<?xml version="1.0"?><Error><Code>{draw(_CODES)}</Code><Message>{draw(_TEXT)}</Message>'
        f"<RequestId>r</RequestId>{extra}</Error>"
    ).encode("utf-8", "surrogatepass")


_BODIES = st.one_of(
    list_results(),
    error_documents(),
    st.binary(max_size=80),
    st.sampled_from(
        [
            b"",
            b"<",
            b"<a>",
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>",
            b"<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>",
        ]
    ),
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 204, 206, 400, 403, 404, 409, 412, 416, 500, 503]))
    body = draw(_BODIES)
    headers = {"x-oss-request-id": "fuzz", "Content-Length": str(len(body))}
    if draw(st.booleans()):
        headers["x-oss-err"] = base64.b64encode(draw(_BODIES)).decode()
    if draw(st.booleans()):
        headers[
            draw(st.sampled_from(["x-oss-hash-crc64ecma", "x-oss-next-append-position", "ETag", "Content-Range"]))
        ] = draw(st.one_of(_NUMBERS, _TEXT.filter(lambda t: t.isprintable() and t.isascii())))
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


OPERATIONS = {
    "list": lambda b: list(b.list("")),
    "read": lambda b: b.read("k"),
    "read range": lambda b: b.read("k", 2, 5),
    "size": lambda b: b.size("k"),
    "put": lambda b: b.put("k", b"data"),
    "put if absent": lambda b: b.put_if_absent("k", b"data"),
    "append": lambda b: b.open_append("k").append(b"x") or None,
    "delete": lambda b: b.delete("k"),
}


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(answer=answers(), operation=st.sampled_from(sorted(OPERATIONS)))
def test_any_oss_answer_gives_a_result_or_a_kara_error(hard_timeout, answer: bytes, operation: str) -> None:
    with hard_timeout("oss-answers"), RawServer([answer], keep_alive=True) as server:
        backend = open_backend(
            f"oss://{server.url[len('http://') :]}/bucket",
            app_key="id",
            app_secret="secret",
            retry_budget=0.2,
            read_timeout=0.3,
        )
        try:
            OPERATIONS[operation](backend)
        except KaraError:
            pass
        finally:
            backend.close()
