"""Native backend (CPU): the fused scheme with both scans as persistent multi-threaded C++ kernels.

``backend="native"`` runs the LSTM, the GRU (``reset_after=True``), minGRU and minLSTM on CPU.
For the LSTM and the GRU it is the scheme of :mod:`seqjax.kernels.fused` (a custom VJP whose
weight and input gradients are single big matmuls over all steps), with the forward scan and
the backward's reverse scan each one XLA FFI call into ``native.cc``. Why: XLA:CPU runs a
``lax.scan`` step as ~15 separate thunks with a dispatch cost each and streams every per-step
intermediate through memory; the kernels do neither.

Scheme (``native.cc``; panels of 16 hidden units, 8 without AVX-512)::

    forward   threads each own a slice of the hidden units for the whole sequence, their
              columns of W_x and W_h packed once and kept in their core's cache. Per step, each
              thread: [x_t, h_{t-1}] times its columns in register tiles of 6 batch rows x
              (4 gates x 16 units), the gates and the carry computed on the tile, h_t
              published; one spin barrier. Saves the gates and the carry entering each step
              (GRU: also h W_hn + b_hn).
    backward  per step, each thread: the gate gradients of its units (written over the saved
              gates, which XLA hands over through ``input_output_aliases``), barrier, then
              dh_{t-1}[:, own] = dZ_t W_h[own, :]^T. Bias gradients are summed on the way;
              dW_x, dW_h and dX are single big XLA matmuls afterwards. The GRU's input side
              dZx = [dr, dz, dn] is kept as dZh = [dr, dz, dn r] plus dn (1 - r).
    minGRU/   no recurrent matmul, so no barrier: each thread runs its units' recurrence on the
    minLSTM   tiles of x_t W_x (x batch-major, staged a few steps at a time into a time-major
              chunk), saving the state after each step (the outputs, where nothing is masked)
              and the pre-activations x W + b of the last gate only, up to input size 128
              (:data:`_MIN_RECOMPUTE_MAX_INPUT`): the backward recomputes the others from x_t,
              which keeps XLA's per-call temporaries under glibc's 32 MiB mmap threshold at
              S1. The backward returns every gradient itself: threads own batch rows there,
              and each step's rows of d(x W + b) stay in cache for that step's rows of
              dX = dZ W_x^T (written batch-major) and, every block of ~128 rows, for
              dW_x += X^T dZ (per-thread sums, added up at the end).

Building and loading the kernels is :mod:`seqjax.kernels.native_build`: where no C++ compiler
works, :func:`available` is False, ``auto`` keeps ``fused`` (``sequential`` for the min cells),
and ``backend="native"`` raises with the compiler's message.

Computes in float32: bfloat16 inputs are widened, outputs return in the inputs' dtype and
gradients in the params' dtypes; a float64 carry is refused (``ValueError``). ``unroll`` and
``remat`` do not apply (one kernel runs the loop; the backward reads the saved gates). Threads:
one per available core (``os.sched_getaffinity``), at most one per panel;
``SEQJAX_NATIVE_THREADS`` overrides. Second-order gradients raise, as for ``fused``.

Each choice above was measured against the code before it; the measurements, dated and by
machine, and what was tried and dropped are in ``experiments/results/bench/README.md``.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cells import MIN_KINDS, CellSpec
from seqjax.kernels.native_build import available as available
from seqjax.kernels.native_build import load
from seqjax.kernels.vjp import first_order_only, grads_like, mm_t, outer_sum

# Up to this input size the min cells' backward recomputes x W + b of every gate but the last
# from x instead of saving it; above it the recomputed matmul costs more than the saved memory
# traffic, and the forward saves all.
_MIN_RECOMPUTE_MAX_INPUT = 128


def supports(spec: CellSpec) -> bool:
    """LSTM, GRU with ``reset_after=True``, minGRU and minLSTM."""
    return spec.kind in ("lstm", *MIN_KINDS) or (spec.kind == "gru" and spec.reset_after)


def _threads() -> int:
    env = os.environ.get("SEQJAX_NATIVE_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SEQJAX_NATIVE_THREADS must be a positive integer; got {env!r}")
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class _Static(NamedTuple):
    spec: CellSpec
    reverse: bool
    threads: int


def _f32(x):
    return x.astype(jnp.float32)


def _call(name: str, outs, *args, static: _Static, aliases=None):
    out_types = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in outs]
    return jax.ffi.ffi_call(name, out_types, vmap_method="sequential",
                            input_output_aliases=aliases)(
        *args, reverse=np.int32(static.reverse), threads=np.int32(static.threads)
    )


def _forward(static: _Static, params, xs, mask, resets, carry0):
    """Runs the forward kernel; returns the outputs and what the backward reads: the gates, the
    hidden state entering each step, and the LSTM's cell state entering each step or the GRU's
    ``h W_hn + b_hn``."""
    T, B, _ = xs.shape
    H = static.spec.hidden_size
    common = (_f32(xs), _f32(params.w_x), _f32(params.w_h), _f32(params.b))
    if static.spec.kind == "lstm":
        ys, h_T, c_T, acts, h_in, c_in = _call(
            "seqjax_lstm_forward",
            [(T, B, H), (B, H), (B, H), (T, B, 4 * H), (T, B, H), (T, B, H)],
            *common, carry0.h, carry0.c, mask, resets, static=static,
        )
        return (carry0._replace(h=h_T, c=c_T), ys.astype(xs.dtype)), (acts, h_in, c_in)
    ys, h_T, acts, h_n, h_in = _call(
        "seqjax_gru_forward",
        [(T, B, H), (B, H), (T, B, 3 * H), (T, B, H), (T, B, H)],
        *common, _f32(params.b_h), carry0.h, mask, resets, static=static,
    )
    return (carry0._replace(h=h_T), ys.astype(xs.dtype)), (acts, h_in, h_n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _native(static: _Static, params, xs, mask, resets, carry0):
    return _forward(static, params, xs, mask, resets, carry0)[0]


def _native_fwd(static, params, xs, mask, resets, carry0):
    # Differentiating this rule (grad-of-grad, hessian) must raise our error, not the FFI's.
    params, xs, carry0 = first_order_only((params, xs, carry0))
    out, saved = _forward(static, params, xs, mask, resets, carry0)
    return out, (params, xs, mask, resets, *saved)


def _native_bwd(static: _Static, res, cts):
    res = first_order_only(res)
    params, xs, mask, resets, acts, h_in, extra = res
    d_carry_T, d_ys = cts
    T, B, _ = xs.shape
    H = static.spec.hidden_size
    x, w_h = _f32(xs), _f32(params.w_h)
    # The gate gradients overwrite the saved gates (aliases): no fresh [T, B, G*H] buffers.
    if static.spec.kind == "lstm":
        dz, dh0, dc0, db = _call(
            "seqjax_lstm_backward", [(T, B, 4 * H), (B, H), (B, H), (4 * H,)],
            w_h, acts, extra, _f32(d_ys), d_carry_T.h, d_carry_T.c, mask, resets,
            static=static, aliases={1: 0},
        )
        d_carry0 = d_carry_T._replace(h=dh0, c=dc0)
        grads = {"b": db, "w_x": outer_sum(x, dz, jnp.float32)}
        d_xs = mm_t(dz, params.w_x)
    else:
        # dZh = [dr, dz, dn * r] feeds W_h; the input side's dZx = [dr, dz, dn] is dZh plus
        # dnx = dn * (1 - r) in the n block, so it needs no buffer of its own.
        dz, dnx, dh0, db, db_h = _call(
            "seqjax_gru_backward", [(T, B, 3 * H), (T, B, H), (B, H), (3 * H,), (3 * H,)],
            w_h, acts, extra, h_in, _f32(d_ys), d_carry_T.h, mask, resets, static=static,
            aliases={1: 0, 2: 1},
        )
        d_carry0 = d_carry_T._replace(h=dh0)
        w_x = outer_sum(x, dz, jnp.float32).at[:, 2 * H:].add(outer_sum(x, dnx, jnp.float32))
        grads = {"b": db, "b_h": db_h, "w_x": w_x}
        d_xs = mm_t(dz, params.w_x) + mm_t(dnx, params.w_x[:, 2 * H:])
    grads["w_h"] = outer_sum(h_in, dz, jnp.float32)
    return grads_like(params, grads), d_xs.astype(xs.dtype), None, None, d_carry0


_native.defvjp(_native_fwd, _native_bwd)


def _min_forward(static: _Static, params, xs, mask, resets, h0):
    """minGRU/minLSTM, ``xs`` batch-major: the state after each step ``hs`` (time-major) and the
    pre-activations ``x W + b`` of the gates the backward does not recompute."""
    B, T, I = xs.shape
    H = static.spec.hidden_size
    saved = 1 if I <= _MIN_RECOMPUTE_MAX_INPUT else static.spec.num_gates
    return _call("seqjax_min_forward", [(T, B, H), (T, B, saved * H)],
                 _f32(xs), _f32(params.w_x), _f32(params.b), h0, mask, resets, static=static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _native_min(static: _Static, params, xs, mask, resets, h0):
    return _min_forward(static, params, xs, mask, resets, h0)[0]


def _native_min_fwd(static, params, xs, mask, resets, h0):
    params, xs, h0 = first_order_only((params, xs, h0))
    hs, xw = _min_forward(static, params, xs, mask, resets, h0)
    return hs, (params, xs, mask, resets, h0, hs, xw)


def _native_min_bwd(static: _Static, res, d_hs):
    params, xs, mask, resets, h0, hs, xw = first_order_only(res)
    d_xs, d_w_x, db, dh0 = _call(
        "seqjax_min_backward", [xs.shape, params.w_x.shape, params.b.shape, h0.shape],
        _f32(xs), _f32(params.w_x), _f32(params.b), xw, hs, h0, _f32(d_hs), mask, resets,
        static=static,
    )
    d_params = grads_like(params, {"w_x": d_w_x, "b": db})
    return d_params, d_xs.astype(xs.dtype), None, None, dh0


_native_min.defvjp(_native_min_fwd, _native_min_bwd)


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`."""
    del unroll, remat
    spec = cell.spec
    if not supports(spec):
        raise ValueError("the native backend supports lstm, gru(reset_after=True), min_gru and "
                         f"min_lstm; got {spec.kind!r} (reset_after={spec.reset_after})")
    if carry0.h.dtype != jnp.float32:
        raise ValueError(f"the native backend computes in float32; got a {carry0.h.dtype} carry "
                         "(use backend='fused' for float64)")
    if jax.default_backend() != "cpu":
        raise ValueError(f"the native backend runs on CPU; the default backend is "
                         f"{jax.default_backend()!r}")
    load()
    T, B = xs.shape[:2]
    if T == 0 or B == 0:  # nothing to run (and no rows for the kernels' threads to own)
        return carry0, jnp.zeros((T, B, spec.hidden_size), xs.dtype)
    user_mask = mask
    mask = jnp.ones((T, B), bool) if mask is None else mask.astype(bool)
    resets = jnp.zeros((T, B), bool) if resets is None else resets.astype(bool)
    static = _Static(spec, bool(reverse), _threads())
    if spec.kind not in MIN_KINDS:
        return _native(static, params, xs, mask, resets, carry0)
    # The min kernels read and differentiate batch-major inputs: with rnn()'s default layout XLA
    # folds this swap into rnn()'s own, and no transpose of xs or of its gradient remains. They
    # return the state after every step: the outputs where no step is masked.
    hs = _native_min(static, params, jnp.swapaxes(xs, 0, 1), mask, resets, carry0.h)
    ys = hs if user_mask is None else jnp.where(mask[..., None], hs, jnp.zeros_like(hs))
    return carry0._replace(h=hs[0 if reverse else -1]), ys.astype(xs.dtype)
