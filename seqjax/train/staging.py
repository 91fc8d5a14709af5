"""The host side of chunked execution: an epoch's batches cut into chunks and put on the devices.

A :class:`Feed` wraps one data argument of ``fit``/``evaluate`` and turns the batches of an epoch
into :class:`Chunk` s for the scanned steps of :mod:`seqjax.train.multistep`:

* Shapes compile once. A batch smaller than the others (the last, partial batch of an epoch) is
  padded with rows whose mask is all False, to the iterator's ``batch_size`` (or the largest
  batch seen) rounded up to a multiple of the device count, so it reuses the compiled shape; a
  partial chunk keeps K slots and marks the empty ones invalid. A batch with different shapes
  (another T, as ragged batches padded to their longest sequence have) starts a new chunk and
  compiles its own program once; keep T fixed (``BatchIterator(pad_to=...)``) to avoid that.
  Batches without a mask cannot be padded: a smaller one is its own shape.
* Datasets that live on the devices (a dense :class:`~seqjax.data.BatchIterator`, see its
  ``on_device``) are put there once; a chunk is then only its example indices ``[K, B]``.
* Chunks end every K batches of the epoch, at every ``every``-th global step (checkpoints), at a
  change of shapes and at the end of the epoch, so these points fall on chunk boundaries.
* Several processes (``jax.distributed``): each feeds its share of every batch (a
  :class:`~seqjax.data.BatchIterator` knows its ``process_index``), padded to the device count of
  its own process, and the global chunk is assembled from the shares with
  ``jax.make_array_from_process_local_data``; the examples per batch that weight the metric means
  are summed over the processes. Data is then staged from the host, never kept on the devices.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from .parallel import DataParallel, pad_batch

__all__ = ["Chunk", "Feed", "example_weight", "epoch_source", "resolve_steps_per_execution"]

# The automatic chunk length: long enough that one dispatch per chunk is noise next to its steps
# even for batch-32 models, short enough for a lively progress bar and cheap padded chunks.
MAX_STEPS_PER_EXECUTION = 128
# Host staging buffer per chunk (K stacked batches) when the data is not on the devices.
STAGING_BYTES = 64 << 20


class Chunk(NamedTuple):
    """K slots of work for one jitted call, the first ``count`` holding batches.

    Attributes:
        xs: device pytree with leading axis K: stacked batches, or example indices [K, B].
        valid: bool [K] on the devices, True for the first ``count`` slots.
        count: batches in the chunk.
        weights: examples per batch (rows with a valid step), for the host's metric means.
        last_index: index within the epoch of the chunk's last batch.
        data_state: the data's ``state()`` right after its last batch was taken (None when the
            data has no state).
    """

    xs: Any
    valid: jax.Array
    count: int
    weights: list[float]
    last_index: int
    data_state: Any


class _Slot(NamedTuple):
    index: int
    x: Any
    signature: Any
    weight: float
    data_state: Any


def resolve_steps_per_execution(value) -> int | None:
    """``None`` for automatic (``None`` or ``"auto"``), else the positive int; ValueError else."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"steps_per_execution must be a positive int, 'auto' or None, got "
                         f"{value!r}")
    return int(value)


def _mask_of(batch):
    if hasattr(batch, "_fields") and hasattr(batch, "mask"):
        return batch.mask
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[1]
    return None


def example_weight(batch) -> float:
    """Number of real examples: rows with a valid step, or the batch size without a mask."""
    mask = _mask_of(batch)
    if mask is not None and np.ndim(mask) >= 1:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            return float(np.any(mask.reshape(mask.shape[0], -1), axis=-1).sum())
    leaves = [x for x in jax.tree.leaves(batch) if np.ndim(x) > 0]
    return float(np.shape(leaves[0])[0]) if leaves else 1.0


def epoch_source(data, epoch: int, name: str):
    """The iterable of ``data``'s batches for ``epoch`` (see :mod:`seqjax.train.loop`)."""
    if data is None:
        return None
    if callable(getattr(data, "iter_epoch", None)):
        return data.iter_epoch()  # epoch-aware iterators (seqjax.data.BatchIterator)
    if callable(data) and not hasattr(data, "__iter__"):
        source = data(epoch)
        if not hasattr(source, "__iter__"):
            raise ValueError(f"{name}(epoch) must return an iterable of batches")
        return source
    if hasattr(data, "__iter__"):
        return data
    raise ValueError(f"{name} must be an iterable of batches or a callable epoch -> batches")


