"""zstd record groups: several records per compressed frame, in the 2.x layout.

A grouped version stores a group's frame as its first record and the group's other
records as empty ones (see kara_core.row.groups). These tests read the index directly to
check the layout, and damage it to check the errors.
"""

from __future__ import annotations

import json
import pickle
import struct
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, CorruptDatasetError, SerializationError
from kara_core.serialization import ZstdSerializer, resolve_serializer
from kara_core.serialization.compressed import DEFAULT_ZSTD_GROUP, GROUP_BYTES
from kara_core.serialization.groups import decode_json_group, join_group, lines_group_size, split_group

from .conftest import record


def _version(store: KaraStorage, key: str, version: str = "1") -> Path:
    """The folder of version ``version`` of ``ns/key`` in the file:// store."""
    return Path(store.url[len("file://") :]) / "row" / "ns" / key / version


def _ends(store: KaraStorage, key: str, version: str = "1") -> list[int]:
    root = _version(store, key, version) / "index"
    raw = b"".join(path.read_bytes() for path in sorted(root.glob("*.blk"), key=lambda p: int(p.stem)))
    return [end for (end,) in struct.iter_unpack("<Q", raw)]


def _spans(ends: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _group_sizes(ends: list[int]) -> list[int]:
    """Records per group, from the index: a non-empty record starts a group."""
    sizes: list[int] = []
    for span in _spans(ends):
        if span:
            sizes.append(1)
        else:
            sizes[-1] += 1
    return sizes


def _write(store: KaraStorage, key: str, records: list[Any], serialization: Any = "json+zstd", **options: Any) -> None:
    with store.open_dataset("ns", key, "w", version="1", serialization=serialization, **options) as ds:
        ds.write_many(records)


def test_json_zstd_stores_groups_of_16_records_by_default(store: KaraStorage) -> None:
    records = [record(i) for i in range(1000)]
    _write(store, "k", records)
    ends = _ends(store, "k")
    assert len(ends) == 1000
    assert _group_sizes(ends) == [16] * 62 + [8]
    with store.open_dataset("ns", "k") as ds:
        assert ds.serializer.group == DEFAULT_ZSTD_GROUP and ds.serializer.grouped
        assert list(ds) == records
        assert [ds[i] for i in range(999, -1, -7)] == records[::-7]
        # The records' plain bytes come back from the groups (what the serializer decodes).
        assert ds.read_raw_range(3, 6) == [ds.serializer.serialize(records[i]) for i in range(3, 6)]
        data, bounds = ds.read_raw_joined(14, 18)
        assert [data[a:b] for a, b in zip([0, *bounds[:-1]], bounds, strict=True)] == ds.read_raw_range(14, 18)


def test_groups_compress_better_than_one_frame_per_record(store: KaraStorage) -> None:
    records = [{"user": f"u{i % 50}", "event": ("view", "click")[i % 2], "n": i} for i in range(3000)]
    _write(store, "grouped", records)
    _write(store, "alone", records, ZstdSerializer("json", group=1))
    grouped = store.rows.dataset_info("ns", "grouped")["data_bytes"]
    alone = store.rows.dataset_info("ns", "alone")["data_bytes"]
    assert grouped * 2 < alone
    assert 0 not in _spans(_ends(store, "alone"))  # group=1: every record its own frame
    with store.open_dataset("ns", "alone") as ds:
        assert not ds.serializer.grouped and list(ds) == records


@pytest.mark.parametrize(
    ("name", "records"),
    [
        ("json+zstd", [record(i) for i in range(100)] + [{}, [], "", 0, "line\nbreak", {"x": "\n" * 9}]),
        ("pickle+zstd", [("t", i, b"\n" * i, {i}) for i in range(60)]),
        ("raw+zstd", [b"", b"\n", b"\x00" * 100_000, b"\n\n"] + [b"x\n" * i for i in range(40)] + [b""]),
        ("numpy+zstd", [np.arange(i, dtype=np.int32) for i in range(40)] + [np.zeros((3, 0)), np.array(2.5)]),
    ],
)
def test_every_inner_serializer_round_trips_through_groups(store: KaraStorage, name: str, records: list) -> None:
    # Records with newlines (raw, pickle) take the sized group form, JSON the newline form;
    # a record that brings its group to GROUP_BYTES closes it.
    _write(store, "k", records, name, max_file_size=4096)
    with store.open_dataset("ns", "k") as ds:
        assert ds.serializer.grouped
        got = list(ds)
        by_index = [ds[i] for i in range(len(ds) - 1, -1, -1)][::-1]
    for result in (got, by_index):
        if name == "numpy+zstd":
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(result, records, strict=True))
        else:
            assert result == records
    if name == "raw+zstd":
        sizes = _group_sizes(_ends(store, "k"))
        assert sizes == [3, 16, 16, 10]  # the 100,000-byte third record closes the first group


