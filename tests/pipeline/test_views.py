"""Record views: the chunk cache of RowView and the still-encoded samples of mixtures."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kara_core
from kara_core import KaraStorage
from kara_core.pipeline import sources as views
from kara_core.pipeline.sources import RowView

from .conftest import SIZES

WEIGHTS = {"web": 0.5, "code": 0.3, "books": 0.2}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, SIZES["web"] - 1), min_size=1, max_size=300), min_size=1, max_size=6))
def test_row_view_records_on_local_files_are_the_stored_ones(sources, calls: list[list[int]]) -> None:
    # Local files slice records straight from the map, positions unsorted and repeated;
    # nothing goes through the chunk cache (its own test: stores that are not mapped).
    rows = sources["web"]
    view = RowView(rows)
    assert rows.mapped and view._direct_reads
    stored = rows.read_raw_range(0, len(rows))
    for positions in calls:
        wanted = np.array(positions, dtype=np.int64)
        assert [bytes(raw) for raw in view.raws(wanted)] == [bytes(stored[p]) for p in positions]
        assert view.fetch(wanted) == [{"src": "web", "i": p} for p in positions]
        assert not view._slots


def test_a_pickled_row_view_starts_with_an_empty_cache(sources, monkeypatch) -> None:
    import pickle

    # The chunk cache serves stores that are not mapped: take that path here.
    monkeypatch.setattr(RowView, "_direct_reads", property(lambda self: False))
    view = RowView(sources["code"])
    view.fetch(np.arange(100))
    assert view._slots
    copy = pickle.loads(pickle.dumps(view))
    assert not copy._slots and copy.fetch(np.array([5, 99])) == [{"src": "code", "i": 5}, {"src": "code", "i": 99}]


def _write(store: KaraStorage, key: str, serialization: str, name: str) -> None:
    with store.open_dataset("other", key, "w", version="1", serialization=serialization) as ds:
        ds.write_many({"src": name, "i": i} for i in range(SIZES[name]))


@pytest.mark.parametrize("serializations", [("json", "json", "json"), ("json", "pickle", "json+zstd")])
def test_a_mixture_is_the_same_whether_its_sources_decode_alike_or_not(
    store: KaraStorage, sources, serializations: tuple[str, str, str]
) -> None:
    for name, serialization in zip(SIZES, serializations, strict=True):
        _write(store, name, serialization, name)
    others = {name: store.open_dataset("other", name) for name in SIZES}
    expected = list(kara_core.mix(sources, WEIGHTS, seed=3))
    mixture = kara_core.mix(others, WEIGHTS, seed=3)
    assert list(mixture) == expected
    positions = np.arange(len(mixture), dtype=np.int64)[::-7]  # any order
    items, decode = mixture.fetch_encoded(positions)
    alike = len(set(serializations)) == 1
    assert (decode is not None) == alike  # encoded bytes only when one decoder fits all
    samples = decode(items.tolist()) if decode is not None else items.tolist()
    assert samples == [expected[p] for p in positions.tolist()]
    labelled = kara_core.mix(others, WEIGHTS, seed=3, with_source=True)
    items, decode = labelled.fetch_encoded(positions)
    assert decode is None
    assert items.tolist() == [(expected[p]["src"], expected[p]) for p in positions.tolist()]


def test_a_nested_mixture_and_a_packed_view_are_sources_of_encoded_mixtures(store: KaraStorage, sources) -> None:
    with store.open_dataset("tok", "t", "w", version="1", serialization="numpy") as ds:
        ds.write_many(np.arange(i, i + 50, dtype=np.int32) for i in range(40))
    inner = kara_core.mix({"web": sources["web"], "code": sources["code"]}, {"web": 2, "code": 1})
    packed = kara_core.pack(store.open_dataset("tok", "t"), field=None, seq_len=16)
    outer = kara_core.mix(
        {"inner": inner, "books": sources["books"], "tok": packed}, {"inner": 1, "books": 1, "tok": 1}
    )
    samples = list(outer)
    positions = np.arange(len(outer), dtype=np.int64)
    items, decode = outer.fetch_encoded(positions)
    assert decode is None
    for got, want in zip(items.tolist(), samples, strict=True):
        assert (got == want).all() if isinstance(want, np.ndarray) else got == want
    assert sum(isinstance(sample, np.ndarray) and len(sample) == 16 for sample in samples) == len(samples) // 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.lists(st.integers(0, SIZES["web"] - 1), min_size=1, max_size=300), min_size=1, max_size=6),
    st.sampled_from(["direct", "by chunk"]),
    st.sampled_from([1, 1 << 30]),
)
def test_the_chunk_cache_of_stores_that_are_not_mapped(
    sources, monkeypatch, calls: list[list[int]], lookup: str, cache_bytes: int
) -> None:
    # Remote stores read through the chunk cache (local files slice the map instead): a
    # cache smaller than the calls need, and one that holds the whole source (missing
    # chunks are then read with the rest of their group).
    monkeypatch.setattr(views, "CHUNK_BYTES", 8 * 20)
    monkeypatch.setattr(views, "CACHE_BYTES", cache_bytes)
    monkeypatch.setattr(views, "DIRECT_CHUNKS", 1 << 20 if lookup == "direct" else 0)
    monkeypatch.setattr(RowView, "_direct_reads", property(lambda self: False))
    rows = sources["web"]
    view = RowView(rows)
    stored = rows.read_raw_range(0, len(rows))
    reads = []
    read = rows.read_raw_range
    monkeypatch.setattr(rows, "read_raw_range", lambda a, b: reads.append((a, b)) or read(a, b))
    for positions in calls:
        wanted = np.array(positions, dtype=np.int64)
        assert [bytes(raw) for raw in view.raws(wanted)] == [bytes(stored[p]) for p in positions]
        assert view.fetch(wanted) == [{"src": "web", "i": p} for p in positions]
        held = list(view._slots)
        assert len(held) == len(set(held)) <= view.cached_chunks
        if view._direct is not None:
            assert sorted(np.flatnonzero(view._direct >= 0).tolist()) == sorted(held)
    if cache_bytes > 1:
        group = views.GROUP_CHUNKS * view.chunk
        touched = {p // group for positions in calls for p in positions}
        records = [r for a, b in reads for r in range(a, b)]
        assert len(records) == len(set(records))  # nothing read twice
        assert len(reads) <= len(touched)  # one read per group at most (adjacent ones merged)
        assert {r // group for r in records} == touched
