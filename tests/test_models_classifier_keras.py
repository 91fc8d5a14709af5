"""Each course model is one Classifier statement with exactly Keras 3's parameter count.

``KERAS_BACKEND=jax`` is set by conftest.py. V = 8185 is the TFDS ``imdb_reviews/subwords8k``
vocabulary the course uses with its bidirectional and convolutional models.
"""

import pytest
from flax import nnx

import seqjax as sj

keras = pytest.importorskip("keras")
L = keras.layers

V = 8185
MAXLEN = 120


def keras_count(*layers, steps=MAXLEN):
    """Keras' ``count_params()`` of ``Sequential(layers)`` on input ``[None, steps]``: the sum
    over its layers, each built from the previous one's output shape as ``Sequential.build``
    does (without tracing a symbolic call, which takes seconds per model)."""
    shape = (None, steps)
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return sum(layer.count_params() for layer in layers)


def seqjax_count(**kwargs):
    # abstract init: only the shapes are needed, and eager init compiles every initializer
    model = nnx.eval_shape(lambda: sj.models.Classifier(**kwargs, rngs=nnx.Rngs(0)))
    return sj.models.count_params(model)


# name: (Keras layers, the same model as one Classifier statement)
MODELS = {
    "imdb_lstm": (
        lambda: [L.Embedding(10_000, 16), L.LSTM(32), L.Dense(1, activation="sigmoid")],
        dict(vocab_size=10_000, embed_dim=16, encoder="lstm", units=32)),
    "imdb_simple_rnn": (
        lambda: [L.Embedding(10_000, 16), L.SimpleRNN(32), L.Dense(1, activation="sigmoid")],
        dict(vocab_size=10_000, embed_dim=16, encoder="simple_rnn", units=32)),
    "imdb_gru": (
        lambda: [L.Embedding(10_000, 16), L.GRU(32), L.Dense(1, activation="sigmoid")],
        dict(vocab_size=10_000, embed_dim=16, encoder="gru", units=32)),
    "subwords_bilstm64": (
        lambda: [L.Embedding(V, 64), L.Bidirectional(L.LSTM(64)),
                 L.Dense(64, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=64, encoder="lstm", units=64, bidirectional=True,
             head=(64,))),
    "subwords_stacked_bilstm": (
        lambda: [L.Embedding(V, 64), L.Bidirectional(L.LSTM(64, return_sequences=True)),
                 L.Bidirectional(L.LSTM(32)), L.Dense(64, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=64, encoder="lstm", units=(64, 32), bidirectional=True,
             head=(64,))),
    "subwords_average": (
        lambda: [L.Embedding(V, 16), L.GlobalAveragePooling1D(),
                 L.Dense(24, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=16, encoder="average", head=(24,))),
    "subwords_max": (
        lambda: [L.Embedding(V, 16), L.GlobalMaxPooling1D(),
                 L.Dense(24, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=16, encoder="max", head=(24,))),
    "subwords_bilstm32": (
        lambda: [L.Embedding(V, 16), L.Bidirectional(L.LSTM(32)),
                 L.Dense(24, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=16, encoder="lstm", units=32, bidirectional=True,
             head=(24,))),
    "subwords_conv1d": (
        lambda: [L.Embedding(V, 16), L.Conv1D(128, 5, activation="relu"),
                 L.GlobalAveragePooling1D(), L.Dense(24, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=16, encoder="conv1d", filters=128, kernel_size=5,
             head=(24,))),
    "subwords_conv1d_max": (
        lambda: [L.Embedding(V, 16), L.Conv1D(128, 5, activation="relu"),
                 L.GlobalMaxPooling1D(), L.Dense(24, activation="relu"), L.Dense(1)],
        dict(vocab_size=V, embed_dim=16, encoder="conv1d", filters=128, kernel_size=5,
             pooling="max", head=(24,))),
    "imdb_flatten": (
        lambda: [L.Embedding(10_000, 16), L.Flatten(), L.Dense(6, activation="relu"),
                 L.Dense(1, activation="sigmoid")],
        dict(vocab_size=10_000, embed_dim=16, encoder="flatten", maxlen=MAXLEN, head=(6,))),
    "stacked_gru_dropout": (
        lambda: [L.Embedding(10_000, 32), L.GRU(32, return_sequences=True), L.Dropout(0.5),
                 L.GRU(64), L.Dense(1)],
        dict(vocab_size=10_000, embed_dim=32, encoder="gru", units=(32, 64), dropout=0.5)),
    "multiclass_average": (
        lambda: [L.Embedding(1000, 16), L.GlobalAveragePooling1D(),
                 L.Dense(24, activation="relu"), L.Dense(6, activation="softmax")],
        dict(vocab_size=1000, embed_dim=16, encoder="average", head=(24,), num_classes=6)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_param_count_equals_keras(name):
    keras_layers, kwargs = MODELS[name]
    assert seqjax_count(**kwargs) == keras_count(*keras_layers())


def test_keras_count_equals_a_built_sequential():
    layers = MODELS["subwords_stacked_bilstm"][0]
    model = keras.Sequential([keras.Input((MAXLEN,), dtype="int32"), *layers()])
    assert keras_count(*layers()) == model.count_params()


@pytest.mark.parametrize("cell, gates", [("min_gru", 2), ("min_lstm", 3)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_min_cell_param_counts(cell, gates, bidirectional):
    """minGRU (z, h~) and minLSTM (f, i, h~): one input kernel and bias per gate, no w_h."""
    e, u, head = 16, 32, 24
    directions = 2 if bidirectional else 1
    expected = (V * e + directions * gates * (e * u + u)
                + (directions * u * head + head) + (head + 1))
    assert expected > V * e
    assert seqjax_count(vocab_size=V, embed_dim=e, encoder=cell, units=u,
                        bidirectional=bidirectional, head=(head,)) == expected
