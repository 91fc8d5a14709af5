"""seqjax.models.Classifier: every encoder, masking, errors, configs, save/load, learning."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.models.classifier import ENCODERS

V, E = 13, 6

# One small model per encoder family: every recurrent cell, bidirectional, stacked, baselines.
CONFIGS = {
    "simple_rnn": dict(encoder="simple_rnn", units=5),
    "lstm": dict(encoder="lstm", units=5),
    "gru": dict(encoder="gru", units=5),
    "min_gru": dict(encoder="min_gru", units=5),
    "min_lstm": dict(encoder="min_lstm", units=5),
    "bi_lstm": dict(encoder="lstm", units=5, bidirectional=True),
    "stacked_bi_gru": dict(encoder="gru", units=(5, 4), bidirectional=True, head=(7,)),
    "stacked_min_lstm": dict(encoder="min_lstm", units=(5, 4), dropout=0.2),
    "average": dict(encoder="average", head=(7,)),
    "max": dict(encoder="max", head=(7,)),
    "conv1d": dict(encoder="conv1d", filters=4, kernel_size=3, head=(7,)),
    "conv1d_max": dict(encoder="conv1d", filters=4, kernel_size=2, pooling="max"),
    "flatten": dict(encoder="flatten", maxlen=6),
    "multiclass": dict(encoder="gru", units=5, num_classes=3),
}
PADDING_INVARIANT = [name for name in CONFIGS if name != "flatten"]


def build(name, seed=0, **overrides):
    kwargs = dict(vocab_size=V, embed_dim=E, **CONFIGS[name])
    kwargs.update(overrides)
    return sj.models.Classifier(**kwargs, rngs=nnx.Rngs(seed))


def sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, V, size=n).tolist() for n in lengths]


def pad(seqs, steps, where):
    """Token ids [B, steps] (0 = padding) and the mask, padded ``pre`` or ``post``."""
    tokens = np.zeros((len(seqs), steps), np.int32)
    for row, seq in enumerate(seqs):
        if where == "post":
            tokens[row, :len(seq)] = seq
        else:
            tokens[row, steps - len(seq):] = seq
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


def test_every_encoder_is_covered():
    assert {CONFIGS[n]["encoder"] for n in CONFIGS} == set(ENCODERS)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_shape_and_finite(name):
    model = build(name)
    model.eval()
    tokens, mask = pad(sequences([6, 3, 4]), 6, "post")
    logits = model(tokens, mask)
    expected = (3,) if model.config.num_classes == 1 else (3, model.config.num_classes)
    assert logits.shape == expected
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("name", PADDING_INVARIANT)
def test_more_padding_pre_or_post_leaves_logits_unchanged(name):
    model = build(name, seed=1)
    model.eval()
    seqs = sequences([5, 3, 4, 1 if "conv1d" not in name else 3], seed=2)
    reference = model(*pad(seqs, 5, "post"))
    assert not np.allclose(reference[0], reference[1])  # the rows differ: the test can fail
    for steps in (5, 9):
        for where in ("pre", "post"):
            np.testing.assert_allclose(model(*pad(seqs, steps, where)), reference, rtol=1e-5,
                                       atol=1e-6, err_msg=f"{name}: {where}-padded to {steps}")


def test_flatten_zeroes_padding():
    """Flatten keeps positions (pre and post padding differ, as in Keras), padding adds nothing."""
    model = build("flatten", seed=3)
    seqs = sequences([6, 2, 4], seed=4)
    tokens, mask = pad(seqs, 6, "post")
    other_pad = jnp.where(mask, tokens, 7)  # a different id at the padded steps
    np.testing.assert_allclose(model(other_pad, mask), model(tokens, mask), rtol=1e-6)
    assert not np.allclose(model(*pad(seqs, 6, "pre"))[1], model(tokens, mask)[1])


@pytest.mark.parametrize("name", ["lstm", "bi_lstm", "average", "max", "conv1d"])
def test_use_mask_false_reads_the_padding(name):
    """As Keras without mask_zero: pad embeddings enter the encoder, so padding changes logits."""
    masked, unmasked = build(name, seed=5), build(name, seed=5, use_mask=False)
    seqs = sequences([3, 2, 3], seed=6)
    short, long = pad(seqs, 3, "pre"), pad(seqs, 7, "pre")
    np.testing.assert_allclose(masked(*short), masked(*long), rtol=1e-5, atol=1e-6)
    assert not np.allclose(unmasked(*short), unmasked(*long), atol=1e-4)
    # Unmasked = masked with every step marked real: the mask is then ignored.
    all_real = jnp.ones_like(long[1])
    np.testing.assert_allclose(unmasked(*long), masked(long[0], all_real), rtol=1e-5, atol=1e-6)


def test_pooling_counts_only_valid_steps():
    model = build("average")
    tokens, mask = pad(sequences([4, 2]), 6, "post")
    emb = model.embed(tokens)
    pooled = model.encode(tokens, mask)
    np.testing.assert_allclose(pooled[1], emb[1, :2].mean(0), rtol=1e-6)
    model = build("max")
    np.testing.assert_allclose(model.encode(tokens, mask)[1], emb[1, :2].max(0), rtol=1e-6)
    # a row with no valid step pools to zeros (not NaN / -inf)
    empty = jnp.zeros_like(mask).at[0].set(True)
    assert bool(jnp.all(model.encode(tokens, empty)[1] == 0))


def test_conv1d_counts_only_windows_on_valid_steps():
    model = build("conv1d", seed=7)   # kernel_size 3
    tokens, mask = pad(sequences([5, 2], seed=8), 6, "post")
    windows = jax.nn.relu(model.conv(model.embed(tokens)))          # [B, 4, F]
    encoded = model.encode(tokens, mask)
    np.testing.assert_allclose(encoded[0], windows[0, :3].mean(0), rtol=1e-5)  # 5 - 3 + 1
    assert bool(jnp.all(encoded[1] == 0))                            # shorter than the kernel


def test_default_embedding_init_is_keras_uniform():
    model = sj.models.Classifier(vocab_size=500, embed_dim=40, encoder="average",
                                 rngs=nnx.Rngs(0))
    table = np.asarray(model.embed.embedding[...])
    assert table.min() >= -0.05 and table.max() <= 0.05 and table.std() > 0.02


def test_loss_matches_train_losses_and_ignores_empty_rows():
    model = build("gru")
    tokens, mask = pad(sequences([4, 3, 2]), 4, "post")
    labels = jnp.array([1, 0, 1])
    logits = model(tokens, mask)
    expected = sj.train.sigmoid_binary_cross_entropy(logits, labels)
    np.testing.assert_allclose(model.loss(tokens, mask, labels), expected, rtol=1e-6)
    empty = mask.at[2].set(False)
    np.testing.assert_allclose(
        model.loss(tokens, empty, labels),
        sj.train.sigmoid_binary_cross_entropy(logits[:2], labels[:2]), rtol=1e-6)
    multi = build("multiclass")
    labels = jnp.array([2, 0, 1])
    np.testing.assert_allclose(
        multi.loss(tokens, mask, labels),
        sj.train.softmax_cross_entropy(multi(tokens, mask), labels), rtol=1e-6)
    loss, metrics = sj.models.Classifier.loss_fn(multi, (tokens, mask, labels), None)
    assert float(loss) == pytest.approx(float(multi.loss(tokens, mask, labels)))
    assert set(metrics) == {"accuracy"}


# ----------------------------------------------------------------------------- errors

BASE = dict(vocab_size=V, embed_dim=E)


@pytest.mark.parametrize("kwargs, match", [
    (dict(encoder="transformer", units=4), "encoder must be one of"),
    (dict(encoder="lstm"), "units is required"),
    (dict(encoder="lstm", units=()), "units must name at least one layer"),
    (dict(encoder="gru", units=(4, 0)), "units must hold positive ints"),
    (dict(encoder="flatten"), "encoder='flatten' needs maxlen"),
    (dict(encoder="average", maxlen=10), "maxlen applies to encoder='flatten' only"),
    (dict(encoder="lstm", units=4, num_classes=0), "num_classes must be"),
    (dict(encoder="lstm", units=4, num_classes=1.5), "num_classes must be"),
    (dict(encoder="lstm", units=4, head=(8, -1)), "head must be"),
    (dict(encoder="lstm", units=4, head="wide"), "head must be"),
    (dict(encoder="lstm", units=(4, 4), dropout=1.0), "dropout must be"),
    (dict(encoder="lstm", units=4, dropout=0.3), "dropout applies between stacked"),
    (dict(encoder="average", dropout=0.3), "dropout applies between stacked"),
    (dict(encoder="conv1d", kernel_size=3), "needs filters and kernel_size"),
    (dict(encoder="conv1d", filters=0, kernel_size=3), "filters must be"),
    (dict(encoder="conv1d", filters=4, kernel_size=-2), "kernel_size must be"),
    (dict(encoder="conv1d", filters=4, kernel_size=2, pooling="sum"), "pooling must be"),
    (dict(encoder="lstm", units=4, filters=8), "filters applies to encoder='conv1d' only"),
    (dict(encoder="average", units=4), "units applies to the recurrent encoders"),
    (dict(encoder="max", bidirectional=True), "bidirectional applies to the recurrent"),
    (dict(encoder="lstm", units=4, vocab_size=0), "vocab_size must be"),
    (dict(encoder="lstm", units=4, embed_dim=2.5), "embed_dim must be"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sj.models.Classifier(**{**BASE, **kwargs}, rngs=nnx.Rngs(0))


def test_bad_inputs_raise():
    model = build("lstm")
    tokens, mask = pad(sequences([3, 2]), 4, "post")
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 13\)"):
        model(tokens.at[0, 0].set(V), mask)
    with pytest.raises(ValueError, match=r"tokens must lie in"):
        model(tokens.at[0, 0].set(-1), mask)
    with pytest.raises(ValueError, match="mask must have the tokens' shape"):
        model(tokens, mask[:, :3])
    with pytest.raises(ValueError, match="mask must be bool"):
        model(tokens, mask.astype(jnp.int32))
    with pytest.raises(ValueError, match=r"tokens must be \[B, T\]"):
        model(tokens[0], mask[0])
    with pytest.raises(ValueError, match="tokens must hold integer"):
        model(tokens.astype(jnp.float32), mask)
    # ids closed over by a jitted function are concrete: checked, not traced (no error here)
    np.testing.assert_allclose(jax.jit(lambda: model(tokens, mask))(), model(tokens, mask),
                               rtol=1e-6)
    bad = tokens.at[0, 0].set(V)
    with pytest.raises(ValueError, match=r"tokens must lie in"):
        jax.jit(lambda: model(bad, mask))()
    with pytest.raises(ValueError, match="tokens must have maxlen=6 steps"):
        build("flatten")(tokens, mask)
    with pytest.raises(ValueError, match="at least kernel_size=3 steps"):
        build("conv1d")(tokens[:, :2], mask[:, :2])


# ----------------------------------------------------------------------------- configs, save/load


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_json_round_trip(name):
    model = build(name)
    text = json.dumps(dataclasses.asdict(model.config))
    again = sj.models.Classifier.from_config(json.loads(text), rngs=nnx.Rngs(1))
    assert again.config == model.config
    assert sj.models.count_params(again) == sj.models.count_params(model)
    assert sj.models.config_from_json(sj.models.config_to_json(model)).config == model.config


def test_config_keeps_the_arguments():
    model = build("stacked_bi_gru")
    assert model.config.units == (5, 4) and model.config.head == (7,)
    assert build("lstm").config.units == 5
    listed = sj.models.Classifier(vocab_size=V, embed_dim=E, encoder="gru", units=[4, 3],
                                  head=[5], rngs=nnx.Rngs(0))
    assert listed.config.units == (4, 3) and listed.config.head == (5,)
    hash(listed.config)  # frozen and hashable


@pytest.mark.parametrize("name", ["lstm", "stacked_bi_gru", "conv1d"])
def test_save_load_gives_identical_logits(name, tmp_path):
    model = build(name, seed=11)
    model.eval()
    tokens, mask = pad(sequences([6, 4, 5], seed=12), 6, "pre")
    sj.models.save(model, tmp_path / "model")
    loaded = sj.models.load(tmp_path / "model")
    loaded.eval()
    assert type(loaded) is sj.models.Classifier and loaded.config == model.config
    np.testing.assert_array_equal(loaded(tokens, mask), model(tokens, mask))


# ----------------------------------------------------------------------------- learning

LEARNING = ["simple_rnn", "lstm", "gru", "min_gru", "min_lstm", "stacked_bi_gru", "average",
            "max", "conv1d", "flatten", "multiclass"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNING)
def test_overfits_a_tiny_batch(name):
    model = build(name, seed=21, embed_dim=8)
    seqs = sequences([6, 5, 3, 6, 4, 6, 2 if "conv1d" not in name else 3, 5], seed=22)
    tokens, mask = pad(seqs, 6, "pre")
    classes = model.config.num_classes
    labels = jax.random.randint(jax.random.key(23), (8,), 0, max(classes, 2))
    tx = optax.adam(3e-2)
    state = sj.train.TrainState.create(model, tx, seed=0)
    step = sj.train.make_train_step(sj.models.Classifier.loss_fn, tx)

    @jax.jit
    def train(state):
        def body(_, carry):
            state, _ = carry
            state, metrics = step(state, (tokens, mask, labels), jax.random.key(0))
            return state, metrics["loss"]
        return jax.lax.fori_loop(0, 300, body, (state, jnp.float32(jnp.inf)))

    state, loss = train(state)
    trained = state.merge()
    trained.eval()
    assert float(trained.loss(tokens, mask, labels)) < 0.05, (name, float(loss))


def test_trains_with_fit():
    model = build("lstm", seed=31)
    seqs = sequences([5, 3, 4, 2, 5, 1, 4, 3], seed=32)
    tokens, mask = pad(seqs, 5, "post")
    labels = jnp.array([1, 0, 1, 0, 1, 0, 1, 0])
    before = float(model.loss(tokens, mask, labels))
    batches = [sj.data.Batch(tokens, mask, labels)] * 10
    history = sj.train.fit(model, sj.models.Classifier.loss_fn, optax.adam(2e-2), batches,
                           epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert float(model.loss(tokens, mask, labels)) < before
    assert "accuracy" in history.history
