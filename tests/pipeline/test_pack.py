"""kara_core.pack: token sequences cut into samples of exactly seq_len tokens."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kara_core
from kara_core import KaraStorage
from kara_core.errors import ConfigurationError, CorruptDatasetError
from kara_core.pipeline import token_counts
from kara_core.pipeline.token_counts import decode_counts, encode_counts, token_counts_path

from .conftest import token_record, write_tokens

RECORDS = 300


def stream(records: range, eos_id: int | None = None) -> np.ndarray:
    """The token stream LitData's TokensLoader would cut: records in order, eos after each."""
    pieces = []
    for r in records:
        pieces.append(token_record(r))
        if eos_id is not None:
            pieces.append(np.array([eos_id], dtype=np.int32))
    return np.concatenate(pieces)


@pytest.fixture
def tokens(store: KaraStorage):
    write_tokens(store, "tok", range(RECORDS))
    with store.open_dataset("ns", "tok") as ds:
        yield ds


@pytest.mark.parametrize("eos_id", [None, -1])
def test_samples_are_exactly_seq_len_and_cut_the_stream_like_tokens_loader(tokens, eos_id) -> None:
    packed = kara_core.pack(tokens, field=None, seq_len=100, eos_id=eos_id)
    expected = stream(range(RECORDS), eos_id)
    assert len(packed) == len(expected) // 100
    samples = list(packed)
    assert all(len(sample) == 100 and sample.dtype == np.int32 for sample in samples)
    np.testing.assert_array_equal(np.concatenate(samples), expected[: len(packed) * 100])


