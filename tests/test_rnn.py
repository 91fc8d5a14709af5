"""Generic properties of ``seqjax.rnn`` over the cells x backends registry."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from registry import CASES, CELLS, random_carry, random_params

import seqjax as sj

B, T, I, H = 3, 6, 4, 5
TOL = dict(rtol=1e-5, atol=1e-5)


def make(name, seed=0):
    cell = CELLS[name](H)
    params = random_params(cell, jax.random.key(seed), I)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, I))
    carry0 = random_carry(cell, jax.random.key(seed + 2), B)
    return cell, params, xs, carry0


def loss_of(cell, backend, reverse, mask=None, resets=None, unroll=1, remat=False):
    """A scalar that depends on every output and on the final carry, for gradient checks."""
    w_y = jax.random.normal(jax.random.key(7), (B, T, H))

    def loss(params, xs, carry0):
        carry, ys = sj.rnn(cell, params, xs, mask=mask, resets=resets, initial_carry=carry0,
                           reverse=reverse, backend=backend, unroll=unroll, remat=remat)
        return jnp.sum(ys * w_y) + sum(jnp.sum(jnp.sin(leaf)) for leaf in carry)

    return loss


def python_loop(cell, params, xs, carry, reverse=False):
    """The oracle's oracle: a Python loop of ``apply``."""
    ys = [None] * xs.shape[1]
    order = range(xs.shape[1] - 1, -1, -1) if reverse else range(xs.shape[1])
    for t in order:
        carry, ys[t] = cell.apply(params, carry, xs[:, t])
    if not ys:
        return carry, jnp.zeros((xs.shape[0], 0, cell.spec.hidden_size), xs.dtype)
    return carry, jnp.stack(ys, axis=1)


# ----------------------------------------------------------------------------- oracle checks


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_reference_equals_python_loop_of_apply(name, reverse):
    cell, params, xs, carry0 = make(name)
    got = sj.rnn(cell, params, xs, initial_carry=carry0, reverse=reverse, backend="reference")
    chex.assert_trees_all_close(got, python_loop(cell, params, xs, carry0, reverse), **TOL)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("name", "backend"), CASES)
def test_backend_matches_reference_values_and_gradients(name, backend, reverse):
    cell, params, xs, carry0 = make(name)
    mask = jnp.arange(T)[None, :] < jnp.array([T, 3, 0])[:, None]
    resets = jnp.zeros((B, T), bool).at[0, 2].set(True)
    args = (params, xs, carry0)
    ref = loss_of(cell, "reference", reverse, mask, resets)
    got = loss_of(cell, backend, reverse, mask, resets)
    want_out = sj.rnn(cell, params, xs, mask=mask, resets=resets, initial_carry=carry0,
                      reverse=reverse, backend="reference")
    got_out = sj.rnn(cell, params, xs, mask=mask, resets=resets, initial_carry=carry0,
                     reverse=reverse, backend=backend)
    chex.assert_trees_all_equal_dtypes(got_out, want_out)
    chex.assert_trees_all_close(got_out, want_out, **TOL)
    chex.assert_trees_all_close(
        jax.grad(got, argnums=(0, 1, 2))(*args), jax.grad(ref, argnums=(0, 1, 2))(*args), **TOL
    )


@pytest.mark.parametrize(("name", "backend"), [c for c in CASES if c[0] in ("lstm", "gru")])
def test_unroll_and_remat_do_not_change_results(name, backend):
    cell, params, xs, carry0 = make(name)
    base = loss_of(cell, backend, False)
    for kwargs in (dict(unroll=2), dict(unroll=4), dict(remat=True)):
        other = loss_of(cell, backend, False, **kwargs)
        chex.assert_trees_all_close(
            jax.value_and_grad(other)(params, xs, carry0),
            jax.value_and_grad(base)(params, xs, carry0), **TOL,
        )


