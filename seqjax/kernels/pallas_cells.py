"""What the GPU (Triton) and TPU (Mosaic) Pallas kernels share: the cells' per-step math, forward
and backward, on lists of per-gate tiles, and the XLA parts around the kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


def supports(spec) -> bool:
    return spec.kind == "lstm" or (spec.kind == "gru" and spec.reset_after)


def lstm_forward(xw, hw, bh, h_in, c_in):
    del bh, h_in
    i = jax.nn.sigmoid(xw[0] + hw[0])
    f = jax.nn.sigmoid(xw[1] + hw[1])
    g = jnp.tanh(xw[2] + hw[2])
    o = jax.nn.sigmoid(xw[3] + hw[3])
    c = f * c_in + i * g
    h = o * jnp.tanh(c)
    return h, c, (i, f, g, o)


def lstm_backward(res, h_in, c_in, c_new, dh, dc):
    """Gate pre-activation grads, recurrent-matmul cotangent, direct dh_{t-1}, dc_{t-1}."""
    del h_in
    i, f, g, o = res
    tanh_c = jnp.tanh(c_new)
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    dz = (
        dc * g * i * (1 - i),
        dc * c_in * f * (1 - f),
        dc * i * (1 - g * g),
        dh * tanh_c * o * (1 - o),
    )
    return dz, dz, None, dc * f


def gru_forward(xw, hw, bh, h_in, c_in):
    del c_in
    r = jax.nn.sigmoid(xw[0] + hw[0] + bh[0])
    z = jax.nn.sigmoid(xw[1] + hw[1] + bh[1])
    hn = hw[2] + bh[2]
    n = jnp.tanh(xw[2] + r * hn)
    h = (1 - z) * n + z * h_in
    return h, None, (r, z, n, hn)


def gru_backward(res, h_in, c_in, c_new, dh, dc):
    del c_in, c_new, dc
    r, z, n, hn = res
    dz = dh * (h_in - n) * z * (1 - z)
    dn = dh * (1 - z) * (1 - n * n)
    dr = dn * hn * r * (1 - r)
    return (dr, dz, dn), (dr, dz, dn * r), dh * z, None


class CellMath(NamedTuple):
    """A cell's per-step math for the kernels, on lists of per-gate tiles."""

    gates: int  # G
    residuals: int  # arrays the forward saves per step for the backward
    has_c: bool  # an LSTM cell state beside h
    forward: Callable  # (xw, hw, bh, h_in, c_in) -> (h, c, residuals)
    backward: Callable  # (res, h_in, c_in, c_new, dh, dc) -> (dxw, drec, dh_direct, dc_in)


CELLS: dict[str, CellMath] = {
    "lstm": CellMath(4, 4, True, lstm_forward, lstm_backward),
    "gru": CellMath(3, 4, False, gru_forward, gru_backward),
}


def lstm_cell_state(res, c_in):
    """``c_t`` from the saved gates and ``c_{t-1}`` (cheaper to recompute than to store)."""
    i, f, g, _ = res
    return f * c_in + i * g


def dot(a, b, transpose_b=False):
    """``a @ b`` (or ``a @ b.T``) accumulated in float32."""
    dims = (((1,), (1 if transpose_b else 0,)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(a.dtype)


def weight_grads(kind, h_in, drec, gates):
    """``d w_h [G, H, H]`` and ``d b_h [G, H]`` from the carries each step read, ``[T, B, H]``,
    and the recurrent cotangents ``[T, B, G, H]``, as single big matmuls/reductions in XLA."""
    dw = jnp.einsum("tbk,tbgj->gkj", h_in, drec)
    if kind == "gru":
        return dw, jnp.sum(drec, axis=(0, 1))
    return dw, jnp.zeros((gates, h_in.shape[-1]), h_in.dtype)


class KernelInputs(NamedTuple):
    """What both kernel families take, before padding; float in the carry's dtype."""

    xw: jax.Array  # [T, B, G, H] input projection (as the projection's matmul lays it out)
    w: jax.Array  # [G, H, H] recurrent weights, w[g, k, j] = w_h[k, g * H + j]
    bh: jax.Array  # [G, H] recurrent bias (the GRU's; zeros for the LSTM)
    h0: jax.Array  # [B, H]
    c0: jax.Array | None  # [B, H], LSTM only
    valid: jax.Array  # [T, B], 1 where the step is processed
    reset: jax.Array  # [T, B], 1 where the carry goes back to carry0 first (valid steps only)


def kernel_inputs(cell, params, xs, mask, resets, carry0) -> KernelInputs:
    spec = cell.spec
    gates, hidden = spec.num_gates, spec.hidden_size
    time, batch = xs.shape[:2]
    dtype = carry0.h.dtype
    xw = cell.project(params, xs).astype(dtype).reshape(time, batch, gates, hidden)
    w = jnp.transpose(params.w_h.astype(dtype).reshape(hidden, gates, hidden), (1, 0, 2))
    if spec.kind == "gru":
        bh = params.b_h.astype(dtype).reshape(gates, hidden)
    else:
        bh = jnp.zeros((gates, hidden), dtype)
    valid = jnp.ones((time, batch), bool) if mask is None else mask
    reset = jnp.zeros((time, batch), bool) if resets is None else resets & valid
    return KernelInputs(xw, w, bh, carry0.h,
                        carry0.c if spec.kind == "lstm" else None, valid.astype(dtype),
                        reset.astype(dtype))


def pad_to(x, *sizes):
    """Zero-pad ``x`` at the end of each axis to ``sizes``."""
    return jnp.pad(x, [(0, size - n) for n, size in zip(x.shape, sizes)])
