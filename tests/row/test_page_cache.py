"""Random access on remote stores: index and small records through a bounded page cache."""

from __future__ import annotations

import itertools
import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest

from kara_core import KaraStorage
from kara_core.backend import Backend
from kara_core.errors import ConfigurationError
from kara_core.row.blocks import DATA_PAGE_SIZE, PageCache

from .conftest import record

_names = itertools.count()
RECORDS = 5000


@pytest.fixture
def remote() -> Iterator[KaraStorage]:
    """A memory:// store: no local path, so rows are read with ranged requests."""
    store = KaraStorage(f"memory://page-cache-{next(_names)}")
    with store.open_dataset("ns", "key", "w", version=1) as ds:
        ds.write_many(record(i) for i in range(RECORDS))
    yield store
    store.close()


def _count_reads(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, Any]]:
    """Record every ranged read the backend serves (it still serves them)."""
    calls: list[tuple[str, int, Any]] = []
    read = backend.read

    def counted(path: str, start: int = 0, end: int | None = None) -> bytes:
        calls.append((path, start, end))
        return read(path, start, end)

    monkeypatch.setattr(backend, "read", counted)
    return calls


def test_page_cache_evicts_least_recently_used_pages_beyond_its_budget() -> None:
    cache = PageCache(300)
    for number in range(3):
        cache.put(("p", number), bytes(100))
    assert cache.get(("p", 0)) is not None  # 0 is now the most recently used
    cache.put(("p", 3), bytes(100))
    assert cache.size == 300
    assert cache.get(("p", 1)) is None
    assert all(cache.get(("p", n)) is not None for n in (0, 2, 3))


def test_page_cache_skips_a_page_larger_than_its_budget() -> None:
    cache = PageCache(50)
    cache.put(("p", 0), bytes(100))
    assert cache.get(("p", 0)) is None
    assert cache.size == 0


def test_a_random_record_costs_at_most_one_index_and_one_data_request(
    remote: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with remote.open_dataset("ns", "key") as ds:
        calls = _count_reads(remote.backend, monkeypatch)
        assert ds[2500] == record(2500)
        assert len(calls) <= 2
        # Its neighbours are in the same pages: no request at all.
        calls.clear()
        assert [ds[i] for i in range(2490, 2510)] == [record(i) for i in range(2490, 2510)]
        assert calls == []


def test_random_reads_of_a_cached_dataset_make_one_request_per_page(
    remote: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with remote.open_dataset("ns", "key") as ds:
        data_pages = -(-ds.nbytes() // DATA_PAGE_SIZE)
        calls = _count_reads(remote.backend, monkeypatch)
        indices = random.Random(3).choices(range(RECORDS), k=3 * RECORDS)
        assert all(ds[i] == record(i) for i in indices)
        assert len(calls) <= data_pages + 1  # every data page once, the index in one page


def test_the_cache_never_holds_more_than_cache_size(remote: KaraStorage) -> None:
    budget = 3 * DATA_PAGE_SIZE
    with remote.open_dataset("ns", "key", cache_size=budget) as ds:
        assert ds.nbytes() > 2 * budget  # the dataset does not fit
        for i in random.Random(4).choices(range(RECORDS), k=2000):
            assert ds[i] == record(i)
            assert ds._reader()._cache.size <= budget


def test_cache_size_zero_reads_exact_ranges(remote: KaraStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    with remote.open_dataset("ns", "key", cache_size=0) as ds:
        calls = _count_reads(remote.backend, monkeypatch)
        assert ds[100] == record(100)
        assert ds[100] == record(100)
        assert len(calls) == 4  # index entries and record, twice: nothing cached
        assert all(end - start < 1000 for _, start, end in calls)


def test_cached_pages_of_an_open_reader_do_not_hide_records_appended_later(remote: KaraStorage) -> None:
    with remote.open_dataset("ns", "key") as old:
        assert old[RECORDS - 1] == record(RECORDS - 1)  # caches the partial last pages
        with remote.open_dataset("ns", "key", "w") as writer:
            writer.write_many(record(i) for i in range(RECORDS, RECORDS + 500))
        with remote.open_dataset("ns", "key") as new:
            assert len(new) == RECORDS + 500
            assert [new[i] for i in range(RECORDS - 3, RECORDS + 500)] == [
                record(i) for i in range(RECORDS - 3, RECORDS + 500)
            ]
        assert len(old) == RECORDS
        assert old[RECORDS - 1] == record(RECORDS - 1)
        with pytest.raises(IndexError):
            old[RECORDS]


def test_read_raw_range_of_a_few_records_goes_through_the_cache(
    remote: KaraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with remote.open_dataset("ns", "key") as ds:
        expected = [ds.serializer.serialize(record(i)) for i in range(1000, 1010)]
        assert ds.read_raw_range(1000, 1010) == expected
        calls = _count_reads(remote.backend, monkeypatch)
        assert ds.read_raw_range(1000, 1010) == expected
        assert calls == []


def test_cache_size_survives_pickling(remote: KaraStorage) -> None:
    with remote.open_dataset("ns", "key", cache_size=DATA_PAGE_SIZE) as ds:
        copy = pickle.loads(pickle.dumps(ds))
        try:
            assert copy._reader()._cache.budget == DATA_PAGE_SIZE
            assert copy[7] == record(7)
        finally:
            copy.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_a_bad_cache_size_is_a_configuration_error(remote: KaraStorage, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="cache_size"):
        remote.open_dataset("ns", "key", cache_size=bad)


def test_small_records_are_read_exactly_when_a_too_small_cache_keeps_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = KaraStorage(f"memory://page-cache-{next(_names)}")
    with store.open_dataset("ns", "key", "w", version=1) as ds:
        ds.write_many(record(i) for i in range(20_000))
    budget = 2 * DATA_PAGE_SIZE  # about 5% of the data: random pages are rarely reused
    with store.open_dataset("ns", "key", cache_size=budget) as ds:
        indices = random.Random(5).choices(range(20_000), k=1400)
        assert all(ds[i] == record(i) for i in indices[:1000])
        calls = _count_reads(store.backend, monkeypatch)
        assert all(ds[i] == record(i) for i in indices[1000:])
        pages = [c for c in calls if "/data/" in c[0] and c[2] - c[1] >= DATA_PAGE_SIZE]
        assert len(pages) < len(calls) // 4  # only the probes that watch for reuse
    store.close()
