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

from collections import OrderedDict
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigurationError, ModeError
from ..row.dataset import _codec as record_codec

__all__ = ["RecordView", "RowView", "as_view", "pick"]

#: Records read together (at most; fewer when they are large), and the bytes of them a
#: view keeps for later calls.
CHUNK_RECORDS = 64
CHUNK_BYTES = 64 * 1024
CACHE_BYTES = 32 * 1024 * 1024


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
        count = len(rows)
        mean = max(1, rows.nbytes() // count) if count else 1
        #: Records per chunk (the unit of reading and caching), and chunks kept.
        self.chunk = max(1, min(CHUNK_RECORDS, CHUNK_BYTES // mean))
        self.cached_chunks = max(4, CACHE_BYTES // (self.chunk * mean))
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._deserialize = record_codec(rows.serializer)[1]

    def __len__(self) -> int:
        return len(self.rows)

    def raws(self, positions: np.ndarray) -> list[bytes]:
        """The stored bytes of the records at ``positions``, in order.

        Records are read in aligned chunks of neighbouring records (consecutive missing
        chunks in one ranged read) kept in a small cache (about CACHE_BYTES): shuffled
        orders take the records of a block over several calls, and packed samples share
        records at their edges.
        """
        if not len(positions):
            return []
        size, cache = self.chunk, self._cache
        chunks, offsets = np.divmod(positions, size)
        wanted, inverse = np.unique(chunks, return_inverse=True)
        names = wanted.tolist()
        absent = [chunk for chunk in names if chunk not in cache]
        start = 0
        for end in range(1, len(absent) + 1):
            if end == len(absent) or absent[end] != absent[end - 1] + 1:
                self._read_chunks(absent[start], absent[end - 1] + 1)
                start = end
        found = [cache[chunk] for chunk in names]
        # Oldest read first out: readers move forward through their sources.
        while len(cache) > max(self.cached_chunks, len(names)):
            cache.popitem(last=False)
        return [found[i][offset] for i, offset in zip(inverse.ravel().tolist(), offsets.tolist(), strict=True)]

    def _read_chunks(self, first: int, stop: int) -> None:
        size = self.chunk
        raws = self.rows.read_raw_range(first * size, stop * size)
        for chunk in range(first, stop):
            self._cache[chunk] = raws[(chunk - first) * size : (chunk - first + 1) * size]

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[Any]:
        """The decoded records at ``positions`` (each occurrence decoded on its own)."""
        return list(map(self._deserialize, self.raws(positions)))

    def order_identity(self) -> dict[str, Any]:
        """The dataset version and the slice (what a position means)."""
        rows = self.rows
        return {
            "kind": "rows",
            "namespace": getattr(rows, "namespace", None),
            "key": getattr(rows, "key", None),
            "version": getattr(rows, "version", None),
            "start": getattr(rows, "start", 0),
            "records": len(rows),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_cache": OrderedDict()}
        del state["_deserialize"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._deserialize = record_codec(self.rows.serializer)[1]

    def __repr__(self) -> str:
        return f"RowView({self.rows!r})"


def pick(values: list[Any], indices: np.ndarray) -> list[Any]:
    """``[values[i] for i in indices]``, without a Python step per item."""
    if len(indices) == 1:
        return [values[int(indices[0])]]
    return list(itemgetter(*indices.tolist())(values))


def as_view(source: Any, what: str = "source") -> Any:
    """``source`` as a record view: a view is returned as it is, a row dataset is wrapped."""
    if isinstance(source, RecordView):
        return source
    if hasattr(source, "read_raw_range") and hasattr(source, "serializer"):
        return RowView(source)
    raise ConfigurationError(
        f"{what} must be a row dataset opened with mode 'r', a mixture or a packed view, got {type(source).__name__}"
    )
