"""RowShard: every ``count``-th record of a dataset, starting at ``index`` (``ds.shard``)."""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, EndOfDatasetError, RecordIndexError

if TYPE_CHECKING:
    from .dataset import RowDataset

__all__ = ["RowShard"]

#: Shard records read per underlying range read.
CHUNK = 1024


class RowShard:
    """Records ``index, index + count, index + 2 * count, ...`` of a RowDataset (or slice).

    The shards ``0..count-1`` of a dataset hold every record exactly once: give shard
    ``info.id`` of ``info.num_workers`` to each DataLoader worker. A shard has its own
    cursor (``read``, ``seek``, ``tell``, iteration) and random access (``shard[i]``);
    it pickles (as its dataset does) and reads in ranges, not record by record.
    """

    def __init__(self, dataset: RowDataset, index: int, count: int) -> None:
        index, count = operator.index(index), operator.index(count)
        if count < 1 or not 0 <= index < count:
            raise ConfigurationError(f"shard needs 0 <= index < count, got index={index}, count={count}")
        self.dataset = dataset
        self.index = index
        self.count = count
        self._pos = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Number of records in this shard."""
        return max(0, (len(self.dataset) - self.index + self.count - 1) // self.count)

    def size(self) -> int:
        """Same as ``len(shard)`` (the 2.x name)."""
        return len(self)

    def _raw(self, start: int, stop: int) -> list[bytes]:
        # Shard records [start, stop): one ranged read of the dataset records they span.
        first = self.index + start * self.count
        last = self.index + (stop - 1) * self.count + 1
        return self.dataset.read_raw_range(first, last)[:: self.count]

    def __getitem__(self, i: int) -> Any:
        """Shard record ``i`` (negative counts from the end); RecordIndexError out of range."""
        length = len(self)
        k = operator.index(i)
        if k < 0:
            k += length
        if not 0 <= k < length:
            raise RecordIndexError(f"record {i} is out of range for a shard of {length} records")
        return self.dataset[self.index + k * self.count]

    def pread(self, i: int) -> Any:
        """Shard record ``i`` without moving the cursor (same as ``shard[i]``)."""
        return self[i]

    def __iter__(self) -> Iterator[Any]:
        """Yield the shard's records from the cursor to the end, moving the cursor along."""
        deserialize = self.dataset._deserialize
        while True:
            with self._lock:
                start = self._pos
                stop = min(start + CHUNK, len(self))
                self._pos = stop
            if start >= stop:
                return
            yield from map(deserialize, self._raw(start, stop))

    def read(self, default: Any = EndOfDatasetError) -> Any:
        """The next record; at the end EndOfDatasetError (an EOFError), or ``default`` if given."""
        with self._lock:
            pos = self._pos
            if pos >= len(self):
                if default is EndOfDatasetError:
                    raise EndOfDatasetError(f"end of shard {self.index} of {self.count}: all records were read")
                return default
            self._pos = pos + 1
        return self[pos]

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the cursor (``whence`` as in :meth:`RowDataset.seek`); return its position."""
        offset = operator.index(offset)
        with self._lock:
            base = {0: 0, 1: self._pos, 2: len(self)}.get(whence)
            if base is None:
                raise ConfigurationError(f"whence must be 0, 1 or 2, got {whence!r}")
            self._pos = min(max(base - offset if whence == 2 else base + offset, 0), len(self))
            return self._pos

    def tell(self) -> int:
        """Position of the cursor (records from the start of the shard)."""
        return self._pos

    def close(self) -> None:
        """Close the underlying dataset."""
        self.dataset.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.dataset, self.index, self.count, self._pos))

    def __repr__(self) -> str:
        return f"<RowShard {self.index} of {self.count} ({len(self)} records) of {self.dataset!r}>"


def _rebuild(dataset: RowDataset, index: int, count: int, position: int) -> RowShard:
    shard = RowShard(dataset, index, count)
    shard._pos = position
    return shard
