"""The native (C++ CPU) backend against ``reference``, beyond the generic tests in test_rnn.py.

The generic tests use small hidden sizes, where one thread owns every unit; these force several
threads (each owning a slice of the units) and sizes that fill no vector or row tile exactly.
"""

import functools
import os
import shutil
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import pytest
from registry import random_carry, random_params

import seqjax as sj
from seqjax.kernels import native, native_build

ON_CPU = jax.default_backend() == "cpu"
needs_native = pytest.mark.skipif(
    not (ON_CPU and native.available()),
    reason="the native backend runs on CPU, where a C++ compiler builds it",
)
TOL = dict(rtol=2e-5, atol=2e-5)
CELLS = {"lstm": sj.lstm, "gru": sj.gru, "min_gru": sj.min_gru, "min_lstm": sj.min_lstm}


@pytest.mark.skipif(not ON_CPU, reason="the native backend runs on CPU")
def test_builds_where_a_compiler_exists():
    # Without this, a broken build would only skip the tests below.
    if shutil.which("c++") or shutil.which("g++"):
        assert native.available()


def make(name, batch, time, inp, hidden, seed=0, scale=0.5):
    cell = CELLS[name](hidden)
    params = random_params(cell, jax.random.key(seed), inp, scale=scale)
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, time, inp))
    carry0 = random_carry(cell, jax.random.key(seed + 2), batch)
    mask = jax.random.bernoulli(jax.random.key(seed + 3), 0.8, (batch, time))
    resets = jax.random.bernoulli(jax.random.key(seed + 4), 0.2, (batch, time))
    return cell, params, xs, carry0, mask, resets


def value_and_grads(cell, backend, params, xs, carry0, linear=False, **kwargs):
    def loss(params, xs, carry0):
        carry, ys = sj.rnn(cell, params, xs, initial_carry=carry0, backend=backend, **kwargs)
        if linear:
            return jnp.sum(ys) + sum(jnp.sum(c) for c in carry)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(c)) for c in carry)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, carry0)


def assert_as_accurate_as_reference(cell, params, xs, carry0, linear=False, **kwargs):
    """Values and gradients against float64 arithmetic: native's error at most twice
    ``reference``'s. At these sizes float32 sums differ from ``reference``'s by more than the
    generic tests' 1e-5, on either side of the exact value."""
    got = {backend: value_and_grads(cell, backend, params, xs, carry0, linear, **kwargs)
           for backend in ("native", "reference")}
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: a.astype(jnp.float64), (params, xs, carry0))
        exact = value_and_grads(cell, "reference", *wide, linear, **kwargs)

        def error(backend):
            leaves = jax.tree.leaves(got[backend])
            assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
            return [float(jnp.max(jnp.abs(g.astype(jnp.float64) - e)) / jnp.max(jnp.abs(e)))
                    for g, e in zip(leaves, jax.tree.leaves(exact))]

        errors = error("native"), error("reference")
    for native_err, reference_err in zip(*errors):
        assert native_err <= 2 * reference_err + 1e-6


@needs_native
@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize(("threads", "hidden", "reverse"), [("1", 37, True), ("3", 48, False),
                                                           ("2", 70, True)])
def test_threads_and_ragged_tiles_are_accurate(monkeypatch, name, threads, hidden, reverse):
    monkeypatch.setenv("SEQJAX_NATIVE_THREADS", threads)
    cell, params, xs, carry0, mask, resets = make(name, batch=7, time=6, inp=5, hidden=hidden)
    assert_as_accurate_as_reference(cell, params, xs, carry0, mask=mask, resets=resets,
                                    reverse=reverse)


