"""The ``pallas`` backend (LSTM, GRU), run on CPU through ``pallas_call(..., interpret=True)``.

Tiny shapes only: interpreted kernels are slow. One test runs only on a GPU (a split tiling, whose
programs wait for each other); ``experiments/bench_pallas_gpu.py`` checks and times the kernels
there at full size.
"""


import functools

import chex
import jax
import jax.numpy as jnp
import pytest
from registry import random_carry, random_params

import seqjax as sj
from seqjax.kernels import pallas, pallas_plan, reference

I = 3
TOL = dict(rtol=1e-5, atol=1e-5)
CELLS = {"lstm": sj.lstm, "gru": sj.gru}



def outputs_and_grads(run, cell, params, xs, carry0, mask, resets, reverse):
    time, batch = xs.shape[:2]
    w_y = jax.random.normal(jax.random.key(9), (time, batch, cell.spec.hidden_size))

    def call(params, xs, carry0):
        return run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=1, remat=False)

    def loss(params, xs, carry0):
        carry, ys = call(params, xs, carry0)
        return jnp.sum(ys * w_y) + sum(jnp.sum(jnp.sin(leaf)) for leaf in carry)

    value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    return jax.jit(call)(params, xs, carry0), value_and_grads(params, xs, carry0)


def assert_matches_reference(kind, time, batch, hidden, flags, reverse, tol=TOL, **knobs):
    """``pallas.run(**knobs)`` against ``reference``: outputs, final carry and the gradients
    w.r.t. params, inputs and initial carry, with masks and resets when ``flags``."""
    cell = CELLS[kind](hidden)
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (time, batch, I))
    carry0 = random_carry(cell, jax.random.key(2), batch)
    mask = resets = None
    if flags:
        mask = jax.random.bernoulli(jax.random.key(3), 0.7, (time, batch)).at[:, 0].set(False)
        resets = jax.random.bernoulli(jax.random.key(4), 0.4, (time, batch))

    def run(*a, **k):
        return pallas.run(*a, **k, **knobs)

    args = (cell, params, xs, carry0, mask, resets, reverse)
    got, want = outputs_and_grads(run, *args), outputs_and_grads(reference.run, *args)
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, **tol)


# (T, B, H, block_b, block_h, k_chunk, flags, reverse): several batch programs, hidden tiles
# and slices of the contracted axis included.
CASES = [
    (4, 3, 5, 16, None, None, False, False),
    (4, 8, 16, 4, 8, None, True, True),
    (3, 5, 12, 4, 8, None, True, False),
    (3, 6, 20, 4, 16, 8, True, True),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_interpreted_kernel_matches_reference(kind, case):
    time, batch, hidden, block_b, block_h, k_chunk, flags, reverse = case
    assert_matches_reference(kind, time, batch, hidden, flags, reverse, interpret=True,
                             block_b=block_b, block_h=block_h, k_chunk=k_chunk)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="a split tiling needs a GPU")
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_split_kernel_on_gpu_matches_reference(kind):
    # Four programs per batch block meet at a barrier every step; TF32 dots on the GPU.
    assert_matches_reference(kind, 6, 20, 64, True, True, tol=dict(rtol=2e-3, atol=2e-3),
                             block_b=16, block_h=16, split=4, k_chunk=32)


# (T, B, H, block_b, time_chunk, flags, reverse): T not a multiple of the chunk (padded steps),
# several batch blocks, H padded to 128 lanes.
MOSAIC_CASES = [
    (5, 3, 6, None, None, False, False),
    (7, 10, 20, 8, 3, True, True),
    (6, 4, 9, None, 2, True, False),
]


@pytest.mark.parametrize("case", MOSAIC_CASES)
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_mosaic_kernels_in_tpu_interpret_mode_match_reference(kind, case):
    time, batch, hidden, block_b, time_chunk, flags, reverse = case
    assert_matches_reference(kind, time, batch, hidden, flags, reverse, interpret=True,
                             mosaic=True, block_b=block_b, time_chunk=time_chunk)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_mosaic_kernels_lower_for_tpu(kind):
    # Lowering builds the kernels' Mosaic MLIR on CPU; only a TPU compiles it further.
    cell = CELLS[kind](20)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.ones((5, 10, I))
    mask = jnp.ones((5, 10), bool)

    def loss(params, xs):
        _, ys = pallas.run(cell, params, xs, mask, mask, cell.initial_carry((10,)), reverse=True,
                           unroll=1, remat=False, interpret=False, mosaic=True)
        return jnp.sum(ys * ys)

    lowered = jax.jit(jax.grad(loss)).trace(params, xs).lower(lowering_platforms=("tpu",))
    assert lowered.as_text().count("tpu_custom_call") >= 2  # forward and backward kernels


