"""Serializer.stream_decoder (json+zstd, pickle+zstd, raw+zstd): sequential reads decode
exactly what deserialize gives, record by record, damaged records included."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kara_core import KaraStorage
from kara_core.errors import SerializationError
from kara_core.serialization import ZstdSerializer, resolve_serializer

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_SAMPLES = [{"id": i, "text": f"sample text number {i} " * 3, "tokens": list(range(i % 9))} for i in range(2000)]
#: A serializer with a trained dictionary, as the pipeline bench writes.
TRAINED = ZstdSerializer.train(_SAMPLES, "json", dict_size=4096)
#: The same, one frame per record in a version (group=1): sequential reads of such
#: versions decode through the stream decoder. Grouped versions read plain records.
TRAINED_FRAMES = ZstdSerializer(TRAINED.inner, TRAINED.level, TRAINED.dictionary, group=1)


def _serializer(name: str) -> Any:
    named = {"trained": TRAINED, "trained-frames": TRAINED_FRAMES, "frames": ZstdSerializer("json", group=1)}
    return named[name] if name in named else resolve_serializer(name)


def _outcomes_one_by_one(serializer: Any, raws: list[Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for raw in raws:
        try:
            out.append(("ok", serializer.deserialize(raw)))
        except Exception as exc:  # noqa: BLE001 - compared, whatever it is
            out.append(("error", f"{type(exc).__name__}: {exc}"))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(JSON_VALUES, max_size=30), st.sampled_from(["json+zstd", "pickle+zstd", "trained"]))
def test_stream_decoder_equals_deserialize(records: list[Any], name: str) -> None:
    serializer = _serializer(name)
    decoder = serializer.stream_decoder()
    assert decoder is not None
    raws = [serializer.serialize(record) for record in records]
    for holder in (raws, [memoryview(raw) for raw in raws]):
        decoded = list(decoder(iter(holder)))
        expected = [value for _, value in _outcomes_one_by_one(serializer, holder)]
        assert len(decoded) == len(expected)
        for a, b in zip(decoded, expected, strict=True):
            assert type(a) is type(b) and a == b


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_stream_decoder_equals_deserialize_for_raw_bytes(records: list[bytes]) -> None:
    serializer = resolve_serializer("raw+zstd")
    decoder = serializer.stream_decoder()
    assert decoder is not None
    raws = [serializer.serialize(record) for record in records]
    assert list(decoder(iter(raws))) == [serializer.deserialize(raw) for raw in raws] == records


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(-1, 255)), max_size=4),
    st.sampled_from(["json+zstd", "trained"]),
)
def test_stream_decoder_fails_where_deserialize_fails_and_not_before(
    ids: list[int], damage: list[tuple[int, int]], name: str
) -> None:
    # Valid frames, some bytes changed, cut or added: the decoder gives the records
    # deserialize gives up to the first one it refuses, and refuses that one too.
    serializer = _serializer(name)
    raws = [bytearray(serializer.serialize(_SAMPLES[i])) for i in ids]
    for where, value in damage:
        raw = raws[where % len(raws)]
        if value < 0:
            del raw[where % (len(raw) + 1) :]
        elif where % 3 == 0:
            raw.append(value)
        elif raw:
            raw[where % len(raw)] = value
    frozen = [bytes(raw) for raw in raws]
    expected = _outcomes_one_by_one(serializer, frozen)
    decoder = serializer.stream_decoder()
    got: list[Any] = []
    with pytest.raises(Exception) if any(kind == "error" for kind, _ in expected) else contextlib.nullcontext():
        for value in decoder(iter(frozen)):
            got.append(value)
    good = list(itertools.takewhile(lambda outcome: outcome[0] == "ok", expected))
    assert got == [value for _, value in good]


def _data_files(store_root: Path) -> list[Path]:
    return sorted(path for path in store_root.rglob("*") if path.is_file() and "data" in path.parent.name)


def _sequential_outcomes(ds: Any) -> list[tuple[str, Any, int]]:
    # Every record through `for record in ds`; after an error, iteration goes on from
    # the cursor, which must be right after the damaged record.
    out: list[tuple[str, Any, int]] = []
    ds.seek(0)
    while ds.tell() < len(ds):
        try:
            for record in ds:
                out.append(("ok", record, -1))
        except Exception as exc:  # noqa: BLE001 - compared, whatever it is
            out.append(("error", f"{type(exc).__name__}: {exc}", ds.tell()))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 120),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=5),
    st.sampled_from(["json+zstd", "trained", "frames", "trained-frames"]),
)
def test_a_sequential_read_of_damaged_frames_equals_reading_record_by_record(
    tmp_path_factory: pytest.TempPathFactory, count: int, damage: list[tuple[float, int]], name: str
) -> None:
    root = tmp_path_factory.mktemp("store")
    store = KaraStorage(f"file://{root}")
    with store.open_dataset("ns", "k", "w", version="1", serialization=_serializer(name)) as ds:
        ds.write_many(_SAMPLES[:count])
    (data,) = _data_files(root)
    blob = bytearray(data.read_bytes())
    for where, value in damage:
        blob[int(where * len(blob))] = value
    data.write_bytes(bytes(blob))
    with store.open_dataset("ns", "k") as ds:
        one_by_one = []
        for i in range(len(ds)):
            try:
                one_by_one.append(("ok", ds[i], -1))
            except Exception as exc:  # noqa: BLE001 - compared, whatever it is
                one_by_one.append(("error", f"{type(exc).__name__}: {exc}", i + 1))
        assert _sequential_outcomes(ds) == one_by_one


def test_sequential_reads_of_json_zstd_go_through_the_stream_decoder(
    store: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization=TRAINED_FRAMES) as ds:
        ds.write_many(_SAMPLES)
    made: list[int] = []
    original = ZstdSerializer.stream_decoder

    def counted(self: ZstdSerializer) -> Any:
        made.append(1)
        return original(self)

    def refused(self: ZstdSerializer, xs: list[bytes]) -> list[Any]:
        raise AssertionError("decoded in batches, not through the stream decoder")

    monkeypatch.setattr(ZstdSerializer, "stream_decoder", counted)
    monkeypatch.setattr(ZstdSerializer, "deserialize_many", refused)
    with store.open_dataset("ns", "k") as ds:
        assert list(ds) == _SAMPLES
        assert made == [1]  # one decoder for the whole iteration (several refills)


def test_an_error_thrown_into_a_stream_decoded_read_is_raised_and_loses_nothing(store: KaraStorage) -> None:
    with store.open_dataset("ns", "k", "w", version="1", serialization=ZstdSerializer("json", group=1)) as ds:
        ds.write_many(range(100))
    with store.open_dataset("ns", "k") as ds:
        reading = iter(ds)
        assert [next(reading) for _ in range(10)] == list(range(10))
        with pytest.raises(KeyError, match="thrown"):
            reading.throw(KeyError("thrown"))  # type: ignore[attr-defined]
        assert ds.tell() == 10
        assert list(ds) == list(range(10, 100))


def test_serializers_without_a_c_decoder_have_no_stream_decoder() -> None:
    assert resolve_serializer("numpy+zstd").stream_decoder() is None
    assert resolve_serializer("json").stream_decoder() is None


def test_a_damaged_frame_gives_the_same_error_however_and_however_often_it_is_read(tmp_path: Path) -> None:
    # zstd's reason for this damaged frame (a trained dictionary, one byte zeroed) is
    # "Data corruption detected" on a new context and "Destination buffer is too small"
    # on one that failed before: the reason kara gives must not depend on read history.
    store = KaraStorage(f"file://{tmp_path}")
    with store.open_dataset("ns", "k", "w", version="1", serialization=TRAINED_FRAMES) as ds:
        ds.write(_SAMPLES[0])
    (data,) = _data_files(tmp_path)
    blob = bytearray(data.read_bytes())
    blob[int(0.875 * len(blob))] = 0
    data.write_bytes(bytes(blob))
    errors = []
    with store.open_dataset("ns", "k") as ds:
        for _ in range(3):
            with pytest.raises(SerializationError) as caught:
                ds[0]
            errors.append(str(caught.value))
        errors += [outcome[1].partition(": ")[2] for outcome in _sequential_outcomes(ds)]
        for _ in range(2):
            with pytest.raises(SerializationError) as caught:
                ds.serializer.deserialize(bytes(blob))
            errors.append(str(caught.value))
    assert len(errors) == 6 and len(set(errors)) == 1, errors
