"""The ``pallas`` backend's TPU kernels (Mosaic): LSTM and GRU, forward and backward.

Scheme. The input projection for all steps is one XLA matmul outside the kernels, as on GPU.
A TPU core runs its grid steps one after another, so the persistent RNN needs no barrier there:
the grid is ``(batch blocks, time chunks)``; the batch axis is ``parallel`` (split across cores
where a chip has several), the time axis ``arbitrary`` (sequential). ``w_h`` has the same block
index at every grid step, so it is copied into VMEM once per batch block and stays there; the
carry lives in VMEM scratch across time chunks; Pallas' pipelining fetches the next chunk of
``x W_x`` (and writes back the previous chunk of outputs) while the current one runs. Each step
is one ``[block_b, H] @ [H, H]`` matmul per gate on the MXU plus the cell's elementwise math.

The forward writes, per time step (in time order), the masked output, the carry each step
read (after resets) and the activated gates; the backward kernel walks the chunks in the
opposite order, emits the per-step gate gradients and ``d carry0``, and the weight gradients
are then single big matmuls in XLA (``pallas_cells.weight_grads``, as on GPU).

Layout: H is padded to a multiple of 128 (lanes), the batch to a multiple of 8 (sublanes) and T
to a multiple of ``time_chunk``; padded steps are masked, so they pass the carry through in
either direction. Masks and resets, per step and example, are ``[T, B, 1]`` arrays.

Blocks: ``time_chunk`` defaults to the most steps (up to 8) whose double-buffered blocks stay
within 12 MiB of VMEM, below the 16 MiB default scoped limit of current TPUs. ``w_h`` is one
block, so from H = 1024 (LSTM: 32 MiB double-buffered) it cannot fit; tiling it is future work.

Status: built and tested on CPU in TPU interpret mode against ``reference`` (values and
gradients; masks, resets, both directions); it also lowers for TPU on CPU. It has not run on a
TPU, so ``backend="auto"`` never picks it (TPU keeps ``hoisted``) and nothing here is measured.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.kernels import pallas_cells


def _time_index(cfg, j, backward):
    """Grid step ``j`` -> the time chunk it covers. The forward processes chunks in the
    recurrence's order, the backward in the opposite one."""
    return cfg.chunks - 1 - j if cfg.reverse != backward else j


def _local(cfg, i):
    """Processing-order step ``i`` of a chunk -> its index inside the time chunk."""
    return cfg.time_chunk - 1 - i if cfg.reverse else i


def _forward_kernel(cfg, xw_ref, w_ref, bh_ref, h0_ref, c0_ref, valid_ref, reset_ref,
                    ys_ref, hin_ref, cin_ref, res_ref, hT_ref, cT_ref, h_scr, c_scr):
    from jax.experimental import pallas as pl

    cell = pallas_cells.CELLS[cfg.kind]
    gates, n_res, has_c, fwd = cell.gates, cell.residuals, cell.has_c, cell.forward

    @pl.when(pl.program_id(1) == 0)
    def _():
        h_scr[...] = h0_ref[...]
        if has_c:
            c_scr[...] = c0_ref[...]

    def step(i, _):
        t = _local(cfg, i)
        valid = valid_ref[t] > 0.5
        reset = reset_ref[t] > 0.5
        h_in = jnp.where(reset, h0_ref[...], h_scr[...])
        c_in = jnp.where(reset, c0_ref[...], c_scr[...]) if has_c else None
        hw = [pallas_cells.dot(h_in, w_ref[g]) for g in range(gates)]
        xw = [xw_ref[t, g] for g in range(gates)]
        bh = [bh_ref[g] for g in range(gates)]
        h_new, c_new, res = fwd(xw, hw, bh, h_in, c_in)
        for k in range(n_res):
            res_ref[t, k] = res[k]
        hin_ref[t] = h_in
        ys_ref[t] = jnp.where(valid, h_new, jnp.zeros_like(h_new))
        h_scr[...] = jnp.where(valid, h_new, h_in)
        if has_c:
            cin_ref[t] = c_in
            c_scr[...] = jnp.where(valid, c_new, c_in)
        return 0

    lax.fori_loop(0, cfg.time_chunk, step, 0)
    hT_ref[...] = h_scr[...]
    if has_c:
        cT_ref[...] = c_scr[...]


