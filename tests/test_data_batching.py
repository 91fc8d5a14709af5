"""BatchIterator: coverage per epoch, seeded order, bucketing, masks, resumption."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqjax.data import Batch, BatchIterator


def _ragged(n: int, seed: int = 0, long_tail: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if long_tail:
        lengths = np.minimum(rng.lognormal(3.0, 1.0, n).astype(int) + 1, 2000)
    else:
        lengths = rng.integers(1, 20, n)
    # Each sequence is filled with its own index + 1, so batches reveal which example
    # they hold and padding (0) is never a valid id.
    return [np.full(k, i + 1, np.int32) for i, k in enumerate(lengths)]


def _ids_of(batch: Batch) -> list[int]:
    return [int(row[m][0]) - 1 for row, m in zip(batch.inputs, batch.mask, strict=True)]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 17),
    bucket=st.booleans(),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_every_example_exactly_once_per_epoch(n, batch_size, bucket, shuffle, seed):
    data = _ragged(n, seed)
    it = BatchIterator(
        data, np.arange(n), batch_size=batch_size, seed=seed, shuffle=shuffle,
        bucket_by_length=bucket, bucket_window=2,
    )  # fmt: skip
    for epoch in range(2):
        seen = []
        for batch in it.iter_epoch():
            ids = _ids_of(batch)
            np.testing.assert_array_equal(batch.targets, ids)
            seen += ids
        assert sorted(seen) == list(range(n)), f"epoch {epoch}"
        assert it.epoch == epoch + 1 and it.position == 0
    assert len(it) == -(-n // batch_size)


def test_last_partial_batch_is_kept_by_default_and_drop_warns():
    data = _ragged(10)
    sizes = [len(b.inputs) for b in BatchIterator(data, batch_size=4, num_epochs=1)]
    assert sizes == [4, 4, 2]
    with pytest.warns(UserWarning, match="leaves out 2 of 10"):
        it = BatchIterator(data, batch_size=4, drop_remainder=True, num_epochs=1)
    assert [len(b.inputs) for b in it] == [4, 4] and it.dropped_per_epoch == 2


def test_seeded_order_is_reproducible_and_differs_across_epochs_and_seeds():
    data = _ragged(50)

    def order(seed, epochs=2):
        it = BatchIterator(data, batch_size=8, seed=seed, num_epochs=epochs)
        return [_ids_of(b) for b in it]

    assert order(3) == order(3)
    assert order(3) != order(4)
    first = order(3)
    assert first[:7] != first[7:]  # epoch 0 and epoch 1 are shuffled differently
    unshuffled = BatchIterator(data, batch_size=8, shuffle=False, num_epochs=1)
    assert sum((_ids_of(b) for b in unshuffled), []) == list(range(50))


def test_bucketing_reduces_padding_on_long_tailed_lengths():
    data = _ragged(2000, seed=1, long_tail=True)

    def padded_cells(bucket):
        it = BatchIterator(data, batch_size=32, seed=0, bucket_by_length=bucket, num_epochs=1)
        total = valid = 0
        for batch in it:
            total += batch.mask.size
            valid += int(batch.mask.sum())
        assert valid == sum(len(x) for x in data)
        return total - valid

    plain, bucketed = padded_cells(False), padded_cells(True)
    assert bucketed < 0.25 * plain, (plain, bucketed)


@pytest.mark.parametrize("bucket", [False, True])
def test_resume_from_state_gives_the_same_subsequent_batches(bucket):
    data = _ragged(37, seed=5)
    targets = np.arange(37)
    kwargs = {"batch_size": 5, "seed": 11, "bucket_by_length": bucket, "bucket_window": 3}
    reference = BatchIterator(data, targets, **kwargs)
    expected = [next(reference) for _ in range(25)]  # crosses three epoch boundaries

    interrupted = BatchIterator(data, targets, **kwargs)
    for _ in range(12):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.state()))  # must survive a JSON checkpoint
    resumed = BatchIterator.from_state(state, data, targets)
    rest = [next(resumed) for _ in range(13)]
    for a, b in zip(expected[12:], rest, strict=True):
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.targets, b.targets)

    fresh = BatchIterator(data, targets, **kwargs).load_state(state)
    np.testing.assert_array_equal(next(fresh).inputs, expected[12].inputs)


def test_state_mismatch_is_rejected():
    data = _ragged(20)
    state = BatchIterator(data, batch_size=4).state()
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(data, batch_size=5).load_state(state)
    with pytest.raises(ValueError, match="num_examples"):
        BatchIterator(data[:10], batch_size=4).load_state(state)
    with pytest.raises(ValueError, match="position"):
        BatchIterator.from_state({**state, "position": 99}, data)


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_masks_for_pre_and_post_padding_and_per_step_targets(padding):
    inputs = [np.array([5, 6, 7]), np.array([8])]
    tags = [np.array([1, 2, 3]), np.array([4])]
    it = BatchIterator(inputs, tags, batch_size=2, shuffle=False, padding=padding, pad_value=-1)
    batch = next(it)
    assert batch.mask.dtype == bool and batch.mask.shape == (2, 3)
    np.testing.assert_array_equal(batch.mask, batch.inputs != -1)
    np.testing.assert_array_equal(batch.inputs[batch.mask], [5, 6, 7, 8])
    np.testing.assert_array_equal(batch.targets[batch.mask], [1, 2, 3, 4])


def test_seq2seq_targets_get_a_decoder_mask_and_pad_to_options():
    src = [np.array([3, 4, 5]), np.array([6])]
    dec_in = [np.array([1, 7]), np.array([1, 8, 9, 10])]
    dec_out = [np.array([7, 2]), np.array([8, 9, 10, 2])]
    it = BatchIterator(src, (dec_in, dec_out), batch_size=2, shuffle=False, pad_to=4)
    batch = next(it)
    assert batch.inputs.shape == (2, 4)
    d_in, d_out, d_mask = batch.targets
    assert d_in.shape == d_out.shape == d_mask.shape == (2, 4)
    np.testing.assert_array_equal(d_mask.sum(1), [2, 4])
    np.testing.assert_array_equal(d_out[0], [7, 2, 0, 0])
    rounded = BatchIterator(src, batch_size=2, shuffle=False, pad_to_multiple=8)
    assert next(rounded).inputs.shape == (2, 8)
    with pytest.raises(ValueError, match="differ in length"):
        BatchIterator(src, (dec_in, dec_out[::-1]), batch_size=2)


def test_dense_inputs_with_lengths_and_feature_sequences():
    x = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    it = BatchIterator(x, np.arange(4), batch_size=4, shuffle=False, lengths=[3, 1, 2, 0])
    batch = next(it)
    np.testing.assert_array_equal(batch.inputs, x)
    np.testing.assert_array_equal(batch.mask.sum(1), [3, 1, 2, 0])
    feats = [np.ones((k, 5), np.float32) for k in (2, 4)]
    b2 = next(BatchIterator(feats, batch_size=2, shuffle=False))
    assert b2.inputs.shape == (2, 4, 5) and b2.inputs.dtype == np.float32


def test_num_epochs_stops_iteration():
    it = BatchIterator(_ragged(10), batch_size=3, num_epochs=2)
    assert len(list(it)) == 8
    assert list(it) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "seed": -1}, "seed"),
        ({"batch_size": 2, "padding": "left"}, "padding"),
        ({"batch_size": 2, "pad_to": 1}, "pad_to"),
        ({"batch_size": 2, "bucket_window": 0}, "bucket_window"),
        ({"batch_size": 2, "lengths": [1, 2]}, "lengths"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchIterator([np.array([1, 2]), np.array([3])], **kwargs)


def test_bad_inputs_and_targets():
    with pytest.raises(ValueError, match="targets"):
        BatchIterator([np.array([1])], np.arange(3), batch_size=1)
    with pytest.raises(ValueError, match="inputs is empty"):
        BatchIterator([], batch_size=1)
    with pytest.raises(ValueError, match=r"targets\[0\] is a scalar"):
        BatchIterator([np.array([1])], [1], batch_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="leaves no batch"):
            BatchIterator([np.array([1])], batch_size=2, drop_remainder=True)


def test_index_iteration_matches_batches_and_advances_the_same_state():
    x = np.arange(60, dtype=np.int32).reshape(20, 3)
    kwargs = {"batch_size": 6, "seed": 2, "lengths": np.arange(20) % 4, "padding": "pre"}
    by_batch = BatchIterator(x, np.arange(20), **kwargs)
    by_index = BatchIterator(x, np.arange(20), **kwargs)
    for _ in range(2):
        batches = list(by_batch.iter_epoch())
        indices = list(by_index.iter_epoch_indices())
        assert [len(i) for i in indices] == [6, 6, 6, 2]
        for batch, idx in zip(batches, indices, strict=True):
            again = by_index.make_batch(idx)
            for a, b in zip(batch, again, strict=True):
                np.testing.assert_array_equal(a, b)
        assert by_index.state() == by_batch.state()


def test_dense_arrays_and_device_residency():
    x = np.zeros((10, 4), np.int32)
    dense = BatchIterator(x, (np.arange(10), np.ones((10, 2))), batch_size=3)
    arrays = dense.dense_arrays()
    assert arrays.inputs is x and len(arrays.targets) == 2 and arrays.padding == "post"
    np.testing.assert_array_equal(arrays.lengths, np.full(10, 4))
    assert dense.device_resident and dense.static_shapes
    assert not BatchIterator(x, batch_size=3, on_device=False).device_resident
    ragged = BatchIterator(_ragged(10), batch_size=3)
    assert ragged.dense_arrays() is None and not ragged.device_resident
    assert not ragged.static_shapes
    assert BatchIterator(_ragged(10), batch_size=3, pad_to=20).static_shapes
    with pytest.raises(ValueError, match="on_device=True needs dense"):
        BatchIterator(_ragged(10), batch_size=3, on_device=True)
    with pytest.raises(ValueError, match="on_device"):
        BatchIterator(x, batch_size=3, on_device="yes")


def test_each_process_yields_its_share_of_every_batch():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 9, n).astype(np.int32) for n in rng.integers(1, 12, 22)]
    labels = np.arange(22, dtype=np.int32)
    whole = list(BatchIterator(seqs, labels, batch_size=8, seed=3, num_epochs=1))
    shares = [list(BatchIterator(seqs, labels, batch_size=8, seed=3, num_epochs=1,
                                 process_index=p, process_count=2)) for p in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(whole) == 3
    for batch, first, second in zip(whole, *shares, strict=True):
        assert first.inputs.shape == second.inputs.shape == (4, batch.inputs.shape[1])
        real = np.concatenate([first.mask.any(1), second.mask.any(1)])
        np.testing.assert_array_equal(np.concatenate([first.targets, second.targets])[real],
                                      batch.targets)
        np.testing.assert_array_equal(np.concatenate([first.inputs, second.inputs])[real],
                                      batch.inputs)
    last = shares[1][-1]  # 22 = 2 x 8 + 6: the second share of the last batch holds 2 rows
    assert last.mask.any(1).tolist() == [True, True, False, False]
    assert not last.inputs[2:].any() and not last.targets[2:].any()


def test_process_shares_need_a_batch_that_divides():
    x = np.zeros((10, 3), np.int32)
    with pytest.raises(ValueError, match="batch_size 5 does not divide over 2 processes"):
        BatchIterator(x, batch_size=5, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="process_index must be an int in 0..1"):
        BatchIterator(x, batch_size=4, process_index=2, process_count=2)
