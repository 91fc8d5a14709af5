"""Many train or eval steps in one jitted call: a ``lax.scan`` over a chunk of batches.

For the course's small models (batch 32, T 32, H 32) dispatching one jitted step per batch costs
more than the step's arithmetic, so :func:`~seqjax.train.fit` and
:func:`~seqjax.train.evaluate` run a *chunk* of K steps per call, like Keras'
``steps_per_execution``. A chunk is either K batches stacked on a new leading axis
(``[K, B, ...]``, staged on the host and put on the devices in one transfer), or K rows of example
indices ``[K, B]`` into a dataset that stays on the devices (:func:`gather_rows`).

A chunk always has K slots and ``valid [K]`` says which hold a batch; the step of an empty slot
is skipped (``lax.cond``: no optimizer update, no step count, zero metrics). So a partial chunk
(the end of an epoch, a checkpoint boundary) reuses the program compiled for full ones. Step
``s`` still draws the key ``fold_in(rng, s)`` from ``state.step``, so a chunked run computes what
one step per call computes, and its metrics come back per step (``[K]`` leaves) for the host to
sum in order.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from flax import nnx
    >>> from seqjax.train import TrainState, make_train_step
    >>> from seqjax.train.multistep import scan_train_steps
    >>> def loss_fn(model, batch, key):
    ...     x, y = batch
    ...     return jnp.mean((model(x)[:, 0] - y) ** 2)
    >>> tx = optax.sgd(0.1)
    >>> state = TrainState.create(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), tx)
    >>> chunk = jax.jit(scan_train_steps(make_train_step(loss_fn, tx)), donate_argnums=0)
    >>> xs = (jnp.ones((4, 8, 3)), jnp.zeros((4, 8)))        # K=4 batches of B=8
    >>> state, metrics = chunk(state, xs, jnp.array([True, True, True, False]))
    >>> int(state.step), metrics["loss"].shape                  # the 4th slot was skipped
    (3, (4,))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqjax.data import Batch, DenseArrays

__all__ = ["scan_train_steps", "scan_eval_steps", "gather_rows", "slow_in_loops"]

Gather = Callable[[Any, Any], Any]


def gather_rows(arrays: DenseArrays, indices: jax.Array) -> Batch:
    """The batch of ``indices`` from a dataset held as whole arrays (on the devices).

    Gives what ``BatchIterator.make_batch(indices)`` gives on the host, plus padding rows:
    index ``-1`` is a row of zeros whose mask is all False (as :func:`pad_batch` pads).

    Args:
        arrays: :class:`~seqjax.data.DenseArrays` of device arrays (inputs [N, T, ...],
            lengths [N], targets).
        indices: int [B], example indices, -1 for a padding row.

    Returns:
        ``Batch(inputs [B, T, ...], mask bool [B, T], targets)``.
    """
    real = indices >= 0
    safe = jnp.where(real, indices, 0)

    def take(x):
        rows = jnp.take(x, safe, axis=0)
        keep = real.reshape((-1,) + (1,) * (rows.ndim - 1))
        return jnp.where(keep, rows, jnp.zeros((), rows.dtype))

    inputs = take(arrays.inputs)
    lengths = take(arrays.lengths)
    steps = jnp.arange(inputs.shape[1] if inputs.ndim >= 2 else 0)
    if arrays.padding == "post":
        mask = steps[None, :] < lengths[:, None]
    else:
        mask = steps[None, :] >= (steps.shape[0] - lengths)[:, None]
    targets = jax.tree.map(take, arrays.targets)
    return Batch(inputs, mask, targets)


def _zeros_like_struct(struct):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), struct)


def _jitted(step: Callable) -> Callable:
    # A jit-wrapped step keeps one trace cache: finding its output structure (``eval_shape``,
    # for the zeros of skipped slots), a caller's ``make_jaxpr`` of it, and running it in the
    # chunk then share one trace of the user's loss function.
    return step if hasattr(step, "lower") else jax.jit(step)


def scan_train_steps(train_step: Callable, gather: Gather | None = None) -> Callable:
    """Builds ``chunk(state, xs, valid, data=None) -> (state, metrics)``: K train steps.

    Args:
        train_step: ``train_step(state, batch) -> (state, metrics)`` (see
            :func:`~seqjax.train.make_train_step`), best already wrapped in ``jax.jit``.
        gather: ``gather(data, x) -> batch`` for index chunks (e.g. :func:`gather_rows`), or
            None when ``xs`` holds the batches themselves.

    Returns:
        The pure chunk function (jit it once, donating ``state``): ``xs`` is a pytree with a
        leading axis K (stacked batches, or index rows for ``gather``), ``valid`` bool [K] marks
        the slots that hold a batch, ``data`` is passed to ``gather``. ``metrics`` has a leading
        axis K; skipped slots give zeros and leave ``state`` unchanged. A chunk of K=1 is the
        step alone, without a loop or a conditional (its one slot always holds a batch).
    """
    step = _jitted(train_step)

    def chunk(state, xs, valid, data=None):
        def run(state, x):
            return step(state, x if gather is None else gather(data, x))

        first = jax.tree.map(lambda x: x[0], xs)
        if _slots(xs) == 1:
            state, metrics = run(state, first)
            return state, jax.tree.map(lambda m: m[None], metrics)
        metrics_struct = jax.eval_shape(run, state, first)[1]

        def slot(state, x_and_valid):
            x, ok = x_and_valid
            return jax.lax.cond(
                ok, lambda s: run(s, x), lambda s: (s, _zeros_like_struct(metrics_struct)), state
            )

        return jax.lax.scan(slot, state, (xs, valid))

    return chunk


def scan_eval_steps(eval_step: Callable, gather: Gather | None = None) -> Callable:
    """Builds ``chunk(state, xs, valid, data=None) -> metrics``: K eval steps on one state.

    Args:
        eval_step: ``eval_step(state, batch) -> metrics`` (see
            :func:`~seqjax.train.make_eval_step`), best already wrapped in ``jax.jit``.
        gather: as for :func:`scan_train_steps`.

    Returns:
        The pure chunk function; ``metrics`` has a leading axis K, zeros at skipped slots.
    """
    step = _jitted(eval_step)

    def chunk(state, xs, valid, data=None):
        def run(x):
            return step(state, x if gather is None else gather(data, x))

        first = jax.tree.map(lambda x: x[0], xs)
        if _slots(xs) == 1:
            return jax.tree.map(lambda m: m[None], run(first))
        metrics_struct = jax.eval_shape(run, first)

        def slot(carry, x_and_valid):
            x, ok = x_and_valid
            metrics = jax.lax.cond(ok, lambda: run(x), lambda: _zeros_like_struct(metrics_struct))
            return carry, metrics

        return jax.lax.scan(slot, None, (xs, valid))[1]

    return chunk


def _slots(xs) -> int:
    return jax.tree.leaves(xs)[0].shape[0]


def slow_in_loops(jaxpr: Any, platform: str) -> bool:
    """Whether a step would run far slower inside a chunk's loop than on its own.

    XLA:CPU turns a convolution whose dimensions are not in its canonical order (input NWC,
    kernel WIO) into the fast Eigen call only in a program's top-level computation: inside a
    ``while`` loop or a conditional it compiles a generic loop nest. The weight gradient of
    every convolution is such a one, and for Conv1D(128, 5) on [32, 120, 16] a train step went
    from 4 ms alone to 200 ms in a chunk. Other platforms run their convolutions as usual.

    Args:
        jaxpr: the step's jaxpr (``jax.make_jaxpr(step)(state, batch)``).
        platform: the devices' platform (``"cpu"``, ``"gpu"``, ``"tpu"``).
    """
    if platform != "cpu":
        return False
    return any(_non_canonical_conv(eqn) for eqn in _equations(jaxpr))


def _equations(jaxpr):
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    yield from _equations(sub)


def _non_canonical_conv(eqn) -> bool:
    if eqn.primitive.name != "conv_general_dilated":
        return False
    params = eqn.params
    lhs, rhs, out = params["dimension_numbers"]
    n = len(lhs)
    spatial = tuple(range(1, n - 1))
    canonical = (tuple(lhs) == (0, n - 1, *spatial) and tuple(out) == (0, n - 1, *spatial)
                 and tuple(rhs) == (n - 1, n - 2, *range(n - 2)))
    grouped = params.get("feature_group_count", 1) != 1 or params.get("batch_group_count", 1) != 1
    return not canonical or grouped