def _backward_kernel(cfg, dys_ref, dhT_ref, dcT_ref, res_ref, hin_ref, cin_ref, w_ref, valid_ref,
                     reset_ref, dxw_ref, drec_ref, dh0_ref, dc0_ref, dh_scr, dc_scr, to_h0_scr,
                     to_c0_scr):
    from jax.experimental import pallas as pl

    cell = pallas_cells.CELLS[cfg.kind]
    gates, n_res, has_c, bwd = cell.gates, cell.residuals, cell.has_c, cell.backward

    @pl.when(pl.program_id(1) == 0)
    def _():
        dh_scr[...] = dhT_ref[...]
        to_h0_scr[...] = jnp.zeros_like(to_h0_scr)
        if has_c:
            dc_scr[...] = dcT_ref[...]
            to_c0_scr[...] = jnp.zeros_like(to_c0_scr)

    def step(i, _):
        # Backward order: the last processed step of this chunk first.
        t = _local(cfg, cfg.time_chunk - 1 - i)
        valid = valid_ref[t] > 0.5
        reset = reset_ref[t] > 0.5
        dh = dh_scr[...]
        dh_new = jnp.where(valid, dh + dys_ref[t], jnp.zeros_like(dh))
        h_in = hin_ref[t]
        res = [res_ref[t, k] for k in range(n_res)]
        if has_c:
            dc = dc_scr[...]
            dc_new = jnp.where(valid, dc, jnp.zeros_like(dc))
            c_in = cin_ref[t]
            c_new = pallas_cells.lstm_cell_state(res, c_in)
        else:
            dc = dc_new = c_in = c_new = None
        dxw, drec, dh_direct, dc_in = bwd(res, h_in, c_in, c_new, dh_new, dc_new)
        rec = jnp.where(valid, jnp.zeros_like(dh) if dh_direct is None else dh_direct, dh)
        for g in range(gates):
            dxw_ref[t, g] = dxw[g]
            if drec_ref is not None:
                drec_ref[t, g] = drec[g]
            rec = rec + pallas_cells.dot(drec[g], w_ref[g], transpose_b=True)
        to_h0_scr[...] += jnp.where(reset, rec, jnp.zeros_like(rec))
        dh_scr[...] = jnp.where(reset, jnp.zeros_like(rec), rec)
        if has_c:
            dc_prev = jnp.where(valid, dc_in, dc)
            to_c0_scr[...] += jnp.where(reset, dc_prev, jnp.zeros_like(dc_prev))
            dc_scr[...] = jnp.where(reset, jnp.zeros_like(dc_prev), dc_prev)
        return 0

    lax.fori_loop(0, cfg.time_chunk, step, 0)
    dh0_ref[...] = dh_scr[...] + to_h0_scr[...]
    if has_c:
        dc0_ref[...] = dc_scr[...] + to_c0_scr[...]


