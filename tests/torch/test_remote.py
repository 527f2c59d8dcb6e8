"""Over http:// (a real static web server on 127.0.0.1): same samples, ranged reads, not per record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kara_http.testing import StaticServer

from kara_core import KaraStorage

from .conftest import SMALL, load


@pytest.fixture
def served(store_url: str) -> Iterator[StaticServer]:
    """The store of the torch tests, served read-only over HTTP."""
    with StaticServer(store_url.removeprefix("file://")) as server:
        yield server


def test_http_store_gives_the_same_samples_with_workers(small, served: StaticServer) -> None:
    with KaraStorage(served.url).open_dataset("torch", "small") as remote:
        assert load(remote, num_workers=2, shuffle=True) == load(small, shuffle=True)


def test_http_reads_are_ranged_requests_grouping_many_records(served: StaticServer) -> None:
    with KaraStorage(served.url).open_dataset("torch", "small") as remote:
        served.log.clear()
        assert len(load(remote, num_workers=2, shuffle=True)) == SMALL
    reads = [request for request in served.log if request.method == "GET" and "/data/" in request.path]
    assert reads and all(request.range for request in reads)
    assert len(reads) * 8 < SMALL
