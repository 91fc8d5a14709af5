"""Backends that run a cell over time, all behind one signature.

``run(cell, params, xs [T,B,I], mask [T,B] | None, resets [T,B] | None, carry0, *, reverse, unroll,
remat) -> (carry_T, ys [T,B,H])``. ``reference`` is the oracle; every backend returns the same
structures and dtypes and agrees with it in values and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from seqjax.kernels import hoisted, reference


class Backend(NamedTuple):
    """A kernel: its time-major ``run`` and which cells (by ``CellSpec``) it supports."""

    name: str
    run: Callable
    supports: Callable


BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", reference.run, reference.supports),
    "hoisted": Backend("hoisted", hoisted.run, hoisted.supports),
}

# Cells with no recurrent matmul: the loop is elementwise, so projecting all steps at once is
# always the better deal.
_INPUT_ONLY_GATES = ("min_gru", "min_lstm")


def auto_backend(spec, platform: str) -> str:
    """The backend ``backend="auto"`` picks for a cell on a platform.

    Rules (measured by ``make bench``; see experiments/results/bench/):
    * minGRU/minLSTM: ``hoisted`` everywhere (their loop has no matmul left).
    * CPU: ``reference``: keeping ``x_t W_x`` inside the loop avoids a ``[T,B,G*H]`` round trip
      through main memory.
    * GPU/TPU: ``hoisted``: one big matmul is nearly free there.
    """
    if spec.kind in _INPUT_ONLY_GATES:
        return "hoisted"
    if platform == "cpu":
        return "reference"
    return "hoisted"


def resolve(name: str, spec) -> Backend:
    """Look up a backend by name (``"auto"`` included) and check that it supports the cell."""
    if name == "auto":
        name = auto_backend(spec, jax.default_backend())
    if name not in BACKENDS:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(BACKENDS)}; got {name!r}"
        )
    backend = BACKENDS[name]
    if not backend.supports(spec):
        raise ValueError(f"backend {name!r} does not support the {spec.kind!r} cell")
    return backend
