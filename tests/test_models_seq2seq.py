"""Seq2Seq: teacher forcing, generation (greedy and beam), attention weights, learning, errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.models import Seq2Seq

VS, VT, BOS, EOS = 11, 13, 1, 2
SRC = jnp.array([[4, 5, 6, 7, 0, 0], [8, 9, 10, 4, 5, 6], [3, 0, 0, 0, 0, 0]], jnp.int32)
SRC_MASK = SRC > 0
OPTIONS = {
    "plain": dict(attention=None),
    "bahdanau": dict(attention="bahdanau", num_layers=2),
    "luong": dict(attention="luong"),
    "luong-bi": dict(attention="luong", bidirectional_encoder=True, cell="gru"),
}


def make(name="luong", **kwargs):
    args = dict(src_vocab_size=VS, tgt_vocab_size=VT, embed_dim=8, units=16, rngs=nnx.Rngs(0))
    s2s = Seq2Seq(**(args | OPTIONS[name] | kwargs))
    # A strong <EOS> bias makes untrained models stop at different steps.
    s2s.head.bias[...] = s2s.head.bias[...].at[EOS].set(1.2)
    return s2s


def check_greedy(s2s, src, mask, out):
    """Each generated token is the argmax of the teacher-forced logits after its prefix."""
    tokens = np.asarray(out.tokens)
    ends = tokens == EOS
    live = (np.cumsum(ends, 1) - ends) == 0  # up to and including <EOS>
    assert ends.any() and (~live).any() and (tokens[~live] == 0).all()
    tgt_in = jnp.concatenate([jnp.full((src.shape[0], 1), BOS), out.tokens[:, :-1]], 1)
    log_probs = np.asarray(jax.nn.log_softmax(s2s(src, mask, tgt_in, jnp.asarray(live)), -1))
    np.testing.assert_array_equal(np.where(live, log_probs.argmax(-1), 0), tokens)
    picked = np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.scores, np.where(live, picked, 0).sum(1), rtol=1e-5)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_generate_greedy_is_teacher_forced_argmax_and_beam_of_width_one(name):
    s2s = make(name)
    out = s2s.generate(SRC, SRC_MASK, max_len=6)
    check_greedy(s2s, SRC, SRC_MASK, out)
    step, state = s2s.start_decoding(SRC, SRC_MASK)
    beam = sj.models.beam_search(step, state, jnp.full(3, BOS), beam_size=1, max_len=6,
                                 eos_id=EOS)
    np.testing.assert_array_equal(beam.tokens, out.tokens)
    np.testing.assert_allclose(beam.scores, out.scores, rtol=1e-5)
    if name == "plain":
        assert out.attention is None
    else:
        assert out.attention.shape == (3, 6, 6)


@pytest.mark.parametrize("name", ["bahdanau", "luong-bi"])
def test_attention_weights_sum_to_one_over_valid_source_and_zero_elsewhere(name):
    s2s = make(name)
    tgt_in = jnp.array([[BOS, 5, 6, 0], [BOS, 7, 8, 9], [BOS, 0, 0, 0]], jnp.int32)
    tgt_mask = tgt_in > 0
    logits, weights = s2s(SRC, SRC_MASK, tgt_in, tgt_mask, return_attention=True)
    assert logits.shape == (3, 4, VT) and weights.shape == (3, 4, 6)
    valid = tgt_mask[:, :, None] & SRC_MASK[:, None, :]
    np.testing.assert_allclose(weights.sum(-1), tgt_mask.astype(float), rtol=1e-6)
    assert (weights[~valid] == 0).all() and (weights[valid] > 0).all()
    out = s2s.generate(SRC, SRC_MASK, max_len=6, beam_size=2)
    ends = np.asarray(out.tokens) == EOS
    live = (np.cumsum(ends, 1) - ends) == 0  # up to and including <EOS>
    assert (~live).any()
    np.testing.assert_allclose(out.attention.sum(-1), live.astype(float), rtol=1e-6)
    assert (out.attention * ~SRC_MASK[:, None, :] == 0).all()


@pytest.mark.parametrize("name", ["plain", "luong-bi"])
def test_pre_and_post_padding_give_the_same_logits(name):
    s2s = make(name)
    src = jnp.array([[4, 5, 6]], jnp.int32)
    tgt_in = jnp.array([[BOS, 7, 8]], jnp.int32)
    plain = s2s(src, None, tgt_in)
    pad = jnp.zeros((1, 2), jnp.int32)
    post = s2s(jnp.concatenate([src, pad], 1), jnp.arange(5)[None] < 3, tgt_in)
    pre = s2s(jnp.concatenate([pad, src], 1), jnp.arange(5)[None] >= 2, tgt_in)
    np.testing.assert_allclose(post, plain, atol=1e-5)
    np.testing.assert_allclose(pre, plain, atol=1e-5)
    # padded target steps are skipped, wherever the padding is
    longer = s2s(src, None, jnp.concatenate([tgt_in, pad], 1), jnp.arange(5)[None] < 3)
    np.testing.assert_allclose(longer[:, :3], plain, atol=1e-5)


def test_generate_jitted_equals_eager():
    s2s = make("bahdanau")
    generate = nnx.jit(lambda m, src, mask: (m.generate(src, mask, max_len=6),
                                             m.generate(src, mask, max_len=6, beam_size=3,
                                                        length_penalty=0.6)))
    jitted = generate(s2s, SRC, SRC_MASK)
    eager = (s2s.generate(SRC, SRC_MASK, max_len=6),
             s2s.generate(SRC, SRC_MASK, max_len=6, beam_size=3, length_penalty=0.6))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 jitted, eager)


def test_dropout_between_layers_trains_inside_the_attention_scan():
    s2s = make("luong", num_layers=2, dropout=0.5)
    tgt_in = jnp.array([[BOS, 5, 6, 7]] * 3, jnp.int32)
    train, grads = nnx.value_and_grad(lambda m: m.loss(SRC, SRC_MASK, tgt_in, tgt_in))(s2s)
    assert all(jnp.isfinite(g).all() for g in jax.tree.leaves(grads))
    out = s2s.generate(SRC, SRC_MASK, max_len=6)  # still in train mode: generate turns it off
    s2s.eval()
    assert float(train) != float(s2s.loss(SRC, SRC_MASK, tgt_in, tgt_in))
    check_greedy(s2s, SRC, SRC_MASK, out)


def reversal_batch(rng, n, max_len=10):
    """Random sequences of 5-10 symbols (3 .. VS-1) and their reversal, post-padded."""
    lengths = rng.integers(5, max_len + 1, n)
    src_mask = np.arange(max_len)[None] < lengths[:, None]
    src = np.where(src_mask, rng.integers(3, VS, (n, max_len)), 0).astype(np.int32)
    tgt_out = np.zeros((n, max_len + 1), np.int32)
    for i, length in enumerate(lengths):
        tgt_out[i, :length] = src[i, :length][::-1]
        tgt_out[i, length] = EOS
    tgt_mask = np.arange(max_len + 1)[None] <= lengths[:, None]
    tgt_in = np.where(tgt_mask, np.concatenate([np.full((n, 1), BOS), tgt_out[:, :-1]], 1), 0)
    return src, src_mask, tgt_in.astype(np.int32), tgt_out, tgt_mask


def loss_fn(model, batch, key):
    return model.loss(*batch)


@pytest.mark.slow
def test_learns_to_reverse_sequences():
    s2s = Seq2Seq(src_vocab_size=VS, tgt_vocab_size=VS, embed_dim=16, units=32,
                  attention="bahdanau", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    sj.train.fit(s2s, loss_fn, optax.adam(1e-2), [reversal_batch(rng, 64) for _ in range(300)],
                 verbose=0)
    src, src_mask, _, tgt_out, _ = reversal_batch(np.random.default_rng(1), 500)
    out = nnx.jit(lambda m, s, k: m.generate(s, k, max_len=11))(s2s, src, src_mask)
    exact = (np.asarray(out.tokens) == tgt_out).all(axis=1).mean()
    assert exact >= 0.99, exact


@pytest.mark.parametrize("name", ["plain", "bahdanau", "luong-bi"])
def test_overfits_a_tiny_batch(name):
    s2s = make(name)
    batch = reversal_batch(np.random.default_rng(2), 4, max_len=5)
    sj.train.fit(s2s, loss_fn, optax.adam(2e-2), [batch] * 150, verbose=0)
    assert float(s2s.loss(*batch)) < 0.05


def test_config_round_trip_and_save_load(tmp_path):
    s2s = make("luong-bi", num_layers=2, dropout=0.1, tgt_vocab_size=np.int64(VT))
    text = sj.models.config_to_json(s2s)
    assert json.loads(text)["config"] == dataclasses.asdict(s2s.config)
    assert sj.models.config_from_json(text).config == s2s.config
    sj.models.save(s2s, tmp_path)
    loaded = sj.models.load(tmp_path)
    assert isinstance(loaded, Seq2Seq) and loaded.config == s2s.config
    tgt_in = jnp.array([[BOS, 5], [BOS, 6], [BOS, 7]], jnp.int32)
    s2s.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(SRC, SRC_MASK, tgt_in), s2s(SRC, SRC_MASK, tgt_in))


@pytest.mark.parametrize("kwargs, message", [
    (dict(cell="transformer"), "cell must be one of"),
    (dict(attention="additive"), "attention must be one of"),
    (dict(attention=True), "attention must be None"),
    (dict(num_layers=0), "num_layers must be a positive int"),
    (dict(units=-1), "units must be a positive int"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make("plain", **kwargs)


def test_input_errors():
    s2s = make("bahdanau")
    tgt_in = jnp.array([[BOS, 5]] * 3, jnp.int32)
    with pytest.raises(ValueError, match=r"src must lie in \[0, 11\)"):
        s2s(SRC.at[0, 0].set(VS), SRC_MASK, tgt_in)
    with pytest.raises(ValueError, match=r"tgt_in must lie in \[0, 13\)"):
        s2s(SRC, SRC_MASK, tgt_in.at[1, 1].set(-1))
    with pytest.raises(ValueError, match="src_mask must have the tokens' shape"):
        s2s(SRC, SRC_MASK[:, :-1], tgt_in)
    with pytest.raises(ValueError, match="tgt_mask must have the tokens' shape"):
        s2s(SRC, SRC_MASK, tgt_in, jnp.ones((3, 3), bool))
    with pytest.raises(ValueError, match="tgt_in must have the source's batch size 3"):
        s2s(SRC, SRC_MASK, tgt_in[:2])
    with pytest.raises(ValueError, match="tgt_out must have tgt_in's shape"):
        s2s.loss(SRC, SRC_MASK, tgt_in, tgt_in[:, :1])
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        s2s.generate(SRC, SRC_MASK, beam_size=0)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        s2s.generate(SRC, SRC_MASK, max_len=0)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        s2s.generate(SRC, SRC_MASK, max_len=0, beam_size=2)
    with pytest.raises(ValueError, match=r"bos_id must lie in \[0, 13\)"):
        s2s.generate(SRC, SRC_MASK, bos_id=VT)
    with pytest.raises(ValueError, match=r"eos_id must lie in \[0, 13\)"):
        s2s.generate(SRC, SRC_MASK, eos_id=VT)
