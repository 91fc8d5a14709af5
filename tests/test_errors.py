"""Every argument check of the public functions: a ValueError naming the argument and shapes."""

import jax
import jax.numpy as jnp
import pytest

import seqjax as sj

B, T, I, H = 2, 5, 3, 4
CELL = sj.lstm(H)
PARAMS = CELL.init(jax.random.key(0), I)
XS = jnp.ones((B, T, I))


def raises(match):
    return pytest.raises(ValueError, match=match)


def test_wrong_rank():
    with raises(r"xs must have rank 3.*\(5, 3\)"):
        sj.rnn(CELL, PARAMS, jnp.ones((T, I)))


def test_feature_size_mismatch():
    with raises(r"xs feature size 7 .* input size 3"):
        sj.rnn(CELL, PARAMS, jnp.ones((B, T, 7)))


def test_integer_inputs():
    with raises(r"xs must be floating point"):
        sj.rnn(CELL, PARAMS, jnp.ones((B, T, I), jnp.int32))


def test_lengths_outside_range():
    with raises(r"lengths must lie in \[0, T=5\]; got \[6\]"):
        sj.rnn(CELL, PARAMS, XS, lengths=jnp.array([6, 2]))
    with raises(r"lengths must lie in \[0, T=5\]; got \[-1\]"):
        sj.rnn(CELL, PARAMS, XS, lengths=jnp.array([1, -1]))


def test_lengths_not_integer():
    with raises(r"lengths must be integers"):
        sj.rnn(CELL, PARAMS, XS, lengths=jnp.array([1.0, 2.0]))


def test_lengths_wrong_shape():
    with raises(r"lengths must have shape \[B\] = \(2,\); got \(3,\)"):
        sj.rnn(CELL, PARAMS, XS, lengths=jnp.array([1, 2, 3]))


def test_mask_wrong_shape_or_dtype():
    with raises(r"mask must have shape \[B, T\] = \(2, 5\); got \(5, 2\)"):
        sj.rnn(CELL, PARAMS, XS, mask=jnp.ones((T, B), bool))
    with raises(r"mask must be a bool array"):
        sj.rnn(CELL, PARAMS, XS, mask=jnp.ones((B, T), jnp.int32))


def test_mask_and_lengths_together():
    with raises(r"either mask or lengths"):
        sj.rnn(CELL, PARAMS, XS, mask=jnp.ones((B, T), bool), lengths=jnp.array([1, 2]))


def test_resets_wrong_shape():
    with raises(r"resets must have shape \[B, T\] = \(2, 5\); got \(2, 4\)"):
        sj.rnn(CELL, PARAMS, XS, resets=jnp.zeros((B, T - 1), bool))


def test_unknown_backend():
    with raises(r"backend must be 'auto' or one of .*'nope'"):
        sj.rnn(CELL, PARAMS, XS, backend="nope")


def test_backend_that_does_not_support_the_cell(monkeypatch):
    limited = sj.kernels.Backend("limited", sj.kernels.BACKENDS["reference"].run,
                                 lambda spec: spec.kind == "gru")
    monkeypatch.setitem(sj.kernels.BACKENDS, "limited", limited)
    with raises(r"backend 'limited' does not support the 'lstm' cell"):
        sj.rnn(CELL, PARAMS, XS, backend="limited")


def test_initial_carry_mismatch():
    with raises(r"initial_carry must have the structure"):
        sj.rnn(CELL, PARAMS, XS, initial_carry=sj.GRUCarry(jnp.zeros((B, H))))
    with raises(r"initial_carry leaves must have shapes \[\(2, 4\), \(2, 4\)\]"):
        sj.rnn(CELL, PARAMS, XS, initial_carry=CELL.initial_carry((3,)))


def test_not_a_cell_and_bad_sizes():
    with raises(r"cell must be a seqjax Cell"):
        sj.rnn(object(), PARAMS, XS)
    with raises(r"hidden_size must be a positive int; got 0"):
        sj.lstm(0)
    with raises(r"input_size must be a positive int; got -2"):
        CELL.init(jax.random.key(0), -2)
    with raises(r"activation must be one of \['relu', 'tanh'\]; got 'gelu'"):
        sj.simple_rnn(4, activation="gelu")
    with raises(r"unroll must be a positive int"):
        sj.rnn(CELL, PARAMS, XS, unroll=0)


def test_bidirectional_and_stacked_arguments():
    with raises(r"merge must be one of"):
        sj.bidirectional(CELL, (PARAMS, PARAMS), XS, merge="max")
    with raises(r"params must be a pair \(forward, backward\)"):
        sj.bidirectional(CELL, PARAMS, XS)
    with raises(r"cells has 3 entries but params has 1"):
        sj.stacked([CELL, CELL, CELL], [PARAMS], XS)
    with raises(r"dropout must lie in \[0, 1\)"):
        sj.stacked(CELL, [PARAMS], XS, dropout=1.5)
    with raises(r"params must be a non-empty list"):
        sj.stacked(CELL, [], XS)
