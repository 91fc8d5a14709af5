"""minGRU/minLSTM kernels: ``parallel`` (log-space associative scan) and ``sequential`` (blocked
scan with a custom VJP)."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import random_params

import seqjax as sj
from seqjax.kernels import parallel, reference, sequential

T, B, I, H = 9, 4, 3, 5
TOL = dict(rtol=1e-5, atol=1e-5)
RUNS = {"parallel": parallel.run, "sequential": sequential.run}



def make(kind, seed=0, sign=1.0, time=T):
    cell = getattr(sj, kind)(H)
    params = random_params(cell, jax.random.key(seed), I)
    xs = jax.random.normal(jax.random.key(seed + 1), (time, B, I))
    h0 = sign * jnp.abs(jax.random.normal(jax.random.key(seed + 2), (B, H)))
    mask = jax.random.bernoulli(jax.random.key(seed + 3), 0.7, (time, B))
    resets = jax.random.bernoulli(jax.random.key(seed + 4), 0.3, (time, B))
    return cell, params, xs, sj.cells.RNNCarry(h0), mask, resets


def outputs_and_grads(run, cell, params, xs, carry0, mask, resets, reverse):
    w_y = jax.random.normal(jax.random.key(9), xs.shape[:2] + (H,))

    def call(params, xs, carry0):
        return run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=1, remat=False)

    def loss(params, xs, carry0):
        carry, ys = call(params, xs, carry0)
        return jnp.sum(ys * w_y) + jnp.sum(jnp.sin(carry.h))

    return call(params, xs, carry0), jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("flags", ["none", "mask", "resets", "both"])
@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_matches_reference(kind, flags, reverse, run):
    cell, params, xs, carry0, mask, resets = make(kind)
    mask = mask if flags in ("mask", "both") else None
    resets = resets if flags in ("resets", "both") else None
    args = (cell, params, xs, carry0, mask, resets, reverse)
    got, want = outputs_and_grads(RUNS[run], *args), outputs_and_grads(reference.run, *args)
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, **TOL)


@pytest.mark.parametrize("blocks", [0, 1, 2])
@pytest.mark.parametrize("flags", ["none", "both"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_sequential_block_boundaries(kind, reverse, flags, blocks):
    # One partial block, exactly one block, and blocks plus a padded remainder.
    block = sequential.BLOCK[kind]
    time = [1, block, 2 * block + 3][blocks]
    cell, params, xs, carry0, mask, resets = make(kind, time=time)
    mask, resets = (mask, resets) if flags == "both" else (None, None)
    args = (cell, params, xs, carry0, mask, resets, reverse)
    chex.assert_trees_all_close(outputs_and_grads(sequential.run, *args),
                                outputs_and_grads(reference.run, *args), **TOL)


def test_sequential_second_order_gradient_raises_a_clear_error():
    cell, params, xs, carry0, _, _ = make("min_gru")

    def loss(xs):
        return jnp.sum(sj.rnn(cell, params, xs, time_major=True, initial_carry=carry0,
                              backend="sequential")[1] ** 2)

    with pytest.raises(NotImplementedError, match="not support second-order gradients"):
        jax.grad(lambda xs: jnp.sum(jax.grad(loss)(xs) ** 2))(xs)


@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_negative_initial_carry_is_exact(kind):
    # h0 never enters a log: h_t = alpha_t * h0 + beta_t.
    cell, params, xs, carry0, mask, resets = make(kind, sign=-1.0)
    args = (cell, params, xs, carry0, mask, resets, False)
    chex.assert_trees_all_close(outputs_and_grads(parallel.run, *args),
                                outputs_and_grads(reference.run, *args), **TOL)


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_long_sequences_stay_finite(kind, run):
    # Gate products over 2048 steps underflow to 0: log space must give -inf, not NaN.
    cell = getattr(sj, kind)(H)
    params = random_params(cell, jax.random.key(0), I, scale=2.0)
    xs = jax.random.normal(jax.random.key(1), (2048, 2, I))
    carry0 = sj.cells.RNNCarry(jnp.ones((2, H)))

    def loss(run, params):
        carry, ys = run(cell, params, xs, None, None, carry0, reverse=False, unroll=1,
                        remat=False)
        return jnp.mean(ys) + jnp.mean(carry.h)

    got = jax.jit(jax.value_and_grad(lambda p: loss(RUNS[run], p)))(params)
    want = jax.jit(jax.value_and_grad(lambda p: loss(reference.run, p)))(params)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(got))
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_through_rnn_with_bfloat16_and_remat():
    cell, params, xs, carry0, mask, _ = make("min_gru")
    xs16 = jnp.swapaxes(xs, 0, 1).astype(jnp.bfloat16)
    got = sj.rnn(cell, params, xs16, mask=mask.T, initial_carry=carry0, backend="parallel",
                 remat=True)
    want = sj.rnn(cell, params, xs16, mask=mask.T, initial_carry=carry0, backend="reference")
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_empty_sequence_keeps_carry(run):
    cell, params, _, carry0, _, _ = make("min_lstm")
    carry, ys = RUNS[run](cell, params, jnp.zeros((0, B, I)), None, None, carry0,
                             reverse=False, unroll=1, remat=False)
    chex.assert_trees_all_equal(carry, carry0)
    assert ys.shape == (0, B, H)


def test_supports_only_linear_recurrences():
    assert parallel.supports(sj.min_gru(4).spec) and parallel.supports(sj.min_lstm(4).spec)
    assert not parallel.supports(sj.lstm(4).spec)
    cell = sj.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="parallel"):
        sj.rnn(cell, params, jnp.ones((2, 5, 3)), backend="parallel")


def test_auto_uses_parallel_for_min_cells_on_gpu_only():
    for cell in (sj.min_gru(8), sj.min_lstm(8)):
        assert sj.kernels.auto_backend(cell.spec, "gpu") == "parallel"
        assert sj.kernels.auto_backend(cell.spec, "cpu") != "parallel"


@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_sequential_bfloat16_gradients_close_to_float32_truth(kind):
    cell, params, xs, carry0, mask, resets = make(kind, time=2 * sequential.BLOCK[kind] + 3)
    xs16 = xs.astype(jnp.bfloat16)

    def grads(run):
        def loss(params, xs, h0):
            carry, ys = run(cell, params, xs, mask, resets, sj.cells.RNNCarry(h0), reverse=False,
                            unroll=1, remat=False)
            return jnp.sum(ys.astype(jnp.float32) ** 2) + jnp.sum(carry.h)

        return jax.grad(loss, argnums=(0, 1, 2))(params, xs16, carry0.h)

    got, oracle = grads(sequential.run), grads(reference.run)
    chex.assert_trees_all_equal_dtypes(got, oracle)

    # Both bfloat16 runs against the float32 truth on the same (bfloat16-rounded) inputs, not
    # against each other: where a bfloat16 computation rounds is the compiler's choice (on a GPU
    # the two differed by 4.5 ulps in one element of d xs), and element-wise tolerances fail
    # where a gradient is a sum that cancels. Measured here, relative error (norm) per leaf:
    # reference up to 1.1e-2 (minGRU d xs), sequential up to 3.3e-3; one bfloat16 rounding is
    # 2**-9 = 2e-3, so 2e-2 allows ~10 roundings.
    def loss32(params, xs, h0):
        carry, ys = reference.run(cell, params, xs, mask, resets, sj.cells.RNNCarry(h0),
                                  reverse=False, unroll=1, remat=False)
        return jnp.sum(ys**2) + jnp.sum(carry.h)

    truth = jax.grad(loss32, argnums=(0, 1, 2))(params, xs16.astype(jnp.float32), carry0.h)
    for name, approx in (("reference", oracle), ("sequential", got)):
        errors = jax.tree.map(
            lambda a, t: float(jnp.linalg.norm(a.astype(jnp.float32) - t) / jnp.linalg.norm(t)),
            approx, truth)
        assert max(jax.tree.leaves(errors)) < 2e-2, (name, errors)


@pytest.mark.parametrize("later", [False, True])
def test_sequential_shift_moves_steps_and_fills_the_freed_end(later):
    v = jnp.arange(5.0)[:, None] * jnp.ones((1, 3))
    kept = np.arange(1.0, 5.0) if later else np.arange(0.0, 4.0)
    want = np.concatenate([kept, [-1.0]] if later else [[-1.0], kept])
    got = sequential._shift(v, -jnp.ones((1, 3)), later=later)
    np.testing.assert_array_equal(got, want[:, None] * np.ones((1, 3)))
