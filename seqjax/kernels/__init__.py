"""Backends that run a cell over time, all behind one signature.

``run(cell, params, xs [T,B,I], mask [T,B] | None, resets [T,B] | None, carry0, *, reverse, unroll,
remat) -> (carry_T, ys [T,B,H])``. ``reference`` is the oracle; every backend returns the same
structures and dtypes and agrees with it in values and gradients.

=============  ==========================================================================
``reference``  ``lax.scan`` of ``cell.apply``: the oracle (:mod:`.reference`)
``hoisted``    the input projection for all steps as one matmul (:mod:`.hoisted`)
``fused``      custom VJP, weight gradients as single big matmuls (:mod:`.fused`)
``parallel``   minGRU/minLSTM by a log-space associative scan (:mod:`.parallel`)
``sequential`` minGRU/minLSTM in cache-sized blocks of steps (:mod:`.sequential`)
``pallas``     persistent LSTM/GRU kernels, Triton on GPU, Mosaic on TPU (:mod:`.pallas`)
``native``     persistent multi-threaded C++ kernels for CPU (:mod:`.native`)
=============  ==========================================================================

The registry and ``backend="auto"``'s rules are in :mod:`seqjax.kernels.dispatch`.
"""

from seqjax.kernels import fused, hoisted, native, pallas, parallel, reference, sequential
from seqjax.kernels.dispatch import BACKENDS, Backend, auto_backend, resolve

__all__ = [
    "BACKENDS",
    "Backend",
    "auto_backend",
    "fused",
    "hoisted",
    "native",
    "pallas",
    "parallel",
    "reference",
    "resolve",
    "sequential",
]
