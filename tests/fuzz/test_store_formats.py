"""Fuzz: every parser of a store's own files, on file:// stores: row ``meta.json``, index
and data blocks (torn, garbage, huge or decreasing offsets), directory manifests (every
field, every type) and kara's sidecar. Reading succeeds or raises a kara error; nothing
hangs, nothing is written outside the load target, and a good dataset next to the
damaged one stays readable."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kara_file.testing import NoLocalFilesBackend

from kara_core import KaraStorage
from kara_core.errors import KaraError
from kara_core.obj import ObjectStore

MD5 = "b1946ac92492d2347c6235b4d2611184"
SHA1 = "f572d396fae9206628714fb2ce00f72e94f2258f"
BLOB = f"{MD5}_{SHA1}"
PACK = "pack-" + "ab" * 20


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["..", "/", "", "a/b", "C:", ".kara", "\x00", "0", "latest", MD5, BLOB, "a" * 300]),
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: A JSON document as bytes, or bytes that are not JSON (invalid UTF-8, deep nesting, huge).
DOCUMENTS = st.one_of(
    JSON.map(lambda value: orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY) if _dumpable(value) else b"null"),
    st.binary(max_size=40),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.just(b'{"latest": "' + b"\xff\xfe" + b'", "versions": [], "api": 2}'),
    st.just(b'{"latest": "1", "versions": ["1"], "api": 2, "pad": "' + b"x" * 2_000_000 + b'"}'),
)


def _dumpable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _workspace() -> tuple[Path, KaraStorage]:
    root = Path(tempfile.mkdtemp(prefix="kara-fuzz-"))
    store = KaraStorage("file://" + str(root / "store"))
    with store.open_dataset("good", "rows", "w", version="1") as ds:
        for i in range(5):
            ds.write({"i": i})
    return root, store


def _good_still_readable(store: KaraStorage) -> None:
    with store.open_dataset("good", "rows", "r") as ds:
        assert [record["i"] for record in ds] == list(range(5))


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(document=DOCUMENTS, area=st.sampled_from(["row", "obj"]))
def test_any_meta_json_reads_or_raises_a_kara_error(hard_timeout, document: bytes, area: str) -> None:
    root, store = _workspace()
    try:
        with hard_timeout("meta.json"):
            meta = root / "store" / area / "ns" / "key" / "meta.json"
            meta.parent.mkdir(parents=True)
            meta.write_bytes(document)
            try:
                if area == "row":
                    with store.open_dataset("ns", "key", "r") as ds:
                        list(ds)
                else:
                    store.load_directory("ns", "key", str(root / "out"), progress_bar=False)
            except KaraError:
                pass
            _good_still_readable(store)
            # The same manifest loaded from a store without local files reads packs: every
            # file it writes holds the only content the store has for a valid entry.
            try:
                ObjectStore(NoLocalFilesBackend(str(root / "store"))).load_directory(
                    "ns", "ckpt", str(root / "out-remote"), progress_bar=False
                )
            except KaraError:
                pass
            for dirpath, _, names in os.walk(root / "out-remote"):
                if ".kara" in Path(dirpath).relative_to(root).parts:
                    continue
                for name in names:
                    full = Path(dirpath) / name
                    assert full.is_symlink() or full.read_bytes() == b"hello\n", full
    finally:
        shutil.rmtree(root, ignore_errors=True)


OFFSETS = st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 200), max_size=12)


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(
    index=st.one_of(OFFSETS.map(lambda ends: b"".join(struct.pack("<Q", end) for end in ends)), st.binary(max_size=60)),
    torn=st.integers(0, 7),
    data=st.one_of(st.none(), st.binary(max_size=120)),
    second_block=st.booleans(),
    lookups=st.lists(st.integers(-20, 20), max_size=5),
)
def test_any_row_blocks_read_or_raise_a_kara_error(
    hard_timeout, index: bytes, torn: int, data: bytes | None, second_block: bool, lookups: list[int]
) -> None:
    root, store = _workspace()
    try:
        with hard_timeout("row blocks"):
            with store.open_dataset("ns", "key", "w", version="1") as ds:
                for i in range(6):
                    ds.write({"record": i, "pad": "x" * i})
            version = root / "store" / "row" / "ns" / "key" / "1"
            (version / "index" / "0.blk").write_bytes(index[: len(index) - torn] if torn < len(index) else index)
            if data is not None:
                (version / "data" / "0.blk").write_bytes(data)
            if second_block:
                (version / "index" / "1.blk").write_bytes(index[:9])
            before = _snapshot(root)
            try:
                with store.open_dataset("ns", "key", "r") as ds:
                    list(ds)
                    for i in lookups:
                        try:
                            ds[i]
                        except IndexError:
                            pass
            except KaraError:
                pass
            except ValueError as exc:
                # Offsets that cut records anywhere hand the JSON serializer arbitrary
                # bytes (an empty record, half a record): its decode error is the
                # serializer's verdict on the record, not a failure to read the blocks.
                assert type(exc).__module__ in ("orjson", "json", "json.decoder"), repr(exc)
            assert _snapshot(root) - before <= {p for p in _snapshot(root) if ".kara" in p}
            _good_still_readable(store)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(
    count=st.integers(1, 60),
    damage=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 60 * 8)),
    entries=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 2**20)), max_size=3),
    lookups=st.lists(st.integers(-70, 70), max_size=6),
)
def test_any_damaged_record_group_reads_or_raises_a_kara_error(
    hard_timeout, count: int, damage: list, cut: int | None, entries: list, lookups: list[int]
) -> None:
    # json+zstd stores 16 records per frame (kara_core.row.groups): frames damaged, the
    # index cut anywhere or its entries changed, then read in order and by index.
    root, store = _workspace()
    try:
        with hard_timeout("record groups"):
            with store.open_dataset("ns", "key", "w", version="1", serialization="json+zstd") as ds:
                ds.write_many({"record": i, "pad": "x" * (i % 9)} for i in range(count))
            version = root / "store" / "row" / "ns" / "key" / "1"
            data = bytearray((version / "data" / "0.blk").read_bytes())
            for where, value in damage:
                data[int(where * len(data))] = value
            (version / "data" / "0.blk").write_bytes(bytes(data))
            index = bytearray((version / "index" / "0.blk").read_bytes())
            for at, end in entries:
                if at < count:
                    struct.pack_into("<Q", index, at * 8, end)
            (version / "index" / "0.blk").write_bytes(bytes(index[:cut] if cut is not None else index))
            before = _snapshot(root)
            try:
                with store.open_dataset("ns", "key", "r") as ds:
                    while ds.tell() < len(ds):
                        try:
                            list(ds)  # after a damaged record the next read goes on past it
                        except KaraError:
                            pass
                    for i in lookups:
                        try:
                            ds[i]
                        except (IndexError, KaraError):
                            pass
            except KaraError:
                pass
            except ValueError as exc:
                # A damaged frame that still decompresses hands orjson damaged JSON: its
                # error is the serializer's verdict on the record.
                assert type(exc).__module__ in ("orjson", "json", "json.decoder"), repr(exc)
            assert _snapshot(root) == before
            _good_still_readable(store)
    finally:
        shutil.rmtree(root, ignore_errors=True)


_ENTRY_FIELDS = {
    "md5": st.one_of(st.just(MD5), _SCALARS),
    "sha1": st.one_of(st.just(SHA1), _SCALARS),
    "file": st.one_of(st.just(BLOB), _SCALARS),
    "path": st.one_of(st.just(["ok.txt"]), st.lists(_SCALARS, max_size=4), _SCALARS),
    "size": st.one_of(st.just(6), _SCALARS),
    "mode": _SCALARS,
    "mtime_ns": _SCALARS,
    "sha256": _SCALARS,
    "pack": st.one_of(st.just(PACK), _SCALARS),
    "pack_offset": st.one_of(st.integers(-2, 16), _SCALARS),
}
ENTRIES = st.fixed_dictionaries({}, optional=_ENTRY_FIELDS)
SIDECARS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "format": _SCALARS,
            "links": st.lists(
                st.fixed_dictionaries({}, optional={"path": st.lists(_SCALARS, max_size=3), "target": _SCALARS}),
                max_size=3,
            ),
            "dirs": st.lists(st.lists(_SCALARS, max_size=3), max_size=3),
            "created": _SCALARS,
        },
    ),
    DOCUMENTS,
)


@pytest.mark.timeout(300)
@settings(settings.get_profile("kara-fuzz"))
@given(entries=st.lists(ENTRIES, max_size=4), sidecar=SIDECARS)
def test_any_manifest_and_sidecar_load_or_raise_a_kara_error(hard_timeout, entries: list, sidecar: object) -> None:
    root, store = _workspace()
    try:
        with hard_timeout("manifests"):
            key = root / "store" / "obj" / "ns" / "ckpt"
            (key / "data").mkdir(parents=True)
            (key / "data" / BLOB).write_bytes(b"hello\n")
            # hello at offsets 2 and 8; any other offset reads other bytes.
            (key / "kara-packs").mkdir()
            (key / "kara-packs" / PACK).write_bytes(b"XXhello\nhello\nYY")
            (key / "vers").mkdir()
            (key / "meta.json").write_bytes(b'{"latest": "0", "versions": ["0"], "api": 2}')
            manifest = orjson.dumps(entries) if _dumpable(entries) else b"[]"
            (key / "vers" / "0.json").write_bytes(manifest)
            if sidecar is not None:
                (key / "kara").mkdir()
                raw = sidecar if isinstance(sidecar, bytes) else orjson.dumps(sidecar) if _dumpable(sidecar) else b"{}"
                (key / "kara" / "0.json").write_bytes(raw)
            outside = _snapshot(root)
            try:
                store.load_directory("ns", "ckpt", str(root / "out"), progress_bar=False)
            except KaraError:
                pass
            written = {p for p in _snapshot(root) - outside if not p.startswith("out")}
            assert all(".kara" in p or p.startswith("store") for p in written), written
            for dirpath, _, names in os.walk(root / "out"):
                for name in names:
                    full = Path(dirpath) / name
                    if full.is_symlink():
                        target = os.path.realpath(full)
                        assert target.startswith(str(root / "out")), target
            _good_still_readable(store)
    finally:
        shutil.rmtree(root, ignore_errors=True)
