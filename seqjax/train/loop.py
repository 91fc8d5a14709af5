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

A batch is anything ``loss_fn`` understands; to be padded and counted per example it should be
``(inputs, mask, targets)`` (e.g. ``seqjax.data.Batch``) with ``mask`` bool ``[B, T]``.

Both loops run a chunk of K steps per jitted call (``steps_per_execution``, see
:mod:`seqjax.train.multistep` and :mod:`seqjax.train.staging`) and compile each batch shape once:
a smaller batch (the last of an epoch) is padded with rows whose mask is all False, so
``loss_fn`` and the model must give finite values for such rows and leave them out of the loss
(every loss and metric of :mod:`seqjax.train` does when given the mask; a model that divides by
a row's valid count should use ``max(count, 1)``). Batches with another T compile once per
distinct T; keep T fixed (``BatchIterator(pad_to=...)``) to compile once.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from seqjax.data import DenseArrays

from .callbacks import Callback, CallbackList
from .checkpoints import Checkpointer
from .history import History, resolve_mode
from .metrics import Ratio
from .multistep import gather_rows, scan_eval_steps, scan_train_steps, slow_in_loops
from .parallel import DataParallel
from .staging import Feed, numbered, resolve_steps_per_execution
from .steps import TrainState, _optax_init, make_eval_step, make_train_step

__all__ = ["fit", "evaluate"]

_META_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Metric accumulation (host side, float64, in batch order: deterministic across restarts)
# ------------------------------------------------------------------------------------------------


class _Accumulator:
    """Sums metrics over an epoch: Ratios exactly, other scalars weighted by example count.

    Metrics arrive per chunk with a leading step axis; they are summed on the host in float64,
    step by step in batch order, so the sums do not depend on how steps were cut into chunks.
    """

    def __init__(self, sums: Mapping[str, list] | None = None):
        self.sums: dict[str, list] = {k: list(v) for k, v in (sums or {}).items()}
        self._pending: list[tuple[Any, list[float]]] = []

    def add(self, metrics, weights: Sequence[float]) -> None:
        """Adds a chunk's metrics ([K] leaves) for its first ``len(weights)`` steps."""
        self._pending.append((metrics, [float(w) for w in weights]))

    def flush(self) -> None:
        if not self._pending:
            return
        fetched = jax.device_get([m for m, _ in self._pending])
        for metrics, (_, weights) in zip(fetched, self._pending, strict=True):
            for t, weight in enumerate(weights):
                for name, m in metrics.items():
                    if isinstance(m, Ratio):
                        entry = self.sums.setdefault(name, [0.0, 0.0, m.post])
                        entry[0] += float(m.numerator[t])
                        entry[1] += float(m.denominator[t])
                    else:
                        entry = self.sums.setdefault(name, [0.0, 0.0, "mean"])
                        entry[0] += float(m[t]) * weight
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
        stop_training: set to True to stop after the current chunk of batches.
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
        """``(params, model_state)`` of the best checkpoint, or None if there is none.

        With ``epoch``, only a best checkpoint written at the end of that epoch qualifies (the
        checkpoint's monitor may differ from the caller's, e.g. an ``EarlyStopping``'s).
        """
        ckpt = self.checkpointer
        if ckpt is None or ckpt._best is None or ckpt.latest_step("best") is None:
            return None
        if epoch is not None and ckpt.read_meta(which="best").get("epoch") != epoch + 1:
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
    steps_per_execution: int | str | None = "auto",
) -> History:
    """Trains ``model`` in place, Keras style, and returns the :class:`History`.

    Each epoch runs the train step over ``train_data`` with a tqdm progress bar showing the
    running loss and metrics, then evaluates ``validation_data`` (metrics logged with a ``val_``
    prefix). The steps run ``steps_per_execution`` (K) batches per jitted call: a ``lax.scan``
    over K batches put on the devices in one transfer, or gathered by index from a dense
    :class:`~seqjax.data.BatchIterator` that stays on the devices for the whole run. Each batch
    shape compiles once: the last, partial batch is padded with masked rows (see the module
    docstring) and a partial chunk skips its empty slots. A run compiles three programs (the
    initial state, the train chunk, the eval chunk), in the first epoch. Batches are sharded
    over all ``devices`` and the state replicated (see :mod:`seqjax.train.parallel`). Step ``s``
    uses the key ``fold_in(key(seed), s)`` whatever K is, so a run is reproducible and
    resumable, and K changes nothing but speed (to float rounding).

    Callbacks see the loop at chunk granularity: after a chunk has run, ``on_train_batch_end``
    is called for each of its steps in turn (``loop.state`` is then the state after the chunk),
    ``stop_training`` stops at the end of the chunk, and metrics are fetched for the progress bar
    when a chunk crosses a multiple of ``log_every`` steps.

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
            at the end of every epoch and of training when ``checkpoint_dir`` is set). Chunks
            end at these steps, so the checkpoints fall exactly on them; one that falls on the
            end of an epoch is the epoch's checkpoint, written after validation.
        max_to_keep: latest checkpoints kept.
        keep_best: keep the best checkpoint by ``monitor`` in ``checkpoint_dir/best``.
        monitor: metric that decides the best checkpoint (``"val_loss"``; without validation
            data a ``val_`` name falls back to the training metric).
        mode: ``"min"``, ``"max"`` or ``"auto"`` for ``monitor``.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` if there is one
            (same parameters, optimizer state, RNG, data position, history and callback state).
        history_path: write the history JSON here (default ``checkpoint_dir/history.json``;
            by process 0 alone when several train together).
        plot_path: write learning-curve PNG here (see :func:`~seqjax.train.plots.plot_history`).
        devices: devices for data parallelism (default: all).
        learning_rate: optional optax schedule, logged per epoch as ``learning_rate``.
        steps_per_execution: batches per jitted call (K, like Keras' argument of that name);
            ``"auto"`` or None: equal chunks of at most 128 batches per epoch (at most
            ``save_every_steps``; fewer when host-staged batches are large; 1 for a
            ``BatchIterator`` whose T varies from batch to batch), chosen for the training and
            the validation data separately.

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
        ...         count = jnp.maximum(mask.sum(1, keepdims=True), 1)  # padding rows: no NaN
        ...         h = (self.embed(x) * mask[..., None]).sum(1) / count
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
    steps_per_execution = resolve_steps_per_execution(steps_per_execution)
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
    train_feed = Feed(train_data, parallel, steps_per_execution, every=save_every_steps)
    val_feed = None if validation_data is None else Feed(validation_data, parallel,
                                                         steps_per_execution)
    train_step = jax.jit(make_train_step(loss_fn, optimizer, learning_rate=learning_rate))
    train_chunk = _jit_train_chunk(train_step, train_feed, parallel)
    eval_step = jax.jit(make_eval_step(eval_loss_fn or loss_fn))
    eval_chunk = None if val_feed is None else _jit_eval_chunk(eval_step, val_feed, parallel)

    state = _initial_state(model, optimizer, seed, parallel)
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
    train_feed.probe = _probe(train_step, train_feed, parallel, lambda: loop.state)
    if val_feed is not None:
        val_feed.probe = _probe(eval_step, val_feed, parallel, lambda: loop.state)

    last_saved = [None]
    if checkpointer is not None and resume and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        if meta.get("version") != _META_VERSION:
            raise ValueError(
                f"checkpoint_dir: unsupported checkpoint version {meta.get('version')}")
        history = History.from_dict(meta["history"])
        loop.state, loop.history = state, history
        loop.global_step = int(meta["global_step"])
        last_saved[0] = loop.global_step  # never rewrite the checkpoint just restored
        start_epoch, skip_batches = int(meta["epoch"]), int(meta["batches_done"])
        stopped = bool(meta.get("stopped", False))
        if skip_batches:
            accumulator = _Accumulator(meta["accumulator"])
        callback_list.load_state_dict(meta.get("callbacks") or {})
        data_restored = meta.get("data_state") is not None and _restore_data_state(
            train_data, meta["data_state"])
    else:
        data_restored = False

    has_data_state = _data_state(train_data) is not None
    current_data_state = object()  # "read the data's state now"

    def checkpoint_meta(epoch, batches_done, acc, is_stopped=False, data_state=current_data_state):
        if data_state is current_data_state:
            data_state = _data_state(train_data)
        return {
            "version": _META_VERSION,
            "epoch": epoch,
            "batches_done": batches_done,
            "global_step": loop.global_step,
            "accumulator": acc.to_json() if acc is not None else {},
            "history": loop.history.to_dict(),
            "callbacks": callback_list.state_dict(),
            "data_state": data_state,
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
        source = train_feed.epoch_source(epoch, "train_data")
        total = steps_per_epoch or _length(train_data, source)
        train_feed.batches_per_epoch = total
        bar = _progress(total, f"Epoch {epoch + 1}/{epochs}", verbose, initial=done)
        seen_any = done > 0
        chunks = train_feed.chunks(
            numbered(source, offset=offset, skip=skip, stop=steps_per_epoch),
            first_step=loop.global_step,
            state_fn=(lambda: _data_state(train_data)) if has_data_state else None,
        )
        chunk = next(chunks, None)
        while chunk is not None:
            loop.state, metrics = train_chunk(loop.state, chunk.xs, chunk.valid,
                                              train_feed.device_data)
            following = next(chunks, None)  # staged on the host while the devices run `chunk`
            seen_any = True
            acc.add(metrics, chunk.weights)
            first_step, loop.global_step = loop.global_step, loop.global_step + chunk.count
            done = chunk.last_index + 1
            batch_logs = {}
            if _crossed(first_step, loop.global_step, log_every):
                batch_logs = acc.result()
                if bar is not None:
                    bar.set_postfix(_fmt(batch_logs), refresh=False)
            if bar is not None:
                bar.update(chunk.count)
            for step in range(first_step + 1, loop.global_step + 1):
                callback_list.on_train_batch_end(step, batch_logs if step == loop.global_step
                                                 else {})
            # The epoch's last chunk (and a chunk that stops training) is saved by the epoch-end
            # checkpoint after validation. A mid-epoch checkpoint there would hold the data's
            # position in the next epoch beside batches_done of this one (a resume would then
            # train the next epoch's batches as this one's), and saving the same step twice
            # would delete the first copy before writing the second.
            if (save_every_steps and following is not None and not loop.stop_training
                    and _crossed(first_step, loop.global_step, save_every_steps)):
                save(checkpoint_meta(epoch, done, acc, data_state=chunk.data_state))
            if loop.stop_training:
                break
            chunk = following
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
            val_logs = _evaluate(eval_chunk, loop.state, val_feed, epoch, validation_steps,
                                 "validation_data")
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
        if history_path is not None and jax.process_index() == 0:  # one writer per run
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
    if history_path is not None and jax.process_index() == 0:
        history.save(history_path)
    if plot_path is not None and len(history):
        history.plot(plot_path)
    if checkpointer is not None:
        checkpointer.close()
    return history


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(before, after]``."""
    return before // every != after // every


