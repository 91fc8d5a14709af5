"""Chunked execution: K steps per jitted call compute what one step per call computes.

The reference is the plain loop a user would write: ``jax.jit(make_train_step(...))`` called once
per batch, the last batch of an epoch smaller than the others (no padding). ``fit`` pads that
batch with masked rows and runs chunks of K slots, the last one partial; the parameters and the
metrics must agree to float tolerance, and the number of compiled programs is counted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.data import BatchIterator
from seqjax.train import (
    TrainState,
    evaluate,
    fit,
    make_eval_step,
    make_train_step,
    sigmoid_binary_cross_entropy,
)
from seqjax.train.metrics import binary_accuracy
from seqjax.train.multistep import gather_rows, scan_eval_steps, scan_train_steps, slow_in_loops

N, B, T, V = 45, 8, 6, 30  # 6 batches per epoch, the last of 5 examples


class Tiny(nnx.Module):
    """Embedding -> GRU -> logit, with an optional dropout (the step's key matters)."""

    def __init__(self, rngs, dropout=0.0):
        self.embed = nnx.Embed(V, 8, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.rnn = sj.nn.GRU(8, 12, rngs=rngs)
        self.out = nnx.Linear(12, 1, rngs=rngs)

    def __call__(self, x, mask):
        h = self.embed(x)
        if self.drop is not None:
            h = self.drop(h)
        return self.out(self.rnn(h, mask=mask))[:, 0]


def loss_fn(model, batch, key):
    logits = model(batch.inputs, batch.mask)
    return sigmoid_binary_cross_entropy(logits, batch.targets, batch.mask), {
        "accuracy": binary_accuracy(logits, batch.targets, batch.mask)}


def dataset(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, V, (n, T)).astype(np.int32)
    lengths = rng.integers(1, T + 1, n)
    y = (x[:, -1] < V // 2).astype(np.int32)
    return x, y, lengths


def iterator(seed=0, n=N, **kwargs):
    x, y, lengths = dataset(seed, n)
    return BatchIterator(x, y, batch_size=B, seed=3, lengths=lengths, padding="pre", **kwargs)


def per_step_reference(epochs, tx, seed=0):
    """One jitted step per batch, unpadded: the semantics chunked fit must keep."""
    state = TrainState.create(Tiny(nnx.Rngs(0)), tx, seed=seed)
    step = jax.jit(make_train_step(loss_fn, tx), donate_argnums=0)
    data, losses = iterator(), []
    for _ in range(epochs):
        total = count = 0.0
        for batch in data.iter_epoch():
            state, metrics = step(state, batch)
            weight = float(batch.mask.any(1).sum())
            total, count = total + float(metrics["loss"]) * weight, count + weight
        losses.append(total / count)
    return state, losses


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_close(a, b, **tol):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **(tol or {"rtol": 2e-5, "atol": 2e-6}))


@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_chunked_fit_matches_one_step_per_call(k, on_device):
    # 6 batches per epoch: K=3 gives 2 full chunks, K=7 one partial chunk, K=1 six chunks.
    tx = optax.adam(1e-2)
    ref_state, ref_losses = per_step_reference(2, tx, seed=5)
    model = Tiny(nnx.Rngs(0))
    history = fit(model, loss_fn, tx, iterator(on_device=on_device), epochs=2, seed=5,
                  verbose=0, steps_per_execution=k)
    assert int(history.train_state.step) == 12
    assert_close(history.train_state.params, ref_state.params)
    assert_close(history.train_state.opt_state, ref_state.opt_state)
    np.testing.assert_allclose(history["loss"], ref_losses, rtol=1e-5)
    assert_close(nnx.state(model, nnx.Param), ref_state.params)


def test_chunk_length_does_not_change_a_run_with_dropout():
    runs = [fit(Tiny(nnx.Rngs(0), dropout=0.3), loss_fn, optax.adam(1e-2), iterator(),
                epochs=2, verbose=0, steps_per_execution=k, validation_data=iterator(9))
            for k in (1, 3, 7)]
    for other in runs[1:]:
        assert_close(other.train_state.params, runs[0].train_state.params)
        for key in runs[0].history:
            np.testing.assert_allclose(other[key], runs[0][key], rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_chunked_evaluate_matches_per_batch_means(k):
    model = Tiny(nnx.Rngs(1))
    data = iterator(seed=4, n=N)
    state = TrainState.create(model, optax.identity())
    step = jax.jit(make_eval_step(loss_fn))
    loss_sum = weight_sum = correct = total = 0.0
    for batch in iterator(seed=4, n=N).iter_epoch():
        metrics = step(state, batch)
        weight = float(batch.mask.any(1).sum())
        loss_sum, weight_sum = loss_sum + float(metrics["loss"]) * weight, weight_sum + weight
        correct += float(metrics["accuracy"].numerator)
        total += float(metrics["accuracy"].denominator)
    result = evaluate(model, loss_fn, data, steps_per_execution=k)
    np.testing.assert_allclose(result["loss"], loss_sum / weight_sum, rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], correct / total, rtol=1e-6)
    # a plain list of numpy batches (host staging) gives the same
    listed = evaluate(model, loss_fn, list(iterator(seed=4, n=N).iter_epoch()),
                      steps_per_execution=k)
    np.testing.assert_allclose(listed["loss"], result["loss"], rtol=1e-5)


class CompileCounter:
    """Counts XLA compilations (JAX's backend-compile events) while active."""

    def __init__(self):
        self.count = 0

    def __call__(self, name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_fit_compiles_three_programs_all_in_its_first_epoch(on_device):
    model = Tiny(nnx.Rngs(0))
    per_epoch = []
    with CompileCounter() as counter:
        record = sj.train.LambdaCallback(
            on_epoch_end=lambda epoch, logs: per_epoch.append(counter.count))
        fit(model, loss_fn, optax.adam(1e-2), iterator(on_device=on_device), epochs=3,
            verbose=0, validation_data=iterator(seed=9, n=21, on_device=on_device),
            steps_per_execution=4, callbacks=[record])
    # the initial state, the train chunk, the eval chunk; partial batches (5 and 5 rows) and
    # partial chunks (2 of 4 slots, 3 of 4) reuse them; later epochs compile nothing.
    assert counter.count == 3 and per_epoch == [3, 3, 3]
    with CompileCounter() as counter:
        evaluate(model, loss_fn, iterator(seed=9, n=21, on_device=on_device))
    assert counter.count == 2


def test_a_new_sequence_length_compiles_once():
    rng = np.random.default_rng(0)

    def make_batches(epoch):  # T alternates between 6 and 9: two shapes, each compiled once
        out = []
        for i in range(4):
            t = 6 if i % 2 else 9
            x = rng.integers(1, V, (B, t)).astype(np.int32)
            out.append(sj.data.Batch(x, np.ones((B, t), bool), (x[:, 0] < 9).astype(np.int32)))
        return out

    traces = []

    def counting_loss(model, batch, key):
        traces.append(batch.inputs.shape)
        return loss_fn(model, batch, key)

    history = fit(Tiny(nnx.Rngs(0)), counting_loss, optax.adam(1e-2), make_batches, epochs=3,
                  verbose=0, steps_per_execution=2)
    assert int(history.train_state.step) == 12
    assert sorted(traces) == [(B, 6), (B, 9)]


def test_gather_rows_equals_make_batch_and_pads_masked_rows():
    x, y, lengths = dataset()
    for padding in ("pre", "post"):
        it = BatchIterator(x, (y, x[:, 0]), batch_size=B, lengths=lengths, padding=padding)
        arrays = it.dense_arrays()
        indices = np.array([4, 0, 17, -1, -1])
        got = gather_rows(arrays, jnp.asarray(indices))
        want = it.make_batch(indices[:3])
        np.testing.assert_array_equal(got.inputs[:3], want.inputs)
        np.testing.assert_array_equal(got.mask[:3], want.mask)
        for a, b in zip(got.targets, want.targets, strict=True):
            np.testing.assert_array_equal(a[:3], b)
        assert not np.asarray(got.mask[3:]).any() and not np.asarray(got.inputs[3:]).any()


def test_skipped_slots_leave_the_state_alone_and_report_zeros():
    tx = optax.sgd(0.1)
    state = TrainState.create(Tiny(nnx.Rngs(0)), tx)
    step = make_train_step(loss_fn, tx)
    batch = iterator().make_batch(np.arange(B))
    xs = jax.tree.map(lambda a: np.stack([a] * 3), batch)
    chunk = jax.jit(scan_train_steps(step))
    after, metrics = chunk(state, xs, jnp.array([True, False, False]))
    once, first = jax.jit(step)(state, batch)
    assert int(after.step) == 1
    assert_close(after.params, once.params)
    np.testing.assert_allclose(metrics["loss"], [float(first["loss"]), 0.0, 0.0], rtol=1e-6)
    evals = jax.jit(scan_eval_steps(make_eval_step(loss_fn)))(state, xs,
                                                              jnp.array([False, True, True]))
    assert float(evals["loss"][0]) == 0.0 and float(evals["loss"][1]) > 0


def test_steps_per_execution_is_checked():
    for bad in (0, -1, 2.5, "fast", True):
        with pytest.raises(ValueError, match="steps_per_execution"):
            fit(Tiny(nnx.Rngs(0)), loss_fn, optax.sgd(0.1), iterator(), verbose=0,
                steps_per_execution=bad)
    with pytest.raises(ValueError, match="steps_per_execution"):
        evaluate(Tiny(nnx.Rngs(0)), loss_fn, iterator(), steps_per_execution=0)


class ConvBag(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(V, 8, rngs=rngs)
        self.conv = nnx.Conv(8, 6, kernel_size=(3,), padding="VALID", rngs=rngs)
        self.out = nnx.Linear(6, 1, rngs=rngs)

    def __call__(self, x, mask):
        return self.out(jax.nn.relu(self.conv(self.embed(x))).mean(1))[:, 0]


def test_a_convolution_gradient_runs_alone_on_cpu():
    """XLA:CPU compiles a convolution's weight gradient inside a loop to a slow generic loop
    nest, so such a step runs one per call (K=1, no loop) unless K is given (then it warns)."""
    tx = optax.adam(1e-2)
    batch = iterator().make_batch(np.arange(B))
    conv_state = TrainState.create(ConvBag(nnx.Rngs(0)), tx)
    conv_step = jax.make_jaxpr(make_train_step(loss_fn, tx))(conv_state, batch)
    assert slow_in_loops(conv_step, "cpu") and not slow_in_loops(conv_step, "gpu")
    forward_only = jax.make_jaxpr(make_eval_step(loss_fn))(conv_state, batch)
    assert not slow_in_loops(forward_only, "cpu")  # NWC x WIO is XLA:CPU's canonical form
    state = TrainState.create(Tiny(nnx.Rngs(0)), tx)
    assert not slow_in_loops(jax.make_jaxpr(make_train_step(loss_fn, tx))(state, batch), "cpu")

    traces = []

    def counting_loss(model, batch, key):
        traces.append(1)
        return loss_fn(model, batch, key)

    chunked = fit(ConvBag(nnx.Rngs(0)), counting_loss, tx, iterator(), epochs=2, verbose=0)
    assert len(traces) == 1 and int(chunked.train_state.step) == 12
    with pytest.warns(UserWarning, match="steps_per_execution=1"):
        looped = fit(ConvBag(nnx.Rngs(0)), loss_fn, tx, iterator(), epochs=2, verbose=0,
                     steps_per_execution=3)
    assert_close(looped.train_state.params, chunked.train_state.params)
