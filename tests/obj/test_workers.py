"""How many download threads a load uses by default, by what the store can do."""

from __future__ import annotations

from kara_core.backend import Capabilities
from kara_core.obj.tasks import DEFAULT_WORKERS, LOCAL_LOAD_WORKERS, REMOTE_LOAD_WORKERS, load_workers


def test_loads_from_local_stores_use_few_threads() -> None:
    assert load_workers(Capabilities(local_path=True)) == LOCAL_LOAD_WORKERS == 4


def test_loads_from_stores_with_parallel_reads_keep_many_requests_in_flight() -> None:
    assert load_workers(Capabilities(parallel_reads=True)) == REMOTE_LOAD_WORKERS == 32


def test_other_stores_use_the_default() -> None:
    assert load_workers(Capabilities()) == DEFAULT_WORKERS == 8
