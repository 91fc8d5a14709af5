"""The fused custom-VJP backend against ``reference``, beyond the generic tests in test_rnn.py."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import CELLS, random_carry, random_params

import seqjax as sj
from seqjax.kernels import fused

B, T, I, H = 4, 7, 3, 5
TOL = dict(rtol=2e-5, atol=2e-5)
FUSED_CELLS = [name for name in sorted(CELLS) if fused.supports(CELLS[name](2).spec)]



def make(name, seed=0, dtype=jnp.float32):
    cell = CELLS[name](H)
    params = random_params(cell, jax.random.key(seed), I)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, I)).astype(dtype)
    carry0 = random_carry(cell, jax.random.key(seed + 2), B)
    return cell, params, xs, carry0


def loss_fn(cell, backend, with_outputs=False, **kwargs):
    """A scalar that reads every output and the final carry (and, if asked, those outputs)."""
    w_y = jax.random.normal(jax.random.key(7), (B, T, H))

    def loss(params, xs, carry0):
        carry, ys = sj.rnn(cell, params, xs, initial_carry=carry0, backend=backend, **kwargs)
        value = jnp.sum(ys.astype(jnp.float32) * w_y) + sum(jnp.sum(jnp.sin(c)) for c in carry)
        return (value, (carry, ys)) if with_outputs else value

    return loss


# Lengths 0 and T included; a reset mid-sequence, one on a masked step, one at step 0.
LENGTHS = jnp.array([T, 0, 3, 5])
MASK = jnp.arange(T)[None, :] < LENGTHS[:, None]
RESETS = jnp.zeros((B, T), bool).at[0, 2].set(True).at[2, 4].set(True).at[3, 0].set(True)

# The generic tests already cover mask + resets in both directions for every cell; these add
# unroll, remat and lengths 0 and T, kept to few compiles (each case jits both backends at once).
OPTIONS = {
    "mask_resets_reverse_unroll2": dict(mask=MASK, resets=RESETS, reverse=True, unroll=2),
    "lengths_resets_remat_unroll3": dict(lengths=LENGTHS, resets=RESETS, remat=True, unroll=3),
}
CASES = [(name, "mask_resets_reverse_unroll2") for name in FUSED_CELLS] + [
    (name, "lengths_resets_remat_unroll3") for name in ("lstm", "gru", "gru_cho")
]


@pytest.mark.parametrize(("name", "option"), CASES)
def test_values_and_gradients_match_reference(name, option):
    cell, params, xs, carry0 = make(name)
    kwargs = OPTIONS[option]
    # unroll and remat never change reference's results (test_rnn checks that); leaving them out
    # of the oracle halves the compile time.
    ref_kwargs = {k: v for k, v in kwargs.items() if k not in ("unroll", "remat")}

    @jax.jit
    def both(params, xs, carry0):
        return [
            jax.value_and_grad(loss_fn(cell, b, with_outputs=True, **kw), argnums=(0, 1, 2),
                               has_aux=True)(params, xs, carry0)
            for b, kw in (("fused", kwargs), ("reference", ref_kwargs))
        ]

    ((_, got), got_grads), ((_, want), want_grads) = both(params, xs, carry0)
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, **TOL)
    chex.assert_trees_all_equal_shapes_and_dtypes(got_grads, want_grads)
    chex.assert_trees_all_close(got_grads, want_grads, **TOL)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_bfloat16_inputs_close_to_float32_with_float32_carry(name):
    cell, params, xs, carry0 = make(name)
    xs16 = xs.astype(jnp.bfloat16)
    carry16, ys16 = sj.rnn(cell, params, xs16, initial_carry=carry0, backend="fused")
    assert ys16.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in carry16)
    carry32, ys32 = sj.rnn(cell, params, xs, initial_carry=carry0, backend="fused")
    # bfloat16 keeps 8 mantissa bits: inputs, the input projection and the outputs round at ~0.4%,
    # and the error grows a little through 7 steps.
    bf16_tol = dict(rtol=5e-2, atol=5e-2)
    np.testing.assert_allclose(ys16.astype(jnp.float32), ys32, **bf16_tol)
    chex.assert_trees_all_close(carry16, carry32, **bf16_tol)

    grad = jax.jit(jax.grad(loss_fn(cell, "fused", mask=MASK), argnums=(0, 1, 2)))
    g16, g32 = grad(params, xs16, carry0), grad(params, xs, carry0)
    chex.assert_trees_all_equal_dtypes(g16[0], params)  # param grads in the params' dtype
    assert g16[1].dtype == jnp.bfloat16
    chex.assert_trees_all_close(jax.tree.map(lambda g: g.astype(jnp.float32), g16), g32,
                                rtol=1e-1, atol=1e-1)
    # And the same bfloat16 computation as the oracle's, to bfloat16 precision.
    g_ref = jax.jit(jax.grad(loss_fn(cell, "reference", mask=MASK), argnums=(0, 1, 2)))(
        params, xs16, carry0)
    chex.assert_trees_all_close(jax.tree.map(lambda g: g.astype(jnp.float32), g16),
                                jax.tree.map(lambda g: g.astype(jnp.float32), g_ref),
                                rtol=2e-2, atol=2e-2)


def test_second_order_gradient_raises_a_clear_error():
    cell, params, xs, carry0 = make("lstm")
    loss = loss_fn(cell, "fused", mask=MASK)

    def grad_norm(xs):
        g = jax.grad(loss, argnums=0)(params, xs, carry0)
        return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g))

    with pytest.raises(NotImplementedError, match="not support second-order gradients"):
        jax.grad(grad_norm)(xs)
    with pytest.raises(NotImplementedError, match="not support second-order gradients"):
        jax.hessian(lambda xs: loss(params, xs, carry0))(xs)


def test_unsupported_cells_are_refused():
    for name in ("simplified_gru", "min_gru", "min_lstm"):
        cell, params, xs, _ = make(name)
        assert not fused.supports(cell.spec)
        with pytest.raises(ValueError, match="does not support"):
            sj.rnn(cell, params, xs, backend="fused")


class TestJitVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_gradients_same_with_and_without_jit(self):
        cell, params, xs, carry0 = make("gru_cho")
        kwargs = dict(lengths=LENGTHS, resets=RESETS, reverse=True)
        grad = self.variant(jax.value_and_grad(loss_fn(cell, "fused", **kwargs), argnums=(0, 1, 2)))
        want = jax.jit(jax.value_and_grad(loss_fn(cell, "reference", **kwargs), argnums=(0, 1, 2)))
        chex.assert_trees_all_close(grad(params, xs, carry0), want(params, xs, carry0), **TOL)