def test_a_group_closes_at_group_bytes(store: KaraStorage) -> None:
    records = [{"blob": "y" * (GROUP_BYTES // 3)} for _ in range(10)]
    _write(store, "k", records)
    # Three records of a third of GROUP_BYTES (plus JSON) reach it: groups of 3.
    assert _group_sizes(_ends(store, "k")) == [3, 3, 3, 1]


def test_flush_closes_the_open_group_and_appends_start_new_groups(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization="json+zstd") as ds:
        for i in range(5):
            ds.write(record(i))
        ds.flush()
        with store.open_dataset("ns", "k") as reader:  # flushed records are readable at once
            assert list(reader) == [record(i) for i in range(5)]
        ds.write_many(record(i) for i in range(5, 40))
    with store.open_dataset("ns", "k", "w", serialization="json+zstd") as ds:
        assert ds.serializer.grouped
        ds.write_many(record(i) for i in range(40, 50))
    assert _group_sizes(_ends(store, "k")) == [5, 16, 16, 3, 10]
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [record(i) for i in range(50)]
        assert len(ds) == 50
        ds.seek(21)
        assert ds.read() == record(21)
        assert ds.read_range(18, 23) == [record(i) for i in range(18, 23)]


def test_a_version_written_with_one_frame_per_record_stays_that_way(store: KaraStorage) -> None:
    # As versions written before groups existed: the sidecar records no group.
    _write(store, "k", [record(i) for i in range(20)], ZstdSerializer("json", group=1))
    sidecar = (_version(store, "k") / ".kara/version.json").read_text()
    assert '"group"' not in sidecar
    with store.open_dataset("ns", "k", "w", serialization="json+zstd") as ds:  # default group=16 given
        assert not ds.serializer.grouped
        ds.write_many(record(i) for i in range(20, 40))
    assert 0 not in _spans(_ends(store, "k"))
    with store.open_dataset("ns", "k", serialization=ZstdSerializer("json", group=4)) as ds:
        assert list(ds) == [record(i) for i in range(40)]


def test_a_group_cut_short_by_a_crash_keeps_its_indexed_records(store: KaraStorage) -> None:
    # A writer killed between the index entries of a group: the entries left name the
    # first records of the frame; the rest of the frame is not part of the version.
    _write(store, "k", [record(i) for i in range(48)])
    index = _version(store, "k") / "index/0.blk"
    index.write_bytes(index.read_bytes()[: (32 + 6) * 8])
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [record(i) for i in range(38)]
        assert ds[37] == record(37)
    with store.open_dataset("ns", "k", "w") as ds:  # the next writer starts a new group
        ds.write_many(record(i) for i in range(100, 120))
    assert _group_sizes(_ends(store, "k")) == [16, 16, 6, 16, 4]
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == [record(i) for i in range(38)] + [record(i) for i in range(100, 120)]
    assert store.rows.verify("ns", "k") == []


def test_a_damaged_frame_names_its_group(store: KaraStorage) -> None:
    _write(store, "k", [record(i) for i in range(40)])
    data_block = _version(store, "k") / "data/0.blk"
    data = bytearray(data_block.read_bytes())
    first = _ends(store, "k")[15]  # group 2 starts here
    data[first + 5 : first + 25] = bytes(20)
    data_block.write_bytes(bytes(data))
    with store.open_dataset("ns", "k") as ds:
        assert ds[3] == record(3)  # other groups read
        with pytest.raises(CorruptDatasetError, match="group of records starting at record 16"):
            ds[20]
        with pytest.raises(CorruptDatasetError, match="starting at record 16"):
            list(ds)


def test_every_changed_byte_of_a_group_frame_is_refused_by_its_checksum(store: KaraStorage) -> None:
    # A group's frame carries zstd's content checksum: without it, some changed bits of
    # the compressed records still decode, into other records (50 of 388 one-bit changes
    # of this frame did, measured on the code before the checksum).
    _write(store, "k", [record(i) for i in range(40)])
    ends = _ends(store, "k")
    data_block = _version(store, "k") / "data/0.blk"
    pristine = data_block.read_bytes()
    wrong, refused = [], 0
    for position in range(ends[15], ends[31]):  # every byte of group 2's frame
        for flip in (0x01, 0x80):
            damaged = bytearray(pristine)
            damaged[position] ^= flip
            data_block.write_bytes(bytes(damaged))
            with store.open_dataset("ns", "k") as ds:
                try:
                    got = ds.read_range(16, 32)
                except CorruptDatasetError:
                    refused += 1
                    continue
                # A few bits zstd does not use (in the header, padding) change nothing.
                if got != [record(i) for i in range(16, 32)]:
                    wrong.append((position - ends[15], flip))
    assert ends[31] - ends[15] > 100
    assert wrong == []
    assert refused >= 2 * (ends[31] - ends[15]) - 8


def test_an_index_that_puts_more_records_in_a_group_than_its_frame_holds_is_refused(store: KaraStorage) -> None:
    _write(store, "k", [record(i) for i in range(40)])
    ends = _ends(store, "k")
    ends[16] = ends[15]  # record 16 (a group's first) made empty: group 1 now has 17 entries
    index = _version(store, "k") / "index/0.blk"
    index.write_bytes(b"".join(struct.pack("<Q", end) for end in ends))
    with store.open_dataset("ns", "k") as ds:
        with pytest.raises(CorruptDatasetError, match="no record of the 16 before it"):
            ds[16]
        with pytest.raises(CorruptDatasetError):
            list(ds)


def test_a_record_whose_group_has_no_start_is_located_at_its_own_index_entry(store: KaraStorage) -> None:
    # Index blocks of 12 entries: record 31's entry is in index/2.blk at offset 56.
    _write(store, "k", [record(i) for i in range(40)], max_file_size=96)
    folder = _version(store, "k") / "index"
    ends = _ends(store, "k")
    ends[16:32] = [ends[15]] * 16  # records 16-31 all empty: none of them starts a group
    raw = b"".join(struct.pack("<Q", end) for end in ends)
    for number, path in enumerate(sorted(folder.glob("*.blk"), key=lambda p: int(p.stem))):
        path.write_bytes(raw[96 * number : 96 * (number + 1)])
    with store.open_dataset("ns", "k") as ds, pytest.raises(CorruptDatasetError, match="no record of the 16") as caught:
        ds[31]
    assert caught.value.path.endswith("/index/2.blk") and caught.value.offset == 56


def test_an_empty_first_record_and_a_group_longer_than_its_frame_are_refused(store: KaraStorage) -> None:
    _write(store, "k", [record(i) for i in range(40)], ZstdSerializer("json", group=8))
    index = _version(store, "k") / "index/0.blk"
    ends = _ends(store, "k")
    index.write_bytes(b"".join(struct.pack("<Q", end) for end in [0, *ends[1:]]))
    with store.open_dataset("ns", "k") as ds:
        with pytest.raises(CorruptDatasetError, match="record 0 is stored in a group"):
            ds[0]
    # Two empty entries added after a group of 4: 6 entries for a frame of 4 records.
    _write(store, "short", [record(i) for i in range(4)], ZstdSerializer("json", group=8))
    ends = _ends(store, "short")
    (_version(store, "short") / "index/0.blk").write_bytes(
        b"".join(struct.pack("<Q", end) for end in ends + [ends[-1]] * 2)
    )
    with store.open_dataset("ns", "short") as ds:
        with pytest.raises(CorruptDatasetError, match="which holds 4 records"):
            ds[5]
        with pytest.raises(CorruptDatasetError, match="which holds 4 records"):
            list(ds)


def test_parallel_writes_group_records_and_record_the_sidecar(store: KaraStorage) -> None:
    handle = pickle.loads(pickle.dumps(store.open_parallel_write("ns", "par", "1", serialization="json+zstd")))
    for part in (1, 0):
        with handle.part(part) as writer:
            writer.write_many(record(part * 100 + i) for i in range(30))
    handle.commit()
    assert _group_sizes(_ends(store, "par")) == [16, 14, 16, 14]
    with store.open_dataset("ns", "par") as ds:  # no serialization=: the sidecar names it
        assert ds.serializer.name == "json+zstd" and ds.serializer.grouped
        assert list(ds) == [record(part * 100 + i) for part in range(2) for i in range(30)]


@pytest.mark.parametrize("start", [0, 1, 15, 16, 17, 4095, 4097, 5000])
def test_sequential_reads_from_any_record_and_a_left_loop_resume_right_after_it(store: KaraStorage, start: int) -> None:
    # Sequential reads decode a group at a time (one orjson call for its 16 records):
    # from any record (inside a group, across refills), an iteration left early puts the
    # cursor right after the last record it yielded, and read() goes on from there.
    records = [record(i) for i in range(6000)]
    _write(store, "k", records)
    with store.open_dataset("ns", "k") as ds:
        ds.seek(start)
        assert list(ds) == records[start:]
        for taken in (1, 7, 16, 300, 4096):
            ds.seek(start)
            loop = iter(ds)
            assert [next(loop) for _ in range(min(taken, 6000 - start))] == records[start : start + taken]
            loop.close()
            assert ds.tell() == min(start + taken, 6000)
            if start + taken < 6000:
                assert ds.read() == records[start + taken]
                assert next(iter(ds)) == records[start + taken + 1]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 90),
    group=st.integers(1, 9),
    refill=st.integers(1, 40),
    steps=st.lists(
        st.tuples(st.sampled_from(["seek", "read", "loop", "all", "index"]), st.integers(0, 100)), max_size=12
    ),
)
def test_reads_seeks_and_loops_left_early_follow_a_list(
    tmp_path_factory: pytest.TempPathFactory, count: int, group: int, refill: int, steps: list[tuple[str, int]]
) -> None:
    # Any mix of seek, read, loops left after k records and ds[i] over a grouped version,
    # with refills of a few records (so runs start and end inside groups), gives what the
    # same steps give on a list.
    store = KaraStorage(f"file://{tmp_path_factory.mktemp('store')}")
    records = [record(i) for i in range(count)]
    _write(store, "k", records, ZstdSerializer("json", group=group))
    expected = 0
    with pytest.MonkeyPatch.context() as patch, store.open_dataset("ns", "k") as ds:
        patch.setattr("kara_core.row.dataset.BATCH_RECORDS", refill)
        for step, n in steps:
            if step == "seek":
                expected = min(n, count)
                assert ds.seek(n) == expected
            elif step == "read":
                assert ds.read(default=None) == (records[expected] if expected < count else None)
                expected = min(expected + 1, count)
            elif step == "loop":
                loop = iter(ds)
                taken = list(islice(loop, n))  # pulls exactly n (zip would pull one more)
                loop.close()
                assert taken == records[expected : expected + n]
                expected += len(taken)
            elif step == "all":
                assert list(ds) == records[expected:]
                expected = count
            else:
                assert ds[n % count] == records[n % count]
            assert ds.tell() == expected


def _one_group_version(store: KaraStorage, key: str, plain_records: list[bytes]) -> None:
    """A json+zstd version of one group whose records are ``plain_records`` as stored."""
    _write(store, key, [record(i) for i in range(len(plain_records))])
    folder = _version(store, key)
    with store.open_dataset("ns", key) as ds:
        frame = ds.serializer.encode_group(join_group(plain_records, lines=True))
    (folder / "data/0.blk").write_bytes(frame)
    (folder / "index/0.blk").write_bytes(struct.pack(f"<{len(plain_records)}Q", *[len(frame)] * len(plain_records)))


def test_a_group_that_does_not_decode_whole_is_decoded_record_by_record(store: KaraStorage) -> None:
    # Records that are not each one JSON value (only a writer that stores bytes itself,
    # write_serialized, could store them): the group is decoded record by record, the
    # damaged records raise, and the reads go on after each.
    plain = [b'{"a":0}', b"[1", b"2]", b'{"a":3}', b"nope", b'{"a":5}']
    _one_group_version(store, "k", plain)
    with store.open_dataset("ns", "k") as ds:
        got: list[Any] = []
        while ds.tell() < len(ds):
            try:
                got.extend(ds)
            except SerializationError as exc:
                # Named: the record, and the group frame that holds it.
                assert isinstance(exc.__cause__, orjson.JSONDecodeError)
                assert f"record {ds.tell() - 1} of dataset ns/k" in str(exc)
                assert "data/0.blk, the group of records starting at record 0 that holds it" in str(exc)
                got.append("error at " + str(ds.tell() - 1))
        assert got == [{"a": 0}, "error at 1", "error at 2", {"a": 3}, "error at 4", {"a": 5}]
        assert ds[3] == {"a": 3}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=12,
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_json_group_decoded_whole_is_its_records_decoded_one_by_one(values: list[Any]) -> None:
    raws = [orjson.dumps(value) for value in values]
    plain = join_group(raws, lines=True)
    assert lines_group_size(plain) == len(raws)
    assert decode_json_group(plain, len(raws)) == [orjson.loads(raw) for raw in raws]
    # Python's json module writes the same values with spaces (still one value a record).
    spaced = join_group([json.dumps(orjson.loads(raw)).encode() for raw in raws], lines=True)
    assert decode_json_group(spaced, len(raws)) == [orjson.loads(raw) for raw in raws]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=12).filter(lambda raw: b"\n" not in raw), min_size=1, max_size=12))
