"""pad_sequences against keras.utils.pad_sequences, and sequence_mask."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqjax.data import pad_sequences, sequence_mask

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

SIDES = ("pre", "post")
int_seqs = st.lists(st.lists(st.integers(-50, 50), max_size=12), max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    seqs=int_seqs,
    maxlen=st.one_of(st.none(), st.integers(1, 15)),
    padding=st.sampled_from(SIDES),
    truncating=st.sampled_from(SIDES),
    value=st.integers(-3, 3),
)
def test_matches_keras_on_random_int_lists(seqs, maxlen, padding, truncating, value):
    if not seqs:
        return  # Keras raises on an empty list (np.max of nothing); checked separately
    kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating, "value": value}
    expected = keras.utils.pad_sequences(seqs, **kwargs)
    got = pad_sequences(seqs, **kwargs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    maxlen=st.one_of(st.none(), st.integers(1, 10)),
    padding=st.sampled_from(SIDES),
    truncating=st.sampled_from(SIDES),
    seed=st.integers(0, 2**16),
)
def test_matches_keras_on_float_feature_arrays(lengths, maxlen, padding, truncating, seed):
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]
    kwargs = {
        "maxlen": maxlen,
        "padding": padding,
        "truncating": truncating,
        "value": -1.5,
        "dtype": "float32",
    }
    expected = keras.utils.pad_sequences(seqs, **kwargs)
    got = pad_sequences(seqs, **kwargs)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_keras_docstring_examples_and_seed_setting():
    seqs = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(pad_sequences(seqs), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(
        pad_sequences(seqs, padding="post"), [[1, 0, 0], [2, 3, 0], [4, 5, 6]]
    )
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2), [[0, 1], [2, 3], [5, 6]])
    np.testing.assert_array_equal(
        pad_sequences(seqs, maxlen=2, truncating="post"), [[0, 1], [2, 3], [4, 5]]
    )
    out = pad_sequences([list(range(40)), [7]], maxlen=32)  # the seeds: pre-pad to 32
    assert out.shape == (2, 32) and out.dtype == np.int32
    np.testing.assert_array_equal(out[0], np.arange(8, 40))
    assert out[1, -1] == 7 and not out[1, :-1].any()


def test_strings_with_object_dtype_like_keras():
    seqs = [["a", "b"], ["c"]]
    got = pad_sequences(seqs, dtype=object, value="<pad>", padding="post")
    expected = keras.utils.pad_sequences(seqs, dtype=object, value="<pad>", padding="post")
    np.testing.assert_array_equal(got, expected)


def test_edge_cases_where_keras_raises():
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([], maxlen=4).shape == (0, 4)
    assert pad_sequences([[1, 2], []], maxlen=0).shape == (2, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": "middle"}, "padding"),
        ({"truncating": "left"}, "truncating"),
        ({"maxlen": -1}, "maxlen"),
        ({"value": "x"}, "value"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pad_sequences([[1, 2]], **kwargs)


def test_bad_sequences():
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match=r"sequences\[1\] has element shape"):
        pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))], dtype="float32")


@pytest.mark.parametrize("padding", SIDES)
def test_sequence_mask_matches_padding(padding):
    seqs = [[5, 6, 7], [8], [], [1, 2]]
    padded = pad_sequences(seqs, padding=padding, value=0)
    mask = sequence_mask([len(s) for s in seqs], padded.shape[1], padding)
    assert mask.dtype == bool and mask.shape == padded.shape
    # All ids are non-zero, so validity equals "not padding" here.
    np.testing.assert_array_equal(mask, padded != 0)
    with pytest.raises(ValueError, match="padding"):
        sequence_mask([1], 2, "both")
