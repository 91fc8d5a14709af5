"""LSTM and GRU as one persistent Pallas kernel for the forward and one for the backward (GPU).

Scheme (cuDNN's persistent RNN). The input projection ``xs @ w_x + b`` for all steps is one XLA
matmul outside the kernels. The forward kernel runs the whole time loop in a single launch over
a grid of ``(split, batch blocks)`` programs: program ``(j, b)`` owns ``block_b`` batch rows and
``H / split`` hidden units (all gates of them), ``block_h`` units per tile. At each step it reads
the whole carry ``h_{t-1}`` of its rows, multiplies it by its own columns of ``w_h`` (in
``k_chunk``-unit slices of the contracted axis), applies the cell and writes its units of
``h_t``. Then the ``split`` programs of a batch block wait for each other: one atomic counter per
batch block, which each program increments once per step and polls until all have (the
grid-wide barrier; every program of a batch block must be resident at once, so ``split x
batch blocks`` is capped at the SM count, and under ``jax.vmap`` such kernels run one instance
after another instead of in one bigger grid). Each step thus streams only ``1 / split`` of
``w_h`` through an SM. The kernel writes the carry of every step (in processing order), the
activated gates (the residuals) and the masked outputs; the LSTM cell state is carried in
registers from step to step (and written out only as a residual).

The backward is a ``custom_vjp``: a second kernel runs the reverse recurrence with the same
split. Program ``(j, b)`` computes the gate gradients ``dz_t`` of its units (which are also the
input projection's cotangent), waits for its batch block, then forms its units of
``dh_{t-1} = dz_t w_h^T`` from everyone's ``dz_t``; ``d carry0`` falls out at the end.
``d w_h = sum_t h_{t-1}^T dz_t`` and the bias gradient are single big matmuls/reductions in
XLA, and autodiff of ``cell.project`` gives ``d w_x``, ``d b``, ``d xs``.

Masks, resets and direction are handled inside the kernels exactly as ``masked_scan``: a masked
step keeps the carry and emits zeros; an (effective, i.e. valid) reset replaces the carry by
``carry0`` before the step; ``reverse`` walks ``t = T-1 .. 0`` writing each output at its own
position. B is padded to ``block_b`` rows and H to a power of two (>= 16, Triton's smallest
``dot``); padded units stay exactly zero (zero weights, zero inputs, zero initial carry).

Supported: ``lstm`` and ``gru`` with ``reset_after=True`` (the cuDNN form). ``gru(reset_after=
False)`` needs a second, dependent matmul per step and is left to the other backends.

Platforms: on GPU the kernels lower through Triton. On TPU ``run`` dispatches to the Mosaic
kernels of ``seqjax/kernels/pallas_tpu.py`` (same scheme, no barrier needed: a TPU core runs
its grid steps in order), which are tested in TPU interpret mode and have never run on a TPU.
Elsewhere (CPU) the Triton kernels run with ``pallas_call(..., interpret=True)``: correct but
slow, for tests only (programs run one after another there, so ``split`` is 1), and
``backend="auto"`` never picks this backend on CPU or TPU. ``jax.experimental.pallas`` is
imported lazily, so the library imports without it.

Measured on one H100 (``python experiments/bench_pallas_gpu.py``; JAX 0.11.2, Triton lowering,
fp32 with TF32 dots; training step ``jit(grad)`` of ``mean(ys**2)``, ms, median, interleaved
within each shape; torch 2.11 ``nn.LSTM``/``nn.GRU`` with cuDNN, TF32 allowed)::

                                  pallas  fused  hoisted  reference  torch cuDNN
    S1 B64 T128 I128 H256   lstm   4.14   3.67    4.63     6.55       6.44  (pallas fwd 2.23)
                            gru    3.41   3.46    4.27     6.29       5.59  (pallas fwd 1.75)
    S2 B32 T512 I64 H128    lstm   9.12  12.61   15.61    21.50       2.73
                            gru    7.63  12.55   14.69    21.60       2.60  (k_chunk None)
    S3 B128 T32 I64 H512    lstm  34.66   1.61    1.96     2.59       3.47
    S4 B16 T1024 I32 H64    lstm  14.18  23.69   28.90    37.13       1.82
                            gru   11.94  22.52   24.87    38.69       2.25
    B64 T128 I128 H64       lstm   1.98   3.57    4.55     5.76       1.60
                            gru    1.73   3.06    4.19     5.60       1.60
    B64 T128 I128 H32       lstm   1.09   3.28    4.49     5.37       1.76
                            gru    0.92   3.03    3.69     5.75       1.34

What the tile sweep at S1 showed (LSTM, ms; ``(block_b, block_h, split, num_warps, k_chunk)``):
with the contracted axis whole, 16-row blocks were very slow (``(16,16,16,4)`` 22.6, forward
alone 21.3; one program per batch block ``(16,32,1,4)`` 102; 2 warps at 64 rows 62.6) while
64-row blocks were not (``(64,16,16,4)`` 4.8). The likely reason (not profiled): only from 64
rows do Triton's Hopper matmuls (wgmma) take the ``[rows, H]`` carry from shared memory; below
that each warp holds it in registers, which at H=256 would spill. Slicing the contracted axis
(``k_chunk=64``) fixed the small blocks: ``(16,16,16,4,64)`` 4.14, ``(16,32,8,4,64)`` 4.07,
against ``(64,16,16,8)`` 6.06 in the same run. At H <= 64 one program per batch block needs no
barrier and stays the default.

Software pipelining (``num_stages > 1``) is off: it loaded the next step's carry before the
barrier that makes it valid (wrong results at H64 in a first try). Errors against
``reference`` on GPU are TF32-level (relative 1e-4 to 2e-4), masks, resets, both directions
and split/unsplit included. S3 (B128, H512: 8 batch blocks, 2 tiles per program) is far off
and was not investigated; ``auto`` keeps ``fused`` there.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import LSTMCarry, RNNCarry
from seqjax.kernels import pallas_cells, pallas_tpu
from seqjax.kernels.pallas_cells import CELLS, dot

# ----------------------------------------------------------------------------- cells


def supports(spec) -> bool:
    return spec.kind == "lstm" or (spec.kind == "gru" and spec.reset_after)


_LINE = 32  # int32 words per 128-byte cache line


class _Config(NamedTuple):
    """Static kernel configuration (hashable: it is a ``custom_vjp`` nondiff argument)."""

    kind: str
    time: int
    block_b: int  # batch rows per program
    block_h: int  # hidden units per gate tile (Triton's dot needs >= 16)
    hidden: int  # padded hidden size, a multiple of block_h * split
    k_chunk: int | None  # contract h @ w_h in chunks of this many units (None: all at once)
    split: int  # programs sharing one batch block, each owning hidden // split units
    num_warps: int
    reverse: bool
    interpret: bool


# ----------------------------------------------------------------------------- kernels


def _my_columns(cfg):
    """The hidden-unit tiles this program owns: ``hidden // split`` units, ``block_h`` at a time."""
    from jax.experimental import pallas as pl

    tiles = cfg.hidden // cfg.block_h // cfg.split
    first = pl.program_id(0) * tiles
    return [pl.ds((first + k) * cfg.block_h, cfg.block_h) for k in range(tiles)]