@needs_native
@pytest.mark.parametrize("name", sj.cells.MIN_KINDS)
@pytest.mark.parametrize(("threads", "batch", "time"), [("2", 7, 45), ("3", 2, 70)])
def test_min_cells_weight_gradient_blocks_are_accurate(monkeypatch, name, threads, batch, time):
    # The min cells' backward sums dW_x = X^T dZ over blocks of about 128 rows (steps x own
    # batch rows): these sequences cross block ends mid-way, and batch 2 leaves a thread idle.
    monkeypatch.setenv("SEQJAX_NATIVE_THREADS", threads)
    cell, params, xs, carry0, mask, resets = make(name, batch=batch, time=time, inp=20, hidden=37)
    assert_as_accurate_as_reference(cell, params, xs, carry0, mask=mask, resets=resets,
                                    reverse=True)


@needs_native
@pytest.mark.parametrize("name", sj.cells.MIN_KINDS)
@pytest.mark.parametrize("recompute", [True, False])
def test_min_cells_recomputed_and_saved_pre_activations_are_accurate(monkeypatch, name,
                                                                     recompute):
    # Up to an input size the backward recomputes the leading gates' x W + b from x, above it
    # the forward saves them; the threshold moved to either side of this input size gives both.
    monkeypatch.setattr(native, "_MIN_RECOMPUTE_MAX_INPUT", 1000 if recompute else 0)
    cell, params, xs, carry0, mask, resets = make(name, batch=5, time=9, inp=21, hidden=37)
    assert_as_accurate_as_reference(cell, params, xs, carry0, mask=mask, resets=resets)


@needs_native
@pytest.mark.parametrize("name", sj.cells.MIN_KINDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_min_cells_time_major_inputs_are_accurate(name, reverse):
    # The min kernels read batch-major inputs and write their gradient batch-major; time-major
    # callers reach them through a transpose. The sequence spans chunks of the forward's
    # staging of the inputs (8 steps here) and ends inside one.
    cell, params, xs, carry0, mask, resets = make(name, batch=5, time=19, inp=7, hidden=20)
    assert_as_accurate_as_reference(cell, params, jnp.swapaxes(xs, 0, 1), carry0,
                                    mask=mask, resets=resets, reverse=reverse,
                                    time_major=True)


@needs_native
@pytest.mark.parametrize("name", sorted(CELLS))
def test_saturated_gates_stay_finite_and_accurate(name):
    # Pre-activations in the hundreds: sigmoid and tanh saturate, exp would overflow. The loss
    # is linear: the min cells' outputs are in the hundreds there, and cos(ys) would turn
    # rounding at the 1e-5 level into a sum whose error is mostly cancellation luck.
    cell, params, xs, carry0, _, _ = make(name, batch=3, time=4, inp=6, hidden=20, scale=40.0)
    assert_as_accurate_as_reference(cell, params, xs, carry0, linear=True)


@needs_native
def test_vmap_and_bidirectional_match_reference():
    cell, params, xs, carry0, mask, _ = make("lstm", batch=4, time=5, inp=3, hidden=33)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)

    @functools.partial(jax.jit, static_argnums=0)
    def outputs(backend):
        def run(p):
            return sj.rnn(cell, p, xs, initial_carry=carry0, mask=mask, backend=backend)[1]

        both = sj.bidirectional(cell, (params, params), xs, mask=mask, backend=backend)[1]
        return jax.vmap(run)(stacked), both

    chex.assert_trees_all_close(outputs("native"), outputs("reference"), **TOL)


@needs_native
def test_empty_sequence_keeps_the_initial_carry():
    cell, params, _, carry0, _, _ = make("gru", batch=2, time=3, inp=4, hidden=8)
    carry, ys = sj.rnn(cell, params, jnp.zeros((2, 0, 4)), initial_carry=carry0, backend="native")
    assert ys.shape == (2, 0, 8)
    chex.assert_trees_all_close(carry, carry0)


@needs_native
@pytest.mark.parametrize("name", sorted(CELLS))
def test_empty_batch_gives_empty_outputs_and_zero_gradients(name):
    cell, params, _, _, _, _ = make(name, batch=2, time=3, inp=4, hidden=8)
    xs = jnp.zeros((0, 5, 4))
    (value, grads), (ref_value, ref_grads) = (
        jax.value_and_grad(lambda p, x, b=backend: jnp.sum(sj.rnn(cell, p, x, backend=b)[1]),
                           argnums=(0, 1))(params, xs)
        for backend in ("native", "reference"))
    assert grads[1].shape == (0, 5, 4)
    chex.assert_trees_all_close((value, grads), (ref_value, ref_grads))


