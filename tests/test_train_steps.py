"""seqjax.train steps: purity, no retracing, dropout keys, clipping, weight decay, schedules."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqjax.train import (
    TrainState,
    accuracy,
    make_eval_step,
    make_optimizer,
    make_train_step,
    softmax_cross_entropy,
)


class Batch(NamedTuple):
    inputs: jax.Array
    mask: jax.Array
    targets: jax.Array


class Bag(nnx.Module):
    """Embedding, optional dropout, masked mean pooling, linear classifier."""

    def __init__(self, rngs, vocab=20, dim=8, dropout=0.0):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = nnx.Linear(dim, 2, rngs=rngs)

    def __call__(self, x, mask):
        h = self.embed(x)
        if self.drop is not None:
            h = self.drop(h)
        m = mask.astype(h.dtype)[..., None]
        h = (h * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
        return self.out(h)


def loss_fn(model, batch, key):
    logits = model(batch.inputs, batch.mask)
    return softmax_cross_entropy(logits, batch.targets, batch.mask), {
        "accuracy": accuracy(logits, batch.targets, batch.mask)
    }


def make_batch(seed=0, B=8, T=5):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 20, (B, T)).astype(np.int32)
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, (B, 1))
    return Batch(jnp.asarray(x), jnp.asarray(mask), jnp.asarray((x[:, 0] < 10).astype(np.int32)))


def leaves(tree):
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [host(x) for x in jax.tree.leaves(tree)]


def test_train_step_jits_once_and_does_not_retrace():
    traces = []

    def counting_loss(model, batch, key):
        traces.append(1)
        return loss_fn(model, batch, key)

    tx = optax.adam(1e-2)
    state = TrainState.create(Bag(nnx.Rngs(0)), tx)
    step = jax.jit(make_train_step(counting_loss, tx), donate_argnums=0)
    losses = []
    for i in range(4):
        state, metrics = step(state, make_batch(i), jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert len(traces) == 1
    assert int(state.step) == 4
    assert set(metrics) == {"loss", "accuracy"}


def test_step_is_pure_and_leaves_model_untouched():
    tx = optax.sgd(0.5)
    model = Bag(nnx.Rngs(0), dropout=0.5)
    before = leaves(nnx.state(model))
    state = TrainState.create(model, tx)
    step = make_train_step(loss_fn, tx)  # un-jitted
    batch = make_batch()
    s1, m1 = step(state, batch, jax.random.key(3))
    s2, m2 = step(state, batch, jax.random.key(3))
    for a, b in zip(leaves(s1.params), leaves(s2.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(m1["loss"]) == float(m2["loss"])
    # donated jitted steps never touch the user's model either
    jitted = jax.jit(make_train_step(loss_fn, tx), donate_argnums=0)
    jitted(TrainState.create(model, tx), batch)
    for a, b in zip(before, leaves(nnx.state(model)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dropout_depends_on_key_only_and_eval_is_deterministic():
    tx = optax.sgd(0.1)
    state = TrainState.create(Bag(nnx.Rngs(0), dropout=0.5), tx)
    step = jax.jit(make_train_step(loss_fn, tx))
    batch = make_batch()
    loss = lambda k: float(step(state, batch, jax.random.key(k))[1]["loss"])  # noqa: E731
    assert loss(1) == loss(1)
    assert loss(1) != loss(2)
    # key=None derives fold_in(state.rng, state.step): reproducible
    assert float(step(state, batch)[1]["loss"]) == float(step(state, batch)[1]["loss"])
    evaluate = jax.jit(make_eval_step(loss_fn))
    e1 = float(evaluate(state, batch, jax.random.key(1))["loss"])
    e2 = float(evaluate(state, batch, jax.random.key(2))["loss"])
    assert e1 == e2  # eval mode: dropout off
    model = state.merge()
    model.drop = None  # the same weights without a dropout layer at all
    assert abs(e1 - float(loss_fn(model, batch, None)[0])) < 1e-6


def test_gradient_clipping_by_global_norm():
    clip = 1e-3
    tx = make_optimizer(1.0, name="sgd", clip_norm=clip)
    state = TrainState.create(Bag(nnx.Rngs(0)), tx)
    new, _ = jax.jit(make_train_step(loss_fn, tx))(state, make_batch())
    delta = [a - b for a, b in zip(leaves(new.params), leaves(state.params), strict=True)]
    norm = float(np.sqrt(sum((d.astype(np.float64) ** 2).sum() for d in delta)))
    assert abs(norm - clip) < 1e-6


def test_weight_decay_on_matrices_only():
    def zero_loss(model, batch, key):
        return 0.0 * model(batch.inputs, batch.mask).sum()

    tx = make_optimizer(0.1, name="adamw", weight_decay=0.5)
    model = Bag(nnx.Rngs(0))
    model.out.bias[...] = jnp.ones(2)
    state = TrainState.create(model, tx)
    new, _ = jax.jit(make_train_step(zero_loss, tx))(state, make_batch())
    np.testing.assert_allclose(new.params["out"]["kernel"][...],
                               state.params["out"]["kernel"][...] * (1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(new.params["out"]["bias"][...], np.ones(2))
    # SGD with decoupled decay
    tx = make_optimizer(0.1, name="sgd", weight_decay=0.5)
    state = TrainState.create(model, tx)
    new, _ = jax.jit(make_train_step(zero_loss, tx))(state, make_batch())
    np.testing.assert_allclose(new.params["embed"]["embedding"][...],
                               state.params["embed"]["embedding"][...] * 0.95, rtol=1e-6)


def test_learning_rate_schedule_is_used_and_reported():
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=4)
    tx = make_optimizer(schedule, name="sgd")
    state = TrainState.create(Bag(nnx.Rngs(0)), tx)
    step = jax.jit(make_train_step(loss_fn, tx, learning_rate=schedule), donate_argnums=0)
    rates = []
    for i in range(5):
        state, m = step(state, make_batch(i))
        rates.append(float(m["learning_rate"]))
    np.testing.assert_allclose(rates, [1.0, 0.75, 0.5, 0.25, 0.0])
    # at lr 0 the last step changes nothing
    prev = leaves(state.params)
    state2, _ = jax.jit(make_train_step(loss_fn, tx))(state, make_batch(9))
    for a, b in zip(prev, leaves(state2.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_loss_fn_may_return_a_bare_scalar():
    tx = optax.sgd(0.1)
    state = TrainState.create(Bag(nnx.Rngs(0)), tx)
    _, m = jax.jit(make_train_step(lambda m, b, k: loss_fn(m, b, k)[0], tx))(state, make_batch())
    assert set(m) == {"loss"}


def test_bad_arguments_raise_value_error():
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match="loss_fn"):
        make_train_step("not callable", tx)
    with pytest.raises(ValueError, match="optimizer"):
        make_train_step(loss_fn, "adam")
    with pytest.raises(ValueError, match="model"):
        TrainState.create({"not": "a module"}, tx)
    with pytest.raises(ValueError, match="name"):
        make_optimizer(1e-3, name="lion9")
    with pytest.raises(ValueError, match="clip_norm"):
        make_optimizer(1e-3, clip_norm=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer(-1.0)
    state = TrainState.create(Bag(nnx.Rngs(0)), tx)
    with pytest.raises(ValueError, match="scalar"):
        make_train_step(lambda m, b, k: jnp.ones(3), tx)(state, make_batch())