def _sync(cfg, counters_ref, phase):
    """Wait until every program of this batch block has finished ``phase``.

    Within a program the threads must see each other's global stores (a CTA barrier). With
    ``split > 1`` the programs of a batch block also wait for each other: each adds one to its
    block's counter (an acquire-release atomic at GPU scope, issued once per program) and spins
    until the counter reaches ``split * (phase + 1)``. Interpreted programs run one after the
    other, so they never split.
    """
    if cfg.interpret:
        return
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plgpu

    plgpu.debug_barrier()
    if cfg.split == 1:
        return
    counter = (pl.program_id(1), 0)
    plgpu.atomic_add(counters_ref, counter, 1)
    target = cfg.split * (phase + 1)
    lax.while_loop(lambda seen: seen < target,
                   lambda _: plgpu.atomic_add(counters_ref, counter, 0), jnp.int32(0))
    plgpu.debug_barrier()


def _chunks(cfg):
    """Slices of the contracted hidden axis, ``k_chunk`` units each."""
    from jax.experimental import pallas as pl

    k = cfg.k_chunk or cfg.hidden
    return [pl.ds(i, k) for i in range(0, cfg.hidden, k)]


def _forward_kernel(cfg, *refs):
    from jax.experimental import pallas as pl

    gates, n_res, has_c, fwd, _ = CELLS[cfg.kind]
    xw_ref, w_ref, bh_ref, h0_ref, c0_ref, valid_ref, reset_ref = refs[:7]
    ys_ref, hseq_ref, cseq_ref, res_ref, counters_ref = refs[7:]
    rows = pl.ds(pl.program_id(1) * cfg.block_b, cfg.block_b)
    mine = _my_columns(cfg)
    chunks = _chunks(cfg)

    for cols in mine:
        hseq_ref[0, rows, cols] = h0_ref[rows, cols]
        if has_c:
            cseq_ref[0, rows, cols] = c0_ref[rows, cols]
    _sync(cfg, counters_ref, 0)

    def step(s, c_carry):
        t = cfg.time - 1 - s if cfg.reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        h_parts = [jnp.where(reset, h0_ref[rows, kc], hseq_ref[s, rows, kc]) for kc in chunks]
        c_next = []
        for k, cols in enumerate(mine):
            hw = [sum(dot(h, w_ref[g, kc, cols]) for h, kc in zip(h_parts, chunks))
                  for g in range(gates)]
            xw = [xw_ref[t, g, rows, cols] for g in range(gates)]
            bh = [bh_ref[g, cols][None, :] for g in range(gates)]
            h_in = jnp.where(reset, h0_ref[rows, cols], hseq_ref[s, rows, cols])
            c_in = jnp.where(reset, c0_ref[rows, cols], c_carry[k]) if has_c else None
            h_new, c_new, res = fwd(xw, hw, bh, h_in, c_in)
            for j in range(n_res):
                res_ref[t, j, rows, cols] = res[j]
            ys_ref[t, rows, cols] = jnp.where(valid, h_new, jnp.zeros_like(h_new))
            hseq_ref[s + 1, rows, cols] = jnp.where(valid, h_new, h_in)
            if has_c:
                c_next.append(jnp.where(valid, c_new, c_in))
                cseq_ref[s + 1, rows, cols] = c_next[-1]
        _sync(cfg, counters_ref, s + 1)
        return tuple(c_next)

    c_init = tuple(c0_ref[rows, cols] for cols in mine) if has_c else ()
    lax.fori_loop(0, cfg.time, step, c_init)