def _initial_state(model: nnx.Module, optimizer, seed: int, parallel: DataParallel) -> TrainState:
    """``TrainState.create`` as one compiled program (eagerly, every optimizer-state leaf and
    every copy would compile a program of its own), replicated over the devices."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)

    def init(params, model_state):
        # Fresh buffers, so that donating the state never invalidates the model's arrays.
        params, model_state = jax.tree.map(jnp.copy, (params, model_state))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                          opt_state=_optax_init(optimizer, params), rng=jax.random.key(seed),
                          graphdef=graphdef)

    return jax.jit(init, out_shardings=parallel.replicated)(params, model_state)


def _probe(step, feed: Feed, parallel: DataParallel, current_state):
    """``probe(x) -> bool`` for :attr:`Feed.probe`: whether ``step`` must run alone.

    ``step`` is the jitted step the chunk calls, so tracing it here is the one trace of the
    user's loss function that the chunk then reuses."""
    platform = parallel.mesh.devices.flat[0].platform
    gather = _device_gather(feed, parallel) if feed.on_device else None

    def probe(x):
        batch = x if gather is None else jax.eval_shape(gather, feed.device_data, x)
        # Abstract values placed as a slot's batch is inside a chunk, so that the trace matches.
        batch = jax.tree.map(lambda v: jax.ShapeDtypeStruct(
            np.shape(v), v.dtype, sharding=parallel.batch_sharding if np.ndim(v)
            else parallel.replicated), batch)
        return slow_in_loops(jax.make_jaxpr(step)(current_state(), batch), platform)

    return probe


