"""The backend registry and the rules by which ``backend="auto"`` picks one.

Every backend has the signature ``run(cell, params, xs [T,B,I], mask [T,B] | None,
resets [T,B] | None, carry0, *, reverse, unroll, remat) -> (carry_T, ys [T,B,H])`` and says
which cells it ``supports``. ``auto`` takes the first rule of :data:`AUTO_RULES` that applies:
the order is the priority. The reasons are measured by ``make bench`` (CPU) and
``experiments/bench_pallas_gpu.py`` (GPU); the figures, with their dates and machines, are in
``experiments/results/bench/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import MIN_KINDS, CellSpec
from seqjax.kernels import (
    fused,
    hoisted,
    native,
    pallas,
    pallas_plan,
    parallel,
    reference,
    sequential,
)


def _always() -> bool:
    return True


class Backend(NamedTuple):
    """A kernel: its time-major ``run``, which cells (by ``CellSpec``) it ``supports``, and
    whether it can run on this machine at all (``available``; ``native`` needs a C++ compiler)."""

    name: str
    run: Callable
    supports: Callable[[CellSpec], bool]
    available: Callable[[], bool] = _always


BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", reference.run, reference.supports),
    "hoisted": Backend("hoisted", hoisted.run, hoisted.supports),
    "fused": Backend("fused", fused.run, fused.supports),
    "parallel": Backend("parallel", parallel.run, parallel.supports),
    "sequential": Backend("sequential", sequential.run, sequential.supports),
    "pallas": Backend("pallas", pallas.run, pallas.supports, pallas.available),
    "native": Backend("native", native.run, native.supports, native.available),
}


class Query(NamedTuple):
    """What ``auto`` decides on: the cell, the platform, ``remat``, and where known (as
    :func:`seqjax.rnn` passes them) the batch size and the carry's dtype (None: float32)."""

    spec: CellSpec
    platform: str
    remat: bool = False
    batch: int | None = None
    dtype: Any = None

    @property
    def min_cell(self) -> bool:
        return self.spec.kind in MIN_KINDS

    @property
    def native_runs(self) -> bool:
        """On CPU, a cell the C++ kernels have, a float32 carry, and the kernels build here (the
        last is checked only when the rest hold: it compiles them on first use)."""
        return (self.platform == "cpu" and native.supports(self.spec)
                and (self.dtype is None or jnp.dtype(self.dtype) == jnp.float32)
                and BACKENDS["native"].available())

    @property
    def pallas_fits(self) -> bool:
        """On GPU, a cell the Pallas kernels have, and their default tiling with 16-row batch
        blocks (the measured one) fits the shape on this GPU (:func:`.pallas_plan.fits`)."""
        return (self.platform == "gpu" and pallas.supports(self.spec)
                and pallas_plan.fits(self.batch or 1, self.spec.hidden_size, block_b=16))


class Rule(NamedTuple):
    """``auto`` picks ``backend`` where ``applies``, for the reason ``why``."""

    backend: str
    applies: Callable[[Query], bool]
    why: str


AUTO_RULES: tuple[Rule, ...] = (
    Rule("parallel", lambda q: q.min_cell and q.platform == "gpu",
         "minGRU/minLSTM on GPU: a linear recurrence, so one log-space associative scan replaces "
         "T dependent steps."),
    Rule("native", lambda q: q.min_cell and q.native_runs,
         "minGRU/minLSTM on CPU: one C++ kernel each way runs the recurrence on the register "
         "tiles of x W_x, and its backward returns every gradient with dZ still in cache."),
    Rule("sequential", lambda q: q.min_cell,
         "minGRU/minLSTM elsewhere: blocks of steps keep every intermediate in cache, where the "
         "log-space scan's transcendentals cost more than the recurrence they replace."),
    Rule("reference", lambda q: q.remat,
         "remat=True: the only backend that keeps the carry every ~sqrt(T) steps and nothing "
         "else; fused needs every step's gate gradients for its big matmuls whatever it "
         "recomputes, and native saves the gates."),
    Rule("pallas", lambda q: q.pallas_fits,
         "LSTM/GRU on GPU where w_h fits the registers: persistent kernels hold it there for the "
         "whole sequence, one launch per direction."),
    Rule("native", lambda q: q.native_runs,
         "LSTM/GRU on CPU: fused's scheme with both scans as persistent multi-threaded C++ "
         "kernels, free of XLA's per-step dispatch and intermediates."),
    Rule("fused", lambda q: q.platform in ("cpu", "gpu") and fused.supports(q.spec),
         "SimpleRNN/LSTM/GRU otherwise on CPU and GPU: the custom VJP computes the weight "
         "gradients as single big matmuls after the loop instead of one per step."),
    Rule("reference", lambda q: q.platform == "cpu",
         "other cells on CPU: x_t W_x inside the loop avoids a [T, B, G*H] round trip through "
         "main memory."),
    Rule("hoisted", lambda q: True,
         "other cells on GPU, everything on TPU: the input projection as one big matmul suits "
         "accelerators (fused and pallas are unmeasured on TPU)."),
)


def auto_backend(spec, platform: str, remat: bool = False, batch: int | None = None,
                 dtype=None) -> str:
    """The backend ``backend="auto"`` picks: the first of :data:`AUTO_RULES` that applies."""
    query = Query(spec, platform, remat, batch, dtype)
    return next(rule.backend for rule in AUTO_RULES if rule.applies(query))


def resolve(name: str, spec, remat: bool = False, batch: int | None = None,
            dtype=None) -> Backend:
    """Look up a backend by name (``"auto"`` included) and check that it supports the cell."""
    if name == "auto":
        name = auto_backend(spec, jax.default_backend(), remat, batch, dtype)
    if name not in BACKENDS:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(BACKENDS)}; got {name!r}"
        )
    backend = BACKENDS[name]
    if not backend.supports(spec):
        raise ValueError(f"backend {name!r} does not support the {spec.kind!r} cell")
    return backend
