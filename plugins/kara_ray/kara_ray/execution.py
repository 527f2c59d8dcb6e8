"""Writing and reading with every CPU from the start: Ray Data's entry points, one setting scoped.

Ray Data 2.60 budgets each operator out of global resource limits that its autoscaling
coordinator (an actor) reports asynchronously: the first answer is read a second after
the execution starts (``ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S``), and until
then every budget is zero and only Ray's liveness rule starts tasks, one at a time. A
resource limit set by the user cannot lift that floor (it is taken as a minimum with the
zero limits), so a write or read that lasts about a second runs serially.

:func:`write_datasink` and :func:`read_datasource` are Ray's own calls with the
operator resource reservation (``DataContext.op_resource_reservation_enabled``) off for
that dataset only, so every task Ray can place starts at once: the write switches it
off on the dataset's context for the duration of the write and restores it; the read
returns a dataset whose context is its own copy. The global context is never changed.
When the user has set resource limits (``execution_options.resource_limits`` or
``exclude_resources``), or switched the reservation off already, nothing is changed:
only the reservation's allocator enforces those limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.data import DataContext, Dataset, Datasink, ExecutionResources
from ray.data.datasource import Datasource

__all__ = ["fast_start_applies", "read_datasource", "write_datasink"]


def fast_start_applies(context: DataContext) -> bool:
    """True if switching the reservation off for this context changes nothing the user set.

    False when the reservation is already off, or when the user limited the resources the
    execution may use (Ray's allocator, which the reservation enables, enforces them).
    """
    options = context.execution_options
    return (
        context.op_resource_reservation_enabled
        and options.is_resource_limits_default()
        and options.exclude_resources == ExecutionResources.zero()
    )


@contextmanager
def _reservation_off(context: DataContext) -> Iterator[bool]:
    if not fast_start_applies(context):
        yield False
        return
    context.op_resource_reservation_enabled = False
    try:
        yield True
    finally:
        context.op_resource_reservation_enabled = True


def write_datasink(dataset: Dataset, datasink: Datasink, **write_options: Any) -> Any:
    """``dataset.write_datasink(datasink, **write_options)`` with every CPU from the start.

    The dataset's own context (which the write's execution uses) has the operator
    reservation off while the write runs, unless the user set resource limits (see the
    module's description); it is restored afterwards, also when the write fails. Returns
    the datasink's ``report`` (a :class:`kara_core.row.parallel.CommitReport` for a
    :class:`kara_ray.KaraDatasink`), or None for a datasink without one.
    """
    with _reservation_off(dataset.context):
        dataset.write_datasink(datasink, **write_options)
    return getattr(datasink, "report", None)


def read_datasource(datasource: Datasource, **read_options: Any) -> Dataset:
    """``ray.data.read_datasource(datasource, **read_options)`` with every CPU from the start.

    The dataset is made with a copy of the current context (as Ray makes every dataset);
    that copy, shared only by the datasets derived from this one, has the operator
    reservation off unless the user set resource limits. The global context is unchanged.
    """
    dataset = ray.data.read_datasource(datasource, **read_options)
    if dataset.context is DataContext.get_current():  # never the user's global context
        raise RuntimeError("ray.data.read_datasource returned a dataset on the global DataContext")
    if fast_start_applies(dataset.context):
        dataset.context.op_resource_reservation_enabled = False
    return dataset
