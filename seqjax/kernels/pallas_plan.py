"""The tiling of the ``pallas`` backend's GPU (Triton) kernels: which program owns what.

A grid of ``(split, batch blocks)`` programs; program ``(j, b)`` owns ``block_b`` batch rows and
``H / split`` hidden units, ``block_h`` units per tile, and contracts ``h @ w_h`` in slices of
``k_chunk`` units. H is padded to a power of two (>= 16, Triton's smallest ``dot``).

Two limits shape the defaults:

* Registers. Each program holds its columns of ``w_h`` for the whole sequence,
  ``16 * H * H / split`` bytes (:func:`held_bytes`); :data:`HELD_BYTES` is what was measured to
  work, so H256 needs ``split >= 16`` and H512 would need more programs than it has tiles: the
  planner raises, and ``backend="auto"`` (which asks :func:`fits`) keeps ``fused``.
* Residency. The ``split`` programs of a batch block wait for each other every step, so all of
  them must be resident at once: ``split x batch blocks <= SMs``. Small H (<= 64) runs one
  program per batch block, with no wait; larger batches get larger batch blocks (up to 128 rows).

Measurements behind the defaults: ``experiments/results/bench/README.md`` (H100 host).
"""

from __future__ import annotations

import jax


def next_pow2(n: int, least: int) -> int:
    """The smallest power of two >= ``n`` and >= ``least``."""
    return max(least, 1 << max(0, n - 1).bit_length())


# Each program keeps its columns of w_h (all gates, GRU padded to four) in registers for the whole
# sequence. 64 KiB of them (H256 split over 16 programs) measured fine on an H100; a whole 1 MiB
# w_h in one program did not compile (Triton spilled it to shared memory, over its limit).
HELD_BYTES = 64 * 1024


def held_bytes(h_pad, split):
    """Bytes of ``w_h`` each program holds: four gates (the GRU's three padded) of float32."""
    return 4 * 4 * h_pad * (h_pad // split)


def plan(batch, hidden, cores, interpret, block_b=None, block_h=None, split=None,
         num_warps=None, k_chunk=None):
    """Tiles for a shape: ``(block_b, block_h, h_pad, split, num_warps, k_chunk)``.

    Explicit arguments win and are checked, the rest are the measured defaults (module
    docstring). ``cores``: the GPU's SM count; ``interpret``: programs run one after another.
    Raises ``ValueError`` naming the knob where no tiling works.
    """
    h_pad = next_pow2(hidden, 16)
    small = interpret or h_pad <= 64
    block_h = block_h or (min(h_pad, 32) if small else 16)
    k_chunk = k_chunk or (None if small else 64)
    # The backward kernel does more per step than the forward and gains from more warps: 16 at
    # H256 and 8 for one program per batch block were the fastest on an H100 (results README).
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
    least = 1 if interpret else max(1, held_bytes(h_pad, 1) // HELD_BYTES)
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
        raise ValueError(f"split={split} leaves each program {held_bytes(h_pad, split) // 1024} "
                         f"KiB of w_h to hold in registers, more than the "
                         f"{HELD_BYTES // 1024} KiB that fit; hidden={hidden} needs split >= "
                         f"{least}")
    if split > 1 and split * groups > cores:
        raise ValueError(f"split={split} with {groups} batch blocks of {block_b} needs "
                         f"{split * groups} programs resident at once; the GPU has {cores} SMs")
    return block_b, block_h, h_pad, split, num_warps, k_chunk


def fits(batch: int, hidden: int, block_b: int | None = None) -> bool:
    """Whether the GPU kernels' default tiling (with ``block_b`` rows per batch block, if given)
    works for this shape on this machine's GPU."""
    try:
        plan(batch, hidden, sm_count(), interpret=False, block_b=block_b)
    except ValueError:
        return False
    return True


def sm_count() -> int:
    """The first device's SM count (1 where it has none)."""
    return getattr(jax.devices()[0], "core_count", None) or 1