def _device_gather(feed: Feed, parallel: DataParallel):
    padding = feed.padding

    def gather(data, indices):
        batch = gather_rows(DenseArrays(*data, padding), indices)
        return jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, parallel.batch_sharding) if x.ndim
            else x, batch)

    return gather


def _jit_train_chunk(train_step, feed: Feed, parallel: DataParallel):
    gather = _device_gather(feed, parallel) if feed.on_device else None
    return jax.jit(scan_train_steps(train_step, gather), donate_argnums=0,
                   out_shardings=(parallel.replicated, parallel.replicated))


def _jit_eval_chunk(eval_step, feed: Feed, parallel: DataParallel):
    gather = _device_gather(feed, parallel) if feed.on_device else None
    return jax.jit(scan_eval_steps(eval_step, gather), out_shardings=parallel.replicated)


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


def _evaluate(eval_chunk, state, feed: Feed, epoch, steps, name) -> dict[str, float]:
    acc = _Accumulator()
    source = feed.epoch_source(epoch, name)
    length = _length(feed.data, source)
    feed.batches_per_epoch = min(steps, length) if steps and length else (steps or length)
    count = 0
    for chunk in feed.chunks(numbered(source, stop=steps)):
        acc.add(eval_chunk(state, chunk.xs, chunk.valid, feed.device_data), chunk.weights)
        count += chunk.count
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
    steps_per_execution: int | str | None = "auto",
) -> dict[str, float]:
    """Averages ``loss_fn``'s loss and metrics over ``data`` with the model in eval mode.

    Runs K batches per jitted call like :func:`fit` (the last, partial batch padded with
    masked rows; a dense ``BatchIterator`` gathered on the devices).

    Args:
        model_or_state: an ``nnx.Module`` or a ``TrainState``.
        loss_fn: ``loss_fn(model, batch, key) -> loss | (loss, metrics)``.
        data: batches (an iterable, or a callable called with epoch 0).
        steps: evaluate at most this many batches.
        seed: seed of the key passed to ``loss_fn``.
        devices: devices for data parallelism (default: all).
        steps_per_execution: batches per jitted call (K); ``"auto"`` or None chooses it (see
            :func:`fit`).

    Returns:
        ``{"loss": ..., metric: ...}`` as Python floats (Keras' ``evaluate(return_dict=True)``).
    """
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable: loss_fn(model, batch, key)")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    steps_per_execution = resolve_steps_per_execution(steps_per_execution)
    parallel = DataParallel(devices)
    if isinstance(model_or_state, nnx.Module):
        state = _initial_state(model_or_state, optax.identity(), seed, parallel)
    elif isinstance(model_or_state, TrainState):
        state = parallel.replicate(model_or_state)
    else:
        raise ValueError("model_or_state must be an nnx.Module or a TrainState")
    feed = Feed(data, parallel, steps_per_execution)
    eval_step = jax.jit(make_eval_step(loss_fn))
    feed.probe = _probe(eval_step, feed, parallel, lambda: state)
    return _evaluate(_jit_eval_chunk(eval_step, feed, parallel), state, feed, 0, steps, "data")
