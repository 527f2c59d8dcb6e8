"""kara_core.mix: weighted, deterministic, resumable interleaving of row datasets."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

import kara_core
from kara_core import KaraStorage
from kara_core.errors import ConfigurationError
from kara_core.pipeline.mix import MAX_PERIOD, quotas

from .conftest import SIZES

WEIGHTS = {"web": 0.5, "code": 0.3, "books": 0.2}


def names_of(samples) -> list[str]:
    return [name for name, _ in samples]


def test_proportions_hold_in_every_sliding_window(sources) -> None:
    mixture = kara_core.mix(sources, WEIGHTS, exhausted="cycle", samples=5000, with_source=True)
    drawn = np.array(names_of(mixture))
    for window in (8, 64, 1000):
        for name, weight in WEIGHTS.items():
            counts = np.convolve(drawn == name, np.ones(window, dtype=int), "valid")
            assert np.abs(counts - window * weight).max() <= 1.0, (name, window)


def test_irrational_looking_weights_still_hold_within_a_small_bound(sources) -> None:
    weights = {"web": 1 / 3, "code": 2**0.5, "books": 0.123456789}
    assert sum(quotas(list(weights.values()))) <= MAX_PERIOD
    mixture = kara_core.mix(sources, weights, exhausted="cycle", samples=20_000, with_source=True)
    drawn = np.array(names_of(mixture))
    total = sum(weights.values())
    for window in (16, 5000):
        for name, weight in weights.items():
            counts = np.convolve(drawn == name, np.ones(window, dtype=int), "valid")
            assert np.abs(counts - window * weight / total).max() <= 2.0, (name, window)


def test_stop_ends_the_epoch_when_the_first_source_runs_out(sources) -> None:
    mixture = kara_core.mix(sources, WEIGHTS, with_source=True)
    samples = list(mixture)
    assert len(samples) == len(mixture)
    per_source = {name: [record["i"] for n, record in samples if n == name] for name in SIZES}
    # books (61 records at 0.2) runs out first: all of it once, the others partly, no repeats.
    assert sorted(per_source["books"]) == list(range(SIZES["books"]))
    for name in ("web", "code"):
        assert len(set(per_source[name])) == len(per_source[name]) < SIZES[name]


def test_cycle_restarts_an_exhausted_source_in_a_new_order(sources) -> None:
    mixture = kara_core.mix(sources, WEIGHTS, exhausted="cycle", with_source=True)
    samples = list(mixture)
    books = [record["i"] for name, record in samples if name == "books"]
    first, second = books[:61], books[61:122]
    assert sorted(first) == sorted(second) == list(range(61))
    assert first != second
    # The epoch ends once every source was served completely.
    web = [record["i"] for name, record in samples if name == "web"]
    assert sorted(set(web)) == list(range(SIZES["web"]))


def test_samples_fixes_the_epoch_length(sources) -> None:
    assert len(list(kara_core.mix(sources, WEIGHTS, exhausted="cycle", samples=12_345))) == 12_345
    assert len(kara_core.mix(sources, WEIGHTS, samples=100)) == 100
    with pytest.raises(ConfigurationError, match="source 'books' runs out"):
        kara_core.mix(sources, WEIGHTS, samples=10_000)


def test_the_order_depends_on_seed_and_epoch_only_never_on_data(sources, tmp_path) -> None:
    def ids(mixture, epoch=0):
        mixture.set_epoch(epoch)
        return [(name, record["i"]) for name, record in mixture]

    base = ids(kara_core.mix(sources, WEIGHTS, seed=3, with_source=True))
    assert base == ids(kara_core.mix(sources, WEIGHTS, seed=3, with_source=True))
    assert base != ids(kara_core.mix(sources, WEIGHTS, seed=4, with_source=True))
    assert base != ids(kara_core.mix(sources, WEIGHTS, seed=3, with_source=True), epoch=1)
    other = KaraStorage(f"file://{tmp_path}/other")
    for name, count in SIZES.items():
        with other.open_dataset("ns", name, "w", version="1") as ds:
            ds.write_many({"i": i, "payload": "different data " * (i % 7)} for i in range(count))
    same_lengths = {name: other.open_dataset("ns", name) for name in SIZES}
    assert ids(kara_core.mix(same_lengths, WEIGHTS, seed=3, with_source=True)) == base


def test_state_dict_resumes_exactly_in_another_mixture_object(sources) -> None:
    reference = list(kara_core.mix(sources, WEIGHTS, exhausted="cycle", seed=9))
    mixture = kara_core.mix(sources, WEIGHTS, exhausted="cycle", seed=9)
    taken = [sample for _, sample in zip(range(777), mixture, strict=False)]
    state = mixture.state_dict()
    assert state["position"] == 777
    assert sum(where["drawn"] for where in state["sources"].values()) == 777
    resumed = pickle.loads(pickle.dumps(kara_core.mix(sources, WEIGHTS, exhausted="cycle", seed=9)))
    resumed.load_state_dict(state)
    assert taken + list(resumed) == reference


def test_state_records_where_each_source_is(sources) -> None:
    mixture = kara_core.mix(sources, WEIGHTS, exhausted="cycle", with_source=True)
    taken = [name for name, _ in (next(iter(mixture)) for _ in range(500))]
    where = mixture.state_dict()["sources"]
    counts = Counter(taken)
    for name, size in SIZES.items():
        assert where[name]["drawn"] == counts[name]
        assert (where[name]["cycle"], where[name]["index"]) == divmod(counts[name], size)


def test_a_state_of_another_mixture_is_refused(sources) -> None:
    state = kara_core.mix(sources, WEIGHTS, seed=1).state_dict()
    with pytest.raises(ConfigurationError, match="different mixture"):
        kara_core.mix(sources, WEIGHTS, seed=2).load_state_dict(state)
    with pytest.raises(ConfigurationError, match="not a mixture state"):
        kara_core.mix(sources, WEIGHTS).load_state_dict({"epoch": 0})


def test_a_mixture_can_be_a_source_of_another(sources) -> None:
    inner = kara_core.mix({"code": sources["code"], "books": sources["books"]}, {"code": 1, "books": 1})
    outer = kara_core.mix({"web": sources["web"], "rest": inner}, {"web": 3, "rest": 1}, with_source=True)
    samples = list(outer)
    assert Counter(names_of(samples[:400])) == {"web": 300, "rest": 100}
    rest = [record["src"] for name, record in samples if name == "rest"]
    assert rest[:6] in (["code", "books"] * 3, ["books", "code"] * 3)


def test_bad_arguments_are_clear_errors(sources, store: KaraStorage) -> None:
    with pytest.raises(ConfigurationError, match="same sources"):
        kara_core.mix(sources, {"web": 1})
    with pytest.raises(ConfigurationError, match="positive number"):
        kara_core.mix(sources, {**WEIGHTS, "web": 0})
    with pytest.raises(ConfigurationError, match="exhausted"):
        kara_core.mix(sources, WEIGHTS, exhausted="never")
    with store.open_dataset("ns", "empty", "w", version="1"):
        pass
    with pytest.raises(ConfigurationError, match=r"'empty'.* no records"):
        kara_core.mix({"empty": store.open_dataset("ns", "empty")}, {"empty": 1})
    with pytest.raises(ConfigurationError, match="row dataset opened with mode 'r'"):
        kara_core.mix({"x": [1, 2]}, {"x": 1})


def test_shuffle_false_takes_every_source_in_stored_order(sources) -> None:
    mixture = kara_core.mix(sources, WEIGHTS, shuffle=False, with_source=True)
    for name in SIZES:
        ids = [record["i"] for n, record in mixture if n == name]
        assert ids == list(range(len(ids)))
