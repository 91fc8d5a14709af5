"""Fused backend: a ``jax.custom_vjp`` whose backward pass is the cuDNN scheme.

Scheme (SimpleRNN, LSTM, GRU in both forms)::

    forward   one lax.scan: z_t = x_t W_x + b + h_{t-1} W_h, gates, new carry; it saves the carry
              entering every step and the post-activation gates (``acts``).
    backward  one reverse lax.scan that computes only what is sequential: the per-step gradients
              of the gate pre-activations (dZ_x for the input side, dZ_h for the recurrent side)
              and dh_{t-1} = dZ_h,t W_h^T. Everything else is one large matmul over all T*B rows:
              dW_x = X^T dZ_x,  db = sum dZ_x,  dX = dZ_x W_x^T,  dW_h = H_in^T dZ_h.

Why: autodiff through the scan does those three weight/input matmuls once per step on [B, .]
slices and accumulates dW in the loop; here they run once, at full matmul efficiency. The win is
largest for small batches and long sequences (few rows per step).

Choices:

* Input projection: computed per step inside the forward loop on CPU, where hoisting it
  materialises a [T, B, G*H] tensor that goes through main memory; hoisted on GPU/TPU
  (:func:`_hoist_input`), where one big matmul is cheaper than T small ones.
* Residuals: post-activation gates rather than pre-activations (same size, and the backward then
  needs no exp), plus the carry entering each step (the operand of dW_h and, for the LSTM,
  c_{t-1}). tanh(c_t) is recomputed.
* ``remat=True`` saves only the carries entering each step; the reverse scan recomputes each
  step's gates from them before its gradient: memory per step drops from (G+2)H to 2H floats,
  for about a third more time.
* ``unroll`` is the caller's: unrolling was slower on CPU at every shape measured.

Semantics are those of :func:`seqjax.kernels.scan.masked_scan`: masked steps keep the carry and
emit zeros, resets restore ``carry0`` before a step in processing order, ``reverse`` runs
T-1..0 writing outputs at their own positions; outputs in ``xs``' dtype, carry in ``carry0``'s
(float32 for bfloat16 inputs; the input projection runs in the inputs' dtype, as ``cell.project``
does, and its gradients accumulate in float32).

Second-order gradients are not supported: differentiating the backward pass raises
``NotImplementedError`` (:func:`seqjax.kernels.vjp.first_order_only`), never a silently wrong
value.

Each choice was measured against its alternatives; the figures, dated and by machine, are in
``experiments/results/bench/README.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import CellSpec, LSTMCarry, RNNCarry, add_bias, input_projection
from seqjax.kernels.scan import where_per_example
from seqjax.kernels.vjp import first_order_only, grads_like, mm_t, outer_sum
from seqjax.types import Array

# ----------------------------------------------------------------------------- helpers


def _zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _sig_grad(s: Array) -> Array:
    return s * (1 - s)


# ----------------------------------------------------------------------------- per-cell steps
#
# Each cell gives three functions:
#   forward(spec, params, xw, carry_in) -> (carry_new, acts)
#       xw = x W_x + b already in the carry's dtype. ``remat`` reruns it per step inside the
#       reverse scan; it works for any leading dims, so the Cho GRU's dW_h can recompute r for
#       all steps at once.
#   backward(spec, params, acts, carry_in, d_new) -> (d_carry_in, dzx, dzh)
#       d_new: cotangent of the new carry (the output's cotangent already added to d_new.h).
#       dzx: gradient of the input-side pre-activation xw; dzh: of the recurrent side (None when
#       it equals dzx).
#   recurrent_grads(spec, params, xs, acts, carry_in, dzx, dzh) -> dict of recurrent param grads
#       (float32) over all steps at once; ``acts`` is None under remat.


def _rnn_forward(spec, params, xw, carry_in):
    z = xw + carry_in.h @ params.w_h.astype(xw.dtype)
    h = jnp.tanh(z) if spec.activation == "tanh" else jax.nn.relu(z)
    return RNNCarry(h), (h,)


def _rnn_backward(spec, params, acts, carry_in, d_new):
    (h,) = acts
    if spec.activation == "tanh":
        dz = d_new.h * (1 - h * h)
    else:  # relu; jax.nn.relu's derivative at 0 is 0, and h > 0 exactly where z > 0
        dz = jnp.where(h > 0, d_new.h, jnp.zeros_like(h))
    return RNNCarry(mm_t(dz, params.w_h)), dz, None


def _lstm_forward(spec, params, xw, carry_in):
    z = xw + carry_in.h @ params.w_h.astype(xw.dtype)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry_in.c + i * g
    h = o * jnp.tanh(c)
    return LSTMCarry(h, c), (i, f, g, o)


def _lstm_backward(spec, params, acts, carry_in, d_new):
    i, f, g, o = acts
    c_in = carry_in.c
    tanh_c = jnp.tanh(f * c_in + i * g)
    dh = d_new.h
    dc = d_new.c + dh * o * (1 - tanh_c * tanh_c)
    dz = jnp.concatenate(
        [
            dc * g * _sig_grad(i),
            dc * c_in * _sig_grad(f),
            dc * i * (1 - g * g),
            dh * tanh_c * _sig_grad(o),
        ],
        axis=-1,
    )
    return LSTMCarry(mm_t(dz, params.w_h), dc * f), dz, None


def _h_times_dz(spec, params, xs, acts, carry_in, dzx, dzh):
    """dW_h = H_in^T dZ_h for cells whose recurrent matmul reads h_{t-1} directly."""
    return {"w_h": outer_sum(carry_in.h, dzx if dzh is None else dzh, jnp.float32)}


def _gru_forward(spec, params, xw, carry_in):
    h_in = carry_in.h
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    w_h = params.w_h.astype(xw.dtype)
    H = spec.hidden_size
    if spec.reset_after:
        h_r, h_z, h_n = jnp.split(add_bias(h_in @ w_h, params.b_h), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        acts = (r, z, n, h_n)
    else:
        h_r, h_z = jnp.split(h_in @ w_h[:, : 2 * H], 2, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + (r * h_in) @ w_h[:, 2 * H :])
        acts = (r, z, n)
    h = (1 - z) * n + z * h_in
    return RNNCarry(h), acts


def _gru_backward(spec, params, acts, carry_in, d_new):
    h_in, dh = carry_in.h, d_new.h
    r, z, n = acts[:3]
    H = spec.hidden_size
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_in - n) * _sig_grad(z)
    if spec.reset_after:
        h_n = acts[3]
        dr = dn * h_n * _sig_grad(r)
        dzx = jnp.concatenate([dr, dz, dn], axis=-1)
        dzh = jnp.concatenate([dr, dz, dn * r], axis=-1)
        dh_in = dh * z + mm_t(dzh, params.w_h)
        return RNNCarry(dh_in), dzx, dzh
    # Cho form: n reads (r * h_in) W_hn, so the sequential part has two dependent matmuls.
    d_rh = mm_t(dn, params.w_h[:, 2 * H :])
    dr = d_rh * h_in * _sig_grad(r)
    drz = jnp.concatenate([dr, dz], axis=-1)
    dh_in = dh * z + d_rh * r + mm_t(drz, params.w_h[:, : 2 * H])
    return RNNCarry(dh_in), jnp.concatenate([drz, dn], axis=-1), None


def _gru_recurrent_grads(spec, params, xs, acts, carry_in, dzx, dzh):
    if spec.reset_after:
        return {"w_h": outer_sum(carry_in.h, dzh, jnp.float32),
                "b_h": jnp.sum(dzh, axis=(0, 1), dtype=jnp.float32)}
    H = spec.hidden_size
    if acts is None:  # remat saved no gates: recompute r for all steps at once (n is unused)
        xw = input_projection(params, xs).astype(carry_in.h.dtype)
        acts = _gru_forward(spec, params, xw, carry_in)[1]
    r = acts[0]
    w_rz = outer_sum(carry_in.h, dzx[..., : 2 * H], jnp.float32)
    w_n = outer_sum(r * carry_in.h, dzx[..., 2 * H :], jnp.float32)
    return {"w_h": jnp.concatenate([w_rz, w_n], axis=-1)}


class _CellOps(NamedTuple):
    forward: Callable
    backward: Callable
    recurrent_grads: Callable


_OPS: dict[str, _CellOps] = {
    "simple_rnn": _CellOps(_rnn_forward, _rnn_backward, _h_times_dz),
    "lstm": _CellOps(_lstm_forward, _lstm_backward, _h_times_dz),
    "gru": _CellOps(_gru_forward, _gru_backward, _gru_recurrent_grads),
}


# ----------------------------------------------------------------------------- driver


class _Static(NamedTuple):
    """Hashable static configuration: the only ``nondiff_argnums`` entry (no arrays here)."""

    spec: CellSpec
    reverse: bool
    unroll: int
    remat: bool
    hoist: bool


def _hoist_input(platform: str) -> bool:
    """Hoist ``X W_x`` out of the forward loop on accelerators, keep it per step on CPU."""
    return platform != "cpu"


def _forward(static: _Static, params, xs, mask, resets, carry0, *, save: bool):
    ops = _OPS[static.spec.kind]
    cdtype = jax.tree.leaves(carry0)[0].dtype
    inputs = input_projection(params, xs) if static.hoist else xs

    def body(carry, inp):
        u_t, m_t, r_t = inp
        carry_in = carry if r_t is None else where_per_example(r_t, carry0, carry)
        xw_t = u_t if static.hoist else input_projection(params, u_t)
        new, acts = ops.forward(static.spec, params, xw_t.astype(cdtype), carry_in)
        y_t = new.h
        if m_t is not None:
            new = where_per_example(m_t, new, carry)
            y_t = where_per_example(m_t, y_t, jnp.zeros_like(y_t))
        y_t = y_t.astype(xs.dtype)
        if not save:
            return new, y_t
        return new, (y_t, carry_in, None if static.remat else acts)

    carry_T, out = lax.scan(
        body, carry0, (inputs, mask, resets), reverse=static.reverse, unroll=static.unroll
    )
    if not save:
        return (carry_T, out), None
    ys, carry_ins, acts = out
    return (carry_T, ys), (params, xs, mask, resets, carry0, carry_ins, acts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(static: _Static, params, xs, mask, resets, carry0):
    return _forward(static, params, xs, mask, resets, carry0, save=False)[0]


def _fused_fwd(static, params, xs, mask, resets, carry0):
    return _forward(static, params, xs, mask, resets, carry0, save=True)


def _fused_bwd(static: _Static, res, cts):
    res = first_order_only(res)
    params, xs, mask, resets, carry0, carry_ins, acts = res
    d_carry_T, d_ys = cts
    spec = static.spec
    ops = _OPS[spec.kind]
    cdtype = jax.tree.leaves(carry0)[0].dtype

    def body(state, inp):
        d_carry, d_carry0 = state
        acts_t, u_t, carry_in_t, dy_t, m_t, r_t = inp
        if acts_t is None:  # remat: recompute this step's gates from the carry saved for it
            xw_t = u_t if static.hoist else input_projection(params, u_t)
            acts_t = ops.forward(spec, params, xw_t.astype(cdtype), carry_in_t)[1]
        d_new = d_carry._replace(h=d_carry.h + dy_t.astype(cdtype))
        if m_t is not None:
            d_new = where_per_example(m_t, d_new, _zeros(d_new))
        d_in, dzx_t, dzh_t = ops.backward(spec, params, acts_t, carry_in_t, d_new)
        if r_t is not None:
            # A reset step read carry0, not the previous carry.
            d_carry0 = jax.tree.map(jnp.add, d_carry0, where_per_example(r_t, d_in, _zeros(d_in)))
            d_in = where_per_example(r_t, _zeros(d_in), d_in)
        if m_t is not None:
            # A masked step passed the previous carry straight through.
            d_in = where_per_example(m_t, d_in, d_carry)
        return (d_in, d_carry0), (dzx_t, dzh_t)

    remat_inputs = None
    if acts is None:
        remat_inputs = input_projection(params, xs) if static.hoist else xs
    d_carry0_init = None if resets is None else _zeros(carry0)
    (d_first, d_carry0), (dzx, dzh) = lax.scan(
        body,
        (d_carry_T, d_carry0_init),
        (acts, remat_inputs, carry_ins, d_ys, mask, resets),
        reverse=not static.reverse,
        unroll=static.unroll,
    )
    if d_carry0 is not None:
        d_first = jax.tree.map(jnp.add, d_first, d_carry0)

    grads = {
        "w_x": outer_sum(xs, dzx, jnp.float32),
        "b": jnp.sum(dzx, axis=(0, 1), dtype=jnp.float32),
        **ops.recurrent_grads(spec, params, xs, acts, carry_ins, dzx, dzh),
    }
    d_params = grads_like(params, grads)
    d_xs = mm_t(dzx.astype(xs.dtype), params.w_x)
    return d_params, d_xs, None, None, d_first


_fused.defvjp(_fused_fwd, _fused_bwd)


# ----------------------------------------------------------------------------- interface


def supports(spec: CellSpec) -> bool:
    """SimpleRNN (tanh, relu), LSTM and GRU (both forms); not the simplified/min cells."""
    return spec.kind in _OPS


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`."""
    if not supports(cell.spec):
        raise ValueError(f"backend 'fused' does not support the {cell.spec.kind!r} cell")
    static = _Static(
        cell.spec, bool(reverse), int(unroll), bool(remat), _hoist_input(jax.default_backend())
    )
    return _fused(static, params, xs, mask, resets, carry0)
