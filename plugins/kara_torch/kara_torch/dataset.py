"""KaraTorchDataset: a row dataset as a ``torch.utils.data.IterableDataset``.

The object handed to DataLoader workers is a small description (the row dataset pickles
as its store URL, options, namespace, key, pinned version and slice); each worker opens
its own reader and reads its own records, so no record passes through the main process.
The order of samples is computed by :mod:`kara_core.pipeline.order` from positions alone.
"""

from __future__ import annotations

import itertools
import multiprocessing
import operator
import os
import pickle
from collections.abc import Callable, Iterator
from multiprocessing.context import get_spawning_popen
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch.distributed
from torch.utils.data import IterableDataset, get_worker_info

from kara_core.errors import ConfigurationError, ModeError
from kara_core.pipeline.sources import Decoder, encoded, name_undecodable
from kara_core.serialization import batch_deserializer

from .order import EpochOrder, OrderCursor, RankPlan, ShuffleParams, worker_positions
from .reader import BlockReader

__all__ = ["KaraTorchDataset", "make_torch_dataset"]

#: Records read together when the order is not shuffled.
UNSHUFFLED_BLOCK = 1024
#: Samples decoded and transformed at a time (few, so transformed samples do not pile up).
DECODE_CHUNK = 32
#: Global positions of the epoch a worker plans at once (131,072): a few MB of plan per
#: worker whatever the dataset's size, and a first batch that waits for only this much of
#: the order (a block's records leave the shuffle buffer within ~10 refreshes, so almost
#: all of them fall in one or two windows: few blocks are read twice).
PLAN_WINDOW = 1 << 17
_STATE_FORMAT = 1
#: Positions of a record view (mixture, packed view) fetched at once.
VIEW_FETCH = 1024
#: Views that hand their samples over still encoded and small (a mixture of row datasets
#: of small records) are fetched up to this many positions at once after the first
#: fetch, as long as a fetch holds about ENCODED_FETCH_BYTES of them: a mixture's fetch
#: has a fixed cost (a few dozen numpy calls per source) that 1,024 small samples did not
#: amortize (bench/pipeline.py: 0.94x -> 1.06x of one dataset's samples/s at 0 workers).
MAX_VIEW_FETCH = 4096
ENCODED_FETCH_BYTES = 1 << 20


def make_torch_dataset(
    rows: Any, shuffle: bool = False, auto_distributed: bool = True, **kwargs: Any
) -> KaraTorchDataset:
    """Wrap a row dataset opened with mode ``"r"``, a mixture (``kara_core.mix``) or a packed
    view (``kara_core.pack``) as a :class:`KaraTorchDataset`.

    See :class:`KaraTorchDataset` for the keyword arguments.
    """
    return KaraTorchDataset(rows, shuffle=shuffle, auto_distributed=auto_distributed, **kwargs)


class _SharedProgress:
    """Epoch and resume point, in shared memory so DataLoader workers see later changes.

    Persistent workers keep the copy of the dataset they got at start-up; ``set_epoch``
    in the main process must still reach them. The four int64 are
    ``epoch, resume_epoch, resume_start, resume_offset`` (``resume_epoch = -1``: none).
    Forked workers share the memory by inheritance; spawned workers receive it while
    being spawned. Pickled in any other context it becomes a private copy.
    """

    def __init__(self, values: tuple[int, int, int, int] = (0, -1, 0, 0)) -> None:
        self._array = multiprocessing.RawArray("q", list(values))

    @classmethod
    def _attach(cls, array: Any) -> _SharedProgress:
        shared = cls.__new__(cls)
        shared._array = array
        return shared

    def __reduce__(self) -> tuple[Any, ...]:
        if get_spawning_popen() is not None:
            return (_SharedProgress._attach, (self._array,))
        return (_SharedProgress, (self.values(),))

    def values(self) -> tuple[int, int, int, int]:
        """``(epoch, resume_epoch, resume_start, resume_offset)``."""
        epoch, resume_epoch, start, offset = self._array
        return epoch, resume_epoch, start, offset

    def set(self, epoch: int, resume_epoch: int = -1, start: int = 0, offset: int = 0) -> None:
        """Replace all four values."""
        self._array[:] = [epoch, resume_epoch, start, offset]