@pytest.mark.parametrize("time", [0, 1, 5, 10])
def test_remat_chunks_of_any_length_change_nothing(time):
    # remat keeps the carry every ceil(sqrt(T)) steps and pads T to whole chunks (10 -> 4 x 3).
    cell = CELLS["lstm"](H)
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, time, I))
    mask = jax.random.bernoulli(jax.random.key(2), 0.7, (B, time))
    resets = jax.random.bernoulli(jax.random.key(3), 0.3, (B, time))

    def loss(params, xs, remat):
        carry, ys = sj.rnn(cell, params, xs, mask=mask, resets=resets, reverse=True,
                           backend="reference", remat=remat)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(leaf)) for leaf in carry)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    chex.assert_trees_all_close(grad(params, xs, True), grad(params, xs, False), **TOL)


@pytest.mark.parametrize("name", ["lstm", "gru", "min_gru"])
def test_bfloat16_inputs_keep_float32_carry(name):
    cell, params, xs, _ = make(name)
    carry32, ys32 = sj.rnn(cell, params, xs)
    carry16, ys16 = sj.rnn(cell, params, xs.astype(jnp.bfloat16))
    assert ys16.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in carry16)
    # bfloat16 keeps 8 bits of mantissa: inputs and the input projection round at ~0.4%.
    np.testing.assert_allclose(ys16.astype(jnp.float32), ys32, atol=5e-2, rtol=5e-2)
    chex.assert_trees_all_close(carry16, carry32, atol=5e-2, rtol=5e-2)


def test_time_major_is_a_transpose():
    cell, params, xs, carry0 = make("lstm")
    c1, ys1 = sj.rnn(cell, params, xs, initial_carry=carry0)
    c2, ys2 = sj.rnn(cell, params, jnp.swapaxes(xs, 0, 1), initial_carry=carry0, time_major=True)
    chex.assert_trees_all_close((c1, ys1), (c2, jnp.swapaxes(ys2, 0, 1)), **TOL)


# ----------------------------------------------------------------------------- masking


def pad(xs_single, length, side):
    """Place ``xs_single[:length]`` into a length-T row, pre- or post-padded with garbage."""
    garbage = 100.0 * jnp.ones((T - length, I))
    valid = xs_single[:length]
    row = jnp.concatenate([valid, garbage] if side == "post" else [garbage, valid])
    positions = jnp.arange(T) < length if side == "post" else jnp.arange(T) >= T - length
    return row, positions


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(0, T), min_size=B, max_size=B),
    side=st.sampled_from(["pre", "post"]),
    reverse=st.booleans(),
    name=st.sampled_from(["lstm", "gru_cho", "simple_rnn_tanh", "min_lstm"]),
)
def test_padded_batch_equals_each_sequence_alone(lengths, side, reverse, name):
    cell, params, xs, carry0 = make(name)
    rows, masks = zip(*(pad(xs[b], lengths[b], side) for b in range(B)))
    padded, mask = jnp.stack(rows), jnp.stack(masks)
    carry, ys = sj.rnn(cell, params, padded, mask=mask, initial_carry=carry0, reverse=reverse)
    assert not np.asarray(ys)[~np.asarray(mask)].any(), "padded steps must emit zeros"
    for b in range(B):
        carry_b0 = jax.tree.map(lambda c, b=b: c[b : b + 1], carry0)
        alone_carry, alone_ys = python_loop(cell, params, xs[b : b + 1, : lengths[b]], carry_b0,
                                            reverse)
        np.testing.assert_allclose(ys[b][mask[b]], alone_ys[0], **TOL)
        chex.assert_trees_all_close(jax.tree.map(lambda c, b=b: c[b], carry),
                                    jax.tree.map(lambda c: c[0], alone_carry), **TOL)


def test_lengths_equal_the_matching_mask():
    cell, params, xs, _ = make("gru")
    lengths = jnp.array([6, 0, 2])
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    for reverse in (False, True):
        chex.assert_trees_all_close(
            sj.rnn(cell, params, xs, lengths=lengths, reverse=reverse),
            sj.rnn(cell, params, xs, mask=mask, reverse=reverse),
        )


def test_zero_length_sequence_keeps_initial_carry():
    cell, params, xs, carry0 = make("lstm")
    carry, ys = sj.rnn(cell, params, xs, lengths=jnp.array([0, 0, 0]), initial_carry=carry0)
    chex.assert_trees_all_equal(carry, carry0)
    assert not np.asarray(ys).any()


