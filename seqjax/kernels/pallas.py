"""LSTM and GRU as one persistent Pallas kernel for the forward and one for the backward (GPU).

Scheme (cuDNN's persistent RNN). The input projection ``xs @ w_x + b`` for all steps is one XLA
matmul outside the kernels (read by the kernels as laid out, ``[T, B, G, H]``). The forward
kernel runs the whole time loop in a single launch over a grid of ``(split, batch blocks)``
programs: program ``(j, b)`` owns ``block_b`` batch rows and ``H / split`` hidden units (all
gates of them), ``block_h`` units per tile. Its columns of ``w_h`` are loaded once and stay in
registers for the whole sequence, laid out with the gates of a tile side by side, so that one
``dot`` per ``k_chunk``-unit slice of the contracted axis gives every gate of the tile. At each
step the program reads the whole carry ``h_{t-1}`` of its rows, applies the cell and writes its
units of ``h_t``. Then the ``split`` programs of a batch block wait for each other: one atomic
counter per batch block, which each program increments once per step and polls until all have
(the grid-wide barrier; every program of a batch block must be resident at once, so ``split x
batch blocks`` is capped at the SM count, and under ``jax.vmap`` such kernels run one instance
after another instead of in one bigger grid). The kernel writes the carry of every step (in
processing order), the activated gates (the residuals) and the masked outputs; the program's
own units of the carry (``h`` and the LSTM cell state) stay in registers from step to step.

The backward is a ``custom_vjp``: a second kernel runs the reverse recurrence with the same
split and the transposed ``w_h`` columns held in registers. Program ``(j, b)`` computes the gate
gradients ``dz_t`` of its units (which are also the input projection's cotangent) and its share
``dz_t[:, mine] w_h[:, mine]^T`` of ``dh_{t-1}`` for every unit, writes the share, waits for its
batch block, and sums everyone's shares of its own units (exchanging ``[rows, H]`` per program
instead of everyone's ``[rows, G*H]`` gate gradients). ``d carry0`` falls out at the end.
``d w_h = sum_t h_{t-1}^T dz_t`` and the bias gradient are single big matmuls/reductions in XLA,
and autodiff of ``cell.project`` gives ``d w_x``, ``d b``, ``d xs``.

Masks, resets and direction are handled inside the kernels exactly as ``masked_scan``: a masked
step keeps the carry and emits zeros; an (effective, i.e. valid) reset replaces the carry by
``carry0`` before the step; ``reverse`` walks ``t = T-1 .. 0`` writing each output at its own
position. B is padded to ``block_b`` rows and H to a power of two (>= 16, Triton's smallest
``dot``); padded units stay exactly zero (zero weights, zero inputs, zero initial carry).

Limits: each program holds ``16 * H * H / split`` bytes of ``w_h`` (four gates side by side,
the GRU's three padded to four, float32); :data:`_HELD_BYTES` (64 KiB, H256 over 16 programs)
is what was measured to work, so H256 needs ``split >= 16`` and H512 would need 64 programs per
batch block, more tiles than it has: the default tiling raises a clear error there and
``backend="auto"`` (which asks :func:`fits`) keeps ``fused``. Larger batches get larger batch
blocks (up to 128 rows) so that all programs stay resident.

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
within each shape; torch 2.11 ``nn.LSTM``/``nn.GRU`` with cuDNN, TF32 allowed; 2026-11-23)::

                                  pallas (forward)  fused  hoisted  reference  torch cuDNN
    S1 B64 T128 I128 H256   lstm   1.68  (0.80)     3.68    5.09     6.64       5.86
                            gru    1.58  (0.75)     3.56    4.62     6.18       6.03
    S2 B32 T512 I64 H128    lstm   4.04  (1.95)    13.22   17.92    21.76       3.04
                            gru    3.92  (1.86)    12.34   16.37    21.14       2.06
    S3 B128 T32 I64 H512    lstm   too large        1.55    2.08     2.53       3.27
    S4 B16 T1024 I32 H64    lstm   5.62  (3.16)    23.16   29.29    37.40       1.74
                            gru    5.13  (2.85)    22.95   28.80    38.82       2.37
    B64 T128 I128 H64       lstm   0.92  (0.57)     3.31    4.56     5.66       1.97
                            gru    0.80  (0.49)     3.11    4.12     5.67       1.60
    B64 T128 I128 H32       lstm   0.61  (0.40)     3.26    4.50     5.46       1.81
                            gru    0.53  (0.32)     3.11    4.24     5.90       1.69

What each change did (S1 LSTM, ms, each pair from one interleaved run): holding ``w_h`` in
registers instead of reloading it every step 4.41 -> 3.15 (forward 2.74 -> 1.58); loading the
other loop invariants (``h0``, ``c0``, the bias) once, forward 1.44 -> 1.26; the gates side by
side (4 dots per step instead of 16), forward 1.26 -> 0.74; the backward's shares and more
warps for it (``num_warps=(4, 16)``) 2.91 -> 1.73 (8 warps: 2.08). Skipping the inter-program
wait (wrong results, an ablation) took the forward from 1.44 to 1.17: the barrier costs about
2 us per step. Software pipelining (``num_stages > 1``) is off: it loaded the next step's carry
before the barrier that makes it valid (wrong results in an earlier version). Polling the
counter with plain volatile loads instead of atomics gave wrong results too (not understood;
the atomic poll is kept). Errors against ``reference`` on GPU are TF32-level (relative 3e-5 to
1.2e-4), masks, resets, both directions and split/unsplit tilings included.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import LSTMCarry, RNNCarry
from seqjax.kernels import pallas_cells, pallas_tpu
from seqjax.kernels.pallas_cells import CELLS, dot, supports

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
    num_warps: tuple[int, int]  # Triton warps per program: forward, backward kernel
    reverse: bool
    interpret: bool


# ----------------------------------------------------------------------------- kernels


def _my_tiles(cfg):
    """Indices of the hidden-unit tiles this program owns: ``hidden // split`` units."""
    from jax.experimental import pallas as pl

    tiles = cfg.hidden // cfg.block_h // cfg.split
    return [pl.program_id(0) * tiles + k for k in range(tiles)]


