"""minGRU/minLSTM as a blocked sequential scan with a custom VJP: the ``sequential`` backend.

Both cells are the linear recurrence ``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` from the
projected inputs alone (see :mod:`seqjax.kernels.parallel`). On a CPU the recurrence itself is
cheap; what costs is memory traffic over ``[T, B, G*H]`` intermediates (projection, gates,
coefficients and their gradients, each a pass through main memory or L3). So this kernel works
on blocks of ``K`` time steps inside one ``lax.scan``, keeping every intermediate of a block in
cache::

    forward   per block: xw = x W + b (one [K*B, I] @ [I, G*H] matmul), a and b, then the
              block's K steps of the recurrence (an inner scan, :func:`_affine_scan`);
              it saves nothing but the states ``h`` (the inputs are saved anyway).
    backward  a reverse scan over blocks: recompute the block's xw, a, b; run the adjoint
              recurrence ``g_t = dh_t + a_{t+1} g_{t+1}`` backwards through the block (carrying
              ``a g`` into the previous block); turn ``da_t = g_t h_{t-1}``, ``db_t = g_t`` into
              the gate gradient dxw; accumulate ``dW += x^T dxw`` and ``db += sum dxw``; emit
              ``dx = dxw W^T``.

Recomputing the block's projection in the backward pass is cheaper than saving it, once the
elementwise work is fast; the block size (:data:`BLOCK`) is per cell, the fastest measured.

Masks (identity step ``a = 1, b = 0``), resets (``b += a h0, a = 0``: the step reads ``h0``),
the initial carry and ``reverse`` follow :func:`seqjax.kernels.scan.masked_scan`. ``T`` that is
not a multiple of ``K`` is padded with masked steps at the end in processing order. Inputs in
bfloat16 project in bfloat16; the recurrence and its gradients run in the carry's dtype.
Second-order gradients raise ``NotImplementedError`` (the backward pass is not differentiable).

The measurements behind each choice, dated and by machine: ``experiments/results/bench/
README.md``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import MIN_KINDS, RNNCarry, input_projection, min_lstm_gates, positive_g
from seqjax.kernels.vjp import first_order_only, grads_like, mm_t

#: Time steps per block, per cell: 16 and 8 were the fastest for each (the results README).
BLOCK = {"min_gru": 16, "min_lstm": 8}


# ----------------------------------------------------------------------------- coefficients


def _g_and_slope(v):
    """:func:`seqjax.cells.positive_g` and its derivative."""
    s = jax.nn.sigmoid(v)
    return positive_g(v), jnp.where(v >= 0, jnp.ones_like(s), s * (1 - s))


def _coefficients(kind: str, xw):
    if kind == "min_gru":
        k_z, v = jnp.split(xw, 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        return 1 - z, z * positive_g(v)
    k_f, k_i, v = jnp.split(xw, 3, axis=-1)
    f_norm, i_norm = min_lstm_gates(k_f, k_i)
    return f_norm, i_norm * positive_g(v)


def _coefficients_vjp(kind: str, xw, da, db):
    """``dxw`` from the cotangents of ``a`` and ``b`` (recomputing the gates from ``xw``)."""
    if kind == "min_gru":
        k_z, v = jnp.split(xw, 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        g, dg = _g_and_slope(v)
        return jnp.concatenate([(db * g - da) * z * (1 - z), db * z * dg], axis=-1)
    k_f, k_i, v = jnp.split(xw, 3, axis=-1)
    f_norm, i_norm = min_lstm_gates(k_f, k_i)
    g, dg = _g_and_slope(v)
    # a = sigmoid(L), b = sigmoid(-L) g with L = log sigmoid(k_f) - log sigmoid(k_i):
    # dL = (da - db g) a (1 - a), dL/dk_f = 1 - sigmoid(k_f), dL/dk_i = -(1 - sigmoid(k_i)).
    d_log_ratio = (da - db * g) * f_norm * i_norm
    return jnp.concatenate(
        [d_log_ratio * jax.nn.sigmoid(-k_f), -d_log_ratio * jax.nn.sigmoid(-k_i),
         db * i_norm * dg], axis=-1
    )


# ----------------------------------------------------------------------------- blocks


class _Static(NamedTuple):
    kind: str
    reverse: bool


def _effective(a, b, valid_t, reset_t, h0):
    """Fold a step's mask and reset into its coefficients."""
    if valid_t is not None:
        a = jnp.where(valid_t, a, jnp.ones_like(a))
        b = jnp.where(valid_t, b, jnp.zeros_like(b))
    if reset_t is not None:
        b = b + jnp.where(reset_t, a * h0[None], jnp.zeros_like(a))
        a = jnp.where(reset_t, jnp.zeros_like(a), a)
    return a, b


