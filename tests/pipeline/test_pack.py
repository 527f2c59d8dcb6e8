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
