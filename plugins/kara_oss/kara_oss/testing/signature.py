"""Server-side checks of OSS request signatures (V1 ``OSS`` and V4 ``OSS4-HMAC-SHA256``).

The string to sign is rebuilt from what arrived on the wire exactly as OSS does, so a
client that signs anything differently (wrong secret, a header it forgot to sign, a
sub-resource left out of the canonical resource) is refused as OSS would refuse it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SignatureCheck", "check_signature"]

# Query parameters that take part in the V1 canonical resource (OSS's documented list,
# restricted to the ones a storage client can send).
V1_SUBRESOURCES = frozenset(
    [
        "acl",
        "append",
        "bucketInfo",
        "comp",
        "continuation-token",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "objectInfo",
        "objectMeta",
        "partNumber",
        "position",
        "qos",
        "referer",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "security-token",
        "sequential",
        "stat",
        "symlink",
        "tagging",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "x-oss-process",
    ]
)

_V4_DEFAULT_SIGNED = ("content-type", "content-md5")


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking one request's ``Authorization`` header.

    ``code`` is None when the signature is valid, else the OSS error code to answer with
    (``SignatureDoesNotMatch``, ``InvalidAccessKeyId``, ``AccessDenied``...), and
    ``message``/``string_to_sign`` the details OSS puts in its error body.
    """

    access_key_id: str
    code: str | None = None
    message: str = ""
    string_to_sign: str = ""


def _v1_resource(bucket: str, key: str, query: list[tuple[str, str]]) -> str:
    subresources = sorted((k, v) for k, v in query if k in V1_SUBRESOURCES)
    resource = f"/{bucket}/{key}" if bucket else "/"
    if subresources:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    return resource


def v1_string_to_sign(
    method: str, bucket: str, key: str, query: list[tuple[str, str]], headers: Mapping[str, str]
) -> str:
    """Return the V1 string to sign for a request (headers keyed by lower-case name)."""
    oss_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-oss-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    date = headers.get("x-oss-date") or headers.get("date", "")
    return "\n".join(
        [
            method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            date,
            canonical_headers + _v1_resource(bucket, key, query),
        ]
    )


def _v4_encode(text: str, keep_slashes: bool) -> str:
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if (char.isascii() and (char.isalnum() or char in "_-~.")) or (keep_slashes and char == "/"):
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _v4_canonical_request(
    method: str,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    additional: list[str],
) -> str:
    uri = _v4_encode(f"/{bucket}/{key}" if bucket else "/", keep_slashes=True)
    encoded = sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in query)
    canonical_query = "&".join(f"{k}={v}" if v else k for k, v in encoded)
    signed = sorted(
        (k, v) for k, v in headers.items() if k.startswith("x-oss-") or k in _V4_DEFAULT_SIGNED or k in additional
    )
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in signed)
    payload = headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
    return "\n".join([method, uri, canonical_query, canonical_headers, ";".join(sorted(additional)), payload])


def _v4_signing_key(secret: str, date: str, region: str, product: str) -> bytes:
    key = hmac.new(("aliyun_v4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, product, "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_v4_authorization(value: str) -> dict[str, str]:
    fields = {}
    for item in value[len("OSS4-HMAC-SHA256") :].split(","):
        name, _, val = item.strip().partition("=")
        fields[name] = val
    return fields


def _unknown_key(access_key_id: str) -> SignatureCheck:
    return SignatureCheck(
        access_key_id, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records."
    )


def _compare(access_key_id: str, expected: str, provided: str, to_sign: str) -> SignatureCheck:
    # Constant-time comparison; on a mismatch OSS puts the string to sign in its error body.
    if not hmac.compare_digest(expected, provided):
        return SignatureCheck(
            access_key_id,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            to_sign,
        )
    return SignatureCheck(access_key_id)


def check_signature(
    method: str,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    region: str,
) -> SignatureCheck:
    """Check the request's signature against ``secrets`` (access key id -> secret).

    ``headers`` must be keyed by lower-case name with the values as received; ``query``
    holds the decoded query parameters in order; ``bucket``/``key`` are decoded.
    """
    authorization = headers.get("authorization", "")
    if authorization.startswith("OSS "):
        access_key_id, _, provided = authorization[4:].rpartition(":")
        secret = secrets.get(access_key_id)
        if secret is None:
            return _unknown_key(access_key_id)
        to_sign = v1_string_to_sign(method, bucket, key, query, headers)
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        return _compare(access_key_id, expected, provided, to_sign)
    if authorization.startswith("OSS4-HMAC-SHA256"):
        fields = _parse_v4_authorization(authorization)
        access_key_id, _, scope = fields.get("Credential", "").partition("/")
        secret = secrets.get(access_key_id)
        if secret is None:
            return _unknown_key(access_key_id)
        date, scope_region, product, terminator = ([*scope.split("/"), "", "", "", ""])[:4]
        if terminator != "aliyun_v4_request" or product != "oss":
            return SignatureCheck(access_key_id, "InvalidArgument", f"invalid credential scope {scope!r}")
        if scope_region != region:
            return SignatureCheck(
                access_key_id,
                "SignatureDoesNotMatch",
                f"Invalid signing region in Authorization header: the bucket is in {region!r}.",
            )
        datetime_iso = headers.get("x-oss-date", "")
        if datetime_iso[:8] != date:
            return SignatureCheck(
                access_key_id, "SignatureDoesNotMatch", "x-oss-date does not match the credential scope date."
            )
        additional = [h for h in fields.get("AdditionalHeaders", "").split(";") if h]
        canonical = _v4_canonical_request(method, bucket, key, query, headers, additional)
        to_sign = "\n".join(["OSS4-HMAC-SHA256", datetime_iso, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signing_key = _v4_signing_key(secret, date, scope_region, product)
        expected = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return _compare(access_key_id, expected, fields.get("Signature", ""), to_sign)
    if not authorization:
        return SignatureCheck("", "AccessDenied", "You have no right to access this object because of bucket acl.")
    return SignatureCheck("", "InvalidArgument", "Authorization header is invalid.")
