"""seqjax.models.summary / count_params: a Keras-like table of any nnx.Module."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import seqjax as sj
from seqjax.models.classifier import GlobalAveragePooling1D


def param_sizes(model):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def rows(table):
    """``(indent, name, type, shape, params)`` per layer row."""
    lines = table.splitlines()
    rule = [i for i, line in enumerate(lines) if line and set(line) == {"="}]
    assert len(rule) == 2, table
    out = []
    for line in lines[rule[0] + 1:rule[1]]:
        match = re.match(r"^ ( *)(\S+) \((\w+)\)\s+(.*?)\s+([\d,]+)$", line)
        if match:
            indent, name, kind, shape, params = match.groups()
            out.append((len(indent) // 2, name, kind, shape, int(params.replace(",", ""))))
    return out


def totals(table):
    return {key: int(value.replace(",", "")) for key, value in
            re.findall(r"^(Total|Trainable|Non-trainable) params: ([\d,]+)$", table, re.M)}


@pytest.fixture(scope="module")
def stacked():
    clf = sj.models.Classifier(vocab_size=50, embed_dim=8, encoder="lstm", units=(6, 4),
                               bidirectional=True, dropout=0.1, head=(5,), rngs=nnx.Rngs(0))
    tokens = jnp.ones((3, 7), jnp.int32)
    return clf, tokens, sj.models.summary(clf, tokens, tokens != 0)


def test_totals_equal_the_sum_of_param_sizes(stacked):
    clf, _, table = stacked
    assert totals(table) == {"Total": param_sizes(clf), "Trainable": param_sizes(clf),
                             "Non-trainable": 0}
    assert sj.models.count_params(clf) == param_sizes(clf)
    assert table.startswith('Model: "Classifier"')


def test_a_keras_like_row_per_layer(stacked):
    clf, _, table = stacked
    got = rows(table)
    assert [(depth, name, kind) for depth, name, kind, _, _ in got] == [
        (0, "embed", "Embed"),
        (0, "encoder", "RecurrentStack"),
        (1, "layers.0", "Bidirectional"),
        (1, "dropout", "Dropout"),
        (1, "layers.1", "Bidirectional"),
        (0, "head.0", "Linear"),
        (0, "out", "Linear"),
    ]
    by_name = {name: (shape, params) for _, name, _, shape, params in got}
    assert by_name["embed"] == ("(3, 7, 8)", 50 * 8)
    assert by_name["head.0"] == ("(3, 5)", 8 * 5 + 5)
    assert by_name["out"] == ("(3, 1)", 5 + 1)
    assert by_name["dropout"] == ("(3, 7, 12)", 0)
    # (carries, ys): the carries as a group, n equal shapes as "n x shape"
    assert by_name["layers.0"][0] == "[4 x (3, 6)], (3, 7, 12)"
    assert by_name["layers.1"][0] == "[4 x (3, 4)], (3, 7, 8)"
    lstm = lambda i, u: 2 * 4 * (i * u + u * u + u)  # noqa: E731  (bidirectional LSTM)
    assert by_name["layers.0"][1] == lstm(8, 6)
    assert by_name["layers.1"][1] == lstm(12, 4)
    assert by_name["encoder"][1] == lstm(8, 6) + lstm(12, 4)
    # top-level rows add up to the total
    assert sum(params for depth, *_, params in got if depth == 0) == param_sizes(clf)
    # the encoder returns (carries, ys): every array's shape, ys last
    assert "(3, 7, 8)" in table.split("layers.1 (Bidirectional)")[1].split("head.0")[0]


def test_depth_limits_the_rows(stacked):
    clf, tokens, _ = stacked
    top = rows(sj.models.summary(clf, tokens, tokens != 0, depth=1))
    assert [name for _, name, *_ in top] == ["embed", "encoder", "head.0", "out"]


@pytest.mark.parametrize("kwargs, kinds", [
    (dict(encoder="conv1d", filters=4, kernel_size=3),
     ["Embed", "Conv", "GlobalAveragePooling1D", "Linear"]),
    (dict(encoder="max"), ["Embed", "GlobalMaxPooling1D", "Linear"]),
    (dict(encoder="flatten", maxlen=7), ["Embed", "Flatten", "Linear"]),
])
def test_baseline_layers_show_as_keras_does(kwargs, kinds):
    clf = sj.models.Classifier(vocab_size=20, embed_dim=4, rngs=nnx.Rngs(0), **kwargs)
    tokens = jnp.ones((2, 7), jnp.int32)
    table = sj.models.summary(clf, tokens, tokens != 0)
    assert [kind for _, _, kind, _, _ in rows(table)] == kinds
    assert totals(table)["Total"] == param_sizes(clf)


class Custom(nnx.Module):
    """Any nnx.Module: batch statistics, an unused submodule, a second method."""

    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.pool = GlobalAveragePooling1D()
        self.spare = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, xs, *, scale=1.0):
        return self.pool(self.norm(self.dense(xs)) * scale)

    def project(self, xs):
        return self.spare(self.dense(xs))


def test_any_module_with_non_trainable_variables_and_other_methods():
    model = Custom(nnx.Rngs(0))
    xs = jnp.ones((2, 5, 3))
    table = sj.models.summary(model, xs, scale=2.0)   # a non-array keyword passes through
    got = {name: (kind, shape, params) for _, name, kind, shape, params in rows(table)}
    assert got["dense"] == ("Linear", "(2, 5, 4)", 16)
    assert got["norm"] == ("BatchNorm", "(2, 5, 4)", 8)     # scale, bias; mean, var not trainable
    assert got["pool"] == ("GlobalAveragePooling1D", "(2, 4)", 0)
    assert got["spare"] == ("Linear", "-", 10)              # not called by __call__
    assert totals(table) == {"Total": 34 + 8, "Trainable": 34, "Non-trainable": 8}
    projected = rows(sj.models.summary(model, xs, method="project"))
    assert [(name, shape) for _, name, _, shape, _ in projected] == [
        ("dense", "(2, 5, 4)"), ("spare", "(2, 5, 2)"), ("norm", "-")]
    as_function = sj.models.summary(model, xs, method=lambda m, x: m.spare(m.dense(x)))
    assert rows(as_function) == projected


def test_nothing_is_left_patched_and_the_model_is_unchanged():
    model = Custom(nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(model))
    calls = {t: t.__dict__.get("__call__") for t in (nnx.Linear, nnx.BatchNorm, Custom)}
    sj.models.summary(model, jnp.ones((2, 5, 3)))
    assert {t: t.__dict__.get("__call__") for t in calls} == calls
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model), before)
    with pytest.raises(RuntimeError):
        sj.models.summary(model, jnp.ones((2, 5, 3)),
                          method=lambda m, x: (_ for _ in ()).throw(RuntimeError("boom")))
    assert {t: t.__dict__.get("__call__") for t in calls} == calls


def test_bad_arguments_raise():
    model = Custom(nnx.Rngs(0))
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match="model must be an nnx.Module"):
        sj.models.summary(object(), xs)
    with pytest.raises(ValueError, match="method: Custom has no method 'decode'"):
        sj.models.summary(model, xs, method="decode")
    with pytest.raises(ValueError, match="depth must be a positive int"):
        sj.models.summary(model, xs, depth=0)


class Chain(nnx.Module):
    """Variables held by the model itself, as a CRF holds its transitions."""

    def __init__(self, rngs):
        self.transitions = nnx.Param(jnp.zeros((3, 3)))
        self.emit = nnx.Linear(2, 3, rngs=rngs)

    def score(self, xs):
        return self.emit(xs) @ self.transitions[...]


def test_the_models_own_variables_are_rows():
    table = sj.models.summary(Chain(nnx.Rngs(0)), jnp.ones((4, 2)), method="score")
    assert [(name, kind, shape, params) for _, name, kind, shape, params in rows(table)] == [
        ("transitions", "Param", "(3, 3)", 9), ("emit", "Linear", "(4, 3)", 9)]
    assert totals(table)["Total"] == 18


class Decoder(nnx.Module):
    """Decodes through a view with dropout off, as the language model's sampling does."""

    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 3, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.cell = nnx.Linear(3, 3, rngs=rngs)

    def decode(self, x, steps):
        model = nnx.view(self, deterministic=True)
        x = model.drop(model.dense(x))
        return jax.lax.fori_loop(0, steps, lambda _, h: jnp.tanh(model.cell(h)), x)


def test_views_sharing_the_models_variables_are_recorded():
    table = sj.models.summary(Decoder(nnx.Rngs(0)), jnp.ones((2, 3)), 4, method="decode")
    assert [(name, shape) for _, name, _, shape, _ in rows(table)] == [
        ("dense", "(2, 3)"), ("drop", "(2, 3)"), ("cell", "(2, 3)")]
