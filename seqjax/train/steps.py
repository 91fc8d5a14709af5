"""Train state, optimizers and pure train/eval steps for Flax NNX models.

The model is split once (``nnx.split``) into a static ``GraphDef`` and pytrees of arrays; a step
merges them back (``nnx.merge``) inside the traced function, calls your loss function on the
merged module, and returns new arrays. The steps are pure functions of their arguments, built to
be jitted once with the state donated (``fit`` does this for you)::

    train_step = jax.jit(make_train_step(loss_fn, optimizer), donate_argnums=0)

Loss function signature (used by ``make_train_step``, ``make_eval_step`` and ``fit``)::

    loss_fn(model, batch, key) -> loss                       # or
    loss_fn(model, batch, key) -> (loss, {name: metric})

``model`` is the merged NNX module (in train mode for training, eval mode for evaluation, see
``nnx.Module.train``/``eval``), ``batch`` whatever the batch iterator yields (usually
``Batch(inputs, mask, targets)``), ``key`` a ``jax.random`` key for this step (dropout etc.).
Metrics are scalars or :class:`~seqjax.train.metrics.Ratio`.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from flax import nnx
    >>> from seqjax.train import TrainState, make_train_step, softmax_cross_entropy, accuracy
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
    >>> tx = optax.adam(1e-2)
    >>> state = TrainState.create(Bag(nnx.Rngs(0)), tx, seed=0)
    >>> step = jax.jit(make_train_step(loss_fn, tx), donate_argnums=0)
    >>> batch = (jnp.ones((4, 5), jnp.int32), jnp.ones((4, 5), bool), jnp.array([0, 1, 0, 1]))
    >>> state, metrics = step(state, batch, jax.random.key(1))
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'loss'])
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

__all__ = [
    "TrainState",
    "make_optimizer",
    "make_train_step",
    "make_eval_step",
    "call_loss_fn",
]

LossFn = Callable[[nnx.Module, Any, jax.Array], Any]


def _copy_tree(tree):
    """Fresh buffers for every array (so donating the state never invalidates the user's model).

    ``device_put(may_alias=False)`` copies without compiling anything (``x.copy()`` compiles a
    program per shape). An array replicated over several processes' devices becomes this
    process's copy of it, which the process can read."""
    def copy(x):
        if isinstance(x, jax.Array):
            local = x if x.is_fully_addressable else x.addressable_data(0)
            return jax.device_put(local, may_alias=False)
        return x.copy() if hasattr(x, "copy") else x

    return jax.tree.map(copy, tree)


@struct.dataclass
class TrainState:
    """Everything that changes during training, as a pytree of arrays.

    Attributes:
        step: int32 scalar, optimizer steps taken.
        params: ``nnx.State`` of the model's ``nnx.Param`` variables.
        model_state: ``nnx.State`` of every other variable (RNG streams, batch statistics, ...).
        opt_state: the optax optimizer state for ``params``.
        rng: a ``jax.random`` key; step ``s`` uses ``fold_in(rng, s)`` when no key is given.
        graphdef: the model's static structure (not a pytree leaf; never saved in checkpoints).
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    graphdef: Any = struct.field(pytree_node=False, default=None)

    @classmethod
    def create(
        cls,
        model: nnx.Module,
        optimizer: optax.GradientTransformation,
        *,
        seed: int | None = 0,
        rng: jax.Array | None = None,
    ) -> TrainState:
        """Splits ``model`` and initialises the optimizer state.

        The arrays are copied, so the new state may be donated without touching ``model``.

        Args:
            model: an ``nnx.Module``.
            optimizer: an ``optax.GradientTransformation`` (e.g. from :func:`make_optimizer`).
            seed: seed of the state's base key (ignored when ``rng`` is given).
            rng: a ``jax.random.key`` to use instead of ``seed``.

        Returns:
            A ``TrainState`` at step 0.
        """
        if not isinstance(model, nnx.Module):
            raise ValueError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise ValueError(
                f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
            )
        graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
        params, model_state = _copy_tree(params), _copy_tree(model_state)
        if rng is None:
            if seed is None:
                raise ValueError("seed must be an int when rng is not given")
            rng = jax.random.key(seed)
        elif not jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
            rng = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=_optax_init(optimizer, params),
            rng=rng,
            graphdef=graphdef,
        )

    def merge(self) -> nnx.Module:
        """A new module holding (copies of) this state's arrays."""
        return nnx.merge(self.graphdef, self.params, self.model_state, copy=True)

    def update_model(self, model: nnx.Module) -> None:
        """Writes this state's parameters and variables into an existing ``model`` in place."""
        nnx.update(model, _copy_tree(self.params), _copy_tree(self.model_state))


def _optax_init(optimizer, params):
    with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
        return optimizer.init(params)


def make_optimizer(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    name: str = "adam",
    clip_norm: float | None = None,
    weight_decay: float = 0.0,
    decay_matrices_only: bool = True,
    momentum: float | None = None,
) -> optax.GradientTransformation:
    """An optax optimizer with optional global-norm clipping and decoupled weight decay.

    Args:
        learning_rate: a float, or an optax schedule ``step -> lr`` such as
            ``optax.warmup_cosine_decay_schedule(0, 1e-3, 100, 10_000)`` or
            ``optax.exponential_decay(1e-3, 1000, 0.5)``.
        name: ``"adam"``, ``"adamw"`` (same as adam with ``weight_decay``), ``"sgd"``,
            ``"rmsprop"`` or ``"adagrad"``.
        clip_norm: clip gradients to this global L2 norm before the update (``None``: no
            clipping), as ``optax.clip_by_global_norm``.
        weight_decay: decoupled weight decay coefficient (AdamW style; multiplied by the
            learning rate).
        decay_matrices_only: decay only parameters with 2 or more dimensions (kernels and
            embeddings), not biases or norm scales.
        momentum: momentum for ``"sgd"``/``"rmsprop"`` (``None``: none).

    Returns:
        An ``optax.GradientTransformation``.
    """
    if not callable(learning_rate) and not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive or a schedule, got {learning_rate}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    mask = (lambda params: jax.tree.map(lambda x: jnp.ndim(x) > 1, params)) if (
        decay_matrices_only) else None
    if name in ("adam", "adamw"):
        base = optax.adamw(learning_rate, weight_decay=weight_decay, mask=mask)
    elif name in ("sgd", "rmsprop", "adagrad"):
        if name == "sgd":
            base = optax.sgd(learning_rate, momentum=momentum)
        elif name == "rmsprop":
            base = optax.rmsprop(learning_rate, momentum=momentum or 0.0)
        else:
            base = optax.adagrad(learning_rate)
        if weight_decay:
            # Decoupled decay scaled by the learning rate, as AdamW does.
            lr = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
            decay = optax.chain(
                optax.add_decayed_weights(weight_decay, mask=mask),
                optax.scale_by_learning_rate(lr),
            )
            base = _sum_updates(base, decay)
    else:
        raise ValueError(f"name must be adam, adamw, sgd, rmsprop or adagrad, got {name!r}")
    if clip_norm is not None:
        return optax.chain(optax.clip_by_global_norm(clip_norm), base)
    return base


def _sum_updates(a: optax.GradientTransformation, b: optax.GradientTransformation):
    """A transformation whose update is ``a(g) + b(g)`` (b sees the same gradients)."""

    def init(params):
        return (a.init(params), b.init(params))

    def update(grads, state, params=None):
        ua, sa = a.update(grads, state[0], params)
        ub, sb = b.update(grads, state[1], params)
        return jax.tree.map(lambda x, y: x + y, ua, ub), (sa, sb)

    return optax.GradientTransformation(init, update)


def call_loss_fn(loss_fn: LossFn, model, batch, key) -> tuple[jax.Array, dict[str, Any]]:
    """Calls ``loss_fn(model, batch, key)`` and normalises its result to ``(loss, metrics)``."""
    out = loss_fn(model, batch, key)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        loss, metrics = out
    else:
        loss, metrics = out, {}
    loss = jnp.asarray(loss)
    if loss.shape != ():
        raise ValueError(f"loss_fn must return a scalar loss, got shape {loss.shape}")
    metrics = dict(metrics)
    metrics.setdefault("loss", loss)
    return loss, metrics


def _reseed_streams(model: nnx.Module, key: jax.Array) -> None:
    """Reseeds every ``nnx.RngStream`` in ``model`` from ``key`` (stream tag folded in)."""
    tags = sorted({
        node.tag for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)
    })
    if tags:
        keys = {tag: jax.random.fold_in(key, zlib.crc32(tag.encode()) & 0x7FFFFFFF)
                for tag in tags}
        nnx.reseed(model, policy="match_shape", **keys)


