"""Flax NNX modules: same numbers as the pure functions, usable under nnx.jit and in optimizers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj

B, T, I, H = 2, 5, 3, 4
TOL = dict(rtol=1e-5, atol=1e-5)
XS = jax.random.normal(jax.random.key(0), (B, T, I))
LENGTHS = jnp.array([5, 2])


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: sj.nn.LSTM(I, H, rngs=nnx.Rngs(0), **kw),
        lambda **kw: sj.nn.GRU(I, H, rngs=nnx.Rngs(0), reset_after=False, **kw),
        lambda **kw: sj.nn.SimpleRNN(I, H, rngs=nnx.Rngs(0), activation="relu", **kw),
        lambda **kw: sj.nn.RNN(sj.min_gru(H), I, rngs=nnx.Rngs(0), **kw),
    ],
)
def test_module_matches_pure_function(make):
    layer = make(return_sequences=True, return_carry=True)
    carry, ys = layer(XS, lengths=LENGTHS)
    want = sj.rnn(layer.cell, layer.params, XS, lengths=LENGTHS)
    chex.assert_trees_all_close((carry, ys), want, **TOL)
    last = make()(XS, lengths=LENGTHS)  # Keras default: output at the last valid step
    np.testing.assert_allclose(last, ys[jnp.arange(B), LENGTHS - 1], **TOL)


def test_params_are_nnx_params_with_the_cell_field_names():
    layer = sj.nn.GRU(I, H, rngs=nnx.Rngs(0))
    state = nnx.state(layer, nnx.Param)
    assert set(state.keys()) == {"w_x", "w_h", "b", "b_h"}
    assert isinstance(layer.params, sj.GRUParams)
    assert set(nnx.state(sj.nn.GRU(I, H, rngs=nnx.Rngs(0), reset_after=False),
                         nnx.Param).keys()) == {"w_x", "w_h", "b"}


def test_set_params_checks_type_and_size():
    layer = sj.nn.LSTM(I, H, rngs=nnx.Rngs(0))
    new = sj.lstm(H).init(jax.random.key(3), I)
    layer.set_params(new)
    chex.assert_trees_all_equal(layer.params, new)
    with pytest.raises(ValueError, match="params must be a LSTMParams; got GRUParams"):
        layer.set_params(sj.gru(H).init(jax.random.key(3), I))
    with pytest.raises(ValueError, match="input size 7; the module's in_features is 3"):
        layer.set_params(sj.lstm(H).init(jax.random.key(3), 7))


def test_bidirectional_module():
    rngs = nnx.Rngs(0)
    bi = sj.nn.Bidirectional(sj.nn.LSTM(I, H, rngs=rngs, return_sequences=True), rngs=rngs,
                             merge="sum")
    ys = bi(XS, lengths=LENGTHS)
    want = sj.bidirectional(bi.cells, bi.params, XS, lengths=LENGTHS, merge="sum")[1]
    chex.assert_trees_all_close(ys, want, **TOL)
    # a fresh backward copy, not the forward params again
    assert not np.allclose(bi.params[0].w_x, bi.params[1].w_x)


class Classifier(nnx.Module):
    """Embedding -> stacked BiLSTM -> LSTM -> logit, as in the IMDB experiments."""

    def __init__(self, rngs):
        self.embed = nnx.Embed(20, I, rngs=rngs)
        self.rnn = sj.nn.Stacked(
            [sj.nn.Bidirectional(sj.nn.LSTM(I, H, rngs=rngs, return_sequences=True), rngs=rngs),
             sj.nn.LSTM(2 * H, H, rngs=rngs)],
            dropout=0.5, rngs=rngs,
        )
        self.out = nnx.Linear(H, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        return self.out(self.rnn(self.embed(tokens), mask=mask))[:, 0]


@pytest.mark.default_numerics  # optax.adam promotes int32 step counts
def test_module_trains_under_nnx_jit_with_an_optimizer():
    model = Classifier(nnx.Rngs(params=0, dropout=1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    tokens = jax.random.randint(jax.random.key(0), (8, T), 1, 20)
    mask = jnp.arange(T)[None, :] < jax.random.randint(jax.random.key(1), (8,), 1, T + 1)[:, None]
    labels = (tokens[:, 0] > 10).astype(jnp.float32)

    def loss_fn(model):
        return optax.sigmoid_binary_cross_entropy(model(tokens, mask), labels).mean()

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(30)]
    assert losses[-1] < 0.75 * losses[0]
    model.eval()  # dropout off: deterministic
    a, b = model(tokens, mask), model(tokens, mask)
    chex.assert_trees_all_equal(a, b)


def test_stacked_checks_return_sequences():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"layers\[0\] must have return_sequences=True"):
        sj.nn.Stacked([sj.nn.LSTM(I, H, rngs=rngs), sj.nn.LSTM(H, H, rngs=rngs)])
    with pytest.raises(ValueError, match="rngs is required when dropout > 0"):
        sj.nn.Stacked([sj.nn.LSTM(I, H, rngs=rngs)], dropout=0.3)
