"""minGRU/minLSTM by the ``sequential`` backend (blocked scan with a custom VJP) against
``reference``."""

import chex
import jax
import jax.numpy as jnp
import min_cells
import numpy as np
import pytest

import seqjax as sj
from seqjax.kernels import reference, sequential


@min_cells.every_case
def test_matches_reference(kind, flags, reverse):
    min_cells.assert_matches_reference(sequential.run, kind, flags, reverse)


@pytest.mark.parametrize("blocks", [0, 1, 2])
@pytest.mark.parametrize("flags", ["none", "both"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)
def test_block_boundaries(kind, reverse, flags, blocks):
    # One partial block, exactly one block, and blocks plus a padded remainder.
    block = sequential.BLOCK[kind]
    time = [1, block, 2 * block + 3][blocks]
    cell, params, xs, carry0, mask, resets = min_cells.make(kind, time=time)
    mask, resets = (mask, resets) if flags == "both" else (None, None)
    args = (cell, params, xs, carry0, mask, resets, reverse)
    chex.assert_trees_all_close(min_cells.outputs_and_grads(sequential.run, *args),
                                min_cells.outputs_and_grads(reference.run, *args), **min_cells.TOL)


def test_second_order_gradient_raises_a_clear_error():
    cell, params, xs, carry0, _, _ = min_cells.make("min_gru")

    def loss(xs):
        return jnp.sum(sj.rnn(cell, params, xs, time_major=True, initial_carry=carry0,
                              backend="sequential")[1] ** 2)

    with pytest.raises(NotImplementedError, match="not support second-order gradients"):
        jax.grad(lambda xs: jnp.sum(jax.grad(loss)(xs) ** 2))(xs)


@pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)
def test_long_sequences_stay_finite(kind):
    min_cells.assert_long_sequences_stay_finite(sequential.run, kind)


def test_empty_sequence_keeps_carry():
    min_cells.assert_empty_sequence_keeps_carry(sequential.run)


@pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)
def test_bfloat16_gradients_close_to_float32_truth(kind):
    time = 2 * sequential.BLOCK[kind] + 3
    cell, params, xs, carry0, mask, resets = min_cells.make(kind, time=time)
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
def test_shift_moves_steps_and_fills_the_freed_end(later):
    v = jnp.arange(5.0)[:, None] * jnp.ones((1, 3))
    kept = np.arange(1.0, 5.0) if later else np.arange(0.0, 4.0)
    want = np.concatenate([kept, [-1.0]] if later else [[-1.0], kept])
    got = sequential._shift(v, -jnp.ones((1, 3)), later=later)
    np.testing.assert_array_equal(got, want[:, None] * np.ones((1, 3)))