def _my_columns(cfg):
    """This program's tiles as slices of the hidden axis, ``block_h`` units each."""
    from jax.experimental import pallas as pl

    return [pl.ds(tile * cfg.block_h, cfg.block_h) for tile in _my_tiles(cfg)]


def _side_by_side(gates):
    """Gates per tile in the forward kernel's weight layout (a power of two for ``jnp.split``)."""
    return 1 << (gates - 1).bit_length()


def _gates_side_by_side(w, block_h):
    """``[G, H, H] -> [H, tiles * G' * block_h]``: for each tile of ``block_h`` units, the
    columns of every gate next to each other (``G'`` gates, zero-padded to a power of two), so
    that one ``dot`` per slice of the contracted axis yields all gates of a tile."""
    gates, hidden, _ = w.shape
    side = _side_by_side(gates)
    w = jnp.pad(w, ((0, side - gates), (0, 0), (0, 0)))
    w = w.reshape(side, hidden, hidden // block_h, block_h)
    return jnp.transpose(w, (1, 2, 0, 3)).reshape(hidden, -1)


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
    side = _side_by_side(gates)
    wide = side * cfg.block_h
    # Loop invariants are loaded once: this program's columns of w_h stay in registers for the
    # whole sequence (reloading them each step was most of a step's time).
    w_mine = [[w_ref[kc, pl.ds(tile * wide, wide)] for kc in chunks] for tile in _my_tiles(cfg)]
    bh_mine = [[bh_ref[g, cols][None, :] for g in range(gates)] for cols in mine]
    h0_chunks = [h0_ref[rows, kc] for kc in chunks]
    h0_mine = [h0_ref[rows, cols] for cols in mine]
    c0_mine = [c0_ref[rows, cols] if has_c else None for cols in mine]
    for cols, h0, c0 in zip(mine, h0_mine, c0_mine):
        hseq_ref[0, rows, cols] = h0
        if has_c:
            cseq_ref[0, rows, cols] = c0
    _sync(cfg, counters_ref, 0)

    def step(s, carry):
        # This program's units of the carry stay in registers; the whole h_{t-1} of its rows,
        # which the other programs wrote, comes from hseq.
        h_mine, c_mine = carry
        t = cfg.time - 1 - s if cfg.reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        h_parts = [jnp.where(reset, h0, hseq_ref[s, rows, kc]) for h0, kc in zip(h0_chunks, chunks)]
        h_next, c_next = [], []
        for k, cols in enumerate(mine):
            hw_all = sum(dot(h, w) for h, w in zip(h_parts, w_mine[k]))
            hw = jnp.split(hw_all, side, axis=1)[:gates]
            xw = [xw_ref[t, rows, g, cols] for g in range(gates)]
            h_in = jnp.where(reset, h0_mine[k], h_mine[k])
            c_in = jnp.where(reset, c0_mine[k], c_mine[k]) if has_c else None
            h_new, c_new, res = fwd(xw, hw, bh_mine[k], h_in, c_in)
            for j in range(n_res):
                res_ref[t, j, rows, cols] = res[j]
            ys_ref[t, rows, cols] = jnp.where(valid, h_new, jnp.zeros_like(h_new))
            h_next.append(jnp.where(valid, h_new, h_in))
            hseq_ref[s + 1, rows, cols] = h_next[-1]
            if has_c:
                c_next.append(jnp.where(valid, c_new, c_in))
                cseq_ref[s + 1, rows, cols] = c_next[-1]
        _sync(cfg, counters_ref, s + 1)
        return tuple(h_next), tuple(c_next)

    lax.fori_loop(0, cfg.time, step, (tuple(h0_mine), tuple(c0_mine) if has_c else ()))


def _backward_kernel(cfg, *refs):
    from jax.experimental import pallas as pl

    gates, n_res, has_c, _, bwd = CELLS[cfg.kind]
    (dys_ref, dhT_ref, dcT_ref, res_ref, hseq_ref, cseq_ref, w_ref, h0_ref, c0_ref, valid_ref,
     reset_ref) = refs[:11]
    dxw_ref, drec_ref, dh0_ref, dc0_ref, partial_ref, counters_ref = refs[11:]
    rows = pl.ds(pl.program_id(1) * cfg.block_b, cfg.block_b)
    me = pl.program_id(0)
    mine = _my_columns(cfg)
    units = pl.ds(0, cfg.hidden)
    everyone = pl.ds(0, cfg.split)
    # Loop invariants, loaded once: w_h's rows for this program's gate columns stay in registers.
    w_mine = [[w_ref[g, units, cols] for g in range(gates)] for cols in mine]
    h0_mine = [h0_ref[rows, cols] for cols in mine]
    c0_mine = [c0_ref[rows, cols] if has_c else None for cols in mine]

    def step(k_step, carry):
        # dh, dc: cotangents of this program's tiles of the carry after step t; to_h0, to_c0:
        # what resets have sent to the initial carry so far.
        dh, dc, to_h0, to_c0 = carry
        s = cfg.time - 1 - k_step
        t = cfg.time - 1 - s if cfg.reverse else s
        valid = (valid_ref[t, rows] > 0.5)[:, None]
        reset = (reset_ref[t, rows] > 0.5)[:, None]
        direct, dc_out, to_c0_out = [], [], []
        partial = 0.0
        for k, cols in enumerate(mine):
            dh_new = jnp.where(valid, dh[k] + dys_ref[t, rows, cols], jnp.zeros_like(dh[k]))
            h_in = jnp.where(reset, h0_mine[k], hseq_ref[s, rows, cols])
            res = [res_ref[t, j, rows, cols] for j in range(n_res)]
            if has_c:
                dc_new = jnp.where(valid, dc[k], jnp.zeros_like(dc[k]))
                c_in = jnp.where(reset, c0_mine[k], cseq_ref[s, rows, cols])
                c_new = cseq_ref[s + 1, rows, cols]
            else:
                dc_new = c_in = c_new = None
            dxw, drec, dh_direct, dc_in = bwd(res, h_in, c_in, c_new, dh_new, dc_new)
            for g in range(gates):
                dxw_ref[t, rows, g, cols] = dxw[g]
                if drec_ref is not None:
                    drec_ref[t, rows, g, cols] = drec[g]
                # This program's share of dz_t w_h^T, for every unit of h_{t-1}.
                partial = partial + dot(drec[g], w_mine[k][g], transpose_b=True)
            # Masked steps pass the carry's cotangent through; the recurrent part is added below.
            direct.append(jnp.where(
                valid, jnp.zeros_like(dh[k]) if dh_direct is None else dh_direct, dh[k]))
            if has_c:
                dc_prev = jnp.where(valid, dc_in, dc[k])
                to_c0_out.append(to_c0[k] + jnp.where(reset, dc_prev, jnp.zeros_like(dc_prev)))
                dc_out.append(jnp.where(reset, jnp.zeros_like(dc_prev), dc_prev))
        # Two buffers by step parity: a program that runs ahead writes the next step's shares
        # while the others still read this step's.
        parity = lax.rem(k_step, 2)
        partial_ref[parity, rows, me, units] = partial
        _sync(cfg, counters_ref, k_step)
        dh_out, to_h0_out = [], []
        for k, cols in enumerate(mine):
            rec = direct[k] + jnp.sum(partial_ref[parity, rows, everyone, cols], axis=1)
            to_h0_out.append(to_h0[k] + jnp.where(reset, rec, jnp.zeros_like(rec)))
            dh_out.append(jnp.where(reset, jnp.zeros_like(rec), rec))
        return tuple(dh_out), tuple(dc_out), tuple(to_h0_out), tuple(to_c0_out)

    zeros = tuple(jnp.zeros((cfg.block_b, cfg.block_h), dhT_ref.dtype) for _ in mine)
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

    batch = args[0].shape[1]  # xw [T, B, G, H] or dys [T, B, H]
    groups = batch // cfg.block_b
    compiler_params = None
    aliases = {}
    synced = cfg.split > 1 and not cfg.interpret
    if not cfg.interpret:
        from jax.experimental.pallas import triton as plgpu

        # No software pipelining: it would load the next step's carry (and, in the backward, the
        # next step's gate gradients) before the barrier that makes them valid.
        warps = cfg.num_warps[kernel is _backward_kernel]
        compiler_params = plgpu.CompilerParams(num_warps=warps, num_stages=1)
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
    w_side = _gates_side_by_side(w, cfg.block_h)
    ys, hseq, cseq, res = _call(
        _forward_kernel, cfg, out_shape, (xw, w_side, bh, h0, c0, valid, reset))
    carry_T = (hseq[cfg.time], cseq[cfg.time] if has_c else jnp.zeros_like(h0))
    return (carry_T, ys), (res, hseq, cseq, w, h0, c0, valid, reset)


def _core_bwd(cfg, residuals, cotangents):
    gates, _, has_c, _, _ = CELLS[cfg.kind]
    res, hseq, cseq, w, h0, c0, valid, reset = residuals
    (dh_T, dc_T), dys = cotangents
    batch, hidden = h0.shape
    dtype = h0.dtype
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    per_gate = jax.ShapeDtypeStruct((cfg.time, batch, gates, hidden), dtype)
    # Each program's share of every step's dz_t w_h^T, in two buffers by step parity.
    shares = jax.ShapeDtypeStruct((2, batch, cfg.split, hidden), dtype)
    out_shape = (per_gate, None if cfg.kind == "lstm" else per_gate, state,
                 state if has_c else None, shares)
    dxw, drec, dh0, dc0, _ = _call(
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


# Each program keeps its columns of w_h (all gates, GRU padded to four) in registers for the whole
# sequence. 64 KiB of them (H256 split over 16 programs) measured fine on an H100; a whole 1 MiB
# w_h in one program did not compile (Triton spilled it to shared memory, over its limit).
_HELD_BYTES = 64 * 1024


def _held_bytes(h_pad, split):
    return 4 * 4 * h_pad * (h_pad // split)


def _plan(batch, hidden, cores, interpret, block_b=None, block_h=None, split=None,
          num_warps=None, k_chunk=None):
    """Tiles for a shape: explicit arguments win and are checked, the rest are the measured
    defaults (module docstring). ``cores``: the GPU's SM count."""
    h_pad = _next_pow2(hidden, 16)
    small = interpret or h_pad <= 64
    block_h = block_h or (min(h_pad, 32) if small else 16)
    k_chunk = k_chunk or (None if small else 64)
    # The backward kernel does more per step than the forward and gains from more warps; 16 at
    # H256 (S1 LSTM 1.58 ms vs 1.96 with 8, 2.05 with 8 in both), 8 for one program per batch
    # block (S4 5.62 ms vs 6.70 with 16).
    num_warps = num_warps or (4, 8 if small else 16)
    num_warps = (num_warps, num_warps) if isinstance(num_warps, int) else tuple(num_warps)
    if len(num_warps) != 2 or any(n not in (1, 2, 4, 8, 16, 32) for n in num_warps):
        raise ValueError(f"num_warps must be a power of two up to 32, or a (forward, backward) "
                         f"pair of them; got {num_warps}")
    if h_pad % block_h or (block_h < 16 and not interpret):
        raise ValueError(f"block_h must divide the padded hidden size {h_pad} and be >= 16 on "
                         f"GPU (Triton's smallest dot); got {block_h}")
    if k_chunk is not None and (h_pad % k_chunk or (k_chunk < 16 and not interpret)):
        raise ValueError(f"k_chunk must divide the padded hidden size {h_pad} and be >= 16 on "
                         f"GPU; got {k_chunk}")
    tiles = h_pad // block_h
    least = 1 if interpret else max(1, _held_bytes(h_pad, 1) // _HELD_BYTES)
    if least > tiles:
        raise ValueError(f"hidden={hidden} is too large for the pallas kernels: w_h must be split "
                         f"over at least {least} programs to fit their registers, and it has only "
                         f"{tiles} tiles of {block_h} units (use backend='fused')")
    if block_b is None:
        # Larger batches get larger batch blocks, so that every block's programs fit at once
        # (one program per batch block needs no co-residency).
        block_b = 16
        while not small and -(-batch // block_b) * least > cores and block_b < 128:
            block_b *= 2
    groups = -(-batch // block_b)
    if split is None:
        # Small H: one program per batch block holds every unit, no grid-wide wait per step.
        # Larger H: as many programs per batch block as can all be resident (one per SM).
        fit = 1 if small else max(1, min(tiles, cores // groups))
        split = 1 << (fit.bit_length() - 1)
        if split < least:
            raise ValueError(f"batch={batch} with hidden={hidden} needs {least} programs for each "
                             f"batch block of at most {block_b} rows, {least * groups} resident "
                             f"at once; the GPU has {cores} SMs (use backend='fused')")
    if split < 1 or tiles % split:
        raise ValueError(f"split must divide the {tiles} hidden tiles of {block_h} units; "
                         f"got {split}")
    if split > 1 and interpret:
        raise ValueError("split > 1 needs a GPU: interpreted programs run one after another and "
                         f"cannot wait for each other; got split={split}")
    if split < least:
        raise ValueError(f"split={split} leaves each program {_held_bytes(h_pad, split) // 1024} "
                         f"KiB of w_h to hold in registers, more than the "
                         f"{_HELD_BYTES // 1024} KiB that fit; hidden={hidden} needs split >= "
                         f"{least}")
    if split > 1 and split * groups > cores:
        raise ValueError(f"split={split} with {groups} batch blocks of {block_b} needs "
                         f"{split * groups} programs resident at once; the GPU has {cores} SMs")
    return block_b, block_h, h_pad, split, num_warps, k_chunk


def fits(batch: int, hidden: int, block_b: int | None = None) -> bool:
    """Whether the GPU kernels' default tiling (with ``block_b`` rows per batch block, if given)
    works for this shape on this machine's GPU."""
    try:
        _plan(batch, hidden, _sm_count(), interpret=False, block_b=block_b)
    except ValueError:
        return False
    return True


def _sm_count() -> int:
    return getattr(jax.devices()[0], "core_count", None) or 1


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
    the GPU at once), ``k_chunk`` units per slice of the contracted axis of the forward's
    matmul, ``num_warps`` Triton warps per program (one int, or a ``(forward, backward)``
    pair); Mosaic only: ``time_chunk`` steps per grid step.
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
        cores = 1 if interpret else _sm_count()
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
    time, batch, gates, hidden = inputs.xw.shape
    block_b, block_h, h_pad, split, num_warps, k_chunk = _plan(
        batch, hidden, cores, interpret, *knobs)
    b_pad = -(-batch // block_b) * block_b
    pad = pallas_cells.pad_to
    xw = pad(inputs.xw, time, b_pad, gates, h_pad)
    w = pad(inputs.w, gates, h_pad, h_pad)
    bh = pad(inputs.bh, gates, h_pad)
    h0 = pad(inputs.h0, b_pad, h_pad)
    c0 = None if inputs.c0 is None else pad(inputs.c0, b_pad, h_pad)
    valid = pad(inputs.valid, time, b_pad)
    reset = pad(inputs.reset, time, b_pad)
    cfg = _Config(kind, time, block_b, block_h, h_pad, k_chunk, split, num_warps, bool(reverse),
                  bool(interpret))
    return _core(cfg, xw, w, bh, h0, c0, valid, reset)
