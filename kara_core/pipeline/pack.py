"""Packed token views: a version's token sequences cut into samples of ``seq_len`` tokens.

The token sequences of consecutive records (``record[field]``, or the record itself with
``field=None``: lists or 1-D arrays), each followed by ``eos_id`` when one is given, form
one stream of ``T`` tokens; sample ``i`` is ``stream[i * seq_len : (i + 1) * seq_len]``
(LitData ``TokensLoader`` semantics). There are ``T // seq_len`` samples, all exactly
``seq_len`` long; with ``drop_remainder=False`` a last, shorter sample holds the rest.

Random access needs the cumulative token count of every record, computed once per
version and cached in its sidecar (:mod:`kara_core.pipeline.token_counts`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import ConfigurationError, CorruptDatasetError
from .sources import RowView, as_view, sorted_unique
from .token_counts import HEAD_BYTES, cached_token_counts, token_counts_path

__all__ = ["PackedView"]

#: Samples fetched at once while iterating a packed view directly.
ITER_CHUNK = 256


class PackedView:
    """Fixed-length token samples over a row dataset (see the module doc).

    ``packed[i]`` is a 1-D ``np.ndarray`` (the records' dtype, int64 for lists), ``len``
    is exact; it is a record view, so ``mix`` and ``make_torch_dataset`` (which may
    shuffle the samples) accept it.
    """

    self_ordered = False

    def __init__(
        self,
        dataset: Any,
        field: str | None = "tokens",
        seq_len: int = 2048,
        *,
        eos_id: int | None = None,
        drop_remainder: bool = True,
    ) -> None:
        view = as_view(dataset, "the dataset to pack")
        if not isinstance(view, RowView):
            raise ConfigurationError("pack() takes a row dataset; mix packed views instead of packing a mixture")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ConfigurationError(f"seq_len must be a positive integer, got {seq_len!r}")
        if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, int)):
            raise ConfigurationError(f"eos_id must be an integer token id or None, got {eos_id!r}")
        self.view, self.field, self.seq_len = view, field, seq_len
        self.eos_id, self.drop_remainder = eos_id, bool(drop_remainder)
        cumulative = cached_token_counts(view.rows, field)
        #: Tokens of each record, as the counts say: every record read is checked against it.
        self.counts = np.diff(cumulative, prepend=0)
        separators = np.arange(1, len(cumulative) + 1, dtype=np.int64) if eos_id is not None else 0
        #: ends[r]: where record r (and its eos) ends in the token stream.
        self.ends = cumulative + separators
        self.tokens = int(self.ends[-1]) if len(self.ends) else 0
        whole, rest = divmod(self.tokens, seq_len)
        self.length = whole + (1 if rest and not self.drop_remainder else 0)

    def __len__(self) -> int:
        """Number of samples."""
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        """Sample ``index`` (negative counts from the end)."""
        i = operator.index(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"sample {index} is out of range for a packed view of {self.length} samples")
        return self.fetch(np.array([i], dtype=np.int64))[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every sample, in order."""
        for first in range(0, self.length, ITER_CHUNK):
            yield from self.fetch(np.arange(first, min(self.length, first + ITER_CHUNK), dtype=np.int64))

    def _tokens(self, record: Any) -> np.ndarray:
        tokens = record if self.field is None else record[self.field]
        return tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens, dtype=np.int64)

    def _located(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Stream bounds of the samples at ``positions``, their first and last records, and
        the token arrays of every record they touch (by record number)."""
        starts = positions * self.seq_len
        stops = np.minimum(starts + self.seq_len, self.tokens)
        ends = self.ends
        first = np.searchsorted(ends, starts, side="right")
        last = np.searchsorted(ends, stops - 1, side="right")
        spans = last - first + 1
        needed = sorted_unique(np.repeat(first - np.cumsum(spans) + spans, spans) + np.arange(spans.sum()))
        records = self.view.fetch(needed)
        bodies = list(map(self._tokens, records))
        lengths = np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies))
        if not np.array_equal(lengths, self.counts[needed]):
            self._counts_disagree(needed, lengths)
        tokens = dict(zip(needed.tolist(), bodies, strict=True))
        return starts, stops, first, last, tokens

    def _counts_disagree(self, records: np.ndarray, lengths: np.ndarray) -> None:
        """Refuse records whose length is not the one their token counts give: the samples
        cut from them would be shifted, short or overlapping, without a word."""
        wrong = int(np.flatnonzero(lengths != self.counts[records])[0])
        record, rows = int(records[wrong]), self.view.rows
        told = f"record {record} has {int(lengths[wrong])} tokens, but the token counts say {int(self.counts[record])}"
        if rows.start:  # a slice: counted in memory when the view was made
            raise CorruptDatasetError(repr(rows), None, f"{told}: the records read differently when counted")
        path = token_counts_path(rows.namespace, rows.key, rows.version, self.field)
        raise CorruptDatasetError(
            f"{rows.backend.url}/{path}",
            HEAD_BYTES + 8 * record,
            f"{told}: this cache does not describe these records (counted with another serializer, "
            "or damaged); delete it and pack() counts the version again",
        )

    def fetch_batch(
        self, positions: np.ndarray, epoch: int = 0, alloc: Callable[[tuple[int, int], Any], np.ndarray] | None = None
    ) -> np.ndarray:
        """The samples at ``positions`` (any order) as the rows of one new 2-D array.

        ``alloc(shape, dtype)`` makes the array (default ``np.empty``): kara-torch's batch
        mode fills shared memory this way. The tokens are copied once, straight from the
        records into the array (one ``np.concatenate`` when the positions are consecutive).
        Every sample must be ``seq_len`` long (a last, shorter sample of
        ``drop_remainder=False`` is refused).
        """
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and int(positions.max()) * self.seq_len + self.seq_len > self.tokens:
            raise ConfigurationError(
                f"sample {int(positions.max())} is shorter than seq_len={self.seq_len} (drop_remainder=False): "
                "batches of packed samples need samples of one length"
            )
        make = np.empty if alloc is None else alloc
        if not len(positions):
            return make((0, self.seq_len), np.int64)
        starts, stops, first, last, tokens = self._located(positions)
        dtype = np.result_type(*{body.dtype for body in tokens.values()})
        out = make((len(positions), self.seq_len), dtype)
        if len(positions) > 1 and (np.diff(positions) == 1).all():
            pieces = self._pieces(tokens, int(starts[0]), int(stops[-1]), int(first[0]), int(last[-1]))
            np.concatenate(pieces, out=out.reshape(-1))
            return out
        for row, (start, stop, a, b) in enumerate(
            zip(starts.tolist(), stops.tolist(), first.tolist(), last.tolist(), strict=True)
        ):
            pieces = self._pieces(tokens, start, stop, a, b)
            np.concatenate(pieces, out=out[row])
        return out

    def fetch(self, positions: np.ndarray, epoch: int = 0) -> list[np.ndarray]:
        """The samples at ``positions`` (any order); ``epoch`` is unused (packing is fixed)."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return []
        starts, stops, first, last, tokens = self._located(positions)
        if len(positions) > 1 and (np.diff(positions) == 1).all():
            # Consecutive samples (reading in order): cut the whole stretch of the stream at
            # once; the samples are rows of one new array.
            stretch = self._cut(tokens, int(starts[0]), int(stops[-1]), int(first[0]), int(last[-1]))
            whole = len(stretch) // self.seq_len * self.seq_len
            samples = list(stretch[:whole].reshape(-1, self.seq_len))
            return [*samples, stretch[whole:]] if whole < len(stretch) else samples
        return [
            self._cut(tokens, start, stop, a, b)
            for start, stop, a, b in zip(starts.tolist(), stops.tolist(), first.tolist(), last.tolist(), strict=True)
        ]

    def _cut(self, tokens: dict[int, np.ndarray], start: int, stop: int, first: int, last: int) -> np.ndarray:
        """Stream tokens ``[start, stop)``, which lie in records ``first..last``."""
        pieces = self._pieces(tokens, start, stop, first, last)
        # Always a new array: samples outlive the mapped blocks, and torch wants them writable.
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0].copy()

    def _pieces(self, tokens: dict[int, np.ndarray], start: int, stop: int, first: int, last: int) -> list:
        """The parts of records ``first..last`` (and eos tokens) that make stream tokens ``[start, stop)``."""
        ends, eos = self.ends, self.eos_id
        pieces = []
        for record in range(first, last + 1):
            begin = int(ends[record - 1]) if record else 0
            body = tokens[record]
            lo, hi = max(start - begin, 0), min(stop - begin, len(body))
            if lo < hi:
                pieces.append(body[lo:hi])
            if eos is not None and start <= begin + len(body) < stop:
                pieces.append(np.array([eos], dtype=body.dtype))
        return pieces

    def order_identity(self) -> dict[str, Any]:
        """The dataset version and the packing parameters."""
        return {
            "kind": "pack",
            "rows": self.view.order_identity(),
            "field": self.field,
            "seq_len": self.seq_len,
            "eos_id": self.eos_id,
            "drop_remainder": self.drop_remainder,
        }

    def __repr__(self) -> str:
        return f"<PackedView {self.length} x {self.seq_len} tokens of {self.view.rows!r} field={self.field!r}>"
