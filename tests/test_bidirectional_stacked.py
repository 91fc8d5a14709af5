"""``seqjax.bidirectional`` and ``seqjax.stacked``."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import random_params

import seqjax as sj

B, T, I, H = 3, 6, 4, 5
TOL = dict(rtol=1e-5, atol=1e-5)


def setup(cell=None, seed=0):
    cell = cell or sj.lstm(H)
    kf, kb, kx = jax.random.split(jax.random.key(seed), 3)
    params = (random_params(cell, kf, I), random_params(cell, kb, I))
    xs = jax.random.normal(kx, (B, T, I))
    return cell, params, xs


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave", None])
def test_merge_modes(merge):
    cell, (pf, pb), xs = setup()
    lengths = jnp.array([6, 2, 4])
    (cf, cb), ys = sj.bidirectional(cell, (pf, pb), xs, merge=merge, lengths=lengths)
    cf_want, yf = sj.rnn(cell, pf, xs, lengths=lengths)
    cb_want, yb = sj.rnn(cell, pb, xs, lengths=lengths, reverse=True)
    want = {
        "concat": jnp.concatenate([yf, yb], -1), "sum": yf + yb, "mul": yf * yb,
        "ave": (yf + yb) / 2, None: (yf, yb),
    }[merge]
    chex.assert_trees_all_close(ys, want, **TOL)
    chex.assert_trees_all_close((cf, cb), (cf_want, cb_want), **TOL)


@pytest.mark.parametrize("side", ["pre", "post"])
def test_backward_direction_reverses_only_valid_steps(side):
    cell, (pf, pb), xs = setup(sj.gru(H))
    length = 4
    valid = xs[:1, :length]
    garbage = 50.0 * jnp.ones((1, T - length, I))
    row = jnp.concatenate([valid, garbage] if side == "post" else [garbage, valid], axis=1)
    positions = jnp.arange(T) < length if side == "post" else jnp.arange(T) >= T - length
    (_, cb), ys = sj.bidirectional(cell, (pf, pb), row, mask=positions[None], merge=None)
    # the backward output at each valid position equals running the reversed valid part alone
    _, alone = sj.rnn(cell, pb, valid[:, ::-1])
    np.testing.assert_allclose(ys[1][0][positions], alone[0, ::-1], **TOL)
    np.testing.assert_allclose(cb.h[0], alone[0, -1], **TOL)


def test_two_different_cells():
    cf, cb = sj.lstm(H), sj.gru(3)
    params = (random_params(cf, jax.random.key(0), I), random_params(cb, jax.random.key(1), I))
    xs = jax.random.normal(jax.random.key(2), (B, T, I))
    (carry_f, carry_b), ys = sj.bidirectional((cf, cb), params, xs)
    chex.assert_shape(ys, (B, T, H + 3))
    assert isinstance(carry_f, sj.LSTMCarry) and isinstance(carry_b, sj.GRUCarry)


def stack_params(cells_per_layer, seed=0):
    params, size = [], I
    for layer, cell in enumerate(cells_per_layer):
        key = jax.random.key(seed + layer)
        if isinstance(cell, tuple) and not isinstance(cell, sj.Cell):
            kf, kb = jax.random.split(key)
            params.append((random_params(cell[0], kf, size), random_params(cell[1], kb, size)))
            size = cell[0].spec.hidden_size + cell[1].spec.hidden_size
        else:
            params.append(random_params(cell, key, size))
            size = cell.spec.hidden_size
    return params


def test_stacked_equals_manual_composition():
    cells = [sj.lstm(H), sj.gru(3), sj.simple_rnn(2)]
    params = stack_params(cells)
    xs = jax.random.normal(jax.random.key(9), (B, T, I))
    lengths = jnp.array([6, 3, 1])
    carries, ys = sj.stacked(cells, params, xs, lengths=lengths)
    h = xs
    for cell, p, carry in zip(cells, params, carries):
        want_carry, h = sj.rnn(cell, p, h, lengths=lengths)
        chex.assert_trees_all_close(carry, want_carry, **TOL)
    chex.assert_trees_all_close(ys, h, **TOL)
    _, last = sj.stacked(cells, params, xs, lengths=lengths, return_sequences=False)
    # the output at each sequence's last valid step
    np.testing.assert_allclose(last, h[jnp.arange(B), lengths - 1], **TOL)


def test_stacked_bidirectional_layers_return_last():
    cell = sj.lstm(H)
    params = stack_params([(cell, cell), (cell, cell)])
    xs = jax.random.normal(jax.random.key(9), (B, T, I))
    lengths = jnp.array([6, 3, 1])
    carries, last = sj.stacked((cell, cell), params, xs, lengths=lengths, return_sequences=False)
    chex.assert_shape(last, (B, 2 * H))
    _, seq = sj.stacked((cell, cell), params, xs, lengths=lengths)
    # forward half: last valid step; backward half: first step (Keras' Bidirectional semantics)
    np.testing.assert_allclose(last[:, :H], seq[jnp.arange(B), lengths - 1, :H], **TOL)
    np.testing.assert_allclose(last[:, H:], seq[:, 0, H:], **TOL)


def test_dropout_between_layers_only_with_a_key():
    cell = sj.gru(H)
    params = stack_params([cell, cell])
    xs = jax.random.normal(jax.random.key(9), (B, T, I))
    _, plain = sj.stacked(cell, params, xs)
    _, no_key = sj.stacked(cell, params, xs, dropout=0.5)
    _, dropped = sj.stacked(cell, params, xs, dropout=0.5, key=jax.random.key(0))
    _, again = sj.stacked(cell, params, xs, dropout=0.5, key=jax.random.key(0))
    chex.assert_trees_all_close(no_key, plain)
    assert not np.allclose(dropped, plain)
    chex.assert_trees_all_equal(dropped, again)
    # one layer: nothing between layers, so no dropout at all
    _, single = sj.stacked(cell, params[:1], xs, dropout=0.5, key=jax.random.key(0))
    chex.assert_trees_all_close(single, sj.rnn(cell, params[0], xs)[1])