def _backward_kernel(cfg, *refs):
    from jax.experimental import pallas as pl

    gates, n_res, has_c, _, bwd = CELLS[cfg.kind]
    (dys_ref, dhT_ref, dcT_ref, res_ref, hseq_ref, cseq_ref, w_ref, h0_ref, c0_ref, valid_ref,
     reset_ref) = refs[:11]
    dxw_ref, drec_ref, dh0_ref, dc0_ref, counters_ref = refs[11:]
    rows = pl.ds(pl.program_id(1) * cfg.block_b, cfg.block_b)
    mine = _my_columns(cfg)
    chunks = _chunks(cfg)
    # For the LSTM the recurrent cotangent equals the gate gradient: one array serves both.
    rec_ref = drec_ref if drec_ref is not None else dxw_ref
    n = len(mine)

    def step(k_step, carry):
        # dh, dc: cotangents of this program's tiles of the carry after step t; to_h0, to_c0:
        # what resets have sent to the initial carry so far.
        dh, dc, to_h0, to_c0 = carry
        s = cfg.time - 1 - k_step
        t = cfg.time - 1 - s if cfg.reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        direct, dc_out, to_c0_out = [], [], []
        for k, cols in enumerate(mine):
            dh_new = jnp.where(valid, dh[k] + dys_ref[t, rows, cols], jnp.zeros_like(dh[k]))
            h_in = jnp.where(reset, h0_ref[rows, cols], hseq_ref[s, rows, cols])
            res = [res_ref[t, j, rows, cols] for j in range(n_res)]
            if has_c:
                dc_new = jnp.where(valid, dc[k], jnp.zeros_like(dc[k]))
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
            direct.append(jnp.where(
                valid, jnp.zeros_like(dh[k]) if dh_direct is None else dh_direct, dh[k]))
            if has_c:
                dc_prev = jnp.where(valid, dc_in, dc[k])
                to_c0_out.append(to_c0[k] + jnp.where(reset, dc_prev, jnp.zeros_like(dc_prev)))
                dc_out.append(jnp.where(reset, jnp.zeros_like(dc_prev), dc_prev))
        _sync(cfg, counters_ref, k_step)
        dh_out, to_h0_out = [], []
        for k, cols in enumerate(mine):
            rec = direct[k]
            for g in range(gates):
                for kc in chunks:
                    rec = rec + dot(rec_ref[t, g, rows, kc], w_ref[g, cols, kc], transpose_b=True)
            to_h0_out.append(to_h0[k] + jnp.where(reset, rec, jnp.zeros_like(rec)))
            dh_out.append(jnp.where(reset, jnp.zeros_like(rec), rec))
        return tuple(dh_out), tuple(dc_out), tuple(to_h0_out), tuple(to_c0_out)

    zeros = tuple(jnp.zeros((cfg.block_b, cfg.block_h), dhT_ref.dtype) for _ in range(n))
    dh_init = tuple(dhT_ref[rows, cols] for cols in mine)
    dc_init = tuple(dcT_ref[rows, cols] for cols in mine) if has_c else ()
    dh, dc, to_h0, to_c0 = lax.fori_loop(
        0, cfg.time, step, (dh_init, dc_init, zeros, zeros if has_c else ()))
    for k, cols in enumerate(mine):
        dh0_ref[rows, cols] = dh[k] + to_h0[k]
        if has_c:
            dc0_ref[rows, cols] = dc[k] + to_c0[k]


