"""Run cells over sequences: :func:`rnn`, :func:`bidirectional`, :func:`stacked` (pure functions).

Nothing here is jitted: the caller jits its train or eval step. Arguments are checked at trace time
and bad ones raise ``ValueError`` naming the argument and the shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import kernels
from seqjax.cells import Cell
from seqjax.types import Array, Carry, Params, PRNGKey

__all__ = ["rnn", "bidirectional", "stacked", "MERGE_MODES"]

MERGE_MODES = ("concat", "sum", "mul", "ave")


# ----------------------------------------------------------------------------- checks


def _check_cell(cell: Any, name: str = "cell") -> Cell:
    if not isinstance(cell, Cell):
        raise ValueError(
            f"{name} must be a seqjax Cell (e.g. seqjax.lstm(64)); got {type(cell).__name__}"
        )
    return cell


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_xs(xs, params: Params, time_major: bool) -> Array:
    xs = jnp.asarray(xs)
    layout = "[T, B, I] (time_major=True)" if time_major else "[B, T, I] (time_major=False)"
    if xs.ndim != 3:
        raise ValueError(f"xs must have rank 3, {layout}; got shape {xs.shape}")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(
            f"xs must be floating point (embed token ids first); got dtype {xs.dtype}"
        )
    input_size = params.w_x.shape[0]
    if xs.shape[-1] != input_size:
        raise ValueError(
            f"xs feature size {xs.shape[-1]} (shape {xs.shape}) does not match the params' "
            f"input size {input_size} (w_x shape {params.w_x.shape})"
        )
    return xs


def _check_bool_bt(value, name: str, batch: int, time: int) -> Array:
    value = jnp.asarray(value)
    if value.shape != (batch, time):
        raise ValueError(f"{name} must have shape [B, T] = {(batch, time)}; got {value.shape}")
    if value.dtype != jnp.bool_:
        raise ValueError(f"{name} must be a bool array; got dtype {value.dtype}")
    return value


def _mask_from_lengths(lengths, batch: int, time: int) -> Array:
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape [B] = ({batch},); got {lengths.shape}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"lengths must be integers; got dtype {lengths.dtype}")
    if _is_concrete(lengths):
        values = np.asarray(lengths)
        bad = (values < 0) | (values > time)
        if bad.any():
            raise ValueError(
                f"lengths must lie in [0, T={time}]; got {values[bad].tolist()} "
                f"at batch positions {np.flatnonzero(bad).tolist()}"
            )
    return jnp.arange(time)[None, :] < lengths[:, None]


def _carry_dtype(xs_dtype) -> jnp.dtype:
    # Carries accumulate in at least float32, so bfloat16 inputs keep a float32 state.
    if jnp.finfo(xs_dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return jnp.dtype(xs_dtype)


def _check_initial_carry(initial_carry, cell: Cell, batch: int, dtype) -> Carry:
    expected = cell.initial_carry((batch,), dtype)
    if initial_carry is None:
        return expected
    if jax.tree.structure(initial_carry) != jax.tree.structure(expected):
        raise ValueError(
            f"initial_carry must have the structure of cell.initial_carry: "
            f"{jax.tree.structure(expected)}; got {jax.tree.structure(initial_carry)}"
        )
    got = [jnp.shape(leaf) for leaf in jax.tree.leaves(initial_carry)]
    want = [leaf.shape for leaf in jax.tree.leaves(expected)]
    if got != want:
        raise ValueError(f"initial_carry leaves must have shapes {want} ([B, H]); got {got}")
    return jax.tree.map(lambda c: jnp.asarray(c).astype(dtype), initial_carry)


# ----------------------------------------------------------------------------- rnn


def rnn(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    mask: Array | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    initial_carry: Carry | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool = False,
    backend: str = "auto",
) -> tuple[Carry, Array]:
    """Run ``cell`` over a batch of sequences.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.lstm(16)
      >>> params = cell.init(jax.random.key(0), input_size=4)
      >>> xs = jnp.ones((2, 5, 4))
      >>> carry, ys = sj.rnn(cell, params, xs, lengths=jnp.array([5, 3]))
      >>> ys.shape, carry.h.shape
      ((2, 5, 16), (2, 16))
      >>> bool((ys[1, 3:] == 0).all())            # padded steps emit zeros
      True

    Args:
      cell: a :class:`~seqjax.cells.Cell`.
      params: the cell's params.
      xs: ``[B, T, I]`` (or ``[T, B, I]`` with ``time_major=True``), floating point.
      mask: bool ``[B, T]``, True at valid steps. Masked steps leave the carry unchanged and emit
        zeros. Pre- and post-padding both work.
      lengths: int ``[B]`` in ``[0, T]``, valid-prefix lengths (post-padding); an alternative to
        ``mask``. Values are checked when concrete (outside ``jit``).
      resets: bool ``[B, T]``: True where a new segment starts (the carry goes back to the initial
        carry before that step), e.g. episode boundaries or documents packed into one row. With
        ``reverse=True`` each segment runs from its last step to its first, so results equal those
        of separate sequences in both directions. A reset on a masked step has no effect.
      initial_carry: the carry to start from (leaves ``[B, H]``); zeros by default. Feeding the
        ``carry_T`` of one chunk here continues the sequence (streaming).
      reverse: process valid steps from last to first; each output is written at its own position
        (the results of PyTorch packed sequences, for pre- and post-padding alike).
      time_major: layout of ``xs`` and ``ys``.
      unroll: ``lax.scan`` unroll factor.
      remat: recompute per-step activations in the backward pass (less memory for long T).
      backend: ``"auto"`` or a name in ``seqjax.kernels.BACKENDS``.

    Returns:
      ``(carry_T, ys)``: the carry after each sequence's last valid step (the initial carry where
      there is none; float32 leaves ``[B, H]`` for bfloat16 inputs) and the outputs
      ``[B, T, H]`` (``[T, B, H]`` if time_major) in the dtype of ``xs``.
    """
    cell = _check_cell(cell)
    xs = _check_xs(xs, params, time_major)
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive int; got {unroll!r}")
    if not time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    time, batch = xs.shape[:2]
    backend_impl = kernels.resolve(backend, cell.spec, remat=bool(remat), batch=batch,
                                   dtype=_carry_dtype(xs.dtype))

    if mask is not None and lengths is not None:
        raise ValueError("pass either mask or lengths, not both")
    if lengths is not None:
        mask = _mask_from_lengths(lengths, batch, time)
    elif mask is not None:
        mask = _check_bool_bt(mask, "mask", batch, time)
    if resets is not None:
        resets = _check_bool_bt(resets, "resets", batch, time)
        if reverse:
            # In reverse, a segment's last step is processed first: reset before the step whose
            # successor (in time order) starts a new segment.
            resets = jnp.concatenate([resets[:, 1:], jnp.zeros_like(resets[:, :1])], axis=1)

    carry0 = _check_initial_carry(initial_carry, cell, batch, _carry_dtype(xs.dtype))
    mask_tm = None if mask is None else mask.T
    resets_tm = None if resets is None else resets.T
    carry_T, ys = backend_impl.run(
        cell, params, xs, mask_tm, resets_tm, carry0,
        reverse=bool(reverse), unroll=unroll, remat=bool(remat),
    )
    if not time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return carry_T, ys


# ----------------------------------------------------------------------------- bidirectional


def merge_directions(ys_f: Array, ys_b: Array, merge: str | None):
    """The two directions' outputs combined by ``merge`` (one of :data:`MERGE_MODES`; None: the
    pair as it is). Shared with :mod:`seqjax.nn`, which merges final states the same way."""
    if merge == "concat":
        return jnp.concatenate([ys_f, ys_b], axis=-1)
    if merge == "sum":
        return ys_f + ys_b
    if merge == "mul":
        return ys_f * ys_b
    if merge == "ave":
        return (ys_f + ys_b) / 2
    if merge is None:
        return ys_f, ys_b
    raise ValueError(f"merge must be one of {MERGE_MODES} or None; got {merge!r}")


def _pair(value, name: str) -> tuple[Any, Any]:
    # A params or carry NamedTuple is a tuple too: a pair is a plain tuple or list of two.
    if not isinstance(value, (tuple, list)) or hasattr(value, "_fields") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (forward, backward); got {type(value).__name__}")
    return value[0], value[1]


def bidirectional(
    cell: Cell | tuple[Cell, Cell],
    params: tuple[Params, Params],
    xs: Array,
    *,
    merge: str | None = "concat",
    mask: Array | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    initial_carry: tuple[Carry, Carry] | None = None,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool = False,
    backend: str = "auto",
) -> tuple[tuple[Carry, Carry], Any]:
    """Run a forward and a backward RNN over the same sequences and merge their outputs.

    The backward direction runs each sequence's valid steps from last to first (correct for pre-
    and post-padding) and writes every output at its own position, as Keras' ``Bidirectional`` and
    PyTorch's packed bidirectional RNNs do.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.gru(8)
      >>> kf, kb = jax.random.split(jax.random.key(0))
      >>> params = (cell.init(kf, 4), cell.init(kb, 4))
      >>> (carry_f, carry_b), ys = sj.bidirectional(cell, params, jnp.ones((2, 5, 4)))
      >>> ys.shape
      (2, 5, 16)

    Args:
      cell: one cell used in both directions, or a pair ``(cell_f, cell_b)``.
      params: a pair ``(params_f, params_b)``.
      xs: ``[B, T, I]`` (or ``[T, B, I]`` with ``time_major=True``).
      merge: ``"concat"`` (``[..., H_f + H_b]``), ``"sum"``, ``"mul"``, ``"ave"``, or None for the
        pair ``(ys_f, ys_b)``.
      mask, lengths, resets, time_major, unroll, remat, backend: as in :func:`rnn`.
      initial_carry: a pair ``(carry_f, carry_b)`` or None.

    Returns:
      ``((carry_f, carry_b), ys)``. ``carry_b`` is the backward carry after the first valid step.
    """
    if merge is not None and merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES} or None; got {merge!r}")
    cell_f, cell_b = (cell, cell) if isinstance(cell, Cell) else _pair(cell, "cell")
    _check_cell(cell_f, "cell (forward)")
    _check_cell(cell_b, "cell (backward)")
    params_f, params_b = _pair(params, "params")
    carry0_f, carry0_b = (None, None) if initial_carry is None else _pair(
        initial_carry, "initial_carry"
    )
    common = dict(
        mask=mask, lengths=lengths, resets=resets, time_major=time_major, unroll=unroll,
        remat=remat, backend=backend,
    )
    carry_f, ys_f = rnn(cell_f, params_f, xs, initial_carry=carry0_f, **common)
    carry_b, ys_b = rnn(cell_b, params_b, xs, initial_carry=carry0_b, reverse=True, **common)
    return (carry_f, carry_b), merge_directions(ys_f, ys_b, merge)


# ----------------------------------------------------------------------------- stacked


def _is_bidirectional_layer(layer_cell) -> bool:
    return isinstance(layer_cell, (tuple, list)) and not isinstance(layer_cell, Cell)


def _last_output(carry: Carry, dtype) -> Array:
    return carry.h.astype(dtype)


def stacked(
    cells: Cell | tuple[Cell, Cell] | Sequence[Cell | tuple[Cell, Cell]],
    params: Sequence[Params | tuple[Params, Params]],
    xs: Array,
    *,
    return_sequences: bool = True,
    dropout: float = 0.0,
    key: PRNGKey | None = None,
    merge: str = "concat",
    mask: Array | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    initial_carry: Sequence[Carry] | None = None,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool = False,
    backend: str = "auto",
) -> tuple[list[Any], Array]:
    """A deep RNN: layer ``l+1`` reads the output sequence of layer ``l``.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.lstm(8)
      >>> k0, k1 = jax.random.split(jax.random.key(0))
      >>> params = [cell.init(k0, 4), cell.init(k1, 8)]      # layer 2 reads layer 1's H
      >>> carries, last = sj.stacked(cell, params, jnp.ones((2, 5, 4)), return_sequences=False)
      >>> last.shape
      (2, 8)

    Args:
      cells: a list with one entry per layer (a cell, or a tuple ``(cell_f, cell_b)`` for a
        bidirectional layer); or a single cell, or a single tuple ``(cell_f, cell_b)``, used for
        every layer.
      params: one entry per layer: the cell's params, or ``(params_f, params_b)``.
      xs: ``[B, T, I]`` (or ``[T, B, I]`` with ``time_major=True``).
      return_sequences: return the last layer's outputs at every step ``[B, T, H]``; if False, its
        output at each sequence's last valid step ``[B, H]`` (for a bidirectional layer the merge
        of the forward output at the last valid step and the backward output at the first, as in
        Keras).
      dropout: rate of dropout applied between layers (not after the last), only when ``key`` is
        given; ``key=None`` means inference (no dropout).
      key: PRNG key for dropout.
      merge: merge mode of bidirectional layers (see :func:`bidirectional`).
      mask, lengths, resets, time_major, unroll, remat, backend: as in :func:`rnn`, for every layer.
      initial_carry: one entry per layer (a carry, or a pair for bidirectional layers), or None.

    Returns:
      ``(carries, outputs)``: the final carry of each layer (pairs for bidirectional layers) and
      the outputs described under ``return_sequences``.
    """
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise ValueError("params must be a non-empty list with one entry per layer")
    num_layers = len(params)
    # A single cell, or a tuple (cell_f, cell_b), is used for every layer; a list is per layer.
    if isinstance(cells, Cell) or (isinstance(cells, tuple) and len(cells) == 2):
        cells = [cells] * num_layers
    cells = list(cells)
    if len(cells) != num_layers:
        raise ValueError(
            f"cells has {len(cells)} entries but params has {num_layers} (one per layer)"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
    if initial_carry is not None and len(initial_carry) != num_layers:
        raise ValueError(
            f"initial_carry must have one entry per layer ({num_layers}); got {len(initial_carry)}"
        )
    if merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES}; got {merge!r}")
    if mask is not None and lengths is not None:
        raise ValueError("pass either mask or lengths, not both")

    common = dict(
        mask=mask, lengths=lengths, resets=resets, time_major=time_major, unroll=unroll,
        remat=remat, backend=backend,
    )
    carries = []
    ys = xs
    for layer in range(num_layers):
        layer_carry0 = None if initial_carry is None else initial_carry[layer]
        if _is_bidirectional_layer(cells[layer]):
            carry, ys = bidirectional(
                cells[layer], params[layer], ys, merge=merge, initial_carry=layer_carry0, **common
            )
        else:
            carry, ys = rnn(cells[layer], params[layer], ys, initial_carry=layer_carry0, **common)
        carries.append(carry)
        if layer < num_layers - 1 and dropout > 0.0 and key is not None:
            key, sub = jax.random.split(key)
            keep = jax.random.bernoulli(sub, 1.0 - dropout, ys.shape)
            ys = jnp.where(keep, ys / (1.0 - dropout), jnp.zeros_like(ys)).astype(ys.dtype)

    if return_sequences:
        return carries, ys
    last = carries[-1]
    if _is_bidirectional_layer(cells[-1]):
        dtype = ys.dtype
        outputs = (_last_output(last[0], dtype), _last_output(last[1], dtype))
        return carries, merge_directions(*outputs, merge)
    return carries, _last_output(last, ys.dtype)
