"""Building blocks the models share: cells by name, input checks, and a recurrent stack.

:class:`RecurrentStack` is the encoder of every recurrent model here: stacked layers of one cell,
each optionally bidirectional, ``return_sequences`` between them and dropout between them (as in
Keras' ``Sequential([LSTM(64, return_sequences=True), Dropout(r), LSTM(32)])``). It returns every
layer's final carry as well as the last layer's outputs, so a language model can stream its carry
into the next chunk and a seq2seq encoder can hand its carry (the context vector) to a decoder.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from seqjax.models.layers import RecurrentStack
  >>> stack = RecurrentStack("lstm", 8, (16, 4), bidirectional=True, rngs=nnx.Rngs(0))
  >>> carries, ys = stack(jnp.ones((2, 5, 8)), jnp.array([[1, 1, 1, 0, 0], [1] * 5], bool))
  >>> ys.shape, stack.last_output(carries).shape
  ((2, 5, 8), (2, 8))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import cells as _cells
from seqjax import nn as _nn
from seqjax.types import Array, Carry

__all__ = ["CELL_NAMES", "make_cell", "as_units", "check_tokens", "check_mask", "RecurrentStack"]

_CELLS: dict[str, Callable[[int], _cells.Cell]] = {
    "simple_rnn": _cells.simple_rnn,
    "lstm": _cells.lstm,
    "gru": _cells.gru,
    "min_gru": _cells.min_gru,
    "min_lstm": _cells.min_lstm,
}
CELL_NAMES = tuple(_CELLS)


def make_cell(name: str, units: int, argname: str = "cell") -> _cells.Cell:
    """The seqjax cell called ``name`` (one of :data:`CELL_NAMES`) with ``units`` hidden units."""
    if name not in _CELLS:
        raise ValueError(f"{argname} must be one of {CELL_NAMES}; got {name!r}")
    return _CELLS[name](units)


def as_units(units: int | Sequence[int], argname: str = "units") -> tuple[int, ...]:
    """``units`` as a non-empty tuple of positive ints (an int is one layer)."""
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = (int(units),)
    try:
        units = tuple(units)
    except TypeError:
        raise ValueError(f"{argname} must be an int or a tuple of ints; got {units!r}") from None
    if not units:
        raise ValueError(f"{argname} must name at least one layer; got an empty {argname}")
    for u in units:
        if not isinstance(u, (int, np.integer)) or isinstance(u, bool) or u < 1:
            raise ValueError(f"{argname} must hold positive ints; got {units!r}")
    return tuple(int(u) for u in units)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_tokens(tokens: Any, vocab_size: int, name: str = "tokens") -> Array:
    """``tokens`` as an int array ``[B, T]``; ids outside ``[0, vocab_size)`` raise where concrete.

    Under ``jit`` the ids are tracers and cannot be checked; ``nnx.Embed`` would then clamp them
    silently, so check your data once outside ``jit`` (or call the model eagerly on a batch).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"{name} must be [B, T] token ids; got shape {tokens.shape}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer token ids; got dtype {tokens.dtype}")
    if _is_concrete(tokens) and tokens.size:
        values = np.asarray(tokens)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{name} must lie in [0, {vocab_size}) (vocab_size); got ids from {low} to {high}"
            )
    return tokens


def check_mask(mask: Any, tokens: Array, name: str = "mask") -> Array:
    """``mask`` as bool ``[B, T]`` matching ``tokens`` (None: every step is real)."""
    if mask is None:
        return jnp.ones(tokens.shape, bool)
    mask = jnp.asarray(mask)
    if mask.shape != tokens.shape:
        raise ValueError(f"{name} must have the tokens' shape {tokens.shape}; got {mask.shape}")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{name} must be bool (True = real token); got dtype {mask.dtype}")
    return mask


