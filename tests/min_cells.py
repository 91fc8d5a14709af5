"""Inputs and outputs shared by the minGRU/minLSTM kernels' tests (``parallel``, ``sequential``)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import random_params

import seqjax as sj
from seqjax.kernels import reference

T, B, I, H = 9, 4, 3, 5
TOL = dict(rtol=1e-5, atol=1e-5)


def make(kind, seed=0, sign=1.0, time=T):
    """A cell, random params, time-major inputs, an initial carry of one sign, a mask, resets."""
    cell = getattr(sj, kind)(H)
    params = random_params(cell, jax.random.key(seed), I)
    xs = jax.random.normal(jax.random.key(seed + 1), (time, B, I))
    h0 = sign * jnp.abs(jax.random.normal(jax.random.key(seed + 2), (B, H)))
    mask = jax.random.bernoulli(jax.random.key(seed + 3), 0.7, (time, B))
    resets = jax.random.bernoulli(jax.random.key(seed + 4), 0.3, (time, B))
    return cell, params, xs, sj.cells.RNNCarry(h0), mask, resets


def outputs_and_grads(run, cell, params, xs, carry0, mask, resets, reverse):
    """A backend's ``run``: its outputs, and the gradients of a loss of them w.r.t. the params,
    the inputs and the initial carry."""
    w_y = jax.random.normal(jax.random.key(9), xs.shape[:2] + (H,))

    def call(params, xs, carry0):
        return run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=1, remat=False)

    def loss(params, xs, carry0):
        carry, ys = call(params, xs, carry0)
        return jnp.sum(ys * w_y) + jnp.sum(jnp.sin(carry.h))

    return call(params, xs, carry0), jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)


def every_case(test):
    """Parametrizes ``test(kind, flags, reverse)`` over both cells, each of "none", "mask",
    "resets" and "both" for the flags, and both directions."""
    test = pytest.mark.parametrize("reverse", [False, True])(test)
    test = pytest.mark.parametrize("flags", ["none", "mask", "resets", "both"])(test)
    return pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)(test)


def assert_matches_reference(run, kind, flags, reverse):
    """Outputs and gradients of ``run`` against ``reference``'s, with ``flags`` ("none", "mask",
    "resets" or "both") saying which of the mask and the resets the call gets."""
    cell, params, xs, carry0, mask, resets = make(kind)
    mask = mask if flags in ("mask", "both") else None
    resets = resets if flags in ("resets", "both") else None
    args = (cell, params, xs, carry0, mask, resets, reverse)
    got, want = outputs_and_grads(run, *args), outputs_and_grads(reference.run, *args)
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, **TOL)


def assert_long_sequences_stay_finite(run, kind):
    """Over 2048 steps the gate products underflow to 0: value and gradients stay finite and
    agree with ``reference``."""
    cell = getattr(sj, kind)(H)
    params = random_params(cell, jax.random.key(0), I, scale=2.0)
    xs = jax.random.normal(jax.random.key(1), (2048, 2, I))
    carry0 = sj.cells.RNNCarry(jnp.ones((2, H)))

    def value_and_grads(run):
        def loss(params):
            carry, ys = run(cell, params, xs, None, None, carry0, reverse=False, unroll=1,
                            remat=False)
            return jnp.mean(ys) + jnp.mean(carry.h)

        return jax.jit(jax.value_and_grad(loss))(params)

    got = value_and_grads(run)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(got))
    chex.assert_trees_all_close(got, value_and_grads(reference.run), rtol=1e-4, atol=1e-5)


def assert_empty_sequence_keeps_carry(run):
    cell, params, _, carry0, _, _ = make("min_lstm")
    carry, ys = run(cell, params, jnp.zeros((0, B, I)), None, None, carry0, reverse=False,
                    unroll=1, remat=False)
    chex.assert_trees_all_equal(carry, carry0)
    assert ys.shape == (0, B, H)
