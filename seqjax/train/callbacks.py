"""Keras-like callbacks for :func:`seqjax.train.fit`.

A callback sees the running loop through ``self.loop`` (set before training): ``loop.state``
(the :class:`~seqjax.train.steps.TrainState`, which a callback may replace), ``loop.history``,
``loop.epoch``, ``loop.global_step`` and ``loop.stop_training`` (set it to True to stop after the
current chunk of batches or epoch). ``fit`` runs several batches per jitted call
(``steps_per_execution``), so batch-level hooks come at chunk granularity: after a chunk has run,
``on_train_batch_end`` is called for each of its steps in turn, with ``loop.state`` and
``loop.global_step`` at the end of the chunk. Callbacks that keep state across a restart
implement ``state_dict()`` and ``load_state_dict(d)`` with JSON-able dicts; ``fit`` saves them
with each checkpoint.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

from .history import resolve_mode

__all__ = ["Callback", "CallbackList", "LambdaCallback", "EarlyStopping", "TerminateOnNaN"]


def _host_copy(tree):
    """A host (numpy) copy of every array; PRNG key arrays are copied as keys."""

    def copy(x):
        if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.array(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        return np.array(x)

    return jax.tree.map(copy, tree)


class Callback:
    """Base class; override any of the hooks. ``logs`` are dicts of Python floats."""

    loop: Any = None

    def set_loop(self, loop) -> None:
        self.loop = loop

    def on_train_begin(self, logs=None): ...

    def on_train_end(self, logs=None): ...

    def on_epoch_begin(self, epoch: int, logs=None): ...

    def on_epoch_end(self, epoch: int, logs=None): ...

    def on_train_batch_end(self, step: int, logs=None):
        """Called for every train step (``step`` = steps taken), in turn after its chunk has run;
        ``logs`` holds the running metrics only when the loop fetched them (at the last step of a
        chunk that crossed a multiple of ``log_every``), else it is empty."""

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None: ...


class CallbackList(Callback):
    """Calls a list of callbacks in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(
                    f"callbacks must be seqjax.train.Callback instances, got {type(cb).__name__}"
                )

    def set_loop(self, loop):
        for cb in self.callbacks:
            cb.set_loop(loop)

    def _call(self, name, *args):
        for cb in self.callbacks:
            getattr(cb, name)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_end(self, step, logs=None):
        self._call("on_train_batch_end", step, logs)

    def state_dict(self):
        return {str(i): cb.state_dict() for i, cb in enumerate(self.callbacks)
                if cb.state_dict() is not None}

    def load_state_dict(self, state):
        for i, cb in enumerate(self.callbacks):
            if str(i) in (state or {}):
                cb.load_state_dict(state[str(i)])


class LambdaCallback(Callback):
    """A callback from plain functions.

    Example: ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs["loss"]))``.
    """

    def __init__(
        self,
        on_epoch_begin: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_batch_end: Callable | None = None,
        on_train_begin: Callable | None = None,
        on_train_end: Callable | None = None,
    ):
        for name, fn in list(locals().items()):
            if name != "self" and fn is not None:
                if not callable(fn):
                    raise ValueError(f"{name} must be callable")
                setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite (checked whenever it is fetched)."""

    def _check(self, logs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            warnings.warn("TerminateOnNaN: loss is not finite, stopping", stacklevel=2)
            self.loop.stop_training = True

    def on_train_batch_end(self, step, logs=None):
        self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved for ``patience`` epochs (like Keras).

    Args:
        monitor: history key, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        patience: epochs without improvement before stopping.
        min_delta: smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy/F1-like names).
        restore_best_weights: at the end of training, put the parameters and model variables of
            the best epoch back into the state (and so into the model ``fit`` returns). The
            optimizer state and step are kept as they are.
        start_from_epoch: epochs to wait before monitoring.

    Attributes:
        best: best value seen; ``best_epoch``: its epoch; ``stopped_epoch``: the epoch after which
            training stopped (-1 if it did not).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = resolve_mode(mode, monitor)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch = -1
        self._best_weights = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitor {self.monitor!r} is not among the logged metrics "
                f"{sorted(logs)} (validation metrics need validation_data)"
            )
        if epoch < self.start_from_epoch:
            return
        value = float(logs[self.monitor])
        if self._improved(value) or self.best_epoch < 0:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                state = self.loop.state
                self._best_weights = _host_copy((state.params, state.model_state))
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.loop.stop_training = True

    def on_train_end(self, logs=None):
        if not self.restore_best_weights or self.best_epoch < 0:
            return
        weights = self._best_weights
        if weights is None:
            weights = self.loop.load_best_weights(self.best_epoch)
        if weights is None:
            warnings.warn(
                "EarlyStopping: the best weights were lost in a restart and no best checkpoint "
                "exists; keeping the last weights",
                stacklevel=2,
            )
            return
        self.loop.set_weights(*weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self._best_weights = None