def _call(kernel, cfg, inputs, outputs, scratch, backward=False):
    """``pallas_call`` over ``(batch blocks, time chunks)``.

    ``inputs``/``outputs``: ``(array or ShapeDtypeStruct or None, kind)`` pairs, kind one of
    ``"time"`` (leading axis T, then per-step blocks of ``block_b`` rows at axis -2),
    ``"state"`` (``[B, H]``), ``"weights"`` (whole array, same block every step). ``None``
    entries (cell-specific) reach the kernel as ``None``.
    """
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import tpu as pltpu

    def spec(x, kind):
        shape = list(x.shape)
        if kind == "weights":
            return pl.BlockSpec(tuple(shape), lambda b, j: (0,) * len(shape))
        shape[-2] = cfg.block_b
        if kind == "state":
            return pl.BlockSpec(tuple(shape), lambda b, j: (b, 0))
        shape[0] = cfg.time_chunk

        def index(b, j):
            rest = (0,) * (len(shape) - 3)
            return (_time_index(cfg, j, backward), *rest, b, 0)

        return pl.BlockSpec(tuple(shape), index)

    ins = [(x, kind) for x, kind in inputs if x is not None]
    outs = [(o, kind) for o, kind in outputs if o is not None]
    in_used = [x is not None for x, _ in inputs]
    out_used = [o is not None for o, _ in outputs]
    n_scratch = len(scratch)

    def body(*refs):
        refs = iter(refs)
        in_refs = [next(refs) if used else None for used in in_used]
        out_refs = [next(refs) if used else None for used in out_used]
        scratch_refs = [next(refs) for _ in range(n_scratch)]
        kernel(cfg, *in_refs, *out_refs, *scratch_refs)

    batch = inputs[-1][0].shape[1]
    grid = (batch // cfg.block_b, cfg.chunks)
    call = pl.pallas_call(
        body,
        grid=grid,
        in_specs=[spec(x, kind) for x, kind in ins],
        out_specs=[spec(o, kind) for o, kind in outs],
        out_shape=[o for o, _ in outs],
        scratch_shapes=[pltpu.VMEM(shape, dtype) for shape, dtype in scratch],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
        interpret=pltpu.InterpretParams() if cfg.interpret else False,
        name=f"seqjax_{cfg.kind}{kernel.__name__.replace('_kernel', '')}_tpu",
    )
    results = iter(call(*(x for x, _ in ins)))
    return tuple(next(results) if used else None for used in out_used)


def forward(cfg, xw, w, bh, h0, c0, valid, reset):
    """Forward kernel: ``ys, h_in, c_in, res, h_T, c_T`` (``c_*`` None for the GRU)."""
    n_res, has_c = pallas_cells.CELLS[cfg.kind].residuals, pallas_cells.CELLS[cfg.kind].has_c
    time, _, batch, hidden = xw.shape
    dtype = h0.dtype
    seq = jax.ShapeDtypeStruct((time, batch, hidden), dtype)
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    return _call(
        _forward_kernel, cfg,
        [(xw, "time"), (w, "weights"), (bh, "weights"), (h0, "state"), (c0, "state"),
         (valid, "time"), (reset, "time")],
        [(seq, "time"), (seq, "time"), (seq if has_c else None, "time"),
         (jax.ShapeDtypeStruct((time, n_res, batch, hidden), dtype), "time"),
         (state, "state"), (state if has_c else None, "state")],
        [((cfg.block_b, hidden), dtype)] * 2,
    )


def backward(cfg, dys, dh_T, dc_T, res, h_in, c_in, w, valid, reset):
    """Backward kernel: ``dxw, drec, d h0, d c0`` (``drec`` None for the LSTM: it is ``dxw``)."""
    gates, has_c = pallas_cells.CELLS[cfg.kind].gates, pallas_cells.CELLS[cfg.kind].has_c
    time, batch, hidden = dys.shape
    dtype = dys.dtype
    per_gate = jax.ShapeDtypeStruct((time, gates, batch, hidden), dtype)
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    return _call(
        _backward_kernel, cfg,
        [(dys, "time"), (dh_T, "state"), (dc_T if has_c else None, "state"), (res, "time"),
         (h_in, "time"), (c_in, "time"), (w, "weights"), (valid, "time"), (reset, "time")],
        [(per_gate, "time"), (None if cfg.kind == "lstm" else per_gate, "time"),
         (state, "state"), (state if has_c else None, "state")],
        [((cfg.block_b, hidden), dtype)] * 4,
        backward=True,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def core(cfg, xw, w, bh, h0, c0, valid, reset):
    """``((h_T, c_T), ys)`` of the padded, time-major problem; ``c`` is zeros for the GRU."""
    return _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset)[0]


def _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset):
    ys, h_in, c_in, res, h_T, c_T = forward(cfg, xw, w, bh, h0, c0, valid, reset)
    carry_T = (h_T, jnp.zeros_like(h0) if c_T is None else c_T)
    return (carry_T, ys), (res, h_in, c_in, w, valid, reset)