def _step_key(state: TrainState, key):
    if key is None:
        return jax.random.fold_in(state.rng, state.step)
    key = jnp.asarray(key)
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key.astype(jnp.uint32))
    return key


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    learning_rate: optax.Schedule | None = None,
) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
    """Builds a pure ``train_step(state, batch, key=None) -> (state, metrics)``.

    The step merges the model in train mode, reseeds its RNG streams from ``key`` (so dropout
    depends only on the key), differentiates ``loss_fn`` with respect to the ``nnx.Param``
    variables, applies ``optimizer`` and increments ``state.step``. With ``key=None`` it uses
    ``fold_in(state.rng, state.step)``, which makes a run reproducible and resumable from
    ``state`` alone. Nothing is jitted here: wrap it once, e.g.
    ``jax.jit(step, donate_argnums=0)``.

    Args:
        loss_fn: ``loss_fn(model, batch, key) -> loss | (loss, metrics)`` (see module docs).
        optimizer: the optax transformation used to create the state's ``opt_state``.
        learning_rate: optional schedule; its value at the current step is reported as metric
            ``"learning_rate"``.

    Returns:
        The step function. ``metrics`` always has ``"loss"`` (the value being minimised unless
        ``loss_fn`` reports its own ``"loss"`` metric).
    """
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable: loss_fn(model, batch, key)")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if learning_rate is not None and not callable(learning_rate):
        raise ValueError("learning_rate must be an optax schedule (a callable) or None")

    def train_step(state: TrainState, batch, key=None):
        key = _step_key(state, key)

        def objective(params):
            model = nnx.merge(state.graphdef, params, state.model_state, copy=True)
            model.train()
            _reseed_streams(model, key)
            loss, metrics = call_loss_fn(loss_fn, model, batch, key)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (metrics, model_state)

        grads, (metrics, model_state) = jax.grad(objective, has_aux=True)(state.params)
        with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        if learning_rate is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate(state.step), jnp.float32)
        new_state = state.replace(
            step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
        )
        return new_state, metrics

    return train_step


def make_eval_step(loss_fn: LossFn) -> Callable[..., dict[str, Any]]:
    """Builds a pure ``eval_step(state, batch, key=None) -> metrics`` (model in eval mode).

    Args:
        loss_fn: same signature as for :func:`make_train_step`.

    Returns:
        The step function; with ``key=None`` a fixed key derived from ``state.rng`` is used.
    """
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable: loss_fn(model, batch, key)")

    def eval_step(state: TrainState, batch, key=None):
        key = jax.random.fold_in(state.rng, -1 & 0x7FFFFFFF) if key is None else _step_key(
            state, key)
        model = nnx.merge(state.graphdef, state.params, state.model_state, copy=True)
        model.eval()
        _reseed_streams(model, key)
        _, metrics = call_loss_fn(loss_fn, model, batch, key)
        return metrics

    return eval_step