def test_a_json_group_decoded_whole_never_gives_another_count_of_records(raws: list[bytes]) -> None:
    # Any bytes at all: either the group is decoded record by record (None), or exactly
    # one value a record comes out, and records that each decode give their own values.
    plain = join_group(raws, lines=True)
    decoded = decode_json_group(plain, len(raws))
    if decoded is not None:
        assert len(decoded) == len(raws)
    try:
        one_by_one = [orjson.loads(raw) for raw in raws]
    except orjson.JSONDecodeError:
        return
    assert decoded == one_by_one
    assert decode_json_group(join_group(raws, lines=False), len(raws)) is None  # the sized form: not this path


def test_group_option_is_checked_and_zstd_inside_another_wrapper_stores_frames() -> None:
    for bad in (0, -1, True, 1.5, 1 << 17):
        with pytest.raises(ConfigurationError, match="zstd group"):
            ZstdSerializer("json", group=bad)
    for bad in (0, "16", None, 1 << 17):
        with pytest.raises(SerializationError, match="group size recorded"):
            ZstdSerializer("json").with_sidecar_options({"level": 3, "group": bad})
    nested = resolve_serializer("json+zstd+zstd")
    assert nested.inner.group == 1 and "group" not in nested.sidecar_options()["inner"]
    # On its own a serializer makes one frame per record; the copy for a grouped version
    # works on plain records.
    alone = resolve_serializer("json+zstd")
    assert alone.deserialize(alone.serialize({"a": 1})) == {"a": 1} and alone.serialize({"a": 1}) != b'{"a":1}'
    grouped = alone.with_sidecar_options(alone.sidecar_options())
    assert grouped.grouped and grouped.serialize({"a": 1}) == b'{"a":1}'
    assert pickle.loads(pickle.dumps(grouped)).deserialize(b'{"a":1}') == {"a": 1}


