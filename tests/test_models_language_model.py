"""LanguageModel: streaming carry, log_prob, loss, sampling, truncated BPTT, config and errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.models import LanguageModel

V = 12


def make_lm(**kwargs):
    args = dict(vocab_size=V, embed_dim=8, units=16, num_layers=2, rngs=nnx.Rngs(0)) | kwargs
    return LanguageModel(**args)


def random_tokens(seed, shape, low=1):
    return jnp.asarray(np.random.default_rng(seed).integers(low, V, shape), jnp.int32)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carry_streams_across_chunks(cell):
    lm = make_lm(cell=cell)
    tokens = random_tokens(0, (3, 9))
    whole, carry_whole = lm(tokens)
    first, carry = lm(tokens[:, :4])
    second, carry = lm(tokens[:, 4:], carry=carry)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), carry, carry_whole)
    assert whole.shape == (3, 9, V) and len(carry) == 2


def test_log_prob_is_the_sum_of_teacher_forced_log_softmax():
    lm = make_lm()
    tokens = random_tokens(1, (4, 7))
    mask = jnp.arange(7)[None, :] < jnp.array([[7], [5], [2], [1]])
    logits, _ = lm(tokens, mask)
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    expected = [sum(log_probs[b, t - 1, int(tokens[b, t])] for t in range(1, int(mask[b].sum())))
                for b in range(4)]
    np.testing.assert_allclose(lm.log_prob(tokens, mask), expected, rtol=1e-5, atol=1e-6)
    # the loss is the mean negative log-likelihood over the same predictions
    count = int((mask.sum(1) - 1).clip(0).sum())
    np.testing.assert_allclose(lm.loss(tokens, mask), -sum(expected) / count, rtol=1e-5)


def test_padding_does_not_change_log_prob():
    lm = make_lm()
    tokens = random_tokens(2, (1, 5))
    pad = jnp.zeros((1, 3), jnp.int32)
    plain = lm.log_prob(tokens)
    post = lm.log_prob(jnp.concatenate([tokens, pad], 1),
                       jnp.arange(8)[None, :] < 5)
    pre = lm.log_prob(jnp.concatenate([pad, tokens], 1),
                      jnp.arange(8)[None, :] >= 3)
    np.testing.assert_allclose(post, plain, rtol=1e-5)
    np.testing.assert_allclose(pre, plain, rtol=1e-5)


def test_loss_with_targets_matches_the_shifted_loss():
    lm = make_lm()
    tokens = random_tokens(3, (2, 9))
    shifted = lm.loss(tokens)
    windowed = lm.loss(tokens[:, :-1], targets=tokens[:, 1:])
    np.testing.assert_allclose(windowed, shifted, rtol=1e-6)


def test_greedy_sample_continues_the_prompt_like_a_python_loop():
    lm = make_lm()
    prompt = random_tokens(4, (2, 3))
    out = lm.sample(jax.random.key(0), prompt, max_len=5, temperature=0.0)
    sequence = prompt
    for _ in range(5):
        logits, _ = lm(sequence)
        sequence = jnp.concatenate([sequence, jnp.argmax(logits[:, -1], -1)[:, None]], 1)
    np.testing.assert_array_equal(out, sequence[:, 3:])
    # a pre-padded prompt continues like the unpadded one
    padded = jnp.concatenate([jnp.zeros((2, 2), jnp.int32), prompt], 1)
    again = lm.sample(jax.random.key(0), padded, max_len=5, temperature=0.0,
                      prompt_mask=jnp.arange(5)[None, :].repeat(2, 0) >= 2)
    np.testing.assert_array_equal(again, out)


def test_sample_never_emits_unk_when_banned_and_stops_at_eos():
    tok = sj.data.CharTokenizer(unk_token="<UNK>", eos_token="<EOS>").fit("hello world")
    lm = LanguageModel(vocab_size=tok.vocab_size, embed_dim=8, units=16, num_layers=1,
                       rngs=nnx.Rngs(0))
    lm.head.bias[...] = lm.head.bias[...].at[tok.unk_id].set(5.0)  # <UNK> would dominate
    prompt = jnp.asarray([tok.encode("he")] * 16)
    free = np.asarray(lm.sample(jax.random.key(1), prompt, max_len=20))
    assert (free == tok.unk_id).mean() > 0.5
    banned = np.asarray(lm.sample(jax.random.key(1), prompt, max_len=20,
                                  banned_ids=(tok.unk_id,)))
    assert not (banned == tok.unk_id).any()
    lm.head.bias[...] = lm.head.bias[...].at[tok.eos_id].set(3.0)
    stopped = np.asarray(lm.sample(jax.random.key(2), prompt, max_len=20,
                                   eos_id=tok.eos_id, banned_ids=(tok.unk_id,)))
    ends = stopped == tok.eos_id
    assert ends.any(1).all()
    assert (stopped[np.cumsum(ends, 1) - ends > 0] == 0).all()


def test_sample_jitted_equals_eager_and_same_key_same_sample():
    lm = make_lm(dropout=0.3)  # in train mode: sampling turns dropout off by itself
    prompt = random_tokens(5, (3, 2))
    key = jax.random.key(3)
    eager = lm.sample(key, prompt, max_len=6, top_k=4, temperature=0.8)
    jitted = nnx.jit(lambda m, k, p: m.sample(k, p, max_len=6, top_k=4, temperature=0.8))
    np.testing.assert_array_equal(jitted(lm, key, prompt), eager)
    np.testing.assert_array_equal(lm.sample(key, prompt, max_len=6, top_k=4, temperature=0.8),
                                  eager)
    assert eager.shape == (3, 6)


def test_truncated_bptt_streams_the_carry_across_chunks():
    # The token after "1 1 1" is 2 or 3, decided by the special token 4 steps back; chunks of 6
    # cut that dependency at every chunk boundary, so only a streamed carry can predict it there.
    pattern = np.array([1, 1, 1, 2, 1, 1, 1, 3])
    rows = np.stack([np.roll(np.tile(pattern, 160), -i) for i in range(8)])
    lm = LanguageModel(vocab_size=4, embed_dim=8, units=32, num_layers=1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(lm, optax.adam(2e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(lm, optimizer, inputs, targets, carry):
        def loss_fn(lm):
            return lm.loss(inputs, targets=targets, carry=carry, return_carry=True)

        (loss, carry), grads = nnx.value_and_grad(loss_fn, has_aux=True)(lm)
        optimizer.update(lm, grads)
        return loss, jax.lax.stop_gradient(carry)

    chunk, carry = 6, lm.rnn.initial_carry(8)
    for i in range(0, 1140, chunk):
        _, carry = train_step(lm, optimizer, rows[:, i:i + chunk], rows[:, i + 1:i + chunk + 1],
                              carry)

    def held_out_loss(stream_carry):
        losses, carry = [], None
        for i in range(1140, 1260, chunk):
            loss, carry = lm.loss(rows[:, i:i + chunk], targets=rows[:, i + 1:i + chunk + 1],
                                  carry=carry if stream_carry else None, return_carry=True)
            losses.append(float(loss))
        return np.mean(losses[1:])

    assert held_out_loss(stream_carry=True) < 0.02
    assert held_out_loss(stream_carry=False) > 0.2


def test_overfits_a_tiny_batch_with_fit():
    lm = make_lm(num_layers=1, units=32)
    tokens = random_tokens(6, (4, 10))

    def loss_fn(model, batch, key):
        return model.loss(*batch)

    sj.train.fit(lm, loss_fn, optax.adam(3e-2), [(tokens, tokens > 0)] * 150, verbose=0)
    assert float(lm.loss(tokens)) < 0.05


def test_config_round_trip_and_save_load(tmp_path):
    lm = make_lm(cell="gru", dropout=0.1)
    text = sj.models.config_to_json(lm)
    assert json.loads(text)["config"] == dataclasses.asdict(lm.config)
    assert sj.models.config_from_json(text).config == lm.config
    assert LanguageModel.from_config(json.loads(text)["config"], rngs=nnx.Rngs(1)).config \
        == lm.config
    sj.models.save(lm, tmp_path)
    loaded = sj.models.load(tmp_path)
    tokens = random_tokens(7, (2, 5))
    np.testing.assert_array_equal(loaded.log_prob(tokens), lm.log_prob(tokens))
    # numpy ints (e.g. a tokenizer's vocab_size) become plain JSON ints
    numpy_sized = make_lm(vocab_size=np.int64(V), units=np.int32(8))
    assert json.loads(sj.models.config_to_json(numpy_sized))["config"]["vocab_size"] == V


@pytest.mark.parametrize("kwargs, message", [
    (dict(cell="lstmm"), "cell must be one of"),
    (dict(num_layers=0), "num_layers must be a positive int"),
    (dict(units=0), "units must be a positive int"),
    (dict(vocab_size=0), "vocab_size must be a positive int"),
    (dict(dropout=1.0), "dropout must lie in"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_lm(**kwargs)


def test_input_errors():
    lm = make_lm(num_layers=1)
    tokens = random_tokens(8, (2, 4))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 12\)"):
        lm(tokens.at[0, 0].set(V))
    with pytest.raises(ValueError, match="mask must have the tokens' shape"):
        lm(tokens, jnp.ones((2, 3), bool))
    with pytest.raises(ValueError, match="targets must have the tokens' shape"):
        lm.loss(tokens, targets=tokens[:, :3])
    with pytest.raises(ValueError, match="prompt must hold at least one token"):
        lm.sample(jax.random.key(0), tokens[:, :0])
    with pytest.raises(ValueError, match=r"prompt must lie in"):
        lm.sample(jax.random.key(0), -tokens)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        lm.sample(jax.random.key(0), tokens, max_len=0)
    with pytest.raises(ValueError, match="pre-padded"):
        lm.sample(jax.random.key(0), tokens, prompt_mask=jnp.array([[1, 1, 1, 0]] * 2, bool))