def test_mosaic_time_chunk_is_the_largest_that_fits_the_vmem_budget():
    from seqjax.kernels import pallas_tpu

    budget = pallas_tpu._VMEM_BUDGET
    assert pallas_tpu._default_time_chunk("gru", 16, 128) == 8
    for kind in CELLS:
        for block_b, h_pad in ((8, 128), (64, 256), (128, 512)):
            chunk = pallas_tpu._default_time_chunk(kind, block_b, h_pad)
            assert chunk in (1, 2, 4, 8)
            assert chunk == 1 or pallas_tpu._vmem_bytes(kind, block_b, h_pad, chunk) <= budget
            assert chunk == 8 or pallas_tpu._vmem_bytes(kind, block_b, h_pad, 2 * chunk) > budget


def test_knobs_of_the_other_kernel_family_are_errors():
    cell = sj.lstm(4)
    params = cell.init(jax.random.key(0), I)
    args = (cell, params, jnp.ones((2, 3, I)), None, None, cell.initial_carry((3,)))
    kw = dict(reverse=False, unroll=1, remat=False, interpret=True)
    with pytest.raises(ValueError, match="split only apply to the Triton"):
        pallas.run(*args, **kw, mosaic=True, split=2)
    with pytest.raises(ValueError, match="time_chunk only applies to the Mosaic"):
        pallas.run(*args, **kw, mosaic=False, time_chunk=4)
    with pytest.raises(ValueError, match="block_b must be a multiple of 8"):
        pallas.run(*args, **kw, mosaic=True, block_b=12)


def test_vmap_over_models_matches_reference():
    # Under vmap the kernels run one instance after another (a split grid must stay resident);
    # interpreted kernels take the same path.
    cell = sj.lstm(8)
    params = jax.vmap(lambda k: random_params(cell, k, I))(jax.random.split(jax.random.key(0)))
    xs = jax.random.normal(jax.random.key(1), (2, 3, 5, I))

    def loss(backend, params, xs):
        _, ys = sj.rnn(cell, params, xs, backend=backend)
        return jnp.sum(jnp.sin(ys))

    def per_model(backend):
        return jax.jit(jax.vmap(jax.value_and_grad(functools.partial(loss, backend),
                                                   argnums=(0, 1))))(params, xs)

    chex.assert_trees_all_close(per_model("pallas"), per_model("reference"), **TOL)


def test_bfloat16_inputs_keep_float32_carry():
    cell = sj.lstm(4)
    params = random_params(cell, jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (2, 3, I)).astype(jnp.bfloat16)
    got = sj.rnn(cell, params, xs, backend="pallas")
    want = sj.rnn(cell, params, xs, backend="reference")
    chex.assert_trees_all_equal_dtypes(got, want)
    chex.assert_trees_all_close(got, want, atol=2e-2, rtol=2e-2)


def test_supports_lstm_and_cudnn_gru_only():
    assert pallas.supports(sj.lstm(4).spec) and pallas.supports(sj.gru(4).spec)
    for cell in (sj.gru(4, reset_after=False), sj.simple_rnn(4), sj.min_gru(4)):
        assert not pallas.supports(cell.spec)
    cell = sj.gru(4, reset_after=False)
    with pytest.raises(ValueError, match="pallas"):
        sj.rnn(cell, cell.init(jax.random.key(0), I), jnp.ones((2, 3, I)), backend="pallas")


def test_auto_never_picks_pallas_on_cpu():
    for make in (sj.lstm, sj.gru):
        for hidden in (8, 64, 256):
            assert sj.kernels.auto_backend(make(hidden).spec, "cpu") != "pallas"

