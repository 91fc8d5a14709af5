"""Bahdanau and Luong attention: masked weights, the score equations, projections, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax.models.attention import (
    BahdanauAttention,
    LuongAttention,
    make_attention,
    masked_softmax,
)

B, S, H, HK = 3, 6, 4, 5
MASK = jnp.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]], bool)


def inputs(seed=0, key_dim=HK):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (B, H)), jax.random.normal(k2, (B, S, key_dim))


ATTENTIONS = [
    lambda: BahdanauAttention(H, HK, attention_dim=7, rngs=nnx.Rngs(0)),
    lambda: LuongAttention(H, HK, score="general", rngs=nnx.Rngs(0)),
    lambda: LuongAttention(HK, HK, score="dot", rngs=nnx.Rngs(0)),
]


@pytest.mark.parametrize("make", ATTENTIONS, ids=["bahdanau", "luong-general", "luong-dot"])
def test_weights_sum_to_one_over_valid_positions_and_are_zero_on_masked(make):
    attn = make()
    query, keys = inputs(1)
    query = query if attn.query_dim == H else jax.random.normal(jax.random.key(2), (B, HK))
    context, weights = attn(query, keys, MASK)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    assert (weights[~MASK] == 0.0).all()
    assert (weights[MASK] > 0.0).all()
    np.testing.assert_allclose(context, jnp.einsum("bs,bsk->bk", weights, keys), rtol=1e-5,
                               atol=1e-6)
    # masked keys do not matter at all
    noisy = jnp.where(MASK[..., None], keys, 100.0)
    np.testing.assert_allclose(attn(query, noisy, MASK)[0], context, rtol=1e-5, atol=1e-6)


def test_bahdanau_score_equation():
    attn = BahdanauAttention(H, HK, attention_dim=7, rngs=nnx.Rngs(3))
    query, keys = inputs(4)
    _, weights = attn(query, keys, MASK)
    w_q, b = attn.query_proj.kernel[...], attn.query_proj.bias[...]
    w_k, v = attn.key_proj.kernel[...], attn.v.kernel[...][:, 0]
    scores = jnp.tanh((query @ w_q + b)[:, None, :] + keys @ w_k) @ v  # v^T tanh(W_q q + W_k k)
    expected = jax.nn.softmax(jnp.where(MASK, scores, -jnp.inf), axis=-1)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-7)
    # the keys' projection computed once gives the same result
    projected = attn.project_keys(keys)
    np.testing.assert_allclose(attn(query, keys, MASK, projected_keys=projected)[1], weights,
                               rtol=1e-6)


def test_luong_score_equations():
    query, keys = inputs(5)
    general = LuongAttention(H, HK, score="general", rngs=nnx.Rngs(6))
    w = general.query_proj.kernel[...]
    expected = jax.nn.softmax(jnp.where(MASK, jnp.einsum("bh,hk,bsk->bs", query, w, keys),
                                        -jnp.inf), axis=-1)
    np.testing.assert_allclose(general(query, keys, MASK)[1], expected, rtol=1e-5, atol=1e-7)
    dot = LuongAttention(HK, HK, rngs=nnx.Rngs(0))
    q = keys[:, 2] * 3.0
    expected = jax.nn.softmax(jnp.einsum("bk,bsk->bs", q, keys), axis=-1)
    np.testing.assert_allclose(dot(q, keys)[1], expected, rtol=1e-5, atol=1e-7)


def test_a_row_without_valid_positions_gets_zero_weights():
    weights = masked_softmax(jnp.ones((2, 3)), jnp.array([[0, 0, 0], [1, 0, 1]], bool))
    np.testing.assert_array_equal(weights, [[0, 0, 0], [0.5, 0, 0.5]])


def test_make_attention_and_errors():
    assert isinstance(make_attention("bahdanau", H, HK, rngs=nnx.Rngs(0)), BahdanauAttention)
    assert make_attention("luong", H, H, rngs=nnx.Rngs(0)).score == "dot"
    assert make_attention("luong", H, HK, rngs=nnx.Rngs(0)).score == "general"
    with pytest.raises(ValueError, match="attention must be one of"):
        make_attention("additive", H, HK, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="score must be 'dot' or 'general'"):
        LuongAttention(H, H, score="concat", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs query_dim == key_dim"):
        LuongAttention(H, HK, score="dot", rngs=nnx.Rngs(0))
    attn = BahdanauAttention(H, HK, rngs=nnx.Rngs(0))
    query, keys = inputs()
    with pytest.raises(ValueError, match="mask must be bool"):
        attn(query, keys, MASK[:, :-1])
    with pytest.raises(ValueError, match="keys must be"):
        attn(query, keys[..., :-1], MASK)
    with pytest.raises(ValueError, match="query must be"):
        attn(keys, keys, MASK)