def _affine_scan(a, b, h, reverse: bool):
    """All ``h_k = a_k h_{k-1} + b_k`` over a block's axis 0 (last to first when ``reverse``).

    A ``lax.scan`` of K multiply-adds: faster than recursive doubling (log2(K) elementwise levels
    over the whole block), and than K unrolled steps, which XLA fuses into one loop that
    recomputes the prefix of every output (5x slower at K = 16).
    """

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return lax.scan(step, h, (a, b), reverse=reverse)[1]


def _adjoint_scan(a, dh, m, reverse: bool):
    """The adjoint of :func:`_affine_scan`: ``g_k = dh_k + a_{k+1} g_{k+1}`` over a block, run
    in the opposite order, with ``m`` the ``a g`` entering from the next block. Returns the
    ``a g`` leaving through the block's first step, and all ``g``."""

    def step(m, a_dh):
        g = a_dh[1] + m
        return a_dh[0] * g, g

    return lax.scan(step, m, (a, dh), reverse=reverse)


def _shift(v, fill, later: bool):
    """``v`` moved one step along axis 0, ``fill`` entering at the freed end: ``later`` gives each
    step the value one step after it, else the one before it.

    ``fill`` is a ``[1, ...]`` array. It enters by padding and adding, not by concatenation:
    XLA:CPU emits a concatenate of two arrays inside a fusion as a per-element branch that defeats
    vectorisation, and the backward's main fusion (which reads ``h_{t-1}`` through this shift) ran
    7x slower with it.
    """
    rest = [(0, 0)] * (v.ndim - 1)
    kept, freed = (v[1:], (0, 1)) if later else (v[:-1], (1, 0))
    placed = jnp.pad(fill, [(len(v) - 1, 0) if later else (0, len(v) - 1)] + rest)
    return jnp.pad(kept, [freed] + rest) + placed


def _block_coefficients(static, params, x_blk, m_blk, r_blk, h0):
    """``xw`` and the mask/reset-folded ``a, b`` of one block ``x_blk [K, B, I]``."""
    xw = input_projection(params, x_blk).astype(h0.dtype)
    a, b = _coefficients(static.kind, xw)
    valid = None if m_blk is None else m_blk[..., None]
    reset = None if r_blk is None else r_blk[..., None]
    a_eff, b_eff = _effective(a, b, valid, reset, h0)
    return xw, a, a_eff, b_eff


