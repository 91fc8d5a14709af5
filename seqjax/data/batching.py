"""Seeded, epoch-aware, resumable batch iteration with optional length bucketing.

The order of epoch ``e`` is a pure function of ``(seed, e)``, so an iterator rebuilt
from :meth:`BatchIterator.state` continues with exactly the batches an uninterrupted one
would have produced, whatever happened before the checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .padding import pad_sequences, sequence_mask

__all__ = ["Batch", "BatchIterator", "DenseArrays"]

_STATE_VERSION = 1
# Datasets up to this size stay on the devices for a whole fit by default (``on_device=None``):
# IMDB at T 120 is 12 MB, so this leaves room for far larger course datasets while never
# claiming a large share of an accelerator's memory.
DEVICE_BYTES_DEFAULT = 1 << 30


class Batch(NamedTuple):
    """One batch, as numpy arrays (a JAX pytree, being a NamedTuple).

    Attributes:
        inputs: [B, T] ids or [B, T, F] features (or [B, ...] for non-sequence inputs).
        mask: Bool [B, T], True at valid steps, for pre- and post-padding alike.
        targets: [B] labels, [B, T] per-step targets, a tuple of arrays for seq2seq
            (e.g. decoder inputs [B, S], decoder outputs [B, S], their mask [B, S]), or
            ``None`` when the iterator has no targets.
    """

    inputs: np.ndarray
    mask: np.ndarray
    targets: Any


class DenseArrays(NamedTuple):
    """A dense dataset as whole arrays, from which every batch is a gather of rows.

    Attributes:
        inputs: [N, T, ...] (or [N, ...] without a time axis).
        lengths: int [N], the valid steps of each row (T when the iterator got no ``lengths``).
        targets: ``None``, an array [N, ...] or a tuple of such arrays.
        padding: ``"post"`` or ``"pre"``: the side of each row that ``lengths`` leaves invalid.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    targets: Any
    padding: str


class _Column:
    """One field of the examples: either an array [N, ...] or N ragged sequences [L_i, ...]."""

    def __init__(self, data: Any, name: str) -> None:
        if isinstance(data, np.ndarray) and data.dtype != object:
            self.ragged = False
            self.data = data
            self.lengths = None
        elif isinstance(data, (list, tuple, np.ndarray)):
            self.ragged = True
            self.data = [np.asarray(x) for x in data]
            for i, x in enumerate(self.data):
                if x.ndim == 0:
                    raise ValueError(
                        f"{name}[{i}] is a scalar; ragged {name} must hold sequences "
                        "(pass per-example scalars as one numpy array instead)"
                    )
            self.lengths = np.fromiter((len(x) for x in self.data), np.int64, len(self.data))
        else:
            raise ValueError(
                f"{name} must be a numpy array or a list of sequences, got {type(data).__name__}"
            )
        self.name = name

    def __len__(self) -> int:
        return len(self.data)