class RecurrentStack(nnx.Module):
    """Stacked recurrent layers of one cell, optionally bidirectional, dropout between layers.

    Args:
      cell: a name from :data:`CELL_NAMES`.
      in_features: I, the size of each input step.
      units: hidden units per layer, first to last.
      bidirectional: wrap every layer in :class:`seqjax.nn.Bidirectional` (outputs concatenated).
      dropout: rate applied to each layer's output sequence except the last's (train mode only).
      backend: as in :func:`seqjax.rnn`.
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    """

    def __init__(self, cell: str, in_features: int, units: Sequence[int], *,
                 bidirectional: bool = False, dropout: float = 0.0, backend: str = "auto",
                 rngs: nnx.Rngs):
        units = as_units(units)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
        layers = []
        size = in_features
        for u in units:
            layer = _nn.RNN(make_cell(cell, u), size, rngs=rngs, return_sequences=True,
                            return_carry=True, backend=backend)
            if bidirectional:
                layer = _nn.Bidirectional(layer, rngs=rngs)
            layers.append(layer)
            size = 2 * u if bidirectional else u
        self.layers = nnx.List(layers)
        self.bidirectional = bool(bidirectional)
        self.out_features = size
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0.0 else None

    def initial_carry(self, batch_size: int) -> tuple[Carry, ...]:
        """Zero carries, one per layer (a ``(forward, backward)`` pair where bidirectional)."""
        def zeros(layer):
            return layer.cell.initial_carry((batch_size,))

        if self.bidirectional:
            return tuple((zeros(l.forward_layer), zeros(l.backward_layer)) for l in self.layers)
        return tuple(zeros(layer) for layer in self.layers)

    def __call__(self, xs: Array, mask: Array | None = None,
                 initial_carry: Sequence[Carry] | None = None) -> tuple[tuple[Carry, ...], Array]:
        """Runs the stack.

        Args:
          xs: ``[B, T, I]``.
          mask: bool ``[B, T]`` (True = real step), or None for every step.
          initial_carry: one carry per layer (as :meth:`initial_carry` builds), or None for zeros.

        Returns:
          ``(carries, ys)``: each layer's carry after its last valid step (see
          :func:`seqjax.rnn`), and the last layer's outputs ``[B, T, out_features]``.
        """
        if initial_carry is not None and len(initial_carry) != len(self.layers):
            raise ValueError(
                f"initial_carry must hold one carry per layer ({len(self.layers)}); "
                f"got {len(initial_carry)}"
            )
        carries = []
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            carry0 = None if initial_carry is None else initial_carry[index]
            carry, xs = layer(xs, mask=mask, initial_carry=carry0)
            carries.append(carry)
            if index < last and self.dropout is not None:
                xs = self.dropout(xs)
        return tuple(carries), xs

    def last_output(self, carries: Sequence[Carry]) -> Array:
        """The many-to-one output: the last layer's ``h`` after each sequence's last valid step.

        Bidirectional: the forward ``h`` at the last valid step beside the backward ``h`` at the
        first (Keras' ``Bidirectional(LSTM(u))`` without ``return_sequences``).
        """
        top = carries[-1]
        if self.bidirectional:
            return jnp.concatenate([top[0].h, top[1].h], axis=-1)
        return top.h

    def step(self, x_t: Array, carries: Sequence[Carry], *,
             rngs: jax.Array | None = None) -> tuple[tuple[Carry, ...], Array]:
        """One time step through every layer (unidirectional stacks only; decoding).

        Args:
          x_t: ``[N, I]``.
          carries: one carry per layer.
          rngs: a PRNG key for the dropout between layers, for steps run inside ``lax.scan`` or
            ``lax.while_loop`` (where the module's own dropout stream cannot advance); None uses
            the stream.

        Returns:
          ``(carries, y_t [N, out_features])``.
        """
        if self.bidirectional:
            raise ValueError("step needs a unidirectional stack (bidirectional=False)")
        new = []
        last = len(self.layers) - 1
        for index, (layer, carry) in enumerate(zip(self.layers, carries, strict=True)):
            carry, x_t = layer.cell.apply(layer.params, carry, x_t)
            new.append(carry)
            if index < last and self.dropout is not None:
                key = None if rngs is None else jax.random.fold_in(rngs, index)
                x_t = self.dropout(x_t, rngs=key)
        return tuple(new), x_t
