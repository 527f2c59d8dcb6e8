"""Fuzz: the plain fast paths that open a file:// store for reading without pydantic.

Each pydantic model on that path has a plain validator beside it: the store URL
(:func:`kara_core.url.plain_store_url`), the file:// options
(:func:`kara_file.backend.plain_file_options`), ``meta.json``
(:func:`kara_core.row.layout.plain_meta`) and kara's version sidecar
(:func:`kara_core.row.sidecar.plain_sidecar`). For any input, well-formed, nearly so or
garbage, the plain validator either returns exactly what the model gives (same values,
same types, same key order) or returns None, and the caller asks the model, whose
result or error is then today's. End to end, ``open_backend`` and ``read_meta`` give
the same backend, meta or error as the model-only code they replaced.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kara_file.backend import _DEFAULTS, FileBackend, plain_file_options
from kara_file.options import FileOptions
from pydantic import ValidationError

from kara_core.errors import CorruptDatasetError, KaraError
from kara_core.plugins import get_backend_spec
from kara_core.row import layout, sidecar
from kara_core.row.layout import plain_meta, read_meta
from kara_core.row.sidecar import SIDECAR_FORMAT, decode_sidecar, encode_sidecar, plain_sidecar, plain_sidecar_bytes
from kara_core.url import open_backend, parse_store_url, plain_store_url, validate_options

FUZZ = settings.get_profile("kara-fuzz")


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down and dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # NaN is what JSON's NaN decodes to on both sides
    return bool(a == b)


class Str(str):
    """A str subclass: the plain paths take exact types only."""


_ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "\n", "\r", "\t", "\ud800", "\udfff", "é", "\u2028", "\ufeff", "😀", "\x7f"]
)
TEXT = st.text(max_size=10) | _ODD_TEXT | st.lists(_ODD_TEXT | st.text(max_size=3), max_size=4).map("".join)

# -- store URLs ---------------------------------------------------------------------------

URLS = st.one_of(
    st.tuples(
        st.sampled_from(
            ["file", "FILE", "File", "http", "oss", "s3", "x+y.z-1", "9p", "fi le", "", "é", "file\n", "a_b"]
        )
        | TEXT,
        st.sampled_from(["://", ":/", "//", ":///", "://://"]),
        st.sampled_from(["/data/store", "relative/store", "", "/a\nb", "/a\x00b", "/é/ü", "/\ud800"]) | TEXT,
        st.sampled_from(["", " ", "\n", "\t "]),
        st.sampled_from(["", " ", "\n", "\x00"]),
    ).map(lambda p: p[3] + p[0] + p[1] + p[2] + p[4]),
    TEXT,
    st.builds(Str, st.just("file:///data")),
    st.none(),
    st.integers(),
    st.binary(max_size=10),
)


_URL_EDGES = [
    "file:///a\ud800b",
    "file:///a\nb",
    "file:///a\rb",
    "file\n://x",
    "FILE:///x",
    "é://x",
    " file:///x\n",
    "file://a\x00",
    "f:// x",
    "://x",
]


def _url_examples(test: Any) -> Any:
    for url in [*_URL_EDGES, Str("file:///x")]:
        test = example(url=url)(test)
    return test


@settings(FUZZ)
@given(url=URLS)
@_url_examples
def test_plain_store_url_is_what_store_url_gives_or_defers(hard_timeout, url: Any) -> None:
    with hard_timeout("plain-url"):
        plain = plain_store_url(url)
        if plain is None:
            return
        parsed = parse_store_url(url)  # must not raise when the plain path accepted
        assert same(plain, (parsed.scheme, parsed.location))
        assert same(parsed.raw, url)


# -- file:// options -----------------------------------------------------------------------

OPTION_VALUES = st.one_of(
    st.booleans(),
    st.sampled_from(["auto", "AUTO", "Auto", " auto", "true", "false", "yes", "0", "1", "", "off"]),
    st.builds(Str, st.just("auto")),
    st.integers(-2, 2),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.booleans(), max_size=2),
)
OPTIONS = st.dictionaries(
    st.sampled_from(["fsync", "direct_io", "Fsync", "fsync ", "root", "extra"]) | st.text(max_size=4),
    OPTION_VALUES,
    max_size=3,
)


def test_the_plain_options_know_every_field_and_default_of_file_options() -> None:
    assert {name: field.default for name, field in FileOptions.model_fields.items()} == _DEFAULTS


_OPTION_EDGES = [
    {"direct_io": "AUTO"},
    {"direct_io": Str("auto")},
    {"direct_io": 1},
    {"direct_io": "true"},
    {"fsync": 1},
    {"fsync": "true"},
    {"fsync": "auto"},
    {"extra": True},
    {"fsync": False, "direct_io": True},
    {"fsync": True, "direct_io": "auto"},
]


def _option_examples(test: Any) -> Any:
    for options in _OPTION_EDGES:
        test = example(options=options)(test)
    return test


@settings(FUZZ)
@given(options=OPTIONS)
@_option_examples
def test_plain_file_options_are_what_file_options_gives_or_defer(hard_timeout, options: dict[str, Any]) -> None:
    with hard_timeout("plain-options"):
        plain = plain_file_options(options)
        if plain is None:
            return
        model = FileOptions(**options)  # must not raise when the plain path accepted
        assert same(plain, model.model_dump())


def _model_open(url: Any, options: dict[str, Any]) -> Any:
    # open_backend before the fast path: every URL and option through the models.
    parsed = parse_store_url(url)
    spec = get_backend_spec(parsed.scheme, url)
    return spec.factory(parsed, validate_options(parsed.scheme, spec.options_model, options))


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        backend = call()
    except (KaraError, TypeError, ValueError) as exc:
        return "error", (type(exc), str(exc))
    if not isinstance(backend, FileBackend):
        # http, oss, ... URLs: type and URL only. An http store's capabilities come from
        # its gateway's discovery document, a request this test must never make.
        return "backend", (type(backend), backend.url)
    return "backend", (type(backend), backend.root, backend.url, backend.options, backend.capabilities)


@settings(FUZZ)
@given(
    url=st.sampled_from(["file:///tmp/kara-plain", "file://rel/store", "file://", "FILE:///x", " file:///x\n"]) | URLS,
    options=OPTIONS | st.just({}) | st.sampled_from([{"fsync": False}, {"direct_io": True}, {"fsync": "off"}]),
)
@example(url="file:///tmp/kara-plain", options={"direct_io": "AUTO"})
@example(url="file:///tmp/kara-plain", options={"fsync": 1})
@example(url="file://", options={})
@example(url="file://", options={"fsync": "x"})
@example(url="file:///a\ud800b", options={})
@example(url="FILE:///x", options={"direct_io": False})
@example(url="file\n:///x", options={})
@example(url="http://relative/store", options={})
def test_open_backend_gives_what_the_models_give(hard_timeout, url: Any, options: dict[str, Any]) -> None:
    with hard_timeout("plain-open"):
        assert _outcome(lambda: open_backend(url, **options)) == _outcome(lambda: _model_open(url, options))


# -- meta.json and the version sidecar -----------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


def _encode(doc: Any, ascii_only: bool, spacing: str) -> bytes:
    """``doc`` as JSON bytes; lone surrogates end up escaped (ascii) or as CESU-8 bytes."""
    separators = (", ", ": ") if spacing == "wide" else (",", ":")
    text = json.dumps(doc, ensure_ascii=ascii_only, separators=separators)
    return text.encode("utf-8", "surrogatepass")


def _documents(keys: list[str], good: dict[str, Any]) -> st.SearchStrategy[bytes]:
    near = st.dictionaries(st.sampled_from([*keys, "extra", keys[0].upper()]), JSON_VALUES, max_size=4)
    mutated = st.builds(lambda base, more: {**base, **more}, st.just(good), near)
    dropped = st.sets(st.sampled_from(keys)).map(lambda gone: {k: v for k, v in good.items() if k not in gone})
    docs = st.one_of(st.just(good), mutated, dropped, near, JSON_VALUES)
    encoded = st.builds(_encode, docs, st.booleans(), st.sampled_from(["wide", "tight"]))
    tweaks = st.sampled_from(
        [
            lambda b: b,
            lambda b: b" \n\t" + b + b"\r\n ",
            lambda b: b"\xef\xbb\xbf" + b,  # a UTF-8 byte-order mark
            lambda b: b + b"x",
            lambda b: b + b" {}",
            lambda b: b[:-1],
            lambda b: b.replace(b"2", b"2.0"),
            lambda b: b.replace(b"2", b"2e0"),
            lambda b: b.replace(b"1", b"-0"),
            lambda b: b.replace(b"1", b"NaN"),
            lambda b: b.replace(b"[", b"[Infinity, "),
            lambda b: b.replace(b'"', b"'"),
            lambda b: b.replace(b"{", b'{"' + keys[0].encode() + b'": null, ', 1),  # a duplicate key, first
            lambda b: b[:-1] + b', "' + keys[-1].encode() + b'": 7}' if b.endswith(b"}") else b,  # duplicate, last
            lambda b: b.replace(b'"', b'"\\u0000', 1),
            lambda b: b.replace(b"1", b"\x00"),
            lambda b: b.decode("latin-1").encode("utf-16"),
        ]
    )
    return st.one_of(
        st.builds(lambda raw, tweak: tweak(raw), encoded, tweaks),
        st.binary(max_size=40),
        st.integers(1, 1500).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 1500).map(lambda depth: b'{"options": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"),
    )


META_DOCS = _documents(["latest", "versions", "api"], {"latest": "1", "versions": ["1"], "api": 2})
SIDECAR_DOCS = _documents(
    ["format", "serializer", "options"],
    {"format": SIDECAR_FORMAT, "serializer": "json+zstd", "options": {"level": 3, "dictionary": "abc"}},
)


_META_EDGES = [
    b'{"latest": "1", "versions": ["1"], "api": {"\\ud800": null}, "api": 7}',  # a key twice
    b'{"": [NaN]}',  # NaN nested in an unknown field (a 4,000-example run)
    b'{"latest": "1", "versions": ["1"], "api": 2}',
    b'{"latest": null}',
    b"{}",
    b'{"latest": "\\ud800", "versions": [], "api": 2}',
    b'{"latest": "1", "versions": ["\\udfff"], "api": 2}',
    b'{"latest": "\\ud83d\\ude00", "versions": ["\xc3\xa9"], "api": 2}',
    b'{"latest": "\xed\xa0\x80"}',
    b'{"api": 2.0}',
    b'{"api": -0}',
    b'{"api": 1e2}',
    b'{"api": true}',
    b'{"api": "2"}',
    b'{"api": 99999999999999999999999}',
    b'{"api": NaN}',
    b'{"latest": 1}',
    b'{"versions": ["1", 2]}',
    b'{"versions": null}',
    b'{"latest": "1", "latest": "2"}',
    b'{"latest": "1", "latest": 2}',
    b'{"latest": "1", "pad": "x"}',
    b'\xef\xbb\xbf{"latest": "1"}',
    b' {"latest": "1"} \n',
    b'{"latest": "1"} x',
    b'"{}"',
    b"[]",
    b"null",
    '{"latest": "1"}'.encode("utf-16"),
]


def _meta_examples(test: Any) -> Any:
    for raw in _META_EDGES:
        test = example(raw=raw)(test)
    return test


@settings(FUZZ)
@given(raw=META_DOCS)
@_meta_examples
def test_plain_meta_is_what_row_meta_gives_or_defers(hard_timeout, raw: bytes) -> None:
    with hard_timeout("plain-meta"):
        plain = plain_meta(raw)
        if plain is None:
            return
        model = layout.RowMeta.model_validate_json(raw)  # must not raise when the plain path accepted
        assert same(plain, model.model_dump())


_SIDECAR_EDGES = [
    b'{"format":1,"serializer":{"\\ud800":0},"serializer":"json","options":{}}',  # a key twice
    b'{"format":1,"serializer":"json","options":{}}',
    b'{"serializer": "json"}',
    b'{"serializer": ""}',
    b'{"serializer": "json", "format": 2}',
    b'{"serializer": "json", "format": 0}',
    b'{"serializer": "json", "format": -5}',
    b'{"serializer": "json", "format": true}',
    b'{"serializer": "json", "format": 1.0}',
    b'{"serializer": "json", "format": 99999999999999999999999}',
    b'{"serializer": 1}',
    b'{"serializer": "\\ud800"}',
    b'{"serializer": "json", "options": {"\\ud800": 1}}',
    b'{"serializer": "json", "options": {"level": 1.5}}',
    b'{"serializer": "json", "options": {"level": 3, "dictionary": "abc", "x": [null, true, {"y": -1}]}}',
    b'{"serializer": "json", "options": {"big": 99999999999999999999999}}',
    b'{"serializer": "json", "options": []}',
    b'{"serializer": "json", "options": null}',
    b'{"serializer": "json", "extra": 1}',
    b'{"serializer": "json", "serializer": "raw"}',
    b'{"format": 1}',
]


def _sidecar_examples(test: Any) -> Any:
    for raw in _SIDECAR_EDGES:
        test = example(raw=raw)(test)
    return test


@settings(FUZZ)
@given(raw=SIDECAR_DOCS)
@_sidecar_examples
def test_plain_sidecar_is_what_decode_sidecar_gives_or_defers(hard_timeout, raw: bytes) -> None:
    with hard_timeout("plain-sidecar"):
        plain = plain_sidecar(raw)
        if plain is None:
            return
        decoded = decode_sidecar(raw, "where")  # must not raise when the plain path accepted
        assert same(plain, (decoded.serializer, decoded.options))


@settings(FUZZ)
@given(serializer=TEXT | st.sampled_from(["json", "json+zstd", "custom:pkg.Mod"]) | JSON_VALUES, options=JSON_VALUES)
@example(serializer="json", options={})
@example(serializer="json+zstd", options={"level": 3, "dictionary": 'a\x00\x1f\x7f\u2028\b\f"\\/é😀'})
@example(serializer="j\ud800", options={})
@example(serializer="json", options={"\udfff": 1})
@example(serializer="json", options={"x": 1.5})
@example(serializer="json", options={"x": 2**64})
@example(serializer=Str("json"), options={})
def test_plain_sidecar_bytes_are_what_pydantic_writes_or_defer(hard_timeout, serializer: Any, options: Any) -> None:
    with hard_timeout("plain-sidecar"):
        raw = plain_sidecar_bytes(serializer, options)
        if raw is None:
            return
        model = sidecar.VersionSidecar(serializer=serializer, options=options)  # must not raise
        assert raw == encode_sidecar(model)


def test_the_plain_parsers_take_bytes_only() -> None:
    good = b'{"latest": "1", "versions": ["1"], "api": 2}'
    assert plain_meta(good) == {"latest": "1", "versions": ["1"], "api": 2}
    assert plain_meta(bytearray(good)) is None and plain_meta(good.decode()) is None
    assert plain_sidecar(b'{"serializer": "json"}') == ("json", {})
    assert plain_sidecar(memoryview(b'{"serializer": "json"}')) is None


class _Backend:
    url = "file:///fuzz"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def read_if_exists(self, path: str) -> bytes:
        return self.raw


def _model_read_meta(raw: bytes) -> dict[str, Any]:
    # read_meta before the fast path.
    try:
        meta = layout.RowMeta.model_validate_json(raw)
    except ValidationError as exc:
        detail = f"not a valid meta.json ({exc.errors()[0]['msg']})"
        raise CorruptDatasetError("file:///fuzz/row/ns/key/meta.json", None, detail) from None
    return meta.model_dump()


@settings(FUZZ)
@given(raw=META_DOCS)
@_meta_examples
def test_read_meta_gives_what_the_model_gives(hard_timeout, raw: bytes) -> None:
    with hard_timeout("plain-meta"):
        try:
            expected: Any = _model_read_meta(raw)
        except KaraError as exc:
            expected = str(exc)
        try:
            got: Any = read_meta(_Backend(raw), "ns", "key")  # type: ignore[arg-type]
        except KaraError as exc:
            got = str(exc)
        assert same(got, expected)


@pytest.mark.parametrize("name", ["RowMeta", "VersionSidecar"])
def test_the_models_are_still_reachable_by_name(name: str) -> None:
    module = layout if name == "RowMeta" else sidecar
    model = getattr(module, name)
    assert model.__name__ == model.__qualname__ == name and model.__module__ == module.__name__
    assert getattr(module, name) is model
