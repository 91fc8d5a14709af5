"""Backends that run a cell over time, all behind one signature.

``run(cell, params, xs [T,B,I], mask [T,B] | None, resets [T,B] | None, carry0, *, reverse, unroll,
remat) -> (carry_T, ys [T,B,H])``. ``reference`` is the oracle; every backend returns the same
structures and dtypes and agrees with it in values and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from seqjax.kernels import fused, hoisted, pallas, parallel, reference, sequential


class Backend(NamedTuple):
    """A kernel: its time-major ``run`` and which cells (by ``CellSpec``) it supports."""

    name: str
    run: Callable
    supports: Callable


BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", reference.run, reference.supports),
    "hoisted": Backend("hoisted", hoisted.run, hoisted.supports),
    "fused": Backend("fused", fused.run, fused.supports),
    "parallel": Backend("parallel", parallel.run, parallel.supports),
    "sequential": Backend("sequential", sequential.run, sequential.supports),
    "pallas": Backend("pallas", pallas.run, pallas.supports),
}

# Cells with no recurrent matmul: the loop is elementwise, so projecting all steps at once is
# always the better deal.
_INPUT_ONLY_GATES = ("min_gru", "min_lstm")


def auto_backend(spec, platform: str, remat: bool = False) -> str:
    """The backend ``backend="auto"`` picks for a cell on a platform.

    Rules (measured by ``make bench``; see experiments/results/bench/):
    * minGRU/minLSTM: ``parallel`` (log-space associative scan) on GPU, ``sequential`` (blocked
      scan with a custom VJP, ``seqjax/kernels/sequential.py``) elsewhere.
      H100, JAX 0.11.2, fp32 training step ``jit(grad)``, parallel / hoisted / reference ms:
      S1 (B64 T128 I128 H256) min_gru 0.42 / 3.08 / 4.05, min_lstm 0.46 / 3.70 / 4.09;
      S4 (B16 T1024 I32 H64) min_gru 0.41 / 18.1 / 26.2, min_lstm 0.34 / 23.6 / 30.0.
      2-core CPU, sequential / parallel / hoisted / reference ms: S1 min_gru 34 / 169 / 71 / 68,
      min_lstm 53 / 298 / 109 / 92; S4 min_gru 14 / 78 / 34 / 19, min_lstm 19 / 142 / 49 / 43.
      TPU is unmeasured.
    * LSTM and GRU (``reset_after=True``) on GPU with H <= 128: ``pallas`` (persistent kernels,
      the hidden units split over SMs with a barrier per step; ``seqjax/kernels/pallas.py``).
      H100 training step ms, pallas / fused / reference / torch cuDNN: B64 T128 I128 H32 lstm
      1.09 / 3.28 / 5.37 / 1.76; H64 lstm 1.98 / 3.57 / 5.76 / 1.60, gru 1.73 / 3.06 / 5.60 /
      1.60; S2 (H128) lstm 9.12 / 12.61 / 21.50 / 2.73, gru 7.63 / 12.55 / 21.60 / 2.60; S4
      (H64) lstm 14.18 / 23.69 / 37.13 / 1.82. At H256 ``fused`` is as fast or faster (S1 lstm
      3.67 vs 4.14, gru 3.46 vs 3.41) and at H512 pallas is 20x slower (S3 lstm 34.7 vs 1.6),
      so larger H keeps the rule below. Never on CPU (interpreted there).
    * Otherwise SimpleRNN, LSTM and GRU (both forms) on CPU and GPU: ``fused`` (custom VJP; the
      weight gradients are single big matmuls; see ``seqjax/kernels/fused.py``). fp32 training
      step ms, fused / reference / hoisted / torch, interleaved in one run per platform:
      2-core CPU (x W_x kept in the loop): LSTM S1 193/217/289/235, S2 172/230/267/187,
      S3 249/267/348/259, S4 67/91/115/73; GRU S1 164/175/219/173, S2 142/171/195/217,
      S3 186/187/246/190, S4 57/72/86/211. H100, JAX 0.11.2 (x W_x hoisted): LSTM S1
      3.8/6.6/5.1/6.9, S2 13.0/21.9/17.9/3.5, S3 1.8/2.4/2.2/3.9, S4 22.9/32.0/32.8/3.1; GRU S1
      3.7/6.1/4.6/6.8, S2 12.5/21.2/16.3/3.2, S3 1.6/2.4/1.9/3.7, S4 23.2/37.4/28.8/3.3 (cuDNN's
      persistent kernel still wins long sequences on GPU).
    * Other cells on CPU: ``reference``: keeping ``x_t W_x`` inside the loop avoids a
      ``[T,B,G*H]`` round trip through main memory.
    * Other cells on GPU, everything on TPU: ``hoisted`` (``fused`` and the ``pallas`` backend's
      Mosaic kernels are unmeasured on TPU).
    * ``remat=True`` (SimpleRNN, LSTM, GRU, simplified GRU): ``reference``, whose checkpointed step
      keeps only the carry per step and accumulates weight gradients inside the loop. ``fused``
      needs the ``[T, B, G*H]`` gate gradients for its big matmuls whatever it recomputes: LSTM
      training step at B16, T8192, I128, H256 on CPU, XLA's peak buffer total: fused 1667 MiB,
      fused+remat 1219 MiB (0.73x), reference+remat 0.39x of fused (``make bench``).
    """
    if spec.kind in _INPUT_ONLY_GATES:
        return "parallel" if platform == "gpu" else "sequential"
    if remat:
        return "reference"
    if platform == "gpu" and pallas.supports(spec) and spec.hidden_size <= 128:
        return "pallas"
    if platform in ("cpu", "gpu") and fused.supports(spec):
        return "fused"
    if platform == "cpu":
        return "reference"
    return "hoisted"


def resolve(name: str, spec, remat: bool = False) -> Backend:
    """Look up a backend by name (``"auto"`` included) and check that it supports the cell."""
    if name == "auto":
        name = auto_backend(spec, jax.default_backend(), remat)
    if name not in BACKENDS:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(BACKENDS)}; got {name!r}"
        )
    backend = BACKENDS[name]
    if not backend.supports(spec):
        raise ValueError(f"backend {name!r} does not support the {spec.kind!r} cell")
    return backend