def _call(kernel, cfg, out_shape, args):
    """``pallas_call`` over (hidden split, batch blocks); ``None`` inputs/outputs are skipped.

    With ``split > 1`` zeroed counters for :func:`_sync` are the last input, aliased to the last
    output (created per launch, so each instance under ``vmap`` gets its own).
    """
    from jax.experimental import pallas as pl

    batch = args[0].shape[-2]
    groups = batch // cfg.block_b
    compiler_params = None
    aliases = {}
    synced = cfg.split > 1 and not cfg.interpret
    if not cfg.interpret:
        from jax.experimental.pallas import triton as plgpu

        # No software pipelining: it would load the next step's carry (and, in the backward, the
        # next step's gate gradients) before the barrier that makes them valid.
        compiler_params = plgpu.CompilerParams(num_warps=cfg.num_warps, num_stages=1)
    # One counter per batch block, each on its own 128-byte line: the spinning programs of one
    # block then never contend with another block's.
    counters = jax.ShapeDtypeStruct((groups, _LINE), jnp.int32) if synced else None
    if synced:
        n_args = sum(a is not None for a in args)
        aliases = {n_args: sum(o is not None for o in out_shape)}
    out_shape = (*out_shape, counters)
    in_used = [a is not None for a in args]
    out_used = [o is not None for o in out_shape]

    def body(*refs):
        refs = iter(refs)
        ins = [next(refs) if used else None for used in in_used]
        if synced:
            next(refs)  # the counters' input; the kernel uses the aliased output
        outs = [next(refs) if used else None for used in out_used]
        kernel(cfg, *ins, *outs)

    call = pl.pallas_call(
        body,
        out_shape=tuple(o for o in out_shape if o is not None),
        grid=(cfg.split, groups),
        input_output_aliases=aliases,
        interpret=cfg.interpret,
        compiler_params=compiler_params,
        name=f"seqjax_{cfg.kind}{kernel.__name__.replace('_kernel', '')}",
    )

    def launch(*present):
        if synced:
            present = (*present, jnp.zeros(counters.shape, counters.dtype))
        return tuple(call(*present))

    if cfg.interpret:
        # Interpreted kernels run op by op unless compiled; under the caller's jit this is inlined.
        launch = jax.jit(launch)
    if synced or cfg.interpret:
        launch = _one_instance_at_a_time(launch)
    results = iter(launch(*(a for a in args if a is not None)))
    return tuple(next(results) if used else None for used in out_used[:-1])


def _one_instance_at_a_time(launch):
    """``launch`` under ``jax.vmap`` runs the instances one after another (``lax.map``).

    A split kernel needs every program of a batch block resident at once; batching would
    multiply its grid by the vmapped size, and programs waiting at a barrier for others that
    cannot start would hang. (Interpreted kernels take the same path, so CPU tests cover it.)
    """
    launch = jax.custom_batching.custom_vmap(launch)

    @launch.def_vmap
    def _rule(axis_size, in_batched, *args):
        del axis_size

        def one(batched):
            batched = iter(batched)
            return launch(*(next(batched) if b else a for a, b in zip(args, in_batched)))

        outs = lax.map(one, [a for a, b in zip(args, in_batched) if b])
        return outs, tuple(True for _ in outs)

    return launch


