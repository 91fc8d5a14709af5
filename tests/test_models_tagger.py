"""The Tagger: learning, padding on either side, character features, config and errors."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.models import Tagger, word_chars

V, K = 30, 5
TAG_NAMES = sj.data.bio_tag_set(["LOC", "PER"])  # O B-LOC I-LOC B-PER I-PER
WORDS = ["Ada", "went", "to", "Paris", "with", "Bob", "and", "Eve", "in", "May", "x"]
CHARS = sj.data.CharTokenizer(pad_token="<PAD>", unk_token="<UNK>").fit(WORDS)


def sentences(seed, n=4, max_len=6):
    """Random sentences of words and well-formed BIO tags, lengths 1..max_len."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=n)
    lengths[0] = max_len
    words = [[WORDS[i] for i in rng.integers(0, len(WORDS), size=m)] for m in lengths]
    tags = [sj.data.iob1_to_bio([TAG_NAMES[i] for i in rng.integers(0, K, size=m)])
            for m in lengths]
    return words, [[TAG_NAMES.index(t) for t in s] for s in tags]


def batch(words, tags, padding, maxlen=None):
    ids = [[WORDS.index(w) + 1 for w in s] for s in words]
    tokens = sj.data.pad_sequences(ids, maxlen=maxlen, padding=padding)
    return (tokens, tokens != 0, sj.data.pad_sequences(tags, maxlen=maxlen, padding=padding),
            word_chars(words, CHARS, maxlen=maxlen, padding=padding))


def fit(tagger, data, steps, lr=0.03):
    tokens, mask, tags, chars = data
    use_chars = tagger.char_encoder is not None

    def loss_fn(model, b, key):
        return model.loss(b.inputs[0], b.mask, b.targets, b.inputs[1] if use_chars else None)

    one = sj.data.Batch((tokens, chars), mask, tags)
    return sj.train.fit(tagger, loss_fn, optax.adam(lr), [one] * steps, verbose=0)


@pytest.mark.parametrize("options", [
    dict(crf=True, constraints="bio", tag_names=TAG_NAMES, char_vocab_size=CHARS.vocab_size,
         char_embed_dim=6, char_units=5, cell="gru", units=(8, 8)),
    dict(crf=False, cell="lstm", units=8),
], ids=["bigru_crf_chars", "bilstm_softmax"])
def test_overfits_a_tiny_batch(options):
    data = batch(*sentences(0), padding="post")
    tokens, mask, tags, chars = data
    tagger = Tagger(vocab_size=V, num_tags=K, embed_dim=8, rngs=nnx.Rngs(0), **options)
    chars = chars if options.get("char_vocab_size") else None
    before = float(tagger.loss(tokens, mask, tags, chars))
    fit(tagger, data, steps=200)
    after = float(tagger.loss(tokens, mask, tags, chars))
    assert after < 0.01 < before
    predicted = np.asarray(tagger.predict(tokens, mask, chars))
    np.testing.assert_array_equal(predicted, tags)  # masked steps are 0 in both


@pytest.fixture(scope="module")
def char_tagger():
    tagger = Tagger(vocab_size=V, num_tags=K, embed_dim=6, units=(5, 4), dropout=0.25,
                    constraints="bio", tag_names=TAG_NAMES, char_vocab_size=CHARS.vocab_size,
                    char_embed_dim=4, char_units=3, rngs=nnx.Rngs(1))
    # Trained a little so that predictions are not all one tag.
    fit(tagger, batch(*sentences(1), padding="post"), steps=30, lr=0.05)
    tagger.eval()
    return tagger


jit_predict = nnx.jit(lambda model, tokens, mask, chars: model.predict(tokens, mask, chars))
jit_emissions = nnx.jit(lambda model, tokens, mask, chars: model(tokens, mask, chars))


