"""LSTM and GRU as one Pallas kernel over the whole sequence (forward), and one for the backward.

Scheme. The input projection ``xs @ w_x + b`` for all steps is one XLA matmul outside the kernel.
The forward kernel then runs the whole time loop in a single launch: program ``p`` of the
grid owns a block of ``block_b`` batch rows and, at each step, computes ``h_{t-1} @ w_h`` gate by
gate in blocks of ``block_h`` hidden units, so no step pays a kernel launch. The carry passes
between the blocks of a step through a global buffer that stays in L1/L2, and ``w_h`` is re-read
every step: for small H it stays in the SM's caches; at H=256 its 1 MiB does not fit one SM and
streams from L2. It writes the carry of every step (in processing order), the activated gates
(the residuals) and the masked outputs.

The backward is a ``custom_vjp``: a second kernel runs the reverse recurrence the same way,
producing the per-step gate gradients ``dz_t`` (which are also the input projection's cotangent)
and ``d carry0``; ``d w_h = sum_t h_{t-1}^T dz_t`` and the bias gradient are then single big
matmuls/reductions in XLA, and autodiff of ``cell.project`` gives ``d w_x``, ``d b``, ``d xs``.

Masks, resets and direction are handled inside the kernels exactly as ``masked_scan``: a masked
step keeps the carry and emits zeros; an (effective, i.e. valid) reset replaces the carry by
``carry0`` before the step; ``reverse`` walks ``t = T-1 .. 0`` writing each output at its own
position. B is padded to ``block_b`` rows and H to a power of two (>= 16, Triton's smallest
``dot``); padded units stay exactly zero (zero weights, zero inputs, zero initial carry).

Supported: ``lstm`` and ``gru`` with ``reset_after=True`` (the cuDNN form). ``gru(reset_after=
False)`` needs a second, dependent matmul per step and is left to the other backends.

Platforms: on GPU the kernels lower through Triton; elsewhere (CPU) they run with
``pallas_call(..., interpret=True)``: correct but slow, for tests only, and ``backend="auto"``
never picks this backend on CPU. ``jax.experimental.pallas`` is imported lazily, so the library
imports without it.

Measured on one H100 (JAX 0.11.2, Triton lowering, fp32 with TF32 dots; training step
``jit(grad)``, ms, median; torch 2.11 ``nn.LSTM``/``nn.GRU`` with cuDNN 9.19, TF32 allowed)::

                               pallas   hoisted  reference  torch cuDNN
    B64 T128 I128 H32  lstm     0.58      3.79     4.37        1.49
                       gru      0.55      3.63     5.45        1.57
    B64 T128 I128 H64  lstm     1.58      4.28     5.47        0.98
                       gru      1.28      3.91     5.32        1.23
    B16 T1024 I32 H64  lstm    10.3      31.2     35.9         1.9
    B64 T128 I128 H128 lstm     5.2       4.2      5.0         1.7
    S1 B64 T128 I128 H256 lstm  57.8      4.4      5.6         4.6   (forward alone: 49 ms)

Small H is where it wins: 3-8x over ``reference`` and below cuDNN at H32. At H256 each program
streams all of ``w_h`` (1 MiB) through one SM every step (and, not profiled, probably
spills registers), so it is 10x
slower than ``reference``; beating cuDNN there needs the hidden units split across programs with
a grid-wide barrier per step (the cuDNN persistent-RNN scheme), which this kernel does not do.
Errors against ``reference`` on GPU are TF32-level (relative 1e-4 to 5e-4).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import LSTMCarry, RNNCarry

# ----------------------------------------------------------------------------- cells


def supports(spec) -> bool:
    return spec.kind == "lstm" or (spec.kind == "gru" and spec.reset_after)


def _lstm_forward(xw, hw, bh, h_in, c_in):
    del bh, h_in
    i = jax.nn.sigmoid(xw[0] + hw[0])
    f = jax.nn.sigmoid(xw[1] + hw[1])
    g = jnp.tanh(xw[2] + hw[2])
    o = jax.nn.sigmoid(xw[3] + hw[3])
    c = f * c_in + i * g
    h = o * jnp.tanh(c)
    return h, c, (i, f, g, o)


def _lstm_backward(res, h_in, c_in, c_new, dh, dc):
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


def _gru_forward(xw, hw, bh, h_in, c_in):
    del c_in
    r = jax.nn.sigmoid(xw[0] + hw[0] + bh[0])
    z = jax.nn.sigmoid(xw[1] + hw[1] + bh[1])
    hn = hw[2] + bh[2]
    n = jnp.tanh(xw[2] + r * hn)
    h = (1 - z) * n + z * h_in
    return h, None, (r, z, n, hn)


def _gru_backward(res, h_in, c_in, c_new, dh, dc):
    del c_in, c_new, dc
    r, z, n, hn = res
    dz = dh * (h_in - n) * z * (1 - z)
    dn = dh * (1 - z) * (1 - n * n)
    dr = dn * hn * r * (1 - r)
    return (dr, dz, dn), (dr, dz, dn * r), dh * z, None


# Triton launch settings (measured on an H100; see the module docstring).
_NUM_WARPS = 4
_NUM_STAGES = 3

_CELLS = {"lstm": (4, 4, True, _lstm_forward, _lstm_backward),
          "gru": (3, 4, False, _gru_forward, _gru_backward)}


# ----------------------------------------------------------------------------- kernels


def _barrier(interpret: bool):
    # Blocks of h written by one gate block are read by all of them at the next phase: the CTA's
    # threads must see each other's global stores. Interpreted programs run sequentially.
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        plgpu.debug_barrier()


def _forward_kernel(cfg, *refs):
    from jax.experimental import pallas as pl

    kind, time, block_b, block_h, hidden, reverse, interpret = cfg
    gates, n_res, has_c, fwd, _ = _CELLS[kind]
    xw_ref, w_ref, bh_ref, h0_ref, c0_ref, valid_ref, reset_ref = refs[:7]
    ys_ref, hseq_ref, cseq_ref, res_ref = refs[7:]
    rows = pl.ds(pl.program_id(0) * block_b, block_b)
    blocks = [pl.ds(j * block_h, block_h) for j in range(hidden // block_h)]
    full = pl.ds(0, hidden)

    hseq_ref[0, rows, full] = h0_ref[rows, full]
    if has_c:
        cseq_ref[0, rows, full] = c0_ref[rows, full]
    _barrier(interpret)

    def step(s, carry):
        t = time - 1 - s if reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        h_in = jnp.where(reset, h0_ref[rows, full], hseq_ref[s, rows, full])
        for cols in blocks:
            hw = [jnp.dot(h_in, w_ref[g, full, cols], preferred_element_type=jnp.float32)
                  .astype(h_in.dtype) for g in range(gates)]
            xw = [xw_ref[t, g, rows, cols] for g in range(gates)]
            bh = [bh_ref[g, cols][None, :] for g in range(gates)]
            h_in_j = jnp.where(reset, h0_ref[rows, cols], hseq_ref[s, rows, cols])
            c_in_j = (jnp.where(reset, c0_ref[rows, cols], cseq_ref[s, rows, cols])
                      if has_c else None)
            h_new, c_new, res = fwd(xw, hw, bh, h_in_j, c_in_j)
            for k in range(n_res):
                res_ref[t, k, rows, cols] = res[k]
            ys_ref[t, rows, cols] = jnp.where(valid, h_new, jnp.zeros_like(h_new))
            hseq_ref[s + 1, rows, cols] = jnp.where(valid, h_new, h_in_j)
            if has_c:
                cseq_ref[s + 1, rows, cols] = jnp.where(valid, c_new, c_in_j)
        _barrier(interpret)
        return carry

    lax.fori_loop(0, time, step, 0)


def _backward_kernel(cfg, *refs):
    from jax.experimental import pallas as pl

    kind, time, block_b, block_h, hidden, reverse, interpret = cfg
    gates, n_res, has_c, _, bwd = _CELLS[kind]
    (dys_ref, dhT_ref, dcT_ref, res_ref, hseq_ref, cseq_ref, w_ref, h0_ref, c0_ref, valid_ref,
     reset_ref) = refs[:11]
    dxw_ref, drec_ref, dh_ref, dc_ref, dh0_ref, dc0_ref = refs[11:]
    rows = pl.ds(pl.program_id(0) * block_b, block_b)
    blocks = [pl.ds(j * block_h, block_h) for j in range(hidden // block_h)]
    full = pl.ds(0, hidden)
    # For the LSTM the recurrent cotangent equals the gate gradient: one array serves both.
    rec_ref = drec_ref if drec_ref is not None else dxw_ref

    dh_ref[rows, full] = dhT_ref[rows, full]
    zeros = jnp.zeros_like(dhT_ref[rows, full])
    dh0_ref[rows, full] = zeros
    if has_c:
        dc_ref[rows, full] = dcT_ref[rows, full]
        dc0_ref[rows, full] = zeros
    _barrier(interpret)

    def step(k, carry):
        s = time - 1 - k
        t = time - 1 - s if reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        for cols in blocks:
            dh = dh_ref[rows, cols]
            dh_new = jnp.where(valid, dh + dys_ref[t, rows, cols], jnp.zeros_like(dh))
            h_in = jnp.where(reset, h0_ref[rows, cols], hseq_ref[s, rows, cols])
            res = [res_ref[t, j, rows, cols] for j in range(n_res)]
            if has_c:
                dc = dc_ref[rows, cols]
                dc_new = jnp.where(valid, dc, jnp.zeros_like(dc))
                c_in = jnp.where(reset, c0_ref[rows, cols], cseq_ref[s, rows, cols])
                c_new = cseq_ref[s + 1, rows, cols]
            else:
                dc_new = c_in = c_new = None
            dxw, drec, dh_direct, dc_in = bwd(res, h_in, c_in, c_new, dh_new, dc_new)
            for g in range(gates):
                dxw_ref[t, g, rows, cols] = dxw[g]
                if drec_ref is not None:
                    drec_ref[t, g, rows, cols] = drec[g]
            # Masked steps pass the carry's cotangent through; the recurrent part is added below.
            dh_ref[rows, cols] = jnp.where(
                valid, jnp.zeros_like(dh) if dh_direct is None else dh_direct, dh)
            if has_c:
                dc_prev = jnp.where(valid, dc_in, dc)
                dc0_ref[rows, cols] = dc0_ref[rows, cols] + jnp.where(
                    reset, dc_prev, jnp.zeros_like(dc_prev))
                dc_ref[rows, cols] = jnp.where(reset, jnp.zeros_like(dc_prev), dc_prev)
        _barrier(interpret)
        for cols in blocks:
            rec = dh_ref[rows, cols]
            for g in range(gates):
                rec = rec + lax.dot_general(
                    rec_ref[t, g, rows, full], w_ref[g, cols, full], (((1,), (1,)), ((), ())),
                    preferred_element_type=jnp.float32).astype(rec.dtype)
            dh0_ref[rows, cols] = dh0_ref[rows, cols] + jnp.where(reset, rec, jnp.zeros_like(rec))
            dh_ref[rows, cols] = jnp.where(reset, jnp.zeros_like(rec), rec)
        _barrier(interpret)
        return carry

    lax.fori_loop(0, time, step, 0)


def _call(kernel, cfg, out_shape, args, num_warps):
    """``pallas_call`` over batch blocks; ``None`` inputs/outputs (cell-specific) are skipped."""
    from jax.experimental import pallas as pl

    kind, time, block_b = cfg[:3]
    interpret = cfg[-1]
    compiler_params = None
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        # Software pipelining keeps copies of the [H, block_h] weight tiles in shared memory:
        # at H=128 three stages ask for 554 KiB (the H100 has 227 KiB).
        num_stages = _NUM_STAGES if cfg[4] <= 64 else 1
        compiler_params = plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)
    in_used = [a is not None for a in args]
    out_used = [o is not None for o in out_shape]

    def body(*refs):
        refs = iter(refs)
        ins = [next(refs) if used else None for used in in_used]
        outs = [next(refs) if used else None for used in out_used]
        kernel(cfg, *ins, *outs)

    batch = args[0].shape[-2]
    call = pl.pallas_call(
        body,
        out_shape=tuple(o for o in out_shape if o is not None),
        grid=(batch // block_b,),
        interpret=interpret,
        compiler_params=compiler_params,
        name=f"seqjax_{kind}{kernel.__name__.replace('_kernel', '')}",
    )
    if interpret:
        # Interpreted kernels run op by op unless compiled; under the caller's jit this is inlined.
        call = jax.jit(call)
    results = iter(call(*(a for a in args if a is not None)))
    return tuple(next(results) if used else None for used in out_used)


# ----------------------------------------------------------------------------- custom_vjp core


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _core(cfg, xw, w, bh, h0, c0, valid, reset):
    return _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset)[0]


def _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset):
    kind, time = cfg[0], cfg[1]
    _, n_res, has_c, _, _ = _CELLS[kind]
    batch, hidden = h0.shape
    dtype = h0.dtype
    seq = jax.ShapeDtypeStruct((time + 1, batch, hidden), dtype)
    out_shape = (
        jax.ShapeDtypeStruct((time, batch, hidden), dtype),
        seq,
        seq if has_c else None,
        jax.ShapeDtypeStruct((time, n_res, batch, hidden), dtype),
    )
    ys, hseq, cseq, res = _call(
        _forward_kernel, cfg, out_shape, (xw, w, bh, h0, c0, valid, reset), num_warps=_NUM_WARPS)
    carry_T = (hseq[time], cseq[time] if has_c else jnp.zeros_like(h0))
    return (carry_T, ys), (res, hseq, cseq, w, h0, c0, valid, reset)


def _core_bwd(cfg, residuals, cotangents):
    kind, time, reverse = cfg[0], cfg[1], cfg[5]
    gates, _, has_c, _, _ = _CELLS[kind]
    res, hseq, cseq, w, h0, c0, valid, reset = residuals
    (dh_T, dc_T), dys = cotangents
    batch, hidden = h0.shape
    dtype = h0.dtype
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    per_gate = jax.ShapeDtypeStruct((time, gates, batch, hidden), dtype)
    out_shape = (
        per_gate,
        None if kind == "lstm" else per_gate,
        state,
        state if has_c else None,
        state,
        state if has_c else None,
    )
    if not has_c:
        dc_T = None
    dxw, drec, dh, dc, dh0, dc0 = _call(
        _backward_kernel, cfg, out_shape,
        (dys, dh_T, dc_T, res, hseq, cseq, w, h0, c0, valid, reset), num_warps=_NUM_WARPS)
    drec = dxw if drec is None else drec
    # The carry each step read, in time order, for the weight gradient.
    h_prev = hseq[:time][::-1] if reverse else hseq[:time]
    h_in = jnp.where(reset[:, :, None] > 0.5, h0[None], h_prev)
    dw = jnp.einsum("tbk,tgbj->gkj", h_in, drec)
    dbh = jnp.sum(drec, axis=(0, 2)) if kind == "gru" else jnp.zeros((gates, hidden), dtype)
    dcarry0_c = dc + dc0 if has_c else None
    return dxw, dw, dbh, dh + dh0, dcarry0_c, jnp.zeros_like(valid), jnp.zeros_like(reset)


_core.defvjp(_core_fwd, _core_bwd)


# ----------------------------------------------------------------------------- backend


def _next_pow2(n: int, least: int) -> int:
    return max(least, 1 << max(0, n - 1).bit_length())


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat,
        interpret=None, block_b=16, block_h=None):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`.

    ``unroll`` and ``remat`` do not apply (one kernel runs the whole loop; the backward kernel
    reads stored activations). ``interpret`` defaults to True off GPU.
    """
    del unroll, remat
    spec = cell.spec
    if not supports(spec):
        raise ValueError(f"the pallas backend supports lstm and gru(reset_after=True); "
                         f"got {spec.kind!r} (reset_after={spec.reset_after})")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    gates = spec.num_gates
    time, batch = xs.shape[:2]
    hidden = spec.hidden_size
    dtype = carry0.h.dtype
    if time == 0:
        return carry0, jnp.zeros((0, batch, hidden), xs.dtype)

    h_pad = _next_pow2(hidden, 16)
    block_h = min(h_pad, block_h or 32)
    b_pad = -(-batch // block_b) * block_b

    def pad(x, axis, size):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, size - x.shape[axis])
        return jnp.pad(x, widths)

    xw = cell.project(params, xs).astype(dtype).reshape(time, batch, gates, hidden)
    xw = pad(pad(jnp.transpose(xw, (0, 2, 1, 3)), 2, b_pad), 3, h_pad)
    w = jnp.transpose(params.w_h.astype(dtype).reshape(hidden, gates, hidden), (1, 0, 2))
    w = pad(pad(w, 1, h_pad), 2, h_pad)
    if spec.kind == "gru":
        bh = pad(params.b_h.astype(dtype).reshape(gates, hidden), 1, h_pad)
    else:
        bh = jnp.zeros((gates, h_pad), dtype)
    h0 = pad(pad(carry0.h, 0, b_pad), 1, h_pad)
    c0 = pad(pad(carry0.c, 0, b_pad), 1, h_pad) if spec.kind == "lstm" else None
    valid = jnp.ones((time, batch), bool) if mask is None else mask
    reset = jnp.zeros((time, batch), bool) if resets is None else resets & valid
    valid = pad(valid.astype(dtype), 1, b_pad)
    reset = pad(reset.astype(dtype), 1, b_pad)

    cfg = (spec.kind, time, block_b, block_h, h_pad, bool(reverse), bool(interpret))
    (h_T, c_T), ys = _core(cfg, xw, w, bh, h0, c0, valid, reset)
    ys = ys[:, :batch, :hidden].astype(xs.dtype)
    h_T = h_T[:batch, :hidden]
    if spec.kind == "lstm":
        return LSTMCarry(h_T, c_T[:batch, :hidden]), ys
    return RNNCarry(h_T), ys
