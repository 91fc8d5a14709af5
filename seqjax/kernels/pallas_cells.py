"""What the GPU (Triton) and TPU (Mosaic) Pallas kernels share: the cells' per-step math, forward
and backward, on lists of per-gate tiles, and the XLA parts of the ``custom_vjp``.
"""

from __future__ import annotations

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


# kind -> (gates, residual arrays, has a cell state, forward, backward)
CELLS = {"lstm": (4, 4, True, lstm_forward, lstm_backward),
          "gru": (3, 4, False, gru_forward, gru_backward)}


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
    and the recurrent cotangents ``[T, G, B, H]``, as single big matmuls/reductions in XLA."""
    dw = jnp.einsum("tbk,tgbj->gkj", h_in, drec)
    if kind == "gru":
        return dw, jnp.sum(drec, axis=(0, 2))
    return dw, jnp.zeros((gates, h_in.shape[-1]), h_in.dtype)