@pytest.mark.parametrize("backend", [b for c, b in CASES if c == "lstm"])
def test_chunked_streaming_equals_one_call(backend):
    cell, params, xs, carry0 = make("lstm")
    lengths = jnp.array([6, 4, 1])
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    full_carry, full_ys = sj.rnn(cell, params, xs, mask=mask, initial_carry=carry0,
                                 backend=backend)
    carry, pieces = carry0, []
    for start, stop in ((0, 2), (2, 5), (5, 6)):
        carry, ys = sj.rnn(cell, params, xs[:, start:stop], mask=mask[:, start:stop],
                           initial_carry=carry, backend=backend)
        pieces.append(ys)
    chex.assert_trees_all_close((carry, jnp.concatenate(pieces, axis=1)),
                                (full_carry, full_ys), **TOL)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["lstm", "min_gru"])
def test_resets_equal_separate_sequences(name, reverse):
    cell, params, xs, carry0 = make(name)
    boundary = 2
    resets = jnp.zeros((B, T), bool).at[:, boundary].set(True)
    carry, ys = sj.rnn(cell, params, xs, resets=resets, initial_carry=carry0, reverse=reverse)
    c_first, y_first = python_loop(cell, params, xs[:, :boundary], carry0, reverse)
    c_second, y_second = python_loop(cell, params, xs[:, boundary:], carry0, reverse)
    np.testing.assert_allclose(ys, jnp.concatenate([y_first, y_second], axis=1), **TOL)
    # the final carry belongs to the segment processed last
    chex.assert_trees_all_close(carry, c_first if reverse else c_second, **TOL)


# ----------------------------------------------------------------------------- jit


class TestJitVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_masked_reverse_same_under_jit(self):
        cell, params, xs, carry0 = make("gru")
        lengths = jnp.array([6, 3, 1])

        @self.variant
        def run(params, xs, lengths):
            return sj.rnn(cell, params, xs, lengths=lengths, reverse=True, initial_carry=carry0)

        want = sj.rnn(cell, params, xs, lengths=lengths, reverse=True, initial_carry=carry0,
                      backend="reference")
        chex.assert_trees_all_close(run(params, xs, lengths), want, **TOL)


def test_second_call_does_not_retrace():
    cell, params, xs, _ = make("lstm")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_loss(params, xs, lengths):
        _, ys = sj.rnn(cell, params, xs, lengths=lengths)
        return jnp.mean(ys**2)

    grad_fn = jax.jit(jax.grad(train_loss))
    for seed in range(3):
        grad_fn(params, xs + seed, jnp.array([6, seed, 2]))
    chex.clear_trace_counter()


def test_auto_picks_a_backend_that_supports_each_cell():
    for name in CELLS:
        spec = CELLS[name](H).spec
        for platform in ("cpu", "gpu", "tpu"):
            for remat in (False, True):
                chosen = sj.kernels.auto_backend(spec, platform, remat)
                assert chosen in sj.kernels.BACKENDS
                assert sj.kernels.BACKENDS[chosen].supports(spec)
                assert not (platform == "cpu" and chosen == "pallas")


def test_partial_application_keeps_params_a_pytree():
    # A jitted step closes over no arrays: params flow as arguments.
    cell, params, xs, _ = make("gru")
    fn = jax.jit(functools.partial(sj.rnn, cell))
    chex.assert_trees_all_close(fn(params, xs), sj.rnn(cell, params, xs), **TOL)


@pytest.mark.parametrize("backend", [b for c, b in CASES if c == "min_lstm"])
def test_min_lstm_with_both_gates_underflowing_stays_finite(backend):
    # With pre-activations near -300, f and i are both 0 in float32 and the plain f / (f + i) is
    # 0 / 0; its limit, sigmoid(k_f - k_i) there, is what every backend must return.
    cell = sj.min_lstm(4)
    params = cell.init(jax.random.key(0), 3)
    params = params._replace(b=params.b.at[:8].set(-300.0))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))

    def loss(params, backend):
        return jnp.sum(sj.rnn(cell, params, xs, backend=backend)[1])

    value, grads = jax.value_and_grad(loss)(params, backend)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    expected, expected_grads = jax.value_and_grad(loss)(params, "reference")
    chex.assert_trees_all_close((value, grads), (expected, expected_grads), rtol=1e-4, atol=1e-5)
