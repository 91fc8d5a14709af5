"""minGRU/minLSTM by the ``parallel`` backend (log-space associative scan) against ``reference``."""

import chex
import jax
import jax.numpy as jnp
import min_cells
import pytest

import seqjax as sj
from seqjax.kernels import parallel, reference


@min_cells.every_case
def test_matches_reference(kind, flags, reverse):
    min_cells.assert_matches_reference(parallel.run, kind, flags, reverse)


@pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)
def test_negative_initial_carry_is_exact(kind):
    # h0 never enters a log: h_t = alpha_t * h0 + beta_t.
    cell, params, xs, carry0, mask, resets = min_cells.make(kind, sign=-1.0)
    args = (cell, params, xs, carry0, mask, resets, False)
    got = min_cells.outputs_and_grads(parallel.run, *args)
    chex.assert_trees_all_close(got, min_cells.outputs_and_grads(reference.run, *args),
                                **min_cells.TOL)


@pytest.mark.parametrize("kind", sj.cells.MIN_KINDS)
def test_long_sequences_stay_finite(kind):
    # Gate products over 2048 steps underflow to 0: log space must give -inf, not NaN.
    min_cells.assert_long_sequences_stay_finite(parallel.run, kind)


def test_through_rnn_with_bfloat16_and_remat():
    cell, params, xs, carry0, mask, _ = min_cells.make("min_gru")
    xs16 = jnp.swapaxes(xs, 0, 1).astype(jnp.bfloat16)
    got = sj.rnn(cell, params, xs16, mask=mask.T, initial_carry=carry0, backend="parallel",
                 remat=True)
    want = sj.rnn(cell, params, xs16, mask=mask.T, initial_carry=carry0, backend="reference")
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, atol=2e-2, rtol=2e-2)


def test_empty_sequence_keeps_carry():
    min_cells.assert_empty_sequence_keeps_carry(parallel.run)


def test_supports_only_linear_recurrences():
    assert parallel.supports(sj.min_gru(4).spec) and parallel.supports(sj.min_lstm(4).spec)
    assert not parallel.supports(sj.lstm(4).spec)
    cell = sj.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="parallel"):
        sj.rnn(cell, params, jnp.ones((2, 5, 3)), backend="parallel")


def test_auto_uses_parallel_for_min_cells_on_gpu_only():
    for cell in (sj.min_gru(8), sj.min_lstm(8)):
        assert sj.kernels.auto_backend(cell.spec, "gpu") == "parallel"
        assert sj.kernels.auto_backend(cell.spec, "cpu") != "parallel"
