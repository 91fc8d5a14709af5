"""Test-wide settings.

The core modules' tests run under strict dtype promotion and ``rank_promotion="raise"`` so the
library cannot rely on silent casts or broadcasts. Third-party code (optax, flax training
utilities) is not written for those modes, so tests that drive it run with JAX's defaults: the
modules not listed below, and tests marked ``default_numerics``.
"""

import contextlib
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Compiling dominates this suite (its shapes are tiny), and XLA's LLVM backend compiles 2-3x faster
# unoptimised (test_kernels_parallel.py: 145 s instead of 217; the suite: 10:48 instead of 18:18).
# What a program computes does not change beyond rounding. A level already in XLA_FLAGS is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

STRICT_MODULES = {
    "test_cells", "test_rnn", "test_bidirectional_stacked", "test_errors", "test_nn",
    "test_interop", "test_kernels_fused", "test_kernels_native", "test_kernels_parallel",
    "test_kernels_pallas", "test_kernels_sequential",
}


@pytest.fixture(autouse=True)
def _strict_numerics(request):
    if (request.module.__name__.rsplit(".", 1)[-1] not in STRICT_MODULES
            or request.node.get_closest_marker("default_numerics")):
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.numpy_dtype_promotion("strict"))
        stack.enter_context(jax.numpy_rank_promotion("raise"))
        yield


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """Loaders cache into a folder of this test run, never the user's ~/.cache/seqjax/data."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SEQJAX_DATA_CACHE_DIR", str(tmp_path_factory.mktemp("data_cache")))
    yield
    patch.undo()