def test_auto_picks_pallas_on_gpu_where_the_default_tiling_fits(monkeypatch):
    monkeypatch.setattr(pallas_plan, "sm_count", lambda: 132)
    assert sj.kernels.auto_backend(sj.lstm(32).spec, "gpu") == "pallas"
    assert sj.kernels.auto_backend(sj.gru(128).spec, "gpu", batch=32) == "pallas"
    assert sj.kernels.auto_backend(sj.lstm(256).spec, "gpu", batch=64) == "pallas"
    assert sj.kernels.auto_backend(sj.lstm(256).spec, "gpu", batch=128) == "pallas"
    # Larger batch blocks would fit but are unmeasured (32-row blocks were 2x slower at S1).
    assert sj.kernels.auto_backend(sj.lstm(256).spec, "gpu", batch=512) == "fused"
    assert sj.kernels.auto_backend(sj.lstm(64).spec, "gpu", batch=4096) == "pallas"
    assert sj.kernels.auto_backend(sj.lstm(512).spec, "gpu", batch=128) == "fused"
    assert sj.kernels.auto_backend(sj.gru(256, reset_after=False).spec, "gpu") == "fused"


def plan(batch, hidden, cores=132, interpret=False, **knobs):
    block_b, block_h, h_pad, split, _, k_chunk = pallas_plan.plan(
        batch, hidden, cores, interpret, **knobs)
    return dict(block_b=block_b, block_h=block_h, h_pad=h_pad, split=split, k_chunk=k_chunk)


def test_default_tiling_small_hidden_is_one_program_per_batch_block():
    assert plan(64, 64) == dict(block_b=16, block_h=32, h_pad=64, split=1, k_chunk=None)
    assert plan(64, 256, interpret=True)["split"] == 1
    assert plan(37, 64, interpret=True)["block_b"] == 16  # several batch blocks in CPU tests
    assert plan(4096, 64, cores=8)["block_b"] == 16


def test_default_tiling_splits_large_hidden_over_resident_programs():
    assert plan(64, 256) == dict(block_b=16, block_h=16, h_pad=256, split=16, k_chunk=64)
    assert plan(32, 128)["split"] == 8
    # Larger batches get larger batch blocks, so that every block's programs fit at once.
    assert plan(512, 256)["block_b"] == 64
    for batch in (1, 16, 100, 512, 4096):
        for hidden in (65, 128, 200, 256, 1024):
            for cores in (1, 8, 132):
                try:
                    p = plan(batch, hidden, cores)
                except ValueError as err:
                    # Only where w_h cannot be spread thinly enough over resident programs.
                    h_pad = 1 << (hidden - 1).bit_length()
                    least = pallas_plan.held_bytes(h_pad, 1) // pallas_plan.HELD_BYTES
                    assert least > h_pad // 16 or -(-batch // 128) * least > cores, err
                    continue
                groups = -(-batch // p["block_b"])
                tiles = p["h_pad"] // p["block_h"]
                assert tiles % p["split"] == 0 and p["split"] & (p["split"] - 1) == 0
                assert p["split"] == 1 or p["split"] * groups <= cores
                assert pallas_plan.held_bytes(p["h_pad"], p["split"]) <= pallas_plan.HELD_BYTES


def test_too_large_for_the_registers_is_a_clear_error():
    with pytest.raises(ValueError, match="hidden=512 is too large"):
        plan(128, 512)
    with pytest.raises(ValueError, match="batch=4096 with hidden=256"):
        plan(4096, 256)
    with pytest.raises(ValueError, match="KiB of w_h"):
        plan(64, 256, split=8)


@pytest.mark.parametrize("knobs, match", [
    (dict(block_h=24), "block_h"),
    (dict(block_h=8), "block_h"),
    (dict(k_chunk=48), "k_chunk"),
    (dict(split=3), "split"),
    (dict(split=32), "split must divide"),
    (dict(split=16, block_b=8), "resident"),  # 8 batch blocks x 16 programs > 100 SMs
    (dict(num_warps=3), "num_warps"),
    (dict(num_warps=(4, 64)), "num_warps"),
])
def test_bad_tiling_is_a_clear_error(knobs, match):
    with pytest.raises(ValueError, match=match):
        plan(64, 256, cores=100, **knobs)


def test_split_needs_a_gpu():
    with pytest.raises(ValueError, match="split > 1 needs a GPU"):
        plan(64, 256, interpret=True, split=2)
