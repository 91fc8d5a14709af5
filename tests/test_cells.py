"""Each cell's docstring equations, written out independently in numpy, against ``cell.apply``."""

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import CELLS, random_carry, random_params

import seqjax as sj

B, I, H = 3, 5, 4
GOLDEN = pathlib.Path(__file__).parent / "golden" / "param_structure.json"


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def g(v):
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def split(w, n):
    return np.split(np.asarray(w, np.float64), n, axis=-1)


def equations(kind, spec, p, carry, x):
    """The docstring equations, gate by gate, in float64 numpy."""
    p = type(p)(*[None if v is None else np.asarray(v, np.float64) for v in p])
    x = np.asarray(x, np.float64)
    h = np.asarray(carry.h, np.float64)
    if kind == "simple_rnn":
        act = np.tanh if spec.activation == "tanh" else (lambda v: np.maximum(v, 0))
        h_t = act(x @ p.w_x + h @ p.w_h + p.b)
        return (h_t,), h_t
    if kind == "lstm":
        (Wxi, Wxf, Wxg, Wxo), (Whi, Whf, Whg, Who), (bi, bf, bg, bo) = (
            split(p.w_x, 4), split(p.w_h, 4), split(p.b, 4))
        c = np.asarray(carry.c, np.float64)
        i = sigmoid(x @ Wxi + h @ Whi + bi)
        f = sigmoid(x @ Wxf + h @ Whf + bf)
        gg = np.tanh(x @ Wxg + h @ Whg + bg)
        o = sigmoid(x @ Wxo + h @ Who + bo)
        c_t = f * c + i * gg
        h_t = o * np.tanh(c_t)
        return (h_t, c_t), h_t
    if kind == "gru":
        (Wxr, Wxz, Wxn), (Whr, Whz, Whn), (br, bz, bn) = (
            split(p.w_x, 3), split(p.w_h, 3), split(p.b, 3))
        if spec.reset_after:
            bhr, bhz, bhn = split(p.b_h, 3)
            r = sigmoid(x @ Wxr + br + h @ Whr + bhr)
            z = sigmoid(x @ Wxz + bz + h @ Whz + bhz)
            n = np.tanh(x @ Wxn + bn + r * (h @ Whn + bhn))
        else:
            r = sigmoid(x @ Wxr + h @ Whr + br)
            z = sigmoid(x @ Wxz + h @ Whz + bz)
            n = np.tanh(x @ Wxn + (r * h) @ Whn + bn)
        h_t = (1 - z) * n + z * h
        return (h_t,), h_t
    if kind == "simplified_gru":
        (Wxu, Wxc), (Whu, Whc), (bu, bc) = split(p.w_x, 2), split(p.w_h, 2), split(p.b, 2)
        u = sigmoid(x @ Wxu + h @ Whu + bu)
        c_tilde = np.tanh(x @ Wxc + h @ Whc + bc)
        h_t = u * c_tilde + (1 - u) * h
        return (h_t,), h_t
    if kind == "min_gru":
        (Wxz, Wxh), (bz, bh) = split(p.w_x, 2), split(p.b, 2)
        z = sigmoid(x @ Wxz + bz)
        h_tilde = g(x @ Wxh + bh)
        h_t = (1 - z) * h + z * h_tilde
        return (h_t,), h_t
    if kind == "min_lstm":
        (Wxf, Wxi, Wxh), (bf, bi, bh) = split(p.w_x, 3), split(p.b, 3)
        f = sigmoid(x @ Wxf + bf)
        i = sigmoid(x @ Wxi + bi)
        h_tilde = g(x @ Wxh + bh)
        h_t = f / (f + i) * h + i / (f + i) * h_tilde
        return (h_t,), h_t
    raise AssertionError(kind)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_docstring_equations_match_apply(name):
    cell = CELLS[name](H)
    key = jax.random.key(0)
    params = random_params(cell, key, I)
    carry = random_carry(cell, jax.random.key(1), B)
    x = jax.random.normal(jax.random.key(2), (B, I))
    new_carry, y = cell.apply(params, carry, x)
    want_carry, want_y = equations(cell.spec.kind, cell.spec, params, carry, x)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
    for got, want in zip(new_carry, want_carry):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_apply_is_step_of_project_and_any_batch_dims(name):
    cell = CELLS[name](H)
    params = random_params(cell, jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(2), (2, 3, I))  # two leading batch dims
    carry = cell.initial_carry((2, 3))
    c1, y1 = cell.apply(params, carry, x)
    c2, y2 = cell.step(params, carry, cell.project(params, x))
    chex.assert_shape(y1, (2, 3, H))
    chex.assert_shape(cell.project(params, x), (2, 3, cell.spec.num_gates * H))
    chex.assert_trees_all_close((c1, y1), (c2, y2))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_initial_carry_is_zeros_with_named_fields(name):
    cell = CELLS[name](H)
    carry = cell.initial_carry((B,), jnp.float32)
    assert hasattr(carry, "_fields") and "h" in carry._fields
    for leaf in carry:
        chex.assert_shape(leaf, (B, H))
        assert not np.asarray(leaf).any()


def test_keras_default_initialisers():
    I_, H_ = 7, 5
    params = sj.lstm(H_).init(jax.random.key(0), I_)
    limit = np.sqrt(6.0 / (I_ + 4 * H_))  # glorot uniform over the fused [I, 4H] kernel
    assert np.abs(params.w_x).max() <= limit
    assert np.abs(params.w_x).max() > 0.5 * limit
    # orthogonal recurrent kernel: [H, 4H] has orthonormal rows
    np.testing.assert_allclose(params.w_h @ params.w_h.T, np.eye(H_), atol=1e-5)
    np.testing.assert_array_equal(params.b[H_: 2 * H_], 1.0)  # unit_forget_bias (Keras default)
    np.testing.assert_array_equal(params.b[:H_], 0.0)
    np.testing.assert_array_equal(params.b[2 * H_:], 0.0)
    no_forget = sj.lstm(H_, unit_forget_bias=False).init(jax.random.key(0), I_)
    np.testing.assert_array_equal(no_forget.b, 0.0)
    gru = sj.gru(H_).init(jax.random.key(0), I_)
    np.testing.assert_array_equal(gru.b, 0.0)
    np.testing.assert_array_equal(gru.b_h, 0.0)
    assert sj.gru(H_, reset_after=False).init(jax.random.key(0), I_).b_h is None


def param_structure():
    out = {}
    for name in sorted(CELLS):
        params = CELLS[name](4).init(jax.random.key(0), 3)
        out[name] = {
            "type": type(params).__name__,
            "fields": {
                field: None if value is None else list(value.shape)
                for field, value in zip(params._fields, params)
            },
        }
    return out


def test_param_structure_matches_golden():
    """Checkpoints depend on this structure: a change here must be deliberate (update the JSON)."""
    assert param_structure() == json.loads(GOLDEN.read_text())


def test_cell_is_namedtuple_of_pure_functions_with_static_spec():
    cell = sj.lstm(H)
    assert cell._fields == ("init", "initial_carry", "project", "step", "apply", "spec")
    hash(cell.spec)  # hashable: usable as a static argument
    params = cell.init(jax.random.key(0), I)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