# ----------------------------------------------------------------------------- custom_vjp core


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _core(cfg, xw, w, bh, h0, c0, valid, reset):
    return _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset)[0]


def _core_fwd(cfg, xw, w, bh, h0, c0, valid, reset):
    _, n_res, has_c, _, _ = CELLS[cfg.kind]
    batch, hidden = h0.shape
    dtype = h0.dtype
    seq = jax.ShapeDtypeStruct((cfg.time + 1, batch, hidden), dtype)
    out_shape = (
        jax.ShapeDtypeStruct((cfg.time, batch, hidden), dtype),
        seq,
        seq if has_c else None,
        jax.ShapeDtypeStruct((cfg.time, n_res, batch, hidden), dtype),
    )
    ys, hseq, cseq, res = _call(
        _forward_kernel, cfg, out_shape, (xw, w, bh, h0, c0, valid, reset))
    carry_T = (hseq[cfg.time], cseq[cfg.time] if has_c else jnp.zeros_like(h0))
    return (carry_T, ys), (res, hseq, cseq, w, h0, c0, valid, reset)


def _core_bwd(cfg, residuals, cotangents):
    gates, _, has_c, _, _ = CELLS[cfg.kind]
    res, hseq, cseq, w, h0, c0, valid, reset = residuals
    (dh_T, dc_T), dys = cotangents
    batch, hidden = h0.shape
    dtype = h0.dtype
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    per_gate = jax.ShapeDtypeStruct((cfg.time, gates, batch, hidden), dtype)
    out_shape = (per_gate, None if cfg.kind == "lstm" else per_gate, state,
                 state if has_c else None)
    dxw, drec, dh0, dc0 = _call(
        _backward_kernel, cfg, out_shape,
        (dys, dh_T, dc_T if has_c else None, res, hseq, cseq, w, h0, c0, valid, reset))
    drec = dxw if drec is None else drec
    # The carry each step read, in time order, for the weight gradient.
    h_prev = hseq[:cfg.time][::-1] if cfg.reverse else hseq[:cfg.time]
    h_in = jnp.where(reset[:, :, None] > 0.5, h0[None], h_prev)
    dw, dbh = pallas_cells.weight_grads(cfg.kind, h_in, drec, gates)
    return dxw, dw, dbh, dh0, dc0, jnp.zeros_like(valid), jnp.zeros_like(reset)


_core.defvjp(_core_fwd, _core_bwd)


# ----------------------------------------------------------------------------- backend


def _next_pow2(n: int, least: int) -> int:
    return max(least, 1 << max(0, n - 1).bit_length())


