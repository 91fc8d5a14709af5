"""The public import surface: DESIGN.md's names, nothing private leaking out."""

import doctest
import importlib

import pytest

import seqjax as sj

DESIGN_NAMES = {
    "lstm", "gru", "simple_rnn", "min_gru", "min_lstm", "simplified_gru", "rnn", "bidirectional",
    "stacked", "nn", "interop", "kernels", "data", "train", "Cell", "CellSpec", "LSTMParams",
    "LSTMCarry", "GRUParams", "GRUCarry", "RNNParams", "RNNCarry", "MinParams", "MERGE_MODES",
}


def test_public_surface():
    assert DESIGN_NAMES <= set(sj.__all__)
    for name in sj.__all__:
        assert hasattr(sj, name), name
    assert not [n for n in sj.__all__ if n.startswith("_")]


def test_models_surface():
    assert {"Classifier", "summary", "count_params", "save", "load"} <= set(sj.models.__all__)
    for name in sj.models.__all__:
        assert hasattr(sj.models, name), name


def test_nn_surface():
    assert {"RNN", "Bidirectional", "Stacked", "SimpleRNN", "LSTM", "GRU"} <= set(sj.nn.__all__)


@pytest.mark.parametrize("module", [
    "seqjax.cells", "seqjax.rnn", "seqjax.nn",
    "seqjax.models.config", "seqjax.models.layers", "seqjax.models.classifier",
    "seqjax.models.summary", "seqjax.models.crf", "seqjax.models.tagger",
    "seqjax.models.decoding", "seqjax.models.attention", "seqjax.models.language_model",
    "seqjax.models.seq2seq",
])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
