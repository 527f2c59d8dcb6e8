"""kara_ray.write_datasink / read_datasource: every CPU from the start, user limits honoured."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import ray
import ray.cloudpickle
from kara_ray import KaraDatasink, read_datasource, write_datasink
from ray.data import DataContext, ExecutionResources
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from kara_core import KaraStorage

# The classes below run in Ray workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TASKS = 4
#: Each task's length: the four of them end well inside Ray's first second of zero budgets.
SLEEP = 0.3


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


class SlowDatasink(KaraDatasink):
    """A KaraDatasink whose write tasks take SLEEP seconds more and report when they ran."""

    def write(self, blocks: Any, ctx: Any) -> Any:
        start = time.time()
        time.sleep(SLEEP)
        result = super().write(blocks, ctx)
        return {**result, "span": (start, time.time())}

    def on_write_complete(self, write_result: Any) -> None:
        self.spans = [result["span"] for result in write_result.write_returns]
        super().on_write_complete(write_result)


class SlowDatasource(Datasource):
    """TASKS read tasks that each sleep SLEEP seconds and yield one row: when they ran."""

    def estimate_inmemory_data_size(self) -> int:
        return 16 * TASKS

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None):
        def read() -> Any:
            start = time.time()
            time.sleep(SLEEP)
            yield pa.table({"start": [start], "end": [time.time()]})

        metadata = BlockMetadata(num_rows=1, size_bytes=16, exec_stats=None, input_files=None)
        return [ReadTask(read, metadata, per_task_row_limit=per_task_row_limit) for _ in range(TASKS)]


def _dataset() -> Any:
    return ray.data.range(TASKS * 100, override_num_blocks=TASKS).materialize()


def test_the_write_runs_its_tasks_side_by_side_from_the_start(ray_session: Any, tmp_path: Path) -> None:
    # Under Ray's defaults (reservation on) these tasks run one at a time: the whole write
    # ends inside the first second, when every operator's budget is still zero.
    # Ray's scheduling is not deterministic: on a loaded machine (seen in CI, and here in
    # about one run in three with a busy loop on one of the two cores, on the code before
    # and after round 8 alike) a write sometimes runs its tasks one after another anyway.
    # With the reservation on that happens every time, so the check is that at least one
    # of three writes ran two tasks side by side.
    url = f"file://{tmp_path}/store"
    ds = _dataset()
    most = []
    for attempt in range(1, 4):
        assert ds.context.op_resource_reservation_enabled
        version = f"v{attempt}"
        sink = SlowDatasink(url, "corpus", "web", version)
        report = write_datasink(ds, sink)
        assert report is sink.report and report.records == TASKS * 100 and report.parts == TASKS
        # Scoped to the write: the dataset's context is restored, the global one never touched.
        assert ds.context.op_resource_reservation_enabled
        assert DataContext.get_current().op_resource_reservation_enabled
        with KaraStorage(url).open_dataset("corpus", "web", version=version) as reader:
            assert [record["id"] for record in reader] == list(range(TASKS * 100))
        most.append(_most_at_once(sink.spans))
        if most[-1] == 2:
            break
    assert 2 in most, f"tasks at once in each write: {most}"


def test_the_write_keeps_the_limits_the_user_set(ray_session: Any, tmp_path: Path) -> None:
    ds = _dataset()
    ds.context.execution_options.resource_limits = ExecutionResources(cpu=1)
    sink = SlowDatasink(f"file://{tmp_path}/store", "corpus", "web", "v1")
    write_datasink(ds, sink)
    # Only Ray's allocator (the reservation) enforces the limit: it stays on, one task at a time.
    assert _most_at_once(sink.spans) == 1
    assert ds.context.op_resource_reservation_enabled


def _failing(batch: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("injected failure upstream of the write")


def test_a_failed_write_restores_the_datasets_context(ray_session: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    ds = ray.data.range(10).map_batches(_failing)
    with pytest.raises(Exception, match="injected failure"):
        write_datasink(ds, KaraDatasink(url, "corpus", "web", "v1"), ray_remote_args={"max_retries": 0})
    assert ds.context.op_resource_reservation_enabled
    assert list((tmp_path / "store").rglob("*.blk")) == []


def test_the_read_runs_its_tasks_side_by_side_on_its_own_context(ray_session: Any) -> None:
    ds = read_datasource(SlowDatasource(), override_num_blocks=TASKS)
    assert ds.context is not DataContext.get_current()
    assert not ds.context.op_resource_reservation_enabled
    assert DataContext.get_current().op_resource_reservation_enabled
    spans = [(row["start"], row["end"]) for row in ds.take_all()]
    assert len(spans) == TASKS and _most_at_once(spans) == 2


def test_the_read_keeps_the_limits_the_user_set(ray_session: Any) -> None:
    options = DataContext.get_current().execution_options
    before = options.resource_limits
    options.resource_limits = ExecutionResources(cpu=1)
    try:
        ds = read_datasource(SlowDatasource(), override_num_blocks=TASKS)
    finally:
        options.resource_limits = before
    assert ds.context.op_resource_reservation_enabled
    spans = [(row["start"], row["end"]) for row in ds.take_all()]
    assert _most_at_once(spans) == 1
