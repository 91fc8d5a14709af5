"""The masked, resettable time loop shared by the scan backends.

Backends differ in what they feed the loop (raw inputs and ``apply``, or pre-projected inputs and
``step``); the masking, reset and direction rules live here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.types import Array, Carry


def where_per_example(pred: Array, on_true, on_false):
    """Per-example select; ``pred [B]`` broadcasts over each leaf's trailing dims."""

    def select(a, b):
        p = pred.reshape(pred.shape + (1,) * (a.ndim - pred.ndim))
        return jnp.where(p, a, b)

    return jax.tree.map(select, on_true, on_false)


def masked_scan(
    step_fn: Callable[[Carry, Array], tuple[Carry, Array]],
    carry0: Carry,
    inputs: Array,
    mask: Array | None,
    resets: Array | None,
    *,
    reverse: bool,
    unroll: int,
    remat: bool,
) -> tuple[Carry, Array]:
    """Run ``step_fn`` over time-major ``inputs [T, B, ...]``.

    Args:
      step_fn: ``(carry, inputs_t) -> (carry, y_t)``.
      carry0: initial carry, leaves ``[B, H]``; also the value resets restore.
      inputs: ``[T, B, ...]``.
      mask: bool ``[T, B]`` or None. A masked step leaves the carry unchanged and emits zeros.
      resets: bool ``[T, B]`` or None, in processing order: the carry goes back to ``carry0``
        before processing that step (a reset on a masked step has no effect).
      reverse: process ``T-1 .. 0``; each output stays at its own position.
      unroll: ``lax.scan`` unroll factor.
      remat: recompute activations in the backward pass instead of storing them: the carry is
        kept only every ~sqrt(T) steps, and the backward reruns one such chunk at a time
        (``jax.checkpoint`` per chunk), so memory grows with sqrt(T) instead of T. LSTM training
        step at T = 8192 (B16, I128, H256; XLA's peak buffer total): a checkpoint per step kept
        643 MiB, per chunk of 91 steps 393 MiB.

    Returns:
      ``(carry_T, ys [T, B, H])``.
    """

    def body(carry, xs_t):
        x_t, m_t, r_t = xs_t
        carry_in = carry if r_t is None else where_per_example(r_t, carry0, carry)
        new_carry, y_t = step_fn(carry_in, x_t)
        if m_t is not None:
            new_carry = where_per_example(m_t, new_carry, carry)
            y_t = where_per_example(m_t, y_t, jnp.zeros_like(y_t))
        return new_carry, y_t

    if not remat:
        return lax.scan(body, carry0, (inputs, mask, resets), reverse=reverse, unroll=unroll)
    return _chunked_remat_scan(body, carry0, inputs, mask, resets, reverse=reverse, unroll=unroll)


def _chunked_remat_scan(body, carry0, inputs, mask, resets, *, reverse, unroll):
    """``lax.scan(body, ...)`` in checkpointed chunks of ~sqrt(T) steps (see ``remat`` above).

    T is padded to a whole number of chunks with masked steps, which keep the carry and whose
    outputs are dropped, so padding changes nothing in either direction.
    """
    time, batch = inputs.shape[:2]
    chunk = max(1, math.isqrt(max(time - 1, 0)) + 1)
    chunks = -(-time // chunk)
    pad = chunks * chunk - time
    if mask is None and pad:
        mask = jnp.ones((time, batch), bool)

    def split(a, fill):
        if a is None:
            return None
        a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)]) if pad else a
        return a.reshape(chunks, chunk, *a.shape[1:])

    @jax.checkpoint
    def run_chunk(carry, chunk_inputs):
        return lax.scan(body, carry, chunk_inputs, reverse=reverse, unroll=unroll)

    carry, ys = lax.scan(
        run_chunk, carry0, (split(inputs, 0), split(mask, False), split(resets, False)),
        reverse=reverse,
    )
    return carry, ys.reshape(chunks * chunk, *ys.shape[2:])[:time]