class BatchIterator:
    """Shuffled, seeded, epoch-aware batches ``Batch(inputs, mask, targets)``.

    Ragged inputs (a list of [L_i] or [L_i, F] arrays) are padded per batch to the
    longest sequence in the batch (rounded up to ``pad_to_multiple``), or to ``pad_to``.
    Dense inputs (an array [N, T, ...]) pass through unchanged, with the mask taken
    from ``lengths`` (all True when not given).

    Iteration (``next(it)`` / ``for batch in it``) runs across epochs, stopping after
    ``num_epochs`` epochs when that is set; :meth:`iter_epoch` yields only the rest of
    the current epoch. Every example appears exactly once per epoch; the last partial
    batch is kept unless ``drop_remainder=True`` (which then warns once and reports
    :attr:`dropped_per_epoch`).

    Args:
        inputs: N examples: ragged list or dense array.
        targets: ``None``; an array [N, ...]; a ragged list (per-step targets, padded
            like the inputs); or a tuple of those. When a tuple holds ragged entries
            (seq2seq), they must have equal lengths per example, are post-padded, and
            their bool mask [B, S] is appended as the last element of the tuple.
        batch_size: B.
        seed: Seed of the shuffles.
        shuffle: Shuffle every epoch (differently per epoch).
        drop_remainder: Leave out the last partial batch of each epoch.
        bucket_by_length: Group examples of similar length to reduce padding: each
            window of ``bucket_window`` batches of the shuffled order is sorted by
            length and cut into batches, and the batches are then shuffled.
        bucket_window: Batches per sorting window.
        padding: ``"post"`` or ``"pre"``: where ragged inputs (and per-step targets)
            are padded.
        pad_value: Padding value of inputs.
        target_pad_value: Padding value of ragged targets.
        pad_to: Fixed T for ragged inputs (keeps shapes static for ``jit``). A longer
            sequence raises ``ValueError``: truncate it first (``pad_sequences``).
        pad_to_multiple: Round the per-batch T up to a multiple of this (fewer shapes).
        lengths: Valid lengths [N] of dense inputs (default: all of T).
        num_epochs: Stop after this many epochs (``None``: never stop).
        epoch: Starting epoch (normally left at 0; see :meth:`from_state`).
        position: Starting batch within ``epoch``.
        process_index, process_count: This process among those training together
            (``jax.distributed``; default: ``jax.process_index()`` and ``jax.process_count()``,
            so call ``jax.distributed.initialize`` first). ``batch_size`` stays the global
            batch; every process draws the same order and yields rows
            ``[p * B / P, (p + 1) * B / P)`` of each batch, and ``fit`` assembles the global
            batch from the shares. A last, partial batch is shared the same way, each share
            filled up to ``B / P`` rows with masked rows (mask all False, inputs and targets
            zero). With ragged inputs every share is padded to the whole batch's longest
            sequence, so the shares agree in shape.
        on_device: Whether :func:`seqjax.train.fit` and :func:`~seqjax.train.evaluate` keep
            the whole dataset on the devices and gather each batch there by index (no
            host-to-device copy per batch; see :attr:`device_resident`). ``None``: when the
            inputs and targets are dense arrays of at most 1 GiB together; ``True``: always
            (``ValueError`` for ragged data); ``False``: never. Iterating yields numpy batches
            either way.
    """

    def __init__(
        self,
        inputs: Any,
        targets: Any = None,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_remainder: bool = False,
        bucket_by_length: bool = False,
        bucket_window: int = 100,
        padding: str = "post",
        pad_value: Any = 0,
        target_pad_value: Any = 0,
        pad_to: int | None = None,
        pad_to_multiple: int = 1,
        lengths: Any = None,
        num_epochs: int | None = None,
        epoch: int = 0,
        position: int = 0,
        process_index: int | None = None,
        process_count: int | None = None,
        on_device: bool | None = None,
    ) -> None:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if padding not in ("pre", "post"):
            raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
        if not isinstance(bucket_window, (int, np.integer)) or bucket_window < 1:
            raise ValueError(f"bucket_window must be a positive int, got {bucket_window!r}")
        if not isinstance(pad_to_multiple, (int, np.integer)) or pad_to_multiple < 1:
            raise ValueError(f"pad_to_multiple must be a positive int, got {pad_to_multiple!r}")
        if pad_to is not None and (not isinstance(pad_to, (int, np.integer)) or pad_to < 0):
            raise ValueError(f"pad_to must be a non-negative int or None, got {pad_to!r}")
        if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 0):
            raise ValueError(f"num_epochs must be a non-negative int or None, got {num_epochs!r}")
        process_count = jax.process_count() if process_count is None else process_count
        process_index = jax.process_index() if process_index is None else process_index
        if not isinstance(process_count, (int, np.integer)) or process_count < 1:
            raise ValueError(f"process_count must be a positive int, got {process_count!r}")
        if not isinstance(process_index, (int, np.integer)) or not (
                0 <= process_index < process_count):
            raise ValueError(f"process_index must be an int in 0..{process_count - 1}, got "
                             f"{process_index!r}")
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} does not divide over {process_count} "
                             "processes: each feeds an equal share of every batch")
        if on_device not in (None, True, False):
            raise ValueError(f"on_device must be True, False or None, got {on_device!r}")

        self._inputs = _Column(inputs, "inputs")
        n = len(self._inputs)
        if n == 0:
            raise ValueError("inputs is empty: there is nothing to batch")
        self._targets_is_tuple = isinstance(targets, tuple)
        target_list = targets if self._targets_is_tuple else ([] if targets is None else [targets])
        self._targets = [
            _Column(t, f"targets[{i}]" if self._targets_is_tuple else "targets")
            for i, t in enumerate(target_list)
        ]
        for col in self._targets:
            if len(col) != n:
                raise ValueError(f"{col.name} has {len(col)} examples but inputs has {n}")
        ragged_targets = [c for c in self._targets if c.ragged]
        if self._targets_is_tuple and len(ragged_targets) > 1:
            first = ragged_targets[0]
            for col in ragged_targets[1:]:
                bad = np.flatnonzero(col.lengths != first.lengths)
                if bad.size:
                    raise ValueError(
                        f"{col.name} and {first.name} differ in length at example {bad[0]} "
                        f"({col.lengths[bad[0]]} vs {first.lengths[bad[0]]})"
                    )

        if self._inputs.ragged:
            if lengths is not None:
                raise ValueError("lengths is only for dense inputs; ragged inputs carry their own")
            self._lengths = self._inputs.lengths
            if pad_to is not None and self._lengths.max() > pad_to:
                i = int(np.argmax(self._lengths))
                raise ValueError(
                    f"inputs[{i}] has length {self._lengths[i]} > pad_to={pad_to}; "
                    "truncate the sequences first (pad_sequences(..., maxlen=...))"
                )
        else:
            if self._inputs.data.ndim < 2 and lengths is not None:
                raise ValueError("lengths needs inputs with a time axis [N, T, ...]")
            t = self._inputs.data.shape[1] if self._inputs.data.ndim >= 2 else 0
            if lengths is None:
                self._lengths = np.full(n, t, np.int64)
            else:
                self._lengths = np.asarray(lengths, np.int64).reshape(-1)
                if self._lengths.shape != (n,):
                    raise ValueError(f"lengths must have shape [{n}], got {np.shape(lengths)}")
                if self._lengths.min() < 0 or self._lengths.max() > t:
                    raise ValueError(f"lengths must lie in 0..{t} (the T of inputs)")

        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.bucket_by_length = bool(bucket_by_length)
        self.bucket_window = int(bucket_window)
        self.padding = padding
        self.pad_value = pad_value
        self.target_pad_value = target_pad_value
        self.pad_to = None if pad_to is None else int(pad_to)
        self.pad_to_multiple = int(pad_to_multiple)
        self.num_epochs = num_epochs
        self.num_examples = n
        full, rest = divmod(n, self.batch_size)
        self.dropped_per_epoch = rest if self.drop_remainder else 0
        self.batches_per_epoch = full if self.drop_remainder else full + (rest > 0)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"drop_remainder=True with batch_size={batch_size} > {n} examples leaves no batch"
            )
        if self.dropped_per_epoch:
            warnings.warn(
                f"drop_remainder=True leaves out {self.dropped_per_epoch} of {n} examples "
                "each epoch (a different subset each epoch when shuffled)",
                UserWarning,
                stacklevel=2,
            )
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.on_device = on_device
        if on_device and self.dense_arrays() is None:
            raise ValueError(
                "on_device=True needs dense inputs and targets (numpy arrays); ragged data is "
                "padded per batch on the host: pad it first (pad_sequences) or pass "
                "on_device=None"
            )
        self._cached_epoch: int | None = None
        self._cached_order: list[np.ndarray] = []
        self.epoch = 0
        self.position = 0
        self._seek(int(epoch), int(position))

    # -- order -----------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> list[np.ndarray]:
        """The example indices of every batch of ``epoch``, a pure function of (seed, epoch)."""
        if self._cached_epoch == epoch:
            return self._cached_order
        n, b = self.num_examples, self.batch_size
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket_by_length:
            window = b * self.bucket_window
            batches = []
            for start in range(0, n, window):
                chunk = perm[start : start + window]
                chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
                batches.extend(chunk[i : i + b] for i in range(0, len(chunk), b))
            if self.shuffle:
                # Sorting would otherwise feed short-then-long batches in every window.
                batches = [batches[i] for i in rng.permutation(len(batches))]
        else:
            batches = [perm[i : i + b] for i in range(0, n, b)]
        if self.drop_remainder:
            batches = [x for x in batches if len(x) == b]
        self._cached_epoch, self._cached_order = epoch, batches
        return batches

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        indices = self.epoch_order(self.epoch)[self.position]
        self.position += 1
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self.process_count == 1:
            return self.make_batch(indices)
        return self._share(indices)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.batches_per_epoch

    def iter_epoch(self) -> Iterator[Batch]:
        """Yields the remaining batches of the current epoch (then the epoch has advanced)."""
        epoch = self.epoch
        while self.epoch == epoch and (self.num_epochs is None or epoch < self.num_epochs):
            yield next(self)

    def iter_epoch_indices(self) -> Iterator[np.ndarray]:
        """Like :meth:`iter_epoch`, but yields each batch's example indices [B] (int64).

        The iterator advances exactly as with :meth:`iter_epoch`, so :meth:`state` stays
        valid; ``make_batch(indices)`` is the batch :meth:`iter_epoch` would have yielded.
        """
        epoch = self.epoch
        while self.epoch == epoch and (self.num_epochs is None or epoch < self.num_epochs):
            indices = self.epoch_order(self.epoch)[self.position]
            self.position += 1
            if self.position == self.batches_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
            yield indices

    def dense_arrays(self) -> DenseArrays | None:
        """The whole dataset as arrays when every batch is a gather of its rows, else None.

        That is the case when the inputs and all targets are dense arrays (ragged columns
        are padded per batch, so their batches are not gathers of fixed rows).
        """
        if self._inputs.ragged or any(col.ragged for col in self._targets):
            return None
        targets: Any = [col.data for col in self._targets]
        targets = tuple(targets) if self._targets_is_tuple else (targets[0] if targets else None)
        return DenseArrays(self._inputs.data, self._lengths, targets, self.padding)

    @property
    def device_resident(self) -> bool:
        """Whether ``fit``/``evaluate`` put this dataset on the devices once (see ``on_device``)."""
        if self.on_device is not None:
            return self.on_device
        arrays = self.dense_arrays()
        if arrays is None:
            return False
        nbytes = sum(np.asarray(x).nbytes for x in (arrays.inputs, arrays.lengths))
        nbytes += sum(np.asarray(x).nbytes for x in _leaves(arrays.targets))
        return nbytes <= DEVICE_BYTES_DEFAULT

    @property
    def static_shapes(self) -> bool:
        """Whether every full batch has the same shapes (so one compiled step serves them all).

        Ragged inputs padded to each batch's longest sequence (no ``pad_to``) and ragged
        seq2seq targets give a different T from batch to batch.
        """
        ragged_inputs = self._inputs.ragged and self.pad_to is None
        ragged_tuple = self._targets_is_tuple and any(col.ragged for col in self._targets)
        return not (ragged_inputs or ragged_tuple)

    def _share(self, indices: np.ndarray) -> Batch:
        """This process's rows of the batch of ``indices``, filled up to ``B / P`` rows."""
        rows = self.batch_size // self.process_count
        mine = indices[self.process_index * rows:(self.process_index + 1) * rows]
        real = len(mine)
        filled = np.concatenate([mine, np.full(rows - real, indices[0], indices.dtype)])
        batch = self.make_batch(filled, shape_of=indices)
        if real == rows:
            return batch

        def blank(x):  # the filler rows become padding: mask False, inputs and targets zero
            x = np.array(x)
            x[real:] = 0
            return x

        return Batch(*(None if part is None else _map_leaves(blank, part) for part in batch))

    def make_batch(self, indices: Sequence[int] | np.ndarray,
                   shape_of: Sequence[int] | np.ndarray | None = None) -> Batch:
        """Builds the batch of the given example indices (padding and masks included).

        ``shape_of``: the examples whose longest sequences set the padded lengths (default:
        ``indices``), so that the shares of one batch agree in shape.
        """
        indices = np.asarray(indices)
        span = indices if shape_of is None else np.asarray(shape_of)
        lengths = self._lengths[indices]
        if self._inputs.ragged:
            t = self.pad_to if self.pad_to is not None else int(
                self._lengths[span].max(initial=0))
            t = -(-t // self.pad_to_multiple) * self.pad_to_multiple
            seqs = [self._inputs.data[i] for i in indices]
            dtype = seqs[0].dtype if seqs else np.int32
            inputs = pad_sequences(
                seqs, maxlen=t, dtype=dtype, padding=self.padding, value=self.pad_value
            )
        else:
            inputs = self._inputs.data[indices]
            t = inputs.shape[1] if inputs.ndim >= 2 else 0
        mask = sequence_mask(lengths, t, self.padding)

        outs = []
        ragged_lengths = None
        for col in self._targets:
            if not col.ragged:
                outs.append(col.data[indices])
                continue
            seqs = [col.data[i] for i in indices]
            if self._targets_is_tuple:
                ragged_lengths = col.lengths[indices]
                s = -(-int(col.lengths[span].max(initial=0)) // self.pad_to_multiple)
                s *= self.pad_to_multiple
                side = "post"
            else:
                s, side = t, self.padding
            outs.append(
                pad_sequences(
                    seqs, maxlen=s, dtype=seqs[0].dtype, padding=side, value=self.target_pad_value
                )
            )
        if self._targets_is_tuple:
            if ragged_lengths is not None:
                outs.append(sequence_mask(ragged_lengths, outs[-1].shape[1], "post"))
            targets: Any = tuple(outs)
        else:
            targets = outs[0] if outs else None
        return Batch(inputs, mask, targets)

    # -- resumption ------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_remainder": self.drop_remainder,
            "bucket_by_length": self.bucket_by_length,
            "bucket_window": self.bucket_window,
        }

    def state(self) -> dict[str, Any]:
        """A small JSON-able snapshot: seed, epoch, position and the order-defining config."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            **self._config(),
        }

    def load_state(self, state: dict[str, Any]) -> BatchIterator:
        """Moves this iterator to ``state`` (from :meth:`state`); returns ``self``.

        Raises:
            ValueError: If the state was made with a different number of examples,
                batch size or ordering options, which would give a different order.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"state must be a dict from BatchIterator.state(), got {state!r}")
        mismatched = {k: (state.get(k), v) for k, v in self._config().items() if state.get(k) != v}
        if mismatched:
            detail = ", ".join(
                f"{k}: state {a!r} vs iterator {b!r}" for k, (a, b) in mismatched.items()
            )
            raise ValueError(f"state does not match this iterator ({detail})")
        self.seed = int(state["seed"])
        self._cached_epoch = None
        self._seek(int(state["epoch"]), int(state["position"]))
        return self

    @classmethod
    def from_state(
        cls, state: dict[str, Any], inputs: Any, targets: Any = None, **kwargs: Any
    ) -> BatchIterator:
        """Rebuilds an iterator at ``state``; ``kwargs`` are the non-order options
        (padding, ``pad_to``, ``num_epochs``, ...)."""
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"state must be a dict from BatchIterator.state(), got {state!r}")
        order_keys = (
            "batch_size",
            "shuffle",
            "drop_remainder",
            "bucket_by_length",
            "bucket_window",
        )
        options = {k: state[k] for k in order_keys}
        with warnings.catch_warnings():
            # The drop_remainder warning was already given when the run started.
            warnings.simplefilter("ignore", UserWarning)
            it = cls(inputs, targets, seed=state["seed"], **options, **kwargs)
        return it.load_state(state)

    def _seek(self, epoch: int, position: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        if not 0 <= position < self.batches_per_epoch:
            raise ValueError(
                f"position must lie in 0..{self.batches_per_epoch - 1} (batches per epoch), "
                f"got {position}"
            )
        self.epoch, self.position = epoch, position


def _map_leaves(fn, part: Any) -> Any:
    return tuple(fn(x) for x in part) if isinstance(part, tuple) else fn(part)


def _leaves(targets: Any) -> list:
    if targets is None:
        return []
    return list(targets) if isinstance(targets, tuple) else [targets]
