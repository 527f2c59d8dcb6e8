"""Regression tests from the fuzzing campaign (tests/fuzz/test_oss_answers.py): OSS
answers that oss2 cannot parse end in a kara BackendError, never in ValueError,
IndexError, RuntimeError, ParseError or UnicodeDecodeError from inside oss2; listings
that parse but cannot be followed (no token, the same token, a key outside the prefix)
end in one too, never in a loop or a wrong path."""

from __future__ import annotations

import pytest
from kara_transport.testing import RawServer

from kara_core.errors import BackendError
from kara_core.url import open_backend


def answer(status: int, body: bytes, **headers: str) -> bytes:
    fields = {"x-oss-request-id": "r", "Content-Length": str(len(body)), **headers}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


LIST = b"<ListBucketResult><Name>b</Name><MaxKeys>0</MaxKeys><IsTruncated>%s</IsTruncated></ListBucketResult>"
ERROR = b"<Error><Code>NoSuchKey</Code><Message>%s</Message><RequestId>r</RequestId></Error>"

PAGE = (
    b"<ListBucketResult><Name>b</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys>%s<IsTruncated>%s</IsTruncated>"
    b"<NextContinuationToken>%s</NextContinuationToken><KeyCount>0</KeyCount></ListBucketResult>"
)
CONTENTS = (
    b'<Contents><Key>%s</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>"e"</ETag>'
    b"<Type>Normal</Type><Size>1</Size><StorageClass>Standard</StorageClass></Contents>"
)

# The minimal inputs hypothesis reduced each failure to; the exception oss2 raised.
CASES = {
    "IsTruncated not a boolean (RuntimeError)": ("list", answer(200, LIST % b"True")),
    "a listing that is an error document (RuntimeError)": ("list", answer(200, ERROR % b"")),
    "an empty listing body (ParseError)": ("list", answer(200, b"")),
    "a control character in the XML (ParseError)": ("list", answer(200, ERROR % b"\x08")),
    "an error body that is not UTF-8 (UnicodeDecodeError)": ("delete", answer(400, b"\x80")),
    "a CRC64 header that is not a number (ValueError)": ("put", answer(200, b"", **{"x-oss-hash-crc64ecma": "x"})),
    "an append position that is not a number (ValueError)": (
        "append",
        answer(200, b"", **{"x-oss-next-append-position": "x", "x-oss-hash-crc64ecma": "0"}),
    ),
    # Found by a 4,000-example run: kara asked for the next page with an empty token, got
    # the same answer, and asked again for ever.
    "a truncated listing without a continuation token (a loop)": ("list", answer(200, PAGE % (b"", b"true", b""))),
    "a truncated listing that gives back its own token (a loop)": ("list", answer(200, PAGE % (b"", b"true", b"t"))),
    "a listing of a key outside the prefix asked for": (
        "list in prefix",
        answer(200, PAGE % (CONTENTS % b"elsewhere/k", b"false", b"")),
    ),
}

OPERATIONS = {
    "list": lambda backend: list(backend.list("")),
    "list in prefix": lambda backend: list(backend.list("data/")),
    "delete": lambda backend: backend.delete("k"),
    "put": lambda backend: backend.put("k", b"data"),
    "append": lambda backend: _append(backend),
}


def _append(backend) -> None:
    appender = backend.open_append("k")
    appender.append(b"x")
    appender.flush()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(CASES))
def test_an_unreadable_oss_answer_is_a_backend_error(case: str) -> None:
    operation, raw = CASES[case]
    with RawServer([raw], keep_alive=True) as server:
        backend = open_backend(f"oss://{server.url[len('http://') :]}/bucket/store", app_key="id", app_secret="s")
        try:
            with pytest.raises(BackendError):
                OPERATIONS[operation](backend)
        finally:
            backend.close()
