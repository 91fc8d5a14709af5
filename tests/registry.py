"""One table of cells x backends that drives the generic property tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import seqjax as sj

CELLS = {
    "simple_rnn_tanh": lambda h: sj.simple_rnn(h),
    "simple_rnn_relu": lambda h: sj.simple_rnn(h, activation="relu"),
    "lstm": lambda h: sj.lstm(h),
    "gru": lambda h: sj.gru(h),
    "gru_cho": lambda h: sj.gru(h, reset_after=False),
    "simplified_gru": lambda h: sj.simplified_gru(h),
    "min_gru": lambda h: sj.min_gru(h),
    "min_lstm": lambda h: sj.min_lstm(h),
}

# The native backend exists where a C++ compiler builds it (test_kernels_native checks that).
BACKENDS = sorted(name for name in sj.kernels.BACKENDS
                  if name != "native" or sj.kernels.native.available())

# Every (cell, backend) pair the backend supports: the generic tests run over all of them.
CASES = [
    (cell, backend)
    for cell in sorted(CELLS)
    for backend in BACKENDS
    if sj.kernels.BACKENDS[backend].supports(CELLS[cell](2).spec)
]


def random_params(cell: sj.Cell, key, input_size: int, scale: float = 0.5, dtype=jnp.float32):
    """Params with every leaf random and non-zero, biases included (zero biases hide bugs)."""
    params = cell.init(key, input_size, dtype)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [scale * jax.random.normal(k, leaf.shape, dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, leaves)


def random_carry(cell: sj.Cell, key, batch: int, dtype=jnp.float32):
    carry = cell.initial_carry((batch,), dtype)
    leaves, treedef = jax.tree.flatten(carry)
    keys = jax.random.split(key, len(leaves))
    # minGRU/minLSTM states stay positive in their log-space form; keep them positive here too.
    positive = cell.spec.kind in sj.cells.MIN_KINDS
    leaves = [
        (jnp.abs if positive else (lambda v: v))(0.5 * jax.random.normal(k, leaf.shape, dtype))
        for k, leaf in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, leaves)