def _forward_blocks(static, params, xs, mask, resets, h0):
    """``hs [n, K, B, H]`` (the states, unmasked) for blocked ``xs [n, K, B, I]``."""

    def body(h, blk):
        x_blk, m_blk, r_blk = blk
        _, _, a_eff, b_eff = _block_coefficients(static, params, x_blk, m_blk, r_blk, h0)
        hs = _affine_scan(a_eff, b_eff, h, static.reverse)
        return hs[0 if static.reverse else -1], hs

    return lax.scan(body, h0, (xs, mask, resets), reverse=static.reverse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _blocked(static: _Static, params, xs, mask, resets, h0):
    return _forward_blocks(static, params, xs, mask, resets, h0)


def _blocked_fwd(static, params, xs, mask, resets, h0):
    h_T, hs = _forward_blocks(static, params, xs, mask, resets, h0)
    return (h_T, hs), (params, xs, mask, resets, h0, hs)


def _blocked_bwd(static: _Static, res, cts):
    params, xs, mask, resets, h0, hs = first_order_only(res)
    d_hT, d_hs = cts
    cdtype = h0.dtype
    rev = static.reverse
    # The state entering each block (processing order) is the previous block's last state.
    ends = hs[:, 0] if rev else hs[:, -1]
    h_enter = _shift(ends, h0[None], later=rev)

    def body(state, blk):
        m, d_w, d_b, d_h0 = state
        x_blk, m_blk, r_blk, hs_blk, h_in, dh_blk = blk
        xw, a, a_eff, _ = _block_coefficients(static, params, x_blk, m_blk, r_blk, h0)
        # m carries a_eff g from the next block's first step (processing order).
        m, g = _adjoint_scan(a_eff, dh_blk, m, reverse=not rev)
        h_prev = _shift(hs_blk, h_in[None], later=rev)
        da, db = g * h_prev, g
        if r_blk is not None:
            # A reset step read h0: h_t = a_t h0 + b_t.
            reset = r_blk[..., None]
            d_h0 = d_h0 + jnp.sum(jnp.where(reset, g * a, jnp.zeros_like(g)), axis=0)
            da = jnp.where(reset, g * h0[None], da)
        if m_blk is not None:
            valid = m_blk[..., None]
            da = jnp.where(valid, da, jnp.zeros_like(da))
            db = jnp.where(valid, db, jnp.zeros_like(db))
        dxw = _coefficients_vjp(static.kind, xw, da, db)
        x2 = x_blk.reshape(-1, x_blk.shape[-1])
        dxw2 = dxw.reshape(-1, dxw.shape[-1])
        d_w = d_w + lax.dot_general(
            x2, dxw2.astype(x2.dtype), (((0,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
        d_b = d_b + jnp.sum(dxw2, axis=0, dtype=jnp.float32)
        dx = mm_t(dxw2.astype(xs.dtype), params.w_x).reshape(x_blk.shape)
        return (m, d_w, d_b, d_h0), dx

    init = (
        d_hT.astype(cdtype),
        jnp.zeros(params.w_x.shape, jnp.float32),
        jnp.zeros(params.b.shape, jnp.float32),
        jnp.zeros_like(h0),
    )
    (m, d_w, d_b, d_h0), d_xs = lax.scan(
        body, init, (xs, mask, resets, hs, h_enter, d_hs.astype(cdtype)), reverse=not rev
    )
    return grads_like(params, {"w_x": d_w, "b": d_b}), d_xs, None, None, m + d_h0


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


# ----------------------------------------------------------------------------- interface


def supports(spec) -> bool:
    """minGRU and minLSTM (:data:`seqjax.cells.MIN_KINDS`)."""
    return spec.kind in MIN_KINDS


def _blocks(v, n, block, pad, reverse):
    """``[T, ...] -> [n, K, ...]``, padding ``pad`` steps at the end in processing order."""
    if v is None:
        return None
    if pad:
        widths = [(pad, 0) if reverse else (0, pad)] + [(0, 0)] * (v.ndim - 1)
        v = jnp.pad(v, widths)
    return v.reshape((n, block) + v.shape[1:])


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Blocked scan with a custom VJP; the time-major kernel signature of :func:`seqjax.rnn`.

    ``unroll`` and ``remat`` change nothing here: a block's ``BLOCK`` steps already run as one
    elementwise computation, and the backward pass recomputes every activation from the inputs
    and the saved states.
    """
    del unroll, remat
    if not supports(cell.spec):
        raise ValueError(f"backend 'sequential' supports {MIN_KINDS}; got {cell.spec.kind!r}")
    h0 = carry0.h
    time, batch = xs.shape[:2]
    if time == 0:
        return carry0, jnp.zeros((0, *h0.shape), xs.dtype)
    block = min(BLOCK[cell.spec.kind], time)
    n = -(-time // block)
    pad = n * block - time
    user_mask = mask
    if pad and mask is None:  # the padded steps must be identities inside the kernel
        mask = jnp.ones((time, batch), bool)
    if resets is not None and mask is not None:
        resets = resets & mask
    static = _Static(cell.spec.kind, bool(reverse))
    h_T, hs = _blocked(
        static, params,
        _blocks(xs, n, block, pad, reverse),
        _blocks(mask, n, block, pad, reverse),
        _blocks(resets, n, block, pad, reverse),
        h0,
    )
    hs = hs.reshape((n * block,) + hs.shape[2:])
    if pad:
        hs = hs[pad:] if reverse else hs[:time]
    ys = hs if user_mask is None else jnp.where(user_mask[..., None], hs, jnp.zeros_like(hs))
    return RNNCarry(h_T), ys.astype(xs.dtype)