def _core_bwd(cfg, residuals, cotangents):
    gates = pallas_cells.CELLS[cfg.kind].gates
    res, h_in, c_in, w, valid, reset = residuals
    (dh_T, dc_T), dys = cotangents
    dxw, drec, dh0, dc0 = backward(cfg, dys, dh_T, dc_T, res, h_in, c_in, w, valid, reset)
    drec = dxw if drec is None else drec
    dw, dbh = pallas_cells.weight_grads(cfg.kind, h_in, jnp.swapaxes(drec, 1, 2), gates)
    return dxw, dw, dbh[:, None, :], dh0, dc0, jnp.zeros_like(valid), jnp.zeros_like(reset)


core.defvjp(_core_fwd, _core_bwd)


class Config(NamedTuple):
    """Static configuration (hashable: it is a ``custom_vjp`` nondiff argument)."""

    kind: str
    block_b: int  # batch rows per program (a multiple of 8)
    time_chunk: int  # steps per grid step
    chunks: int  # grid steps along time
    reverse: bool
    interpret: bool


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# What the blocks of one grid step may take in VMEM: below the smallest default scoped VMEM
# limit of current TPUs (16 MiB), with room for Mosaic's own temporaries.
_VMEM_BUDGET = 12 * 2**20


def _vmem_bytes(kind, block_b, h_pad, time_chunk):
    """VMEM the double-buffered blocks of one grid step take (the larger of the two kernels)."""
    gates, n_res = pallas_cells.CELLS[kind].gates, pallas_cells.CELLS[kind].residuals
    weights = 2 * gates * h_pad * h_pad * 4
    # Per step: x W_x and the gates' residuals (or their gradients), the output, the carries
    # read, and the mask and reset columns (padded to 128 lanes).
    per_step = 2 * (gates + n_res + 3 + 2) * block_b * h_pad * 4
    return weights + time_chunk * per_step


def _default_time_chunk(kind, block_b, h_pad):
    """The most steps (8 at most, a power of two) whose blocks fit :data:`_VMEM_BUDGET`."""
    chunk = 8
    while chunk > 1 and _vmem_bytes(kind, block_b, h_pad, chunk) > _VMEM_BUDGET:
        chunk //= 2
    return chunk


def run(kind, inputs, *, reverse, interpret, block_b=None, time_chunk=None):
    """``((h_T, c_T), ys)`` of :class:`~seqjax.kernels.pallas_cells.KernelInputs`, padded (the
    caller slices); see :func:`seqjax.kernels.pallas.run`, which dispatches here on TPU (or when
    asked for the Mosaic kernels). ``block_b`` (default: the whole padded batch up to 128 rows)
    and ``time_chunk`` (default: up to 8 steps, fewer where the blocks would not fit
    :data:`_VMEM_BUDGET`) set the blocking. Unmeasured: no TPU has run these kernels."""
    time, batch, gates, hidden = inputs.xw.shape
    block_b = block_b or min(_round_up(batch, 8), 128)
    b_pad, h_pad = _round_up(batch, block_b), _round_up(hidden, 128)
    time_chunk = time_chunk or _default_time_chunk(kind, block_b, h_pad)
    if block_b % 8 or time_chunk < 1:
        raise ValueError(f"block_b must be a multiple of 8 and time_chunk >= 1 on TPU; got "
                         f"block_b={block_b}, time_chunk={time_chunk}")
    t_pad = _round_up(time, time_chunk)
    pad = pallas_cells.pad_to
    # Gate-major, so that each gate's block is a contiguous tile.
    xw = pad(jnp.swapaxes(inputs.xw, 1, 2), t_pad, gates, b_pad, h_pad)
    w = pad(inputs.w, gates, h_pad, h_pad)
    bh = pad(inputs.bh[:, None, :], gates, 1, h_pad)
    h0 = pad(inputs.h0, b_pad, h_pad)
    c0 = None if inputs.c0 is None else pad(inputs.c0, b_pad, h_pad)
    # Padded steps and rows are masked: they carry the state through and emit zeros.
    valid = pad(inputs.valid[:, :, None], t_pad, b_pad, 1)
    reset = pad(inputs.reset[:, :, None], t_pad, b_pad, 1)
    cfg = Config(kind, block_b, time_chunk, t_pad // time_chunk, bool(reverse), bool(interpret))
    return core(cfg, xw, w, bh, h0, c0, valid, reset)