def numbered(source: Iterable, *, offset: int = 0, skip: int = 0,
             stop: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, batch)`` from ``source`` numbered from ``offset``, leaving out indices below
    ``skip`` and never taking a batch at index ``stop`` or beyond (so a stateful iterator is
    not advanced past the last batch used)."""
    iterator = iter(source)
    index = offset
    while stop is None or index < stop:
        try:
            item = next(iterator)
        except StopIteration:
            return
        if index >= skip:
            yield index, item
        index += 1


class Feed:
    """Turns one data argument's batches into chunks on the devices.

    Args:
        data: the ``train_data``/``validation_data``/``data`` argument.
        parallel: the :class:`DataParallel` placement.
        steps_per_execution: K, or None to choose it (see :meth:`steps_for`).
        batches_per_epoch: batches an epoch will take, when known (for the automatic K).
        every: chunks also end at every ``every``-th global step (checkpoints), or None.

    Attributes:
        probe: None, or ``probe(batch) -> bool`` (set by the loop), called once with the first
            batch as a chunk slot holds it: True when the step must run alone (K=1), not in a
            chunk's loop (see :func:`~seqjax.train.multistep.slow_in_loops`).
    """

    def __init__(self, data, parallel: DataParallel, steps_per_execution: int | None, *,
                 batches_per_epoch: int | None = None, every: int | None = None):
        self.data = data
        self.parallel = parallel
        self.steps = steps_per_execution
        self._decided = False
        self.probe: Callable[[Any], bool] | None = None
        self.batches_per_epoch = batches_per_epoch
        self.every = every
        self.on_device = (bool(getattr(data, "device_resident", False))
                          and callable(getattr(data, "iter_epoch_indices", None))
                          and not parallel.multiprocess)
        self.rows_multiple = parallel.num_local_devices
        self.device_data = None
        self.padding = None
        self._sizes: dict = {}
        hint = getattr(data, "batch_size", None)
        self._size_hint = int(hint) if isinstance(hint, (int, np.integer)) else 0
        if parallel.multiprocess:  # the iterator's batch_size is global; this process feeds
            self._size_hint //= max(int(getattr(data, "process_count", 1)), 1)
        self._chunk_sharding = NamedSharding(parallel.mesh,
                                             PartitionSpec(None, parallel.axis_name))
        if self.on_device:
            arrays = data.dense_arrays()
            self.padding = arrays.padding
            self._lengths = np.asarray(arrays.lengths)
            self.device_data = parallel.replicate(
                (np.asarray(arrays.inputs), self._lengths, arrays.targets))
            # Every index row is padded to the same B (-1 = a masked padding row).
            self._index_rows = _round_up(max(self._size_hint, 1), parallel.num_devices)

    # -- epochs ------------------------------------------------------------------------
    def epoch_source(self, epoch: int, name: str):
        """The epoch's batches, or their example indices when the data is on the devices."""
        if self.on_device:
            return self.data.iter_epoch_indices()
        return epoch_source(self.data, epoch, name)

    def chunks(self, items: Iterable[tuple[int, Any]], *, first_step: int = 0,
               state_fn: Callable[[], Any] | None = None) -> Iterator[Chunk]:
        """Cuts ``(index, batch)`` pairs into chunks, staging each on the devices.

        Args:
            items: the epoch's numbered batches (see :func:`numbered`).
            first_step: the global step before the first batch (for the ``every`` boundaries).
            state_fn: called after each batch is taken; its value is kept for the chunk that
                ends with that batch (the data position a checkpoint must record).
        """
        iterator = iter(items)
        held = None
        step = first_step
        while True:
            if held is None:
                taken = next(iterator, None)
                if taken is None:
                    return
                held = self._slot(*taken, state_fn)
            slots, held = [held], None
            steps = self.steps_for(slots[0])
            while not self._ends(slots[-1].index, step + len(slots), steps):
                taken = next(iterator, None)
                if taken is None:
                    break
                slot = self._slot(*taken, state_fn)
                if slot.signature != slots[0].signature:
                    held = slot
                    break
                slots.append(slot)
            step += len(slots)
            yield self._stage(slots, steps)

    def steps_for(self, first: _Slot) -> int:
        """K: the given ``steps_per_execution``, or, chosen once from the first batch, the
        chunk length that cuts an epoch into equal chunks of at most 128 steps (fewer for
        big host-staged batches, at most ``every``, and 1 when batch shapes vary or
        :attr:`probe` says the step must run alone)."""
        if self._decided:
            return self.steps
        self._decided = True
        alone = self.probe is not None and self.probe(first.x)
        if self.steps is not None:  # given
            if alone and self.steps > 1:
                warnings.warn(
                    "steps_per_execution > 1 runs this step inside a loop, where XLA:CPU "
                    "compiles its convolution gradients to a slow generic loop; "
                    "steps_per_execution=1 (or 'auto') avoids it", stacklevel=4)
            return self.steps
        if alone:
            steps = 1
        elif getattr(self.data, "static_shapes", True) is False:
            steps = 1  # a new T at almost every batch: chunks would be mostly empty slots
        else:
            steps = MAX_STEPS_PER_EXECUTION
            if not self.on_device:
                nbytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(first.x))
                steps = min(steps, max(1, STAGING_BYTES // max(nbytes, 1)))
            if self.batches_per_epoch:
                steps = math.ceil(self.batches_per_epoch
                                  / math.ceil(self.batches_per_epoch / steps))
            if self.every:
                steps = min(steps, self.every)
        self.steps = steps
        return steps

    def _ends(self, index: int, step_after: int, steps: int) -> bool:
        return (index + 1) % steps == 0 or bool(self.every and step_after % self.every == 0)

    # -- one batch ---------------------------------------------------------------------
    def _slot(self, index, item, state_fn) -> _Slot:
        data_state = state_fn() if state_fn is not None else None
        if self.on_device:
            indices = np.asarray(item).reshape(-1)
            weight = float(np.sum(self._lengths[indices] > 0))
            if len(indices) > self._index_rows:
                raise ValueError(f"a batch of {len(indices)} examples is larger than the "
                                 f"iterator's batch_size {self._size_hint}")
            rows = np.full(self._index_rows, -1, np.int32)
            rows[: len(indices)] = indices
            return _Slot(index, rows, None, weight, data_state)
        batch = jax.tree.map(np.asarray, item)
        weight = example_weight(batch)
        batch = self._fit_rows(batch)
        leaves, treedef = jax.tree.flatten(batch)
        signature = (treedef, tuple((x.shape, x.dtype) for x in leaves))
        return _Slot(index, batch, signature, weight, data_state)

    def _fit_rows(self, batch):
        """Pads a smaller batch with masked rows to the size of its shape family."""
        leaves, treedef = jax.tree.flatten(batch)
        sizes = {x.shape[0] for x in leaves if x.ndim > 0}
        if len(sizes) != 1:
            return pad_batch(batch, self.rows_multiple)[0]  # raises the usual error
        (size,) = sizes
        family = (treedef, tuple((x.shape[1:] if x.ndim else None, x.dtype) for x in leaves))
        target = self._sizes.get(family, 0)
        if size > target:
            target = _round_up(max(size, self._size_hint if size <= self._size_hint else 0),
                               self.rows_multiple)
            self._sizes[family] = target
        if size < target and _mask_of(batch) is not None:
            return _pad_rows(batch, target - size)
        return pad_batch(batch, self.rows_multiple)[0]

    # -- one chunk ---------------------------------------------------------------------
    def _stage(self, slots: list[_Slot], steps: int) -> Chunk:
        count = len(slots)
        leaves_per_slot = [jax.tree.flatten(slot.x)[0] for slot in slots]
        treedef = jax.tree.structure(slots[0].x)
        stacked = []
        for position, first in enumerate(leaves_per_slot[0]):
            # Empty slots hold a copy of the first batch; their steps are skipped anyway.
            out = np.empty((steps,) + first.shape, first.dtype)
            for k, leaves in enumerate(leaves_per_slot):
                out[k] = leaves[position]
            out[count:] = first
            stacked.append(out)
        shardings = [self._chunk_sharding if x.ndim >= 2 else self.parallel.replicated
                     for x in stacked]
        valid = np.arange(steps) < count
        weights = [slot.weight for slot in slots]
        if self.parallel.multiprocess:
            xs = jax.tree.unflatten(treedef, [
                jax.make_array_from_process_local_data(sharding, x)
                for sharding, x in zip(shardings, stacked, strict=True)])
            valid = jax.make_array_from_process_local_data(self.parallel.replicated, valid)
            weights = [float(w) for w in multihost_utils.process_allgather(
                np.asarray(weights, np.float64)).sum(axis=0)]
        else:
            xs = jax.device_put(jax.tree.unflatten(treedef, stacked),
                                jax.tree.unflatten(treedef, shardings))
            valid = jax.device_put(valid, self.parallel.replicated)
        return Chunk(xs, valid, count, weights, slots[-1].index, slots[-1].data_state)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_rows(batch, extra: int):
    def pad(x):
        if x.ndim == 0:
            return x
        return np.concatenate([x, np.zeros((extra,) + x.shape[1:], x.dtype)])

    return jax.tree.map(pad, batch)