@pytest.mark.parametrize("crf", [True, False])
def test_pre_and_post_padding_give_the_same_tags(char_tagger, crf):
    tagger = char_tagger if crf else Tagger(vocab_size=V, num_tags=K, embed_dim=6, units=5,
                                            crf=False, rngs=nnx.Rngs(2))
    words, tags = sentences(3, n=5)
    post, pre = batch(words, tags, "post", maxlen=7), batch(words, tags, "pre", maxlen=7)
    chars = (lambda b: b[3]) if crf else (lambda b: None)
    out = {}
    for name, b in (("post", post), ("pre", pre)):
        out[name] = (np.asarray(jit_predict(tagger, b[0], b[1], chars(b))),
                     np.asarray(jit_emissions(tagger, b[0], b[1], chars(b))),
                     float(tagger.loss(b[0], b[1], b[2], chars(b))))
    for row in range(len(words)):
        valid_post, valid_pre = post[1][row], pre[1][row]
        np.testing.assert_array_equal(out["post"][0][row][valid_post],
                                      out["pre"][0][row][valid_pre])
        np.testing.assert_allclose(out["post"][1][row][valid_post],
                                   out["pre"][1][row][valid_pre], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["post"][2], out["pre"][2], rtol=1e-5)
    for name, b in (("post", post), ("pre", pre)):  # 0 where masked, in predictions and scores
        assert not out[name][0][~b[1]].any() and not out[name][1][~b[1]].any()
    assert len(np.unique(out["post"][0][post[1]])) > 1


def test_predict_is_jit_and_eager_alike_and_zero_where_masked(char_tagger):
    words, tags = sentences(4, n=6)
    tokens, mask, _, chars = batch(words, tags, "post", maxlen=7)
    eager = np.asarray(char_tagger.predict(tokens, mask, chars))
    np.testing.assert_array_equal(eager, jit_predict(char_tagger, tokens, mask, chars))
    # Concrete inputs closed over by a jitted function are checked, not mistaken for tracers.
    closed = nnx.jit(lambda model: model.predict(tokens, mask, chars))(char_tagger)
    np.testing.assert_array_equal(eager, closed)
    assert eager.shape == tokens.shape and eager.dtype == np.int32
    assert not eager[~mask].any()
    names = [[TAG_NAMES[t] for t in row[m]] for row, m in zip(eager, mask, strict=True)]
    for row in names:  # the BIO constraint holds through the tagger
        assert all(not b.startswith("I-") or a[2:] == b[2:] for a, b in zip(["O", *row], row))