class KaraTorchDataset(IterableDataset):
    """A row dataset as a ``torch.utils.data.IterableDataset`` that scales with workers and ranks.

    Arguments (all keyword-only):

    - ``shuffle``: shuffle with the order described in :mod:`kara_core.pipeline.order`, tuned by
      ``seed`` (0), ``buffer_size`` (10240 records), ``shuffle_ratio`` (0.1) and
      ``block_size`` (records read together; ``None`` picks it from the slice size).
    - ``begin``, ``end``: use records ``[begin, end)`` of ``rows`` only.
    - ``batch_size``: the DataLoader's ``batch_size`` (1 when it has
      ``batch_size=None``). It tells how the DataLoader interleaves its workers, so the
      batches it delivers are the same whatever ``num_workers`` is.
    - ``transform``: a function applied to each sample inside the workers (to each
      batch with ``batches=True``).
    - ``batches``: yield whole batches of ``batch_size`` samples, made inside the workers;
      give the DataLoader ``batch_size=None``. The batches are the ones a DataLoader with
      ``batch_size=batch_size`` delivers, in the same order (for every ``num_workers``).
      A packed view's batch is one ``(n, seq_len)`` tensor gathered straight from the
      records (in DataLoader workers, into shared memory, so the loader does not copy it
      again); other inputs give lists of samples.
    - ``pad``: when the slice does not divide evenly among the ranks, give every rank
      one more sample by repeating samples from the start of the epoch instead of
      dropping the remainder (the default). Either way all ranks yield ``len(self)``.
    - ``auto_distributed``: take the rank and world size from ``torch.distributed``
      when it is initialised; ``rank`` and ``world_size`` set them explicitly.

    Call :meth:`set_epoch` before each epoch. :meth:`state_dict` / :meth:`load_state_dict`
    resume an interrupted epoch exactly (see their docstrings).
    """

    def __init__(
        self,
        rows: Any,
        *,
        shuffle: bool = False,
        auto_distributed: bool = True,
        seed: int = 0,
        buffer_size: int = 10240,
        shuffle_ratio: float = 0.1,
        block_size: int | None = None,
        begin: int = 0,
        end: int | None = None,
        batch_size: int = 1,
        transform: Callable[[Any], Any] | None = None,
        pad: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        batches: bool = False,
    ) -> None:
        if getattr(rows, "mode", "r") != "r":
            raise ModeError("make_torch_dataset needs a row dataset opened with mode 'r'")
        if getattr(rows, "self_ordered", False) and shuffle:
            raise ConfigurationError(
                "a mixture orders (and shuffles) its sources itself: pass shuffle=False, and seed= to mix()"
            )
        total = len(rows)
        end = total if end is None else end
        if not 0 <= begin <= end <= total:
            raise ConfigurationError(
                f"begin={begin}, end={end} is not a slice of a dataset of {total} records "
                f"(need 0 <= begin <= end <= {total})"
            )
        if batches and hasattr(rows, "fetch_batch") and getattr(rows, "drop_remainder", True) is False:
            raise ConfigurationError(
                "batches=True gathers packed samples of one length: pack() with drop_remainder=True"
            )
        if (rank is None) != (world_size is None):
            raise ConfigurationError("give both rank and world_size, or neither")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if rank is None and auto_distributed and distributed:
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self._rows = rows
        self._rows_pid = os.getpid()
        self._begin, self._end = begin, end
        self._shuffle = bool(shuffle)
        self._params = ShuffleParams(seed, buffer_size, shuffle_ratio, block_size)
        self._transform = transform
        self._batches = bool(batches)
        if rank is None or world_size is None:
            rank, world_size = 0, 1
        self._plan = RankPlan(end - begin, world_size, rank, batch_size, bool(pad))
        self._shared = _SharedProgress()
        self._pending: dict[str, Any] | None = None
        self._live: _Progress | None = None

    # -- what a rank yields ------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This rank (0 without distributed training)."""
        return self._plan.rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing each epoch."""
        return self._plan.world_size

    @property
    def batch_size(self) -> int:
        """The DataLoader batch size the order is arranged for."""
        return self._plan.batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self._shared.values()[0]

    def __len__(self) -> int:
        """Samples this rank yields in a whole epoch (the same on every rank)."""
        return self._plan.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (each epoch has its own order).

        Takes effect in DataLoader workers too, persistent ones included. A resume point
        loaded with :meth:`load_state_dict` is kept for its own epoch only.
        """
        if epoch < 0:
            raise ConfigurationError(f"epoch must be >= 0, got {epoch}")
        _, resume_epoch, start, offset = self._shared.values()
        if resume_epoch == epoch:
            self._shared.set(epoch, resume_epoch, start, offset)
        else:
            self._shared.set(epoch)

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        epoch, resume_epoch, start, offset = self._shared.values()
        skip = 0
        if self._pending is not None:
            # A worker-level state loaded by StatefulDataLoader applies, once, to the
            # iteration it was taken in.
            pending, self._pending = self._pending, None
            epoch, start, offset, skip = pending["epoch"], pending["start"], pending["offset"], pending["worker_offset"]
        elif resume_epoch != epoch:
            start = offset = 0
        self._live = _Progress(epoch, start, offset, workers, worker, skip)
        # The samples come out of a chain of list iterators: no Python code runs per
        # sample, and the position is read off the current list iterator when needed.
        return itertools.chain.from_iterable(self._chunks(self._live))

    def _rows_here(self) -> Any:
        # A forked worker inherits the parent's reader (and its file handles, threads,
        # connections); reopen from the description so every process has its own.
        if self._rows_pid != os.getpid():
            self._rows = pickle.loads(pickle.dumps(self._rows))
            self._rows_pid = os.getpid()
        return self._rows

    def _chunks(self, it: _Progress) -> Iterator[Iterator[Any]]:
        """Iterators over the samples of ``it``, decoded (and transformed) a few at a time."""
        rows = self._rows_here()
        plan = RankPlan(self._plan.n, self.world_size, self.rank, self.batch_size, self._plan.pad, it.start)
        cursor = OrderCursor(EpochOrder(plan.n, it.epoch, self._shuffle, self._params))
        # The worker plans its reads one window of global positions at a time, which
        # bounds the memory of the plan whatever the size of the dataset.
        window = max(1, PLAN_WINDOW // (it.num_workers * plan.world_size))
        groups = worker_positions(plan, it.offset, it.num_workers, it.worker, it.skip, window)
        if hasattr(rows, "fetch"):
            decoded = _view_samples(rows, (cursor.take(positions) + self._begin for positions in groups), it.epoch)
        else:
            block = self._params.block_size_for(plan.n) if self._shuffle else UNSHUFFLED_BLOCK
            decoded = _row_samples(rows, (cursor.take(positions) for positions in groups), self._begin, block)
        transform = self._transform
        if self._batches:
            if hasattr(rows, "fetch_batch"):
                positions = (cursor.take(group) + self._begin for group in groups)
                yield from _gathered_batches(rows, positions, it, self.batch_size, transform)
            else:
                yield from _listed_batches(decoded, it, self.batch_size, transform)
            return
        for samples in decoded:
            if transform is not None:
                samples = list(map(transform, samples))
            yield it.advance(samples)

    # -- exact resume -------------------------------------------------------------------

    def order_key(self) -> dict[str, Any]:
        """What the sample order depends on, besides epoch, world size and batch size."""
        rows = self._rows
        view: dict[str, Any] = {"view": rows.order_identity()} if hasattr(rows, "order_identity") else {}
        return {
            **view,
            "namespace": getattr(rows, "namespace", None),
            "key": getattr(rows, "key", None),
            "version": getattr(rows, "version", None),
            "begin": self._begin,
            "end": self._end,
            "shuffle": self._shuffle,
            "seed": self._params.seed,
            "buffer_size": self._params.buffer_size,
            "shuffle_ratio": self._params.shuffle_ratio,
            "block_size": self._params.block_size_for(self._plan.n),
            "pad": self._plan.pad,
        }

    def _state(
        self,
        epoch: int,
        start: int,
        offset: int,
        num_workers: int | None = None,
        worker: int | None = None,
        worker_offset: int | None = None,
    ) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "order": self.order_key(),
            "epoch": epoch,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "start": start,
            "offset": offset,
            "num_workers": num_workers,
            "worker": worker,
            "worker_offset": worker_offset,
        }

    def _rank_state(self, epoch: int, start: int, offset: int) -> dict[str, Any]:
        batch = self.batch_size
        full_batches = RankPlan(self._plan.n, self.world_size, self.rank, batch, self._plan.pad, start).length // batch
        if offset % batch == 0 and offset // batch <= full_batches:
            # Every rank consumed the same whole batches: that is the prefix
            # G[:start + offset * world_size] of the epoch, valid for any world size.
            start, offset = start + offset * self.world_size, 0
        return self._state(epoch, start, offset)

    def _state_of(self, it: _Progress) -> dict[str, Any]:
        produced = it.skip + it.yielded
        if it.num_workers == 1:
            return self._rank_state(it.epoch, it.start, it.offset + produced)
        return self._state(it.epoch, it.start, it.offset, it.num_workers, it.worker, produced)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """The position in the current epoch, to resume it exactly with :meth:`load_state_dict`.

        With a plain DataLoader, pass ``consumed``: the number of samples this rank has
        taken from the loader in the current iteration (batches times ``batch_size``).
        The state then holds for every rank and any ``num_workers``, and, when
        ``consumed`` is a whole number of batches, for any world size too.

        Without ``consumed`` the state is what this process's latest iterator produced:
        exact with ``num_workers=0``, and what torchdata's ``StatefulDataLoader`` records
        inside each worker (such worker states need the same ``num_workers`` to resume).
        """
        epoch, resume_epoch, start, offset = self._shared.values()
        live = self._live
        if live is not None and live.epoch == epoch:
            if consumed is None:
                return self._state_of(live)
            return self._rank_state(epoch, live.start, live.offset + consumed)
        if resume_epoch != epoch:
            start = offset = 0
        return self._rank_state(epoch, start, offset + (consumed or 0))

    def _check_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ConfigurationError("not a kara-torch state (expected the dict returned by state_dict())")
        ours = self.order_key()
        theirs = state["order"]
        differ = sorted(name for name in ours if ours[name] != theirs.get(name))
        if differ:
            detail = ", ".join(f"{name}: {theirs.get(name)!r} in the state, {ours[name]!r} here" for name in differ)
            raise ConfigurationError(f"this state belongs to a different sample order ({detail})")
        portable = not state["offset"] and state["num_workers"] is None
        if not portable and (state["world_size"], state["batch_size"]) != (self.world_size, self.batch_size):
            raise ConfigurationError(
                f"this state was taken in the middle of a batch or inside a worker (world_size="
                f"{state['world_size']}, batch_size={state['batch_size']}); resume it with the same world_size "
                f"and batch_size, not {self.world_size} and {self.batch_size}"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a position returned by :meth:`state_dict` (in this or another process).

        The next iteration yields exactly the samples the interrupted epoch had not yet
        produced, in the same order; the epoch is set to the state's. Call it before the
        DataLoader starts its workers (or while persistent workers are idle).
        """
        self._check_state(state)
        info = get_worker_info()
        if state["num_workers"] is None:
            if info is None:
                self._shared.set(state["epoch"], state["epoch"], state["start"], state["offset"])
            else:
                # Inside a worker (StatefulDataLoader restoring it): this process only,
                # the shared values belong to the main process.
                self._pending = {**state, "worker_offset": 0}
            return
        if info is None or (info.num_workers, info.id) != (state["num_workers"], state["worker"]):
            raise ConfigurationError(
                f"this state was taken inside DataLoader worker {state['worker']} of {state['num_workers']}: "
                "resume it through torchdata's StatefulDataLoader with the same num_workers, or take a "
                "worker-independent state with state_dict(consumed=<samples consumed>)"
            )
        self._pending = dict(state)

    # -- pickling -------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rows_pid = os.getpid()

    def __repr__(self) -> str:
        return (
            f"<KaraTorchDataset {self._rows!r} [{self._begin}:{self._end}] shuffle={self._shuffle} "
            f"rank={self.rank}/{self.world_size} batch_size={self.batch_size}>"
        )


def _row_samples(rows: Any, groups: Iterator[np.ndarray], begin: int, block: int) -> Iterator[list[Any]]:
    """Decoded records of a row dataset, a few at a time, for groups of slice positions."""
    reader = BlockReader(rows, block)
    decode = batch_deserializer(rows.serializer)
    for records in groups:
        indices = records + begin
        done = 0
        for raws in reader.read_in_order(indices, records // block):
            for first in range(0, len(raws), DECODE_CHUNK):
                chunk = raws[first : first + DECODE_CHUNK]
                try:
                    samples = decode(chunk)
                except Exception:
                    name_undecodable(rows, indices[done + first : done + first + len(chunk)])
                    raise
                yield samples
            done += len(raws)


def _view_samples(view: Any, groups: Iterator[np.ndarray], epoch: int) -> Iterator[list[Any]]:
    """Samples of a record view (a mixture, a packed view), fetched a group of positions at a time.

    Views that can hand their samples over still encoded (``fetch_encoded``) have them
    decoded DECODE_CHUNK at a time, as row datasets are.
    """
    size, sized = VIEW_FETCH, False
    for positions in groups:
        first = 0
        while first < len(positions):
            fetched = positions[first : first + size]
            items, decode = encoded(view, fetched, epoch)
            first += size
            samples = items.tolist()
            if not sized:
                # Once, from the first fetch: a larger `size` applies from the next one.
                size, sized = _fetch_size(samples, decode), True
            for start in range(0, len(samples), DECODE_CHUNK):
                chunk = samples[start : start + DECODE_CHUNK]
                if decode is None:
                    yield chunk
                    continue
                try:
                    decoded = decode(chunk)
                except Exception:
                    # Fetched decoded, the sample that does not decode raises its
                    # source's own error, which names the record and where it is stored.
                    view.fetch(fetched[start : start + len(chunk)], epoch)
                    raise
                yield decoded


def _fetch_size(samples: list[Any], decode: Decoder | None) -> int:
    """Positions to fetch at once from a view whose first fetch gave ``samples``:
    VIEW_FETCH, or up to MAX_VIEW_FETCH when they are small encoded records (bytes)."""
    if decode is None or not samples or not all(isinstance(sample, (bytes, memoryview)) for sample in samples):
        return VIEW_FETCH
    fits = ENCODED_FETCH_BYTES * len(samples) // max(1, sum(map(len, samples)))
    return max(VIEW_FETCH, min(MAX_VIEW_FETCH, fits))


def _gathered_batches(
    view: Any, groups: Iterator[np.ndarray], it: _Progress, batch: int, transform: Callable[[Any], Any] | None
) -> Iterator[Iterator[Any]]:
    """Batches of a view with ``fetch_batch`` (packed samples): up to VIEW_FETCH positions
    are gathered into one array at a time (one batch first, then 8 times more each time),
    whose rows the batches are (views, no copy)."""
    made: list[torch.Tensor] = []

    def shared(shape: tuple[int, int], dtype: Any) -> np.ndarray:
        tensor = _shared_tensor(shape, dtype)
        made.append(tensor)
        return tensor.numpy()

    alloc = shared if get_worker_info() is not None else None
    whole = max(1, VIEW_FETCH // batch) * batch
    # The first gather is one batch, the next ones 8 times larger up to `whole`: the first
    # batch comes without waiting for a whole gather. Every gather is whole batches (the
    # last may end short), so the batches are the same.
    size = batch
    pending = np.empty(0, dtype=np.int64)
    for group in itertools.chain(groups, [None]):
        if group is not None:
            pending = np.concatenate((pending, group)) if len(pending) else group
        first = 0
        # At the end (group None) the rest is gathered too: the last batch may be short.
        while len(pending) - first >= size or (group is None and first < len(pending)):
            taken = pending[first : first + size]
            first += len(taken)
            size = min(size * 8, whole)
            array = view.fetch_batch(taken, it.epoch, alloc)
            # The shared tensor itself (torch.from_numpy of its memory would not be marked
            # shared, and the DataLoader would copy it into shared memory again).
            in_shared = bool(made)  # made by _shared_tensor, in a worker
            rows = made.pop() if made else torch.from_numpy(array)
            made.clear()
            batches = list(rows.split(batch))
            sizes = [len(part) for part in batches] if len(rows) % batch else None
            if transform is not None:
                batches = list(map(transform, batches))
            elif in_shared:
                batches = _GatheredRows.mark(batches)
            yield it.advance(batches, sizes, batch)
        pending = pending[first:]


class _GatheredRows(torch.Tensor):
    """Batches that are rows of one tensor gathered in shared memory by a DataLoader
    worker: that memory goes to the main process once, with the first of them sent.

    By default (``file_descriptor`` sharing) every tensor a worker sends passes a file
    descriptor over a socket, a handshake with the worker per batch, even when the batches
    are views of one shared tensor. Here the first batch of a gather sent carries the
    storage (torch's own reduction, whatever the sharing strategy), and the next ones only
    the worker's process id, the gather's number and their place in it: the main process
    keeps the storage of each worker's current gather (:data:`_RECEIVED`) until its last
    batch arrives or the worker's next gather replaces it. A worker's batches reach the
    main process in the order it sent them (one queue, pickled by one thread), so the
    storage always arrives first. Nothing needs torch's ``torch_shm_manager`` (named
    shared memory), whose start costs each worker 0.2-0.3 s. The main process gets plain
    tensors.
    """

    _kara_gather: tuple[int, bool]

    @classmethod
    def mark(cls, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """``batches`` (rows of one shared tensor, in order) as this class, numbered."""
        serial = next(_GATHERS)
        marked = [part.as_subclass(cls) for part in batches]
        for index, part in enumerate(marked):
            part._kara_gather = (serial, index == len(marked) - 1)
        return marked


#: This process's gathers, numbered (with its process id, a gather's key).
_GATHERS = itertools.count()
#: In a worker: the number of the gather whose storage was sent last.
_SENT = [-1]
#: In the main process: worker's process id -> (gather number, its storage).
_RECEIVED: dict[int, tuple[int, torch.UntypedStorage]] = {}


def _reduce_gathered_rows(rows: _GatheredRows) -> tuple[Any, tuple[Any, ...]]:
    plain = rows.as_subclass(torch.Tensor)
    serial, last = rows._kara_gather
    # Decided when pickled, in the order the worker's queue sends: the first batch of a
    # gather that is sent carries the storage, whichever batch that is (a resumed
    # iteration may skip the first ones).
    storage = None
    if _SENT[0] != serial:
        storage, _SENT[0] = plain.untyped_storage(), serial
    meta = (plain.dtype, plain.storage_offset(), tuple(plain.shape), plain.stride())
    return _rebuild_gathered_rows, (os.getpid(), serial, last, storage, *meta)


def _rebuild_gathered_rows(
    pid: int,
    serial: int,
    last: bool,
    storage: torch.UntypedStorage | None,
    dtype: torch.dtype,
    offset: int,
    shape: tuple,
    stride: tuple,
) -> torch.Tensor:
    if storage is not None:
        from kara_core.locks import process_alive  # here: only loaders with workers need it

        # The worker's previous gather is done. The gathers of workers that have exited
        # (a loop left early: the loader shut them down before their last batch) go too.
        for other in list(_RECEIVED):  # a copy: loaders in other threads may add theirs
            if other != pid and not process_alive(other, None):
                _RECEIVED.pop(other, None)
        _RECEIVED[pid] = (serial, storage)
    else:
        held = _RECEIVED.get(pid)
        if held is None or held[0] != serial:
            raise RuntimeError(
                f"a batch of gather {serial} of DataLoader worker {pid} came before that gather's "
                "shared memory: batches of a worker must be received in the order it sent them"
            )
        storage = held[1]
    if last:
        _RECEIVED.pop(pid, None)
    return torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)


ForkingPickler.register(_GatheredRows, _reduce_gathered_rows)


def _shared_tensor(shape: tuple[int, int], dtype: Any) -> torch.Tensor:
    """A new tensor in shared memory: the DataLoader sends views of it to the main process
    by handle, without copying them into shared memory first.

    Made as torch's own collate makes its batches in workers (a new shared storage, never
    written before): half the cost of allocating a tensor, then ``share_memory_()``.
    """
    empty = torch.from_numpy(np.empty(0, dtype=dtype))
    try:
        storage = empty._typed_storage()._new_shared(shape[0] * shape[1])
        return empty.new(storage).resize_(*shape)
    except (AttributeError, RuntimeError, TypeError):  # another torch: the public way
        return torch.empty(shape, dtype=empty.dtype).share_memory_()


def _listed_batches(
    samples: Iterator[list[Any]], it: _Progress, batch: int, transform: Callable[[Any], Any] | None
) -> Iterator[Iterator[Any]]:
    """The decoded samples regrouped into lists of ``batch`` (the last may be short)."""
    flat = itertools.chain.from_iterable(samples)
    while True:
        chunk = list(itertools.islice(flat, batch * DECODE_CHUNK))
        if not chunk:
            return
        batches = [chunk[first : first + batch] for first in range(0, len(chunk), batch)]
        sizes = [len(part) for part in batches] if len(chunk) % batch else None
        if transform is not None:
            batches = list(map(transform, batches))
        yield it.advance(batches, sizes, batch)


class _Progress:
    """Where one iteration over this worker's share of an epoch stands."""

    def __init__(self, epoch: int, start: int, offset: int, num_workers: int, worker: int, skip: int) -> None:
        self.epoch, self.start, self.offset, self.skip = epoch, start, offset, skip
        self.num_workers, self.worker = num_workers, worker
        self._current: Iterator[Any] = iter(())
        self._current_size = 0
        self._current_samples = 0
        self._sizes: list[int] | None = None
        self._each = 1
        self._done = 0

    def advance(self, items: list[Any], sizes: list[int] | None = None, each: int = 1) -> Iterator[Any]:
        """Return the iterator over the next ``items``, remembered for :attr:`yielded`.

        Items are samples, or batches of ``each`` samples (``sizes``: the samples of each
        batch, when they are not all ``each``).
        """
        self._done += self._current_samples
        self._current_size = len(items)
        self._sizes = None if sizes is None else list(itertools.accumulate(sizes))
        self._each = each
        self._current_samples = len(items) * each if sizes is None else sum(sizes)
        self._current = iter(items)
        return self._current

    @property
    def yielded(self) -> int:
        """Samples returned so far."""
        taken = self._current_size - operator.length_hint(self._current)
        if self._sizes is None:
            return self._done + taken * self._each
        return self._done + (self._sizes[taken - 1] if taken else 0)
