"""Input projection hoisted out of the loop: one ``[T*B, I] @ [I, G*H]`` matmul for all steps.

The scan then carries only the recurrent part (``h @ w_h`` and the gate math). This wins where big
matmuls are cheap relative to memory traffic (GPU/TPU) and for cells with no recurrent matmul
(minGRU, minLSTM); on a small CPU the materialised ``[T, B, G*H]`` tensor can make it slower, so
``backend="auto"`` chooses per platform from ``make bench``.
"""

from __future__ import annotations

import functools

from seqjax.kernels.scan import masked_scan


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`."""
    xw = cell.project(params, xs)
    step_fn = functools.partial(cell.step, params)
    return masked_scan(
        step_fn, carry0, xw, mask, resets, reverse=reverse, unroll=unroll, remat=remat
    )


def supports(spec) -> bool:
    del spec
    return True