def count(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_character_features_add_a_bilstm_and_widen_the_words():
    ce, cu, units, embed, C = 4, 3, 5, 6, CHARS.vocab_size
    plain = Tagger(vocab_size=V, num_tags=K, embed_dim=embed, units=units, rngs=nnx.Rngs(0))
    with_chars = Tagger(vocab_size=V, num_tags=K, embed_dim=embed, units=units,
                        char_vocab_size=C, char_embed_dim=ce, char_units=cu, rngs=nnx.Rngs(0))
    lstm = 4 * cu * (ce + cu + 1)  # w_x [I, 4H], w_h [H, 4H], b [4H]
    wider = 2 * 4 * units * 2 * cu  # both directions of the first layer read 2 * cu more inputs
    assert count(with_chars) - count(plain) == C * ce + 2 * lstm + wider
    assert with_chars.char_encoder.out_features == 2 * cu
    words, tags = sentences(5, n=3)
    tokens, mask, _, chars = batch(words, tags, "post")
    assert chars.shape == (*tokens.shape, max(len(w) for w in WORDS))
    emissions = with_chars(tokens, mask, chars)
    assert emissions.shape == plain(tokens, mask).shape == (*tokens.shape, K)
    # The spelling changes the scores: the same word ids with other characters.
    other = with_chars(tokens, mask, np.where(chars > 0, 1, 0).astype(np.int32))
    assert not np.allclose(emissions[mask], other[mask])


def test_word_chars_line_up_with_the_padded_words():
    words = [["Ada", "went"], ["x"], []]
    for padding in ("pre", "post"):
        chars = word_chars(words, CHARS, maxlen=3, word_len=3, padding=padding)
        ids = sj.data.pad_sequences([[1] * len(s) for s in words], maxlen=3, padding=padding)
        assert chars.shape == (3, 3, 3) and chars.dtype == np.int32
        np.testing.assert_array_equal(chars.any(-1), ids != 0)
    chars = word_chars(words, CHARS, word_len=3)
    assert CHARS.decode(chars[0, 1]) == "wen"  # long words keep their first word_len chars
    with pytest.raises(ValueError, match="char_tokenizer must reserve id 0"):
        word_chars(words, sj.data.CharTokenizer().fit("Adawentx"))
    with pytest.raises(ValueError, match="word_len"):
        word_chars(words, CHARS, word_len=0)


def test_dropout_only_in_train_mode():
    tagger = Tagger(vocab_size=V, num_tags=K, embed_dim=6, units=5, dropout=0.5, crf=False,
                    rngs=nnx.Rngs(0))
    tokens = jnp.arange(1, 9).reshape(2, 4)
    tagger.train()
    assert not np.allclose(tagger(tokens), tagger(tokens))
    tagger.eval()
    np.testing.assert_array_equal(tagger(tokens), tagger(tokens))


def test_config_json_round_trip_and_save_load(char_tagger, tmp_path):
    config = char_tagger.config
    assert config.units == (5, 4) and config.tag_names == tuple(TAG_NAMES)
    rebuilt = sj.models.config_from_json(sj.models.config_to_json(char_tagger))
    assert isinstance(rebuilt, Tagger) and rebuilt.config == config
    assert Tagger.from_config(config, rngs=nnx.Rngs(9)).config == config
    sj.models.save(char_tagger, tmp_path / "tagger")
    loaded = sj.models.load(tmp_path / "tagger")
    loaded.eval()
    words, tags = sentences(6, n=5)
    tokens, mask, tags, chars = batch(words, tags, "pre")
    np.testing.assert_array_equal(loaded.predict(tokens, mask, chars),
                                  char_tagger.predict(tokens, mask, chars))
    np.testing.assert_allclose(loaded.loss(tokens, mask, tags, chars),
                               char_tagger.loss(tokens, mask, tags, chars), rtol=1e-6)


def test_errors_name_the_argument(char_tagger):
    tokens = jnp.array([[1, 2, 3], [4, 5, 0]])
    mask, tags = tokens != 0, jnp.zeros((2, 3), jnp.int32)
    chars = jnp.ones((2, 3, 4), jnp.int32)
    with pytest.raises(ValueError, match=r"tags must lie in \[0, 5\) \(num_tags\)"):
        char_tagger.loss(tokens, mask, tags.at[0, 0].set(K), chars)
    softmax = Tagger(vocab_size=V, num_tags=K, embed_dim=4, units=3, crf=False, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="tags must lie"):
        softmax.loss(tokens, mask, tags.at[1, 2].set(7))
    with pytest.raises(ValueError, match=r"tags must be \[B, T\]"):
        softmax.loss(tokens, mask, tags[:, :2])
    with pytest.raises(ValueError, match="mask must have the tokens' shape"):
        softmax.predict(tokens, mask[:, :2])
    with pytest.raises(ValueError, match=r"chars must be \[B, T, C\]"):
        char_tagger.predict(tokens, mask, chars[:, :2])
    with pytest.raises(ValueError, match=r"chars must be \[B, T, C\]"):
        char_tagger.predict(tokens, mask, chars[..., 0])
    with pytest.raises(ValueError, match="chars must lie"):
        char_tagger.predict(tokens, mask, chars.at[0, 0, 0].set(CHARS.vocab_size))
    with pytest.raises(ValueError, match="chars are required"):
        char_tagger.predict(tokens, mask)
    with pytest.raises(ValueError, match="chars given"):
        softmax.predict(tokens, mask, chars)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 30\)"):
        softmax.predict(tokens.at[0, 0].set(V), mask)
    with pytest.raises(ValueError, match="cell must be one of"):
        Tagger(vocab_size=V, num_tags=K, cell="transformer", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="units must name at least one layer"):
        Tagger(vocab_size=V, num_tags=K, units=(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="constraints need crf=True"):
        Tagger(vocab_size=V, num_tags=K, crf=False, constraints="bio", tag_names=TAG_NAMES,
               rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_tags must be a positive int"):
        Tagger(vocab_size=V, num_tags=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="tag_names must name num_tags=4"):
        Tagger(vocab_size=V, num_tags=4, crf=False, tag_names=TAG_NAMES, rngs=nnx.Rngs(0))


def test_readme_example_runs(capsys):
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                 if "sj.models.Tagger(" in b)
    namespace = {}
    exec(compile(block, "README tagger example", "exec"), namespace)
    tagger, tokens, mask = namespace["tagger"], namespace["tokens"], namespace["mask"]
    # It learned the two sentences.
    np.testing.assert_array_equal(tagger.predict(tokens, mask), namespace["tags"])
    assert "[[3 4 0 0]" in capsys.readouterr().out
