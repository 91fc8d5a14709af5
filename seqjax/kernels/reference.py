"""The oracle backend: ``lax.scan`` of ``cell.apply``; every other backend is tested against it."""

from __future__ import annotations

import functools

from seqjax.kernels.scan import masked_scan


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`."""
    step_fn = functools.partial(cell.apply, params)
    return masked_scan(
        step_fn, carry0, xs, mask, resets, reverse=reverse, unroll=unroll, remat=remat
    )


def supports(spec) -> bool:
    del spec
    return True
