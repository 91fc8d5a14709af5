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

Tiling (which program owns what, and the limits that registers and residency set on it):
:mod:`seqjax.kernels.pallas_plan`. Where no tiling fits (H512), ``backend="auto"`` keeps
``fused``.

Supported: ``lstm`` and ``gru`` with ``reset_after=True`` (the cuDNN form). ``gru(reset_after=
False)`` needs a second, dependent matmul per step and is left to the other backends.

Platforms: on GPU the kernels lower through Triton. On TPU ``run`` dispatches to the Mosaic
kernels of ``seqjax/kernels/pallas_tpu.py`` (same scheme, no barrier needed: a TPU core runs
its grid steps in order), which are tested in TPU interpret mode and have never run on a TPU.
Elsewhere (CPU) the Triton kernels run with ``pallas_call(..., interpret=True)``: correct but
slow, for tests only (programs run one after another there, so ``split`` is 1), and
``backend="auto"`` never picks this backend on CPU or TPU. ``jax.experimental.pallas`` is
imported lazily, so the library imports without it.

Why: the scan's per-step work at these sizes is far below a GPU's capacity, and what costs is
launching it and reloading ``w_h``; one launch per direction with ``w_h`` in registers does
neither (S1 LSTM training step on an H100: 0.29x cuDNN's time). The kernels are not
software-pipelined (``num_stages=1``): pipelining loaded the next step's carry before the
barrier that makes it valid. Measurements, dated and by machine, with what each change did and
what was dropped: ``experiments/results/bench/README.md``.
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
from seqjax.kernels.pallas_plan import plan, sm_count

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

    cell = CELLS[cfg.kind]
    gates, n_res, has_c, fwd = cell.gates, cell.residuals, cell.has_c, cell.forward
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

    cell = CELLS[cfg.kind]
    gates, n_res, has_c, bwd = cell.gates, cell.residuals, cell.has_c, cell.backward
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
    n_res, has_c = CELLS[cfg.kind].residuals, CELLS[cfg.kind].has_c
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
    gates, has_c = CELLS[cfg.kind].gates, CELLS[cfg.kind].has_c
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


def available() -> bool:
    """Whether ``jax.experimental.pallas`` imports here (the library itself does not need it)."""
    try:
        import jax.experimental.pallas  # noqa: F401
    except ImportError:
        return False
    return True


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat,
        interpret=None, mosaic=None, block_b=None, block_h=None, split=None, num_warps=None,
        k_chunk=None, time_chunk=None):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`.

    ``unroll`` and ``remat`` do not apply (one kernel runs the whole loop; the backward kernel
    reads stored activations). ``interpret`` defaults to True off GPU and TPU. ``mosaic``
    selects the TPU kernels (``seqjax/kernels/pallas_tpu.py``; default: on TPU) instead of the
    Triton ones. The tiling knobs override the measured defaults (:mod:`.pallas_plan`):
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
        cores = 1 if interpret else sm_count()
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
    block_b, block_h, h_pad, split, num_warps, k_chunk = plan(
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