def test_nested_zstd_round_trips(store: KaraStorage) -> None:
    records = [record(i) for i in range(50)]
    _write(store, "k", records, "json+zstd+zstd")
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == records and ds[33] == records[33]
    assert _group_sizes(_ends(store, "k")) == [16, 16, 16, 2]


# -- the group parser (kara owns it: fuzzed) -------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=40), st.booleans())
def test_split_group_returns_what_join_group_joined(records: list[bytes], lines: bool) -> None:
    plain = join_group(records, lines)
    assert split_group(plain) == records
    newline_free = not any(b"\n" in r for r in records)
    assert (plain[:1] == b"\n") == (lines and newline_free)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.lists(st.binary(max_size=10), min_size=1, max_size=8).map(lambda rs: join_group(rs)),
    ),
    st.integers(0, 79),
    st.integers(0, 255),
)
def test_split_group_accepts_its_own_groups_and_refuses_damage_with_a_serialization_error(
    plain: bytes, at: int, value: int
) -> None:
    damaged = bytearray(plain)
    if damaged:
        damaged[at % len(damaged)] = value
    for candidate in (plain, bytes(damaged), plain[: at % (len(plain) + 1)]):
        try:
            records = split_group(candidate)
        except SerializationError:
            continue
        assert records and all(isinstance(r, bytes) for r in records)
        if candidate[:1] == b"\x00":
            assert join_group(records) == candidate  # the sized form: exactly what it reads