def test_without_drop_remainder_every_token_is_kept(tokens) -> None:
    packed = kara_core.pack(tokens, field=None, seq_len=128, eos_id=7, drop_remainder=False)
    expected = stream(range(RECORDS), 7)
    samples = list(packed)
    assert len(samples) == -(-len(expected) // 128) and len(samples[-1]) == len(expected) % 128
    np.testing.assert_array_equal(np.concatenate(samples), expected)


def test_random_access_matches_iteration(tokens) -> None:
    packed = kara_core.pack(tokens, field=None, seq_len=37)
    samples = list(packed)
    for i in (0, 1, 17, len(packed) - 1, -1, -len(packed)):
        np.testing.assert_array_equal(packed[i], samples[i])
    picked = np.array([5, 3, 5, 0], dtype=np.int64)
    for got, i in zip(packed.fetch(picked), picked.tolist(), strict=True):
        np.testing.assert_array_equal(got, samples[i])
    with pytest.raises(IndexError):
        packed[len(packed)]


def test_json_records_pack_their_token_field(store: KaraStorage) -> None:
    write_tokens(store, "json", range(50), serialization="json")
    with store.open_dataset("ns", "json") as ds:
        packed = kara_core.pack(ds, "tokens", seq_len=64, eos_id=0)
        np.testing.assert_array_equal(np.concatenate(list(packed)), stream(range(50), 0)[: len(packed) * 64])
        with pytest.raises(ConfigurationError, match="no field 'ids'"):
            kara_core.pack(ds, "ids", seq_len=64)


def test_token_counts_are_cached_in_the_sidecar_and_reused(tokens, store: KaraStorage, monkeypatch) -> None:
    first = kara_core.pack(tokens, field=None, seq_len=64)
    path = token_counts_path("ns", "tok", "1", None)
    assert path.startswith("row/ns/tok/1/.kara/")
    cached = decode_counts(store.backend.read(path), path)
    assert len(cached) == RECORDS and int(cached[-1]) == first.tokens

    def no_counting(*args, **kwargs):
        raise AssertionError("the counts should come from the sidecar")

    monkeypatch.setattr(token_counts, "count_tokens", no_counting)
    assert len(kara_core.pack(tokens, field=None, seq_len=64)) == len(first)


def test_the_cache_is_extended_after_an_append(tokens, store: KaraStorage) -> None:
    before = kara_core.pack(tokens, field=None, seq_len=64, eos_id=1)
    write_tokens(store, "tok", range(RECORDS, RECORDS + 40))
    with store.open_dataset("ns", "tok") as grown:
        after = kara_core.pack(grown, field=None, seq_len=64, eos_id=1)
        assert len(after) > len(before)
        np.testing.assert_array_equal(np.concatenate(list(after)), stream(range(RECORDS + 40), 1)[: len(after) * 64])
    path = token_counts_path("ns", "tok", "1", None)
    assert len(decode_counts(store.backend.read(path), path)) == RECORDS + 40
    # A reader opened before the append still sees its own records only.
    assert len(kara_core.pack(tokens, field=None, seq_len=64, eos_id=1)) == len(before)


def test_a_damaged_cache_is_rebuilt(tokens, store: KaraStorage) -> None:
    expected = len(kara_core.pack(tokens, field=None, seq_len=64))
    path = token_counts_path("ns", "tok", "1", None)
    store.backend.put(path, b"KARATOK1" + b"\xff" * 20)
    assert len(kara_core.pack(tokens, field=None, seq_len=64)) == expected
    assert len(decode_counts(store.backend.read(path), path)) == RECORDS


def test_packed_views_mix_and_pickle(tokens, store: KaraStorage) -> None:
    write_tokens(store, "more", range(1000, 1100))
    with store.open_dataset("ns", "more") as more:
        mixture = kara_core.mix(
            {"a": kara_core.pack(tokens, field=None, seq_len=32), "b": kara_core.pack(more, field=None, seq_len=32)},
            {"a": 2, "b": 1},
            with_source=True,
        )
        samples = list(pickle.loads(pickle.dumps(mixture)))
    assert len(samples) == len(mixture) and all(len(tokens) == 32 for _, tokens in samples)
    assert [name for name, _ in samples[:6]] in (["a", "b", "a"] * 2, ["a", "a", "b"] * 2)


def test_bad_arguments_are_clear_errors(tokens, sources) -> None:
    with pytest.raises(ConfigurationError, match="seq_len"):
        kara_core.pack(tokens, field=None, seq_len=0)
    with pytest.raises(ConfigurationError, match="eos_id"):
        kara_core.pack(tokens, field=None, eos_id="</s>")
    with pytest.raises(ConfigurationError, match="mix packed views"):
        kara_core.pack(kara_core.mix(sources, {name: 1 for name in sources}), field=None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_token_count_parser_accepts_or_refuses_any_bytes_cleanly(raw: bytes) -> None:
    for candidate in (raw, b"KARATOK1" + raw):
        try:
            counts = decode_counts(candidate, "fuzz")
        except CorruptDatasetError:
            continue
        assert (np.diff(counts) >= 0).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**40), max_size=50))
def test_encoded_counts_decode_to_themselves(lengths: list[int]) -> None:
    cumulative = np.cumsum(np.array(lengths, dtype=np.int64))
    np.testing.assert_array_equal(decode_counts(encode_counts(cumulative), "x"), cumulative)


def test_a_slice_is_packed_from_its_own_records(tokens) -> None:
    part = tokens.slice(100, 50)
    packed = kara_core.pack(part, field=None, seq_len=64)
    np.testing.assert_array_equal(np.concatenate(list(packed)), stream(range(100, 150))[: len(packed) * 64])
    assert packed.order_identity()["rows"]["start"] == 100


def _sample_holding(packed, record: int) -> int:
    """The sample in which ``record`` starts."""
    return int(packed.ends[record - 1]) // packed.seq_len if record else 0