def _plan(batch, hidden, cores, interpret, block_b=None, block_h=None, split=None,
          num_warps=None, k_chunk=None):
    """Tiles for a shape: explicit arguments win and are checked, the rest are the measured
    defaults (module docstring). ``cores``: the GPU's SM count."""
    h_pad = _next_pow2(hidden, 16)
    small = interpret or h_pad <= 64
    block_b = block_b or 16
    block_h = block_h or (min(h_pad, 32) if small else 16)
    k_chunk = k_chunk or (None if small else 64)
    num_warps = num_warps or 4
    if h_pad % block_h or (block_h < 16 and not interpret):
        raise ValueError(f"block_h must divide the padded hidden size {h_pad} and be >= 16 on "
                         f"GPU (Triton's smallest dot); got {block_h}")
    if k_chunk is not None and (h_pad % k_chunk or (k_chunk < 16 and not interpret)):
        raise ValueError(f"k_chunk must divide the padded hidden size {h_pad} and be >= 16 on "
                         f"GPU; got {k_chunk}")
    tiles = h_pad // block_h
    groups = -(-batch // block_b)
    if split is None:
        # Small H: one program per batch block holds every unit, no grid-wide wait per step.
        # Larger H: as many programs per batch block as can all be resident (one per SM).
        fit = 1 if small else max(1, min(tiles, cores // groups))
        split = 1 << (fit.bit_length() - 1)
    if split < 1 or tiles % split:
        raise ValueError(f"split must divide the {tiles} hidden tiles of {block_h} units; "
                         f"got {split}")
    if split > 1 and interpret:
        raise ValueError("split > 1 needs a GPU: interpreted programs run one after another and "
                         f"cannot wait for each other; got split={split}")
    if split > 1 and split * groups > cores:
        raise ValueError(f"split={split} with {groups} batch blocks of {block_b} needs "
                         f"{split * groups} programs resident at once; the GPU has {cores} SMs")
    return block_b, block_h, h_pad, split, num_warps, k_chunk


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat,
        interpret=None, mosaic=None, block_b=None, block_h=None, split=None, num_warps=None,
        k_chunk=None, time_chunk=None):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`.

    ``unroll`` and ``remat`` do not apply (one kernel runs the whole loop; the backward kernel
    reads stored activations). ``interpret`` defaults to True off GPU and TPU. ``mosaic``
    selects the TPU kernels (``seqjax/kernels/pallas_tpu.py``; default: on TPU) instead of the
    Triton ones. The tiling knobs override the measured defaults (module docstring):
    ``block_b`` batch rows per program; Triton only: ``block_h`` hidden units per tile,
    ``split`` programs per batch block (each owns ``H / split`` units; all of them must fit on
    the GPU at once), ``k_chunk`` units per slice of the contracted axis of each step's matmul,
    ``num_warps`` Triton warps per program; Mosaic only: ``time_chunk`` steps per grid step.
    """
    del unroll, remat
    spec = cell.spec
    if not supports(spec):
        raise ValueError(f"the pallas backend supports lstm and gru(reset_after=True); "
                         f"got {spec.kind!r} (reset_after={spec.reset_after})")
    platform = jax.default_backend()
    if interpret is None:
        interpret = platform not in ("gpu", "tpu")
    if mosaic is None:
        mosaic = platform == "tpu"
    if xs.shape[0] == 0:
        return carry0, jnp.zeros((0, xs.shape[1], spec.hidden_size), xs.dtype)
    if mosaic:
        triton_only = dict(block_h=block_h, split=split, num_warps=num_warps, k_chunk=k_chunk)
        given = sorted(k for k, v in triton_only.items() if v is not None)
        if given:
            raise ValueError(f"{', '.join(given)} only apply to the Triton (GPU) kernels; "
                             "the Mosaic (TPU) kernels take block_b and time_chunk")
    elif time_chunk is not None:
        raise ValueError("time_chunk only applies to the Mosaic (TPU) kernels; got "
                         f"time_chunk={time_chunk}")
    inputs = pallas_cells.kernel_inputs(cell, params, xs, mask, resets, carry0)
    if mosaic:
        (h_T, c_T), ys = pallas_tpu.run(spec.kind, inputs, reverse=reverse, interpret=interpret,
                                        block_b=block_b, time_chunk=time_chunk)
    else:
        cores = 1 if interpret else getattr(jax.devices()[0], "core_count", None) or 1
        (h_T, c_T), ys = _run_triton(spec.kind, inputs, cores, reverse, interpret, block_b,
                                     block_h, split, num_warps, k_chunk)
    time, batch, hidden = xs.shape[0], xs.shape[1], spec.hidden_size
    ys = ys[:time, :batch, :hidden].astype(xs.dtype)
    h_T = h_T[:batch, :hidden]
    if spec.kind == "lstm":
        return LSTMCarry(h_T, c_T[:batch, :hidden]), ys
    return RNNCarry(h_T), ys


def _run_triton(kind, inputs, cores, reverse, interpret, *knobs):
    """``((h_T, c_T), ys)`` of the GPU kernels, padded (the caller slices)."""
    time, gates, batch, hidden = inputs.xw.shape
    block_b, block_h, h_pad, split, num_warps, k_chunk = _plan(
        batch, hidden, cores, interpret, *knobs)
    b_pad = -(-batch // block_b) * block_b
    pad = pallas_cells.pad_to
    xw = pad(inputs.xw, time, gates, b_pad, h_pad)
    w = pad(inputs.w, gates, h_pad, h_pad)
    bh = pad(inputs.bh, gates, h_pad)
    h0 = pad(inputs.h0, b_pad, h_pad)
    c0 = None if inputs.c0 is None else pad(inputs.c0, b_pad, h_pad)
    valid = pad(inputs.valid, time, b_pad)
    reset = pad(inputs.reset, time, b_pad)
    cfg = _Config(kind, time, block_b, block_h, h_pad, k_chunk, split, num_warps, bool(reverse),
                  bool(interpret))
    return _core(cfg, xw, w, bh, h0, c0, valid, reset)
