"""Fuzzing the sidecars of parallel writes (write.json, done.json, plan.json): clean errors only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kara_core.backend import Backend
from kara_core.errors import CorruptDatasetError
from kara_core.row.parts import CommitPlan, PartDone, WriteMarker, read_done, read_model
from kara_core.url import open_backend

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)
FIELDS = {
    "write": st.text(),
    "created": st.floats(allow_nan=False),
    "part": st.integers(),
    "attempt": st.text(),
    "records": st.integers(),
    "data_blocks": st.lists(st.integers()),
    "index_blocks": st.lists(st.integers()),
    "closed": st.floats(allow_nan=False),
}
# Objects with the right field names and values of any type: close to valid, often not.
NEAR_MISS = st.fixed_dictionaries({}, optional={name: JSON | kind for name, kind in FIELDS.items()})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return open_backend(f"file://{tmp_path_factory.mktemp('sidecars')}", fsync=False)


@pytest.mark.parametrize("model", [WriteMarker, PartDone, CommitPlan])
@FUZZ
@given(
    raw=st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | NEAR_MISS.map(lambda v: json.dumps(v).encode())
)
def test_any_bytes_read_as_a_sidecar_or_a_clean_error(backend: Backend, model: type, raw: bytes) -> None:
    backend.put("s/sidecar.json", raw)
    try:
        value = read_model(backend, "s/sidecar.json", model)
    except CorruptDatasetError as exc:
        assert "s/sidecar.json" in str(exc)
    else:
        assert isinstance(value, model)


@FUZZ
@given(done=NEAR_MISS)
def test_done_json_is_a_consistent_part_or_a_clean_error(backend: Backend, done: dict[str, object]) -> None:
    backend.put("a/done.json", json.dumps(done).encode())
    try:
        value = read_done(backend, "a/")
    except CorruptDatasetError:
        return
    assert value is not None
    assert sum(value.index_blocks) == value.records * 8 and value.records >= 0


def test_an_absent_sidecar_reads_as_none(backend: Backend, tmp_path: Path) -> None:
    assert read_model(backend, "absent/write.json", WriteMarker) is None
    assert read_done(backend, "absent/") is None
