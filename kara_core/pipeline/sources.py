"""What mixtures, packed views and the torch integration read from: record views.

A *record view* is a fixed-length sequence read in batches of positions:

- ``len(view)``: the number of records (the same in every epoch);
- ``view.fetch(positions, epoch)``: the records at ``positions`` (an int64 array, any
  order, repeats allowed), decoded, as a list in the same order;
- ``view.order_identity()``: JSON-compatible description of what the records at each
  position depend on (the dataset version, the view's parameters), kept in resume states;
- ``view.self_ordered``: True when the view orders its records itself (a mixture), so
  readers take its positions in order instead of shuffling them.

:class:`RowView` adapts a row dataset opened for reading; :func:`as_view` accepts either.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigurationError, ModeError

__all__ = ["RecordView", "RowView", "as_view"]

#: Records between two wanted ones that are read through rather than read separately.
READ_THROUGH = 32


@runtime_checkable
class RecordView(Protocol):
    """A fixed-length sequence of records read in batches of positions (see the module doc)."""

    self_ordered: bool

    def __len__(self) -> int: ...

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[Any]: ...

    def order_identity(self) -> dict[str, Any]: ...


class RowView:
    """A row dataset (mode ``"r"``) as a record view: batched, grouped ranged reads."""

    self_ordered = False

    def __init__(self, rows: Any) -> None:
        if getattr(rows, "mode", "r") != "r":
            raise ModeError("a mixture or packed view needs row datasets opened with mode 'r'")
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def raws(self, positions: np.ndarray) -> list[bytes]:
        """The stored bytes of the records at ``positions``, in order.

        Wanted records close together are read with one ranged read (one index read and
        one data read per run), never one read per record.
        """
        if not len(positions):
            return []
        wanted, inverse = np.unique(positions, return_inverse=True)
        cuts = np.flatnonzero(np.diff(wanted) > READ_THROUGH) + 1
        read = self.rows.read_raw_range
        found: list[bytes] = []
        for run in np.split(wanted, cuts):
            first = int(run[0])
            batch = read(first, int(run[-1]) + 1)
            found.extend(batch[i] for i in (run - first).tolist())
        return [found[i] for i in inverse.ravel().tolist()]

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[Any]:
        """The decoded records at ``positions`` (each occurrence decoded on its own)."""
        return list(map(self.rows.serializer.deserialize, self.raws(positions)))

    def order_identity(self) -> dict[str, Any]:
        """The dataset version and the slice (what a position means)."""
        rows = self.rows
        return {
            "kind": "rows",
            "namespace": getattr(rows, "namespace", None),
            "key": getattr(rows, "key", None),
            "version": getattr(rows, "version", None),
            "records": len(rows),
        }

    def __repr__(self) -> str:
        return f"RowView({self.rows!r})"


def as_view(source: Any, what: str = "source") -> Any:
    """``source`` as a record view: a view is returned as it is, a row dataset is wrapped."""
    if isinstance(source, RecordView):
        return source
    if hasattr(source, "read_raw_range") and hasattr(source, "serializer"):
        return RowView(source)
    raise ConfigurationError(
        f"{what} must be a row dataset opened with mode 'r', a mixture or a packed view, got {type(source).__name__}"
    )