@needs_native
@pytest.mark.parametrize("name", ["lstm", "min_gru"])
def test_second_order_gradient_raises_a_clear_error(name):
    cell, params, xs, carry0, _, _ = make(name, batch=2, time=3, inp=4, hidden=8)

    def loss(xs):
        return jnp.sum(sj.rnn(cell, params, xs, backend="native")[1])

    with pytest.raises(NotImplementedError, match="not support second-order gradients"):
        jax.hessian(loss)(xs)


@needs_native
def test_unsupported_inputs_are_refused(monkeypatch):
    cell, params, xs, _, _, _ = make("lstm", batch=2, time=3, inp=4, hidden=8)
    with pytest.raises(ValueError, match="does not support the .gru. cell"):
        sj.rnn(sj.gru(8, reset_after=False), sj.gru(8, reset_after=False).init(
            jax.random.key(0), 4), xs, backend="native")
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        with pytest.raises(ValueError, match="float64 carry"):
            sj.rnn(cell, p64, xs.astype(jnp.float64), backend="native")
        assert sj.kernels.auto_backend(cell.spec, "cpu", dtype=jnp.float64) == "fused"
    monkeypatch.setenv("SEQJAX_NATIVE_THREADS", "two")
    with pytest.raises(ValueError, match="SEQJAX_NATIVE_THREADS must be a positive integer"):
        sj.rnn(cell, params, xs, backend="native")


@needs_native
def test_auto_picks_native_on_cpu_for_lstm_gru_and_min_cells():
    for make_cell in CELLS.values():
        assert sj.kernels.auto_backend(make_cell(64).spec, "cpu") == "native"
        assert sj.kernels.auto_backend(make_cell(64).spec, "gpu") != "native"
    assert sj.kernels.auto_backend(sj.min_gru(64).spec, "cpu", dtype=jnp.float64) == "sequential"
    assert sj.kernels.auto_backend(sj.gru(64, reset_after=False).spec, "cpu") == "fused"
    assert sj.kernels.auto_backend(sj.lstm(64).spec, "cpu", remat=True) == "reference"
    assert sj.kernels.auto_backend(sj.lstm(64).spec, "gpu") != "native"


@needs_native
def test_a_failing_compiler_raises_with_its_message(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQJAX_CACHE_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="compiling native.cc failed"):
        native_build.compile_library(shutil.which("false") or "/bin/false")


@pytest.mark.skipif(not ON_CPU, reason="the native backend runs on CPU")
def test_without_a_compiler_auto_falls_back_and_native_says_why(tmp_path):
    # A fresh process with no compiler on its PATH and an empty kernel cache: the kernels cannot
    # build, so auto keeps fused (sequential for the min cells), which agree with reference,
    # and backend="native" raises with the reason.
    script = textwrap.dedent("""
        import chex, jax, jax.numpy as jnp, pytest
        import seqjax as sj
        assert not sj.kernels.native.available()
        xs = jax.random.normal(jax.random.key(1), (2, 3, 4))
        for make, fallback in ((sj.lstm, "fused"), (sj.gru, "fused"),
                               (sj.min_gru, "sequential"), (sj.min_lstm, "sequential")):
            cell = make(8)
            assert sj.kernels.auto_backend(cell.spec, "cpu") == fallback
            params = cell.init(jax.random.key(0), 4)
            chex.assert_trees_all_close(sj.rnn(cell, params, xs),
                                        sj.rnn(cell, params, xs, backend="reference"),
                                        rtol=1e-5, atol=1e-5)
        with pytest.raises(RuntimeError, match="needs a C[+][+] compiler"):
            sj.rnn(cell, params, xs, backend="native")
    """)
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env.update(PATH=str(tmp_path), SEQJAX_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
