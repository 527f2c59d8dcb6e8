"""Mixtures: several sources interleaved by weight, deterministic and resumable.

The mixture's sequence is a pure function of (seed, epoch, weights, the sources' order
identities and lengths), never of data:

1. **Schedule**: the weights become integer quotas ``q`` per period of ``W = sum(q)``
   positions (exact for rational weights with small denominators, else rounded to a
   period of at most 65,536); smooth weighted round-robin lays out one period. Position
   ``p`` belongs to source ``s = table[p % W]`` and is that source's draw number
   ``k = (p // W) * q[s] + rank[p % W]``. In any window of positions each source's count
   is within about one of ``window * weight``.
2. **Per-source order**: draw ``k`` of source ``s`` is record ``G[k % n]`` of the
   source's order in cycle ``k // n`` (``n`` records), where ``G`` is the position-only
   shuffle of :mod:`kara_core.pipeline.order` seeded by (seed, source name) for (epoch,
   cycle). A source that is itself a mixture is taken in its own order.
3. **Length**: ``exhausted="stop"`` ends the epoch right before the first draw a source
   cannot serve; ``"cycle"`` restarts an exhausted source in a new order and ends the
   epoch once every source was served completely at least once. ``samples`` fixes the
   length instead (with ``"stop"`` it may not exceed what the sources hold).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ConfigurationError
from .order import EpochOrder, OrderCursor, ShuffleParams
from .sources import Decoder, as_view, encoded, sorted_unique

__all__ = ["MAX_PERIOD", "Mixture"]

#: Longest schedule period: weights needing a longer one are rounded to this resolution.
MAX_PERIOD = 1 << 16
#: Positions fetched at once while iterating a mixture directly.
ITER_CHUNK = 1024
#: Order cursors kept per mixture (one per source and cycle in use).
CURSORS = 64
_STATE_FORMAT = 1


def quotas(weights: list[float]) -> list[int]:
    """Integer quotas per period proportional to ``weights`` (sum at most MAX_PERIOD)."""
    exact = [Fraction(w).limit_denominator(1 << 20) for w in weights]
    scale = math.lcm(*(f.denominator for f in exact))
    ints = [int(f * scale) for f in exact]
    common = math.gcd(*ints)
    ints = [i // common for i in ints]
    if sum(ints) <= MAX_PERIOD and all(ints):
        return ints
    # Largest remainder rounding to MAX_PERIOD slots, every source keeping at least one.
    total = sum(weights)
    shares = [w / total * MAX_PERIOD for w in weights]
    ints = [max(1, math.floor(s)) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: shares[i] - math.floor(shares[i]), reverse=True)
    for i in by_remainder[: max(0, MAX_PERIOD - sum(ints))]:
        ints[i] += 1
    return ints


def schedule(quota: list[int]) -> np.ndarray:
    """One period of smooth weighted round-robin: the source of each of ``sum(quota)`` slots."""
    period = sum(quota)
    current = [0] * len(quota)
    table = np.empty(period, dtype=np.int32)
    for slot in range(period):
        best = 0
        for s, q in enumerate(quota):
            current[s] += q
            if current[s] > current[best]:
                best = s
        current[best] -= period
        table[slot] = best
    return table


def source_seed(seed: int, name: str) -> int:
    """The shuffle seed of one source: stable across runs, machines and Python versions."""
    digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _decoding(view: Any) -> Any:
    decoding = getattr(view, "decoding", None)
    return view if decoding is None else decoding()


class Mixture:
    """Sources interleaved by weight (see the module doc); ``kara_core.mix(...)`` builds one.

    ``sources`` maps names to row datasets (mode ``"r"``), mixtures or packed views;
    ``weights`` maps the same names to positive numbers. A mixture is iterable, has
    ``len``, random access to positions (:meth:`fetch`), :meth:`set_epoch` and exact
    resume (:meth:`state_dict` / :meth:`load_state_dict`), and ``make_torch_dataset``
    accepts it. ``with_source=True`` yields ``(name, record)`` pairs; ``shuffle=False``
    takes every source in stored order.
    """

    self_ordered = True

    def __init__(
        self,
        sources: Mapping[str, Any],
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        exhausted: str = "stop",
        samples: int | None = None,
        shuffle: bool = True,
        with_source: bool = False,
    ) -> None:
        names = list(sources)
        if not names:
            raise ConfigurationError("mix() needs at least one source")
        if set(names) != set(weights):
            raise ConfigurationError(
                f"sources and weights must name the same sources: sources {sorted(names)}, weights {sorted(weights)}"
            )
        for name in names:
            weight = weights[name]
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
                raise ConfigurationError(f"weight of source {name!r} must be a positive number, got {weight!r}")
        if exhausted not in ("stop", "cycle"):
            raise ConfigurationError(f"exhausted must be 'stop' or 'cycle', got {exhausted!r}")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise ConfigurationError(f"samples must be a positive integer or None, got {samples!r}")
        self.names = names
        self.views = [as_view(sources[name], f"source {name!r}") for name in names]
        self.weights = [float(weights[name]) for name in names]
        self.seed, self.exhausted, self.shuffle, self.with_source = int(seed), exhausted, bool(shuffle), with_source
        self.sizes = [len(view) for view in self.views]
        empty = [name for name, size in zip(names, self.sizes, strict=True) if not size]
        if empty:
            raise ConfigurationError(f"source(s) {', '.join(map(repr, empty))} of the mixture hold no records")
        self.quota = np.array(quotas(self.weights), dtype=np.int64)
        self.period = int(self.quota.sum())
        self.table = schedule(self.quota.tolist())
        # rank[slot]: how many earlier slots of the period belong to the same source.
        self.rank = np.empty(self.period, dtype=np.int64)
        self.slots: list[np.ndarray] = []
        for s in range(len(names)):
            where = np.flatnonzero(self.table == s)
            self.rank[where] = np.arange(len(where))
            self.slots.append(where)
        self.requested = samples
        self.length = self._length(samples)
        self.epoch = 0
        self.position = 0
        self._seeds = [source_seed(self.seed, name) for name in names]
        # Sources that decode alike share one decoder, so samples can stay encoded until used.
        self._decodings = [_decoding(view) for view in self.views]
        self._cursors: OrderedDict[tuple[int, int, int], tuple[OrderCursor, int]] = OrderedDict()

    # -- the schedule ----------------------------------------------------------------

    def position_of(self, source: int, draw: int) -> int:
        """The mixture position of draw number ``draw`` of source number ``source``."""
        q = int(self.quota[source])
        return draw // q * self.period + int(self.slots[source][draw % q])

    def drawn(self, source: int, position: int) -> int:
        """How many draws of source number ``source`` come before mixture ``position``."""
        whole, rest = divmod(position, self.period)
        return whole * int(self.quota[source]) + int(np.searchsorted(self.slots[source], rest))

    def _length(self, samples: int | None) -> int:
        if self.exhausted == "cycle":
            if samples is not None:
                return samples
            return max(self.position_of(s, n - 1) for s, n in enumerate(self.sizes)) + 1
        ends = [self.position_of(s, n) for s, n in enumerate(self.sizes)]
        natural = min(ends)
        if samples is None:
            return natural
        if samples > natural:
            first = self.names[ends.index(natural)]
            raise ConfigurationError(
                f"samples={samples} is more than the mixture holds with exhausted='stop': source {first!r} "
                f"runs out after {natural} samples; use exhausted='cycle' or fewer samples"
            )
        return samples

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The source number and draw number of each mixture position."""
        whole, rest = np.divmod(positions, self.period)
        source = self.table[rest]
        return source, whole * self.quota[source] + self.rank[rest]

    # -- records -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Samples in one epoch (the same in every epoch)."""
        return self.length

    def _order_values(self, source: int, epoch: int, cycle: int, wanted: np.ndarray) -> np.ndarray:
        # Records G[wanted] of the source's order in (epoch, cycle); `wanted` is sorted and
        # unique. Readers move forward, so a cursor per (source, epoch, cycle) serves them
        # in one pass; going back starts that cursor again.
        key = (source, epoch, cycle)
        entry = self._cursors.pop(key, None)
        if entry is None or int(wanted[0]) < entry[1]:
            params = ShuffleParams(seed=self._seeds[source])
            entry = (OrderCursor(EpochOrder(self.sizes[source], (epoch << 32) | cycle, True, params)), 0)
        values = entry[0].take(wanted)
        self._cursors[key] = (entry[0], int(wanted[-1]) + 1)
        while len(self._cursors) > CURSORS:
            self._cursors.popitem(last=False)
        return values

    def _records(self, source: int, epoch: int, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the source of ``draws``, and the epoch to read them in."""
        size = self.sizes[source]
        cycles, index = np.divmod(draws, size)
        if self.views[source].self_ordered:
            # A nested mixture keeps its own order; each cycle is another of its epochs.
            return index, (epoch << 32) | cycles
        if not self.shuffle:
            return index, np.zeros_like(index)
        records = np.empty_like(index)
        one_cycle = int(cycles[0]) == int(cycles[-1])
        for cycle in [int(cycles[0])] if one_cycle else sorted_unique(cycles).tolist():
            members = slice(None) if one_cycle else cycles == cycle
            wanted = index[members]
            if len(wanted) < 2 or (wanted[1:] > wanted[:-1]).all():
                # Draws in order (a reader moving forward): already sorted and distinct.
                records[members] = self._order_values(source, epoch, cycle, wanted)
            else:
                wanted, inverse = np.unique(wanted, return_inverse=True)
                records[members] = self._order_values(source, epoch, cycle, wanted)[inverse.ravel()]
        return records, np.zeros_like(index)

    def fetch(self, positions: np.ndarray, epoch: int | None = None) -> list[Any]:
        """The samples at mixture ``positions`` of ``epoch`` (default: the current one)."""
        items, decode = self.fetch_encoded(positions, epoch)
        if decode is None:
            return items.tolist()
        try:
            return decode(items.tolist())
        except Exception:
            self._fetch_from_sources(positions, epoch)
            raise

    def _fetch_from_sources(self, positions: np.ndarray, epoch: int | None) -> None:
        """Fetch the samples at ``positions`` from each source view on its own.

        Called when a shared decoder failed: a sample that does not decode then raises
        its source's own error, which names the record and where it is stored (a row
        dataset's :class:`~kara_core.errors.SerializationError`).
        """
        epoch = self.epoch if epoch is None else int(epoch)
        sources, draws = self.locate(np.asarray(positions, dtype=np.int64))
        for source in sorted_unique(sources).tolist():
            records, epochs = self._records(source, epoch, draws[np.flatnonzero(sources == source)])
            for sub_epoch in sorted_unique(epochs).tolist():
                self.views[source].fetch(records[epochs == sub_epoch], sub_epoch)

    def fetch_encoded(self, positions: np.ndarray, epoch: int | None = None) -> tuple[np.ndarray, Decoder | None]:
        """The samples at ``positions``, still encoded when every source decodes alike.

        Returns an object array and the decoder of a list of its items, or the decoded
        samples and None (sources decoding differently, or ``with_source``).
        """
        epoch = self.epoch if epoch is None else int(epoch)
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty(len(positions), dtype=object)
        if not len(positions):
            return out, None
        sources, draws = self.locate(positions)
        present = sorted_unique(sources).tolist()
        # Decoded here only when the sources do not share a decoder (or names are added).
        shared = not self.with_source and len({self._decodings[source] for source in present}) == 1
        decoder: Decoder | None = None
        for source in present:
            members = np.flatnonzero(sources == source) if len(present) > 1 else np.arange(len(positions))
            records, epochs = self._records(source, epoch, draws[members])
            sub_epochs = sorted_unique(epochs).tolist() if len(epochs) and epochs[0] != epochs[-1] else [int(epochs[0])]
            for sub_epoch in sub_epochs:
                part = np.flatnonzero(epochs == sub_epoch) if len(sub_epochs) > 1 else slice(None)
                items, decode = encoded(self.views[source], records[part], sub_epoch)
                if decode is not None:
                    if shared:
                        decoder = decode
                    else:
                        try:
                            items = np.fromiter(decode(items.tolist()), dtype=object, count=len(items))
                        except Exception:
                            # Its own error names the record that does not decode.
                            self.views[source].fetch(records[part], sub_epoch)
                            raise
                if self.with_source:
                    name = self.names[source]
                    items = np.fromiter(((name, item) for item in items.tolist()), dtype=object, count=len(items))
                out[members[part]] = items
        return out, decoder

    # -- iteration and resume -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (its own order) at its beginning."""
        if epoch < 0:
            raise ConfigurationError(f"epoch must be >= 0, got {epoch}")
        self.epoch, self.position = int(epoch), 0

    def __iter__(self) -> Iterator[Any]:
        """Yield the samples of the current epoch from the current position on."""
        while self.position < self.length:
            stop = min(self.length, self.position + ITER_CHUNK)
            for sample in self.fetch(np.arange(self.position, stop, dtype=np.int64)):
                self.position += 1
                yield sample

    def order_identity(self) -> dict[str, Any]:
        """What the sequence depends on besides the epoch (JSON-compatible, for resume checks)."""
        return {
            "kind": "mix",
            "seed": self.seed,
            "exhausted": self.exhausted,
            "samples": self.requested,
            "shuffle": self.shuffle,
            "with_source": self.with_source,
            "weights": [[name, weight] for name, weight in zip(self.names, self.weights, strict=True)],
            "sources": [[name, view.order_identity()] for name, view in zip(self.names, self.views, strict=True)],
        }

    def source_positions(self, position: int) -> dict[str, dict[str, int]]:
        """Where each source stands after ``position`` samples: draws, cycle, index in the cycle."""
        where = {}
        for s, name in enumerate(self.names):
            draws = self.drawn(s, position)
            where[name] = {"drawn": draws, "cycle": draws // self.sizes[s], "index": draws % self.sizes[s]}
        return where

    def state_dict(self) -> dict[str, Any]:
        """The position in the current epoch, to continue exactly with :meth:`load_state_dict`."""
        return {
            "format": _STATE_FORMAT,
            "order": self.order_identity(),
            "epoch": self.epoch,
            "position": self.position,
            "sources": self.source_positions(self.position),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at a position returned by :meth:`state_dict` (in this or another process)."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT or "position" not in state:
            raise ConfigurationError("not a mixture state (expected the dict returned by Mixture.state_dict())")
        if state["order"] != self.order_identity():
            raise ConfigurationError(
                "this state belongs to a different mixture (other sources, versions, weights, seed or options)"
            )
        if not 0 <= state["position"] <= self.length:
            raise ConfigurationError(f"position {state['position']} is outside the epoch of {self.length} samples")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    # -- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cursors"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={w:g}" for n, w in zip(self.names, self.weights, strict=True))
        return f"<Mixture {parts} {self.length} samples exhausted={self.exhausted!r} seed={self.seed}>"
