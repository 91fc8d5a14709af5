"""``fit`` and ``evaluate``: Keras-like training loops for Flax NNX models.

``train_data`` and ``validation_data`` may be

* a callable ``make_batches(epoch) -> iterable of batches``: the simplest resumable form; seed
  the shuffle with the epoch and a restart reproduces the data order exactly;
* a re-iterable (a list of batches, or a loader whose ``__iter__`` starts a new epoch); on a
  restart the interrupted epoch is re-iterated and the batches already seen are skipped, which is
  exact when iterating is deterministic;
* an object with ``state()`` (JSON-able) and ``restore(state)`` (or ``set_state(state)``)
  methods: its state is saved with each checkpoint and restored on a restart; the next
  ``iter(train_data)`` must then yield the rest of the interrupted epoch.

A batch is anything ``loss_fn`` understands; to be padded over devices and counted per example
it should be ``(inputs, mask, targets)`` (e.g. ``seqjax.data.Batch``) with ``mask`` bool
``[B, T]``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from .callbacks import Callback, CallbackList
from .checkpoints import Checkpointer
from .history import History, resolve_mode
from .metrics import Ratio
from .parallel import DataParallel
from .steps import TrainState, make_eval_step, make_train_step

__all__ = ["fit", "evaluate"]

_META_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Metric accumulation (host side, float64, in batch order: deterministic across restarts)
# ------------------------------------------------------------------------------------------------


class _Accumulator:
    """Sums metrics over an epoch: Ratios exactly, other scalars weighted by example count."""

    def __init__(self, sums: Mapping[str, list] | None = None):
        self.sums: dict[str, list] = {k: list(v) for k, v in (sums or {}).items()}
        self._pending: list[tuple[Any, float]] = []

    def add(self, metrics, weight: float) -> None:
        self._pending.append((metrics, float(weight)))

    def flush(self) -> None:
        if not self._pending:
            return
        fetched = jax.device_get([m for m, _ in self._pending])
        for metrics, (_, weight) in zip(fetched, self._pending, strict=True):
            for name, m in metrics.items():
                if isinstance(m, Ratio):
                    entry = self.sums.setdefault(name, [0.0, 0.0, m.post])
                    entry[0] += float(m.numerator)
                    entry[1] += float(m.denominator)
                else:
                    entry = self.sums.setdefault(name, [0.0, 0.0, "mean"])
                    entry[0] += float(m) * weight
                    entry[1] += weight
        self._pending.clear()

    def result(self) -> dict[str, float]:
        self.flush()
        out = {}
        for name, (num, den, post) in self.sums.items():
            value = num / den if den > 0 else (math.nan if post == "mean" else 0.0)
            out[name] = math.exp(value) if post == "exp" else value
        return out

    def to_json(self) -> dict:
        self.flush()
        return {k: list(v) for k, v in self.sums.items()}


def _example_weight(batch) -> float:
    """Number of real examples: rows with a valid step, or the batch size without a mask."""
    mask = None
    if hasattr(batch, "_fields") and hasattr(batch, "mask"):
        mask = batch.mask
    elif isinstance(batch, (tuple, list)) and len(batch) == 3:
        mask = batch[1]
    if mask is not None and np.ndim(mask) >= 1:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            return float(np.any(mask.reshape(mask.shape[0], -1), axis=-1).sum())
    leaves = [x for x in jax.tree.leaves(batch) if np.ndim(x) > 0]
    return float(np.shape(leaves[0])[0]) if leaves else 1.0


def _epoch_source(data, epoch: int, name: str):
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


def _is_data(data) -> bool:
    epoch_aware = callable(getattr(data, "iter_epoch", None))
    return callable(data) or hasattr(data, "__iter__") or epoch_aware


def _restore_data_state(data, state) -> bool:
    for method in ("load_state", "restore", "set_state", "load_state_dict"):
        if hasattr(data, method) and callable(getattr(data, method)):
            getattr(data, method)(state)
            return True
    return False


def _data_state(data):
    fn = getattr(data, "state", None)
    if callable(fn) and not callable(data):
        return fn()
    return None


def _fmt(logs: Mapping[str, float]) -> dict[str, str]:
    return {k: f"{v:.4g}" for k, v in logs.items()}


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


class TrainingLoop:
    """State of a running :func:`fit`, as seen by callbacks (``callback.loop``).

    Attributes:
        state: the current ``TrainState`` (replicated over the devices).
        history: the :class:`History` so far.
        epoch: current epoch (0-based).
        global_step: optimizer steps taken.
        stop_training: set to True to stop after the current batch.
        checkpointer: the :class:`Checkpointer` or None.
        parallel: the :class:`DataParallel` placement.
    """

    def __init__(self, state, history, parallel, checkpointer, best_monitor):
        self.state = state
        self.history = history
        self.parallel = parallel
        self.checkpointer = checkpointer
        self.best_monitor = best_monitor
        self.epoch = 0
        self.global_step = int(jax.device_get(state.step))
        self.stop_training = False

    def set_weights(self, params, model_state) -> None:
        """Replaces the parameters and model variables (e.g. to restore the best epoch)."""
        self.state = self.state.replace(
            params=self.parallel.replicate(params),
            model_state=self.parallel.replicate(model_state),
        )

    def load_best_weights(self, epoch=None):
        """``(params, model_state)`` of the best checkpoint, or None if there is none."""
        ckpt = self.checkpointer
        if ckpt is None or ckpt._best is None or ckpt.latest_step("best") is None:
            return None
        return ckpt.restore_weights(self.state, which="best")


def fit(
    model: nnx.Module,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    train_data: Iterable | Callable[[int], Iterable],
    *,
    epochs: int = 1,
    validation_data: Iterable | Callable[[int], Iterable] | None = None,
    callbacks: Sequence[Callback] | None = None,
    eval_loss_fn: Callable | None = None,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    verbose: int = 1,
    log_every: int = 10,
    checkpoint_dir: str | os.PathLike | None = None,
    save_every_steps: int | None = None,
    max_to_keep: int = 3,
    keep_best: bool = True,
    monitor: str = "val_loss",
    mode: str = "auto",
    resume: bool = True,
    history_path: str | os.PathLike | None = None,
    plot_path: str | os.PathLike | None = None,
    devices: Sequence[jax.Device] | None = None,
    learning_rate: optax.Schedule | None = None,
) -> History:
    """Trains ``model`` in place, Keras style, and returns the :class:`History`.

    Each epoch runs the jitted train step (compiled once, state donated) over ``train_data``
    with a tqdm progress bar showing the running loss and metrics, then evaluates
    ``validation_data`` (metrics logged with a ``val_`` prefix). The batch is sharded over all
    ``devices`` and the state replicated (see :mod:`seqjax.train.parallel`; batches that do not
    divide over the devices are padded with masked examples). Step ``s`` uses the key
    ``fold_in(key(seed), s)``, so a run is reproducible and resumable.

    Args:
        model: the ``nnx.Module`` to train; it holds the trained weights afterwards.
        loss_fn: ``loss_fn(model, batch, key) -> loss | (loss, {name: metric})`` where
            metrics are scalars or :class:`~seqjax.train.metrics.Ratio` (see
            :mod:`seqjax.train.steps`).
        optimizer: an ``optax.GradientTransformation`` (e.g. :func:`make_optimizer`).
        train_data: batches per epoch (see the module docstring for the accepted forms).
        epochs: number of epochs (counting epochs done before a resume).
        validation_data: batches evaluated at the end of every epoch, or None.
        callbacks: :class:`~seqjax.train.callbacks.Callback` instances (e.g. ``EarlyStopping``).
        eval_loss_fn: loss function for validation (default: ``loss_fn``).
        seed: seed of the base PRNG key (dropout and anything else using ``key``).
        steps_per_epoch: stop an epoch after this many batches (needed for endless iterators).
        validation_steps: evaluate at most this many validation batches.
        verbose: 0 silent, 1 a progress bar per epoch.
        log_every: fetch metrics for the progress bar every this many steps.
        checkpoint_dir: directory for orbax checkpoints (and ``history.json``); None: none.
        save_every_steps: also checkpoint every this many steps (checkpoints are always written
            at the end of every epoch and of training when ``checkpoint_dir`` is set).
        max_to_keep: latest checkpoints kept.
        keep_best: keep the best checkpoint by ``monitor`` in ``checkpoint_dir/best``.
        monitor: metric that decides the best checkpoint (``"val_loss"``; without validation
            data a ``val_`` name falls back to the training metric).
        mode: ``"min"``, ``"max"`` or ``"auto"`` for ``monitor``.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` if there is one
            (same parameters, optimizer state, RNG, data position, history and callback state).
        history_path: write the history JSON here (default ``checkpoint_dir/history.json``).
        plot_path: write learning-curve PNG here (see :func:`~seqjax.train.plots.plot_history`).
        devices: devices for data parallelism (default: all).
        learning_rate: optional optax schedule, logged per epoch as ``learning_rate``.

    Returns:
        The :class:`History`; ``history.train_state`` is the final ``TrainState``.

    Example:
        >>> import jax.numpy as jnp, numpy as np, optax
        >>> from flax import nnx
        >>> from seqjax.train import fit, softmax_cross_entropy, accuracy
        >>> class Bag(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.embed = nnx.Embed(20, 8, rngs=rngs)
        ...         self.out = nnx.Linear(8, 2, rngs=rngs)
        ...     def __call__(self, x, mask):
        ...         h = (self.embed(x) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        ...         return self.out(h)
        >>> def loss_fn(model, batch, key):
        ...     inputs, mask, labels = batch
        ...     logits = model(inputs, mask)
        ...     return softmax_cross_entropy(logits, labels, mask), {
        ...         "accuracy": accuracy(logits, labels, mask)}
        >>> def make_batches(epoch):                 # seeded by epoch: resumable
        ...     rng = np.random.default_rng(epoch)
        ...     for _ in range(4):
        ...         x = rng.integers(0, 20, (8, 5))
        ...         yield x, np.ones((8, 5), bool), (x[:, 0] < 10).astype(np.int32)
        >>> history = fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), make_batches,
        ...               epochs=2, validation_data=list(make_batches(99)), verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'loss', 'val_accuracy', 'val_loss']
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable: loss_fn(model, batch, key)")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    for name, value in (("steps_per_epoch", steps_per_epoch), ("validation_steps",
                        validation_steps), ("save_every_steps", save_every_steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive int, got {log_every!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if save_every_steps is not None and checkpoint_dir is None:
        raise ValueError("save_every_steps needs checkpoint_dir")
    if not _is_data(train_data):
        raise ValueError("train_data must be an iterable of batches or a callable epoch -> batches")
    if validation_data is not None and not _is_data(validation_data):
        raise ValueError("validation_data must be an iterable of batches, a callable or None")
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    best_mode = resolve_mode(mode, monitor)

    parallel = DataParallel(devices)
    callback_list = CallbackList(callbacks)
    train_step = jax.jit(
        make_train_step(loss_fn, optimizer, learning_rate=learning_rate),
        donate_argnums=0,
        out_shardings=parallel.replicated,
    )
    eval_step = jax.jit(make_eval_step(eval_loss_fn or loss_fn), out_shardings=parallel.replicated)

    state = parallel.replicate(TrainState.create(model, optimizer, seed=seed))
    history = History()
    checkpointer = None
    start_epoch, skip_batches, accumulator, stopped = 0, 0, None, False
    if checkpoint_dir is not None:
        checkpointer = Checkpointer(checkpoint_dir, max_to_keep=max_to_keep, keep_best=keep_best,
                                    monitor=monitor, mode=best_mode)
        if history_path is None:
            history_path = os.path.join(checkpointer.directory, "history.json")
    loop = TrainingLoop(state, history, parallel, checkpointer, monitor)
    callback_list.set_loop(loop)

    if checkpointer is not None and resume and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        if meta.get("version") != _META_VERSION:
            raise ValueError(
                f"checkpoint_dir: unsupported checkpoint version {meta.get('version')}")
        history = History.from_dict(meta["history"])
        loop.state, loop.history = state, history
        loop.global_step = int(meta["global_step"])
        start_epoch, skip_batches = int(meta["epoch"]), int(meta["batches_done"])
        stopped = bool(meta.get("stopped", False))
        if skip_batches:
            accumulator = _Accumulator(meta["accumulator"])
        callback_list.load_state_dict(meta.get("callbacks") or {})
        data_restored = meta.get("data_state") is not None and _restore_data_state(
            train_data, meta["data_state"])
    else:
        data_restored = False

    last_saved = [None]

    def checkpoint_meta(epoch, batches_done, acc, is_stopped=False):
        return {
            "version": _META_VERSION,
            "epoch": epoch,
            "batches_done": batches_done,
            "global_step": loop.global_step,
            "accumulator": acc.to_json() if acc is not None else {},
            "history": loop.history.to_dict(),
            "callbacks": callback_list.state_dict(),
            "data_state": _data_state(train_data),
            "stopped": is_stopped,
        }

    def save(meta):
        checkpointer.save(loop.global_step, loop.state, meta)
        last_saved[0] = loop.global_step

    callback_list.on_train_begin()
    epoch = start_epoch
    for epoch in range(start_epoch, epochs if not stopped else start_epoch):
        loop.epoch = epoch
        callback_list.on_epoch_begin(epoch)
        acc = accumulator if (epoch == start_epoch and accumulator is not None) else _Accumulator()
        resumed = epoch == start_epoch
        skip = skip_batches if resumed and not data_restored else 0
        offset = skip_batches if resumed and data_restored else 0
        done = skip_batches if resumed else 0
        source = _epoch_source(train_data, epoch, "train_data")
        total = steps_per_epoch or _length(train_data, source)
        bar = _progress(total, f"Epoch {epoch + 1}/{epochs}", verbose, initial=done)
        seen_any = done > 0
        for index, batch in enumerate(source, start=offset):
            if steps_per_epoch is not None and index >= steps_per_epoch:
                break
            if index < skip:
                continue
            seen_any = True
            weight = _example_weight(batch)
            sharded, _ = parallel.shard_batch(batch)
            loop.state, metrics = train_step(loop.state, sharded)
            acc.add(metrics, weight)
            loop.global_step += 1
            done = index + 1
            batch_logs = {}
            if loop.global_step % log_every == 0:
                acc.flush()
                batch_logs = acc.result()
                if bar is not None:
                    bar.set_postfix(_fmt(batch_logs), refresh=False)
            if bar is not None:
                bar.update(1)
            callback_list.on_train_batch_end(loop.global_step, batch_logs)
            if save_every_steps and loop.global_step % save_every_steps == 0:
                save(checkpoint_meta(epoch, done, acc))
            if loop.stop_training:
                break
        if not seen_any:
            if bar is not None:
                bar.close()
            raise ValueError(
                f"train_data yielded no batches in epoch {epoch}: pass a callable "
                "make_batches(epoch) or a re-iterable, not a one-shot iterator"
            )
        logs = acc.result()
        if learning_rate is not None:
            logs["learning_rate"] = float(learning_rate(loop.global_step))
        if validation_data is not None:
            val_logs = _evaluate(eval_step, loop.state, parallel, validation_data, epoch,
                                 validation_steps, "validation_data")
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        loop.history.append(epoch, logs)
        if bar is not None:
            bar.set_postfix(_fmt(logs), refresh=False)
            bar.close()
        callback_list.on_epoch_end(epoch, logs)
        if checkpointer is not None:
            meta = checkpoint_meta(epoch + 1, 0, None, loop.stop_training)
            if monitor in logs and not math.isnan(logs[monitor]):
                checkpointer.save_best(loop.global_step, loop.state, logs[monitor], meta)
            save(meta)
        if history_path is not None:
            loop.history.save(history_path)
        if loop.stop_training:
            break

    if checkpointer is not None and last_saved[0] != loop.global_step:
        save(checkpoint_meta(epoch + 1, 0, None, loop.stop_training))
    callback_list.on_train_end()
    state = loop.state
    state.update_model(model)
    history = loop.history
    history.train_state = state
    if history_path is not None:
        history.save(history_path)
    if plot_path is not None and len(history):
        history.plot(plot_path)
    if checkpointer is not None:
        checkpointer.close()
    return history


def _length(data, source):
    for obj in (source, data):
        if hasattr(obj, "__len__"):
            try:
                return len(obj)
            except TypeError:
                pass
    return None


def _progress(total, desc, verbose, initial=0):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", initial=initial, leave=verbose == 1,
                dynamic_ncols=True)


def _evaluate(eval_step, state, parallel, data, epoch, steps, name) -> dict[str, float]:
    acc = _Accumulator()
    source = _epoch_source(data, epoch, name)
    count = 0
    for index, batch in enumerate(source):
        if steps is not None and index >= steps:
            break
        weight = _example_weight(batch)
        sharded, _ = parallel.shard_batch(batch)
        acc.add(eval_step(state, sharded), weight)
        count += 1
    if count == 0:
        warnings.warn(f"{name} yielded no batches", stacklevel=3)
    return acc.result()


def evaluate(
    model_or_state: nnx.Module | TrainState,
    loss_fn: Callable,
    data: Iterable | Callable[[int], Iterable],
    *,
    steps: int | None = None,
    seed: int = 0,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, float]:
    """Averages ``loss_fn``'s loss and metrics over ``data`` with the model in eval mode.

    Args:
        model_or_state: an ``nnx.Module`` or a ``TrainState``.
        loss_fn: ``loss_fn(model, batch, key) -> loss | (loss, metrics)``.
        data: batches (an iterable, or a callable called with epoch 0).
        steps: evaluate at most this many batches.
        seed: seed of the key passed to ``loss_fn``.
        devices: devices for data parallelism (default: all).

    Returns:
        ``{"loss": ..., metric: ...}`` as Python floats (Keras' ``evaluate(return_dict=True)``).
    """
    if isinstance(model_or_state, nnx.Module):
        state = TrainState.create(model_or_state, optax.identity(), seed=seed)
    elif isinstance(model_or_state, TrainState):
        state = model_or_state
    else:
        raise ValueError("model_or_state must be an nnx.Module or a TrainState")
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable: loss_fn(model, batch, key)")
    parallel = DataParallel(devices)
    eval_step = jax.jit(make_eval_step(loss_fn), out_shardings=parallel.replicated)
    return _evaluate(eval_step, parallel.replicate(state), parallel, data, 0, steps, "data")