def test_token_counts_that_do_not_describe_the_records_are_refused_not_cut_into_wrong_samples(
    tokens, store: KaraStorage
) -> None:
    truth = list(kara_core.pack(tokens, field=None, seq_len=64, eos_id=0))
    path = token_counts_path("ns", "tok", "1", None)
    cumulative = decode_counts(store.backend.read(path), path)
    cumulative[120:] += 2  # record 120 "has" two tokens more than it holds; still a valid cache
    store.backend.put(path, encode_counts(cumulative))
    packed = kara_core.pack(tokens, field=None, seq_len=64, eos_id=0)
    told = f"record 120 has {len(token_record(120))} tokens, but the token counts say {len(token_record(120)) + 2}"
    reads = {
        "iteration": lambda: list(packed),
        "fetch": lambda: packed.fetch(np.array([3, _sample_holding(packed, 120)])),
        "fetch_batch": lambda: packed.fetch_batch(np.arange(len(packed) - 1)),
        "item": lambda: packed[_sample_holding(packed, 120)],
    }
    for name, read in reads.items():
        with pytest.raises(CorruptDatasetError, match=told) as caught:
            read()
        assert f"{store.backend.url}/{path} at offset {16 + 8 * 120}" in str(caught.value), name
    # Samples before the damaged record are the right ones; deleting the cache repairs the rest.
    np.testing.assert_array_equal(packed[3], truth[3])
    store.backend.delete(path)
    repaired = list(kara_core.pack(tokens, field=None, seq_len=64, eos_id=0))
    assert len(repaired) == len(truth)
    np.testing.assert_array_equal(np.stack(repaired), np.stack(truth))


@pytest.fixture(scope="module")
def small_tokens(tmp_path_factory) -> tuple[KaraStorage, dict[bool, list[np.ndarray]]]:
    """A store with 40 token records, and their samples of 16 tokens with eos 0 (by drop_remainder)."""
    store = KaraStorage(f"file://{tmp_path_factory.mktemp('tokens')}")
    write_tokens(store, "tok", range(40))
    with store.open_dataset("ns", "tok") as ds:
        samples = {drop: list(kara_core.pack(ds, None, 16, eos_id=0, drop_remainder=drop)) for drop in (True, False)}
    return store, samples


@settings(max_examples=60, deadline=None)
@given(record=st.integers(0, 39), change=st.integers(-5, 5).filter(bool), drop_remainder=st.booleans())
def test_a_wrong_token_count_never_gives_a_wrong_sample(small_tokens, record: int, change: int, drop_remainder) -> None:
    store, truths = small_tokens
    truth = truths[drop_remainder]
    path = token_counts_path("ns", "tok", "1", None)
    with store.open_dataset("ns", "tok") as ds:
        kara_core.pack(ds, field=None, seq_len=16)  # the right counts, whatever the last example left
        cumulative = decode_counts(store.backend.read(path), path)
        cumulative[record:] += change
        store.backend.put(path, encode_counts(cumulative))
        packed = kara_core.pack(ds, field=None, seq_len=16, eos_id=0, drop_remainder=drop_remainder)
        try:
            samples = list(packed)
        except CorruptDatasetError as error:
            assert f"record {record} has" in str(error)
            return
        finally:
            store.backend.delete(path)
    # Counts that are not a cache (a count below 0) are counted again; otherwise only a
    # record no sample reaches (the dropped tail) can be miscounted unnoticed.
    assert len(samples) == len(truth) or (drop_remainder and len(samples) < len(truth))
    for got, want in zip(samples, truth, strict=False):
        np.testing.assert_array_equal(got, want)


def test_a_slice_whose_records_read_differently_than_when_counted_is_refused(store: KaraStorage) -> None:
    class Drifting(kara_core.serialization.Serializer):
        dtype = np.int32

        def serialize(self, x: np.ndarray) -> bytes:
            return np.asarray(x, dtype=np.int32).tobytes()

        def deserialize(self, x: bytes) -> np.ndarray:
            return np.frombuffer(x, dtype=self.dtype)

    with store.open_dataset("ns", "drift", "w", version="1", serialization=Drifting) as ds:
        ds.write_many(np.arange(8 + r, dtype=np.int32) for r in range(30))
    with store.open_dataset("ns", "drift", serialization=Drifting) as ds:
        packed = kara_core.pack(ds.slice(5, 20), field=None, seq_len=8)
        Drifting.dtype = np.int16  # the same bytes now decode to twice the tokens
        with pytest.raises(CorruptDatasetError, match="record 0 has 26 tokens, but the token counts say 13") as caught:
            packed[0]
        assert "read differently when counted" in str(caught.value)