def test_a_frame_that_declares_more_bytes_than_memory_holds_is_a_clear_error(store: KaraStorage) -> None:
    # A damaged frame header (its first byte) declares an 8-byte content size: zstd's
    # decompress answers MemoryError, kara a SerializationError / CorruptDatasetError.
    import zstandard

    frames = ZstdSerializer("json", group=1)
    raw = bytearray(frames.serialize({"a": "x" * 100}))
    raw[0] = 0xE0
    with pytest.raises(MemoryError):
        zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompress(bytes(raw))
    with pytest.raises(SerializationError, match="declares more bytes"):
        frames.deserialize(bytes(raw))
    _write(store, "k", [record(i) for i in range(40)])
    data = _version(store, "k") / "data/0.blk"
    blob = bytearray(data.read_bytes())
    blob[_ends(store, "k")[15]] = 0xE0  # the first byte of the second group's frame
    data.write_bytes(bytes(blob))
    with store.open_dataset("ns", "k") as ds:
        with pytest.raises(CorruptDatasetError, match="declares more bytes"):
            ds[20]
        reading = iter(ds)
        assert [next(reading) for _ in range(16)] == [record(i) for i in range(16)]
        with pytest.raises(CorruptDatasetError, match="starting at record 16"):
            next(reading)
        assert ds.tell() == 17  # past the record that failed, as after a record that fails to decode
        assert ds[33] == record(33)
