"""Backends that run a cell over time, all behind one signature.

``run(cell, params, xs [T,B,I], mask [T,B] | None, resets [T,B] | None, carry0, *, reverse, unroll,
remat) -> (carry_T, ys [T,B,H])``. ``reference`` is the oracle; every backend returns the same
structures and dtypes and agrees with it in values and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.kernels import fused, hoisted, native, pallas, parallel, reference, sequential


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
    "native": Backend("native", native.run, native.supports),
}

# Cells with no recurrent matmul: the loop is elementwise, so projecting all steps at once is
# always the better deal.
_INPUT_ONLY_GATES = ("min_gru", "min_lstm")


def auto_backend(spec, platform: str, remat: bool = False, batch: int | None = None,
                 dtype=None) -> str:
    """The backend ``backend="auto"`` picks for a cell on a platform (and batch size and carry
    dtype, where known: :func:`seqjax.rnn` passes them; the ``pallas`` rule depends on the batch,
    the ``native`` one on the dtype, None meaning float32).

    Rules (measured by ``make bench``; see experiments/results/bench/):
    * minGRU/minLSTM: ``parallel`` (log-space associative scan) on GPU; on CPU ``native`` (one
      C++ kernel each way, the recurrence on the projection's register tiles) where it builds and
      the carry is float32, else ``sequential`` (blocked scan with a custom VJP,
      ``seqjax/kernels/sequential.py``).
      H100, JAX 0.11.2, fp32 training step ``jit(grad)``, parallel / hoisted / reference ms:
      S1 (B64 T128 I128 H256) min_gru 0.42 / 3.08 / 4.05, min_lstm 0.46 / 3.70 / 4.09;
      S4 (B16 T1024 I32 H64) min_gru 0.41 / 18.1 / 26.2, min_lstm 0.34 / 23.6 / 30.0.
      2-core CPU, sequential / parallel / hoisted / reference ms: S1 min_gru 34 / 169 / 71 / 68,
      min_lstm 53 / 298 / 109 / 92; S4 min_gru 14 / 78 / 34 / 19, min_lstm 19 / 142 / 49 / 43;
      native / sequential, 20 interleaved rounds: S1 min_gru 31.6 / 31.7, min_lstm 40.1 / 51.7;
      S3 min_gru 19.2 / 34.5, min_lstm 29.7 / 45.5; S4 min_gru 7.4 / 12.8, min_lstm 8.0 / 20.9;
      with native's recompute (2026-12-02, a slower host): S1 39.8 / 60.6, 57.7 / 91.5; S3
      22.7 / 47.5, 33.8 / 63.8; S4 9.1 / 19.1, 13.9 / 30.4.
      TPU is unmeasured.
    * LSTM and GRU (``reset_after=True``) on GPU wherever the ``pallas`` kernels' default tiling
      with 16-row batch blocks (the measured one) fits the shape (``pallas.fits``: up to H256,
      at H256 up to 128 rows so that all programs are resident at once):
      ``pallas`` (persistent kernels, ``w_h`` held in registers and split over SMs with a
      barrier per step; ``seqjax/kernels/pallas.py``). H100 training step ms, pallas / fused /
      reference / torch cuDNN: S1 (H256) lstm 1.68 / 3.68 / 6.64 / 5.86, gru 1.58 / 3.56 /
      6.18 / 6.03; S2 (H128) lstm 4.04 / 13.22 / 21.76 / 3.04, gru 3.92 / 12.34 / 21.14 / 2.06;
      S4 (H64) lstm 5.62 / 23.16 / 37.40 / 1.74; B64 T128 I128 H64 lstm 0.92 / 3.31 / 5.66 /
      1.97; H32 lstm 0.61 / 3.26 / 5.46 / 1.81. At H512 (S3) w_h does not fit the registers of
      the programs a batch block can have: ``fused``. Never on CPU (interpreted there).
    * LSTM and GRU (``reset_after=True``) on CPU with a float32 carry, where a C++ compiler
      builds the kernels (``native.available()``): ``native`` (the fused scheme with both scans
      as persistent multi-threaded C++ kernels; ``seqjax/kernels/native.py``). 2-core CPU,
      training step ms, native / fused / flax.nnx / torch.nn, interleaved in one run (that
      module's docstring has a second): LSTM S1 133.5/161.9/175.8/165.1, S2 86.5/135.6/159.4/
      111.2, S3 174.6/198.4/214.4/198.8, S4 34.7/53.4/71.2/54.2; GRU S1 107.2/143.4/148.9/
      151.8, S2 75.8/115.0/142.5/162.7, S3 138.9/156.7/159.0/169.8, S4 23.7/45.7/54.0/157.2.
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
    * ``remat=True`` (SimpleRNN, LSTM, GRU, simplified GRU): ``reference``, which keeps the
      carry only every ~sqrt(T) steps (checkpointed chunks) and accumulates weight gradients
      inside the loop. ``fused`` needs the ``[T, B, G*H]`` gate gradients for its big matmuls
      whatever it recomputes, and ``native`` saves the gates. LSTM training step at B16, T8192,
      I128, H256 on CPU, XLA's peak buffer total (``make bench``): native (auto without remat)
      1155 MiB, fused 1667, fused+remat 1219, reference 1923, reference+remat 393 (0.34x of
      auto without remat; with a checkpoint per step instead of per chunk it was 643, 0.56x).
    """
    native_fits = (platform == "cpu" and native.supports(spec)
                   and (dtype is None or jnp.dtype(dtype) == jnp.float32))
    if spec.kind in _INPUT_ONLY_GATES:
        if platform == "gpu":
            return "parallel"
        return "native" if native_fits and native.available() else "sequential"
    if remat:
        return "reference"
    if (platform == "gpu" and pallas.supports(spec)
            and pallas.fits(batch or 1, spec.hidden_size, block_b=16)):
        return "pallas"
    if native_fits and native.available():
        return "native"
    if platform in ("cpu", "gpu") and fused.supports(spec):
        return "fused"
    if platform == "cpu":
        return "reference"
    return "hoisted"


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
