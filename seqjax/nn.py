"""Flax NNX modules over the pure core, in the spirit of ``keras.layers.LSTM(units, ...)``.

The modules hold the very same params NamedTuples as the pure functions, one ``nnx.Param`` per
field, and call :func:`seqjax.rnn` / :func:`seqjax.bidirectional`; they work inside any
``nnx.Module`` and under ``nnx.jit`` / ``jax.jit``.

As in Keras, a layer returns only its output at each sequence's last valid step unless
``return_sequences=True``; ``return_carry=True`` also returns the final carry, Flax-style, as
``(carry, outputs)``.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> layer = sj.nn.LSTM(4, 16, rngs=nnx.Rngs(0), return_sequences=True)
  >>> layer(jnp.ones((2, 7, 4)), lengths=jnp.array([7, 3])).shape
  (2, 7, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from seqjax import cells as _cells
from seqjax.rnn import MERGE_MODES, bidirectional, merge_directions, rnn
from seqjax.types import Array, Params

__all__ = ["RNN", "Bidirectional", "Stacked", "SimpleRNN", "LSTM", "GRU"]


class RNN(nnx.Module):
    """Runs a seqjax cell over sequences; its params are ``nnx.Param``s, one per field.

    Args:
      cell: a :class:`seqjax.Cell`, e.g. ``seqjax.lstm(64)``.
      in_features: I.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
      return_sequences: return outputs at every step ``[B, T, H]`` rather than the output at each
        sequence's last valid step ``[B, H]``.
      return_carry: also return the final carry: ``(carry, outputs)``.
      reverse, time_major, unroll, remat, backend: as in :func:`seqjax.rnn`.
      param_dtype: dtype of the params.
    """

    def __init__(
        self,
        cell: _cells.Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        return_sequences: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        time_major: bool = False,
        unroll: int = 1,
        remat: bool = False,
        backend: str = "auto",
        param_dtype: Any = jnp.float32,
    ):
        if not isinstance(cell, _cells.Cell):
            raise ValueError(f"cell must be a seqjax Cell; got {type(cell).__name__}")
        self.cell = cell
        self.in_features = in_features
        self.return_sequences = bool(return_sequences)
        self.return_carry = bool(return_carry)
        self.reverse = bool(reverse)
        self.time_major = bool(time_major)
        self.unroll = unroll
        self.remat = bool(remat)
        self.backend = backend
        self.param_dtype = param_dtype
        self.set_params(cell.init(rngs.params(), in_features, param_dtype))

    @property
    def params(self) -> Params:
        """The cell's params NamedTuple, read from the module's ``nnx.Param``s."""
        values = {
            name: None if getattr(self, name) is None else getattr(self, name)[...]
            for name in self._param_fields
        }
        return self._params_type(**values)

    def set_params(self, params: Params) -> None:
        """Replace the params (e.g. weights converted by :mod:`seqjax.interop`)."""
        if not hasattr(params, "_fields"):
            raise ValueError(f"params must be a params NamedTuple; got {type(params).__name__}")
        if getattr(self, "_params_type", type(params)) is not type(params):
            raise ValueError(
                f"params must be a {self._params_type.__name__}; got {type(params).__name__}"
            )
        if params.w_x.shape[0] != self.in_features:
            raise ValueError(
                f"params.w_x has input size {params.w_x.shape[0]}; the module's in_features is "
                f"{self.in_features}"
            )
        self._params_type = type(params)
        self._param_fields = params._fields
        for name in params._fields:
            value = getattr(params, name)
            setattr(self, name, None if value is None else nnx.Param(jnp.asarray(value)))

    def _options(self) -> dict[str, Any]:
        return dict(
            time_major=self.time_major, unroll=self.unroll, remat=self.remat, backend=self.backend
        )

    def __call__(
        self,
        xs: Array,
        *,
        mask: Array | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        initial_carry: Any = None,
    ):
        """Args: ``xs [B, T, I]`` and ``mask``/``lengths``/``resets``/``initial_carry`` as in
        :func:`seqjax.rnn`. Returns: see the class docstring."""
        carry, ys = rnn(
            self.cell, self.params, xs, mask=mask, lengths=lengths, resets=resets,
            initial_carry=initial_carry, reverse=self.reverse, **self._options(),
        )
        outputs = ys if self.return_sequences else carry.h.astype(ys.dtype)
        return (carry, outputs) if self.return_carry else outputs


class SimpleRNN(RNN):
    """``RNN(seqjax.simple_rnn(hidden_size, activation), in_features, ...)``."""

    def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
                 activation: str = "tanh", **kwargs):
        super().__init__(_cells.simple_rnn(hidden_size, activation), in_features, rngs=rngs,
                         **kwargs)


class LSTM(RNN):
    """``RNN(seqjax.lstm(hidden_size, unit_forget_bias), in_features, ...)``."""

    def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
                 unit_forget_bias: bool = True, **kwargs):
        super().__init__(_cells.lstm(hidden_size, unit_forget_bias), in_features, rngs=rngs,
                         **kwargs)


class GRU(RNN):
    """``RNN(seqjax.gru(hidden_size, reset_after), in_features, ...)``."""

    def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
                 reset_after: bool = True, **kwargs):
        super().__init__(_cells.gru(hidden_size, reset_after), in_features, rngs=rngs, **kwargs)


class Bidirectional(nnx.Module):
    """Keras-style wrapper: runs ``layer`` forward and a second copy backward, and merges.

    The backward copy has the same cell and options with fresh params (or is ``backward_layer``).
    ``return_sequences`` and ``return_carry`` are the forward layer's.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqjax as sj
      >>> rngs = nnx.Rngs(0)
      >>> bi = sj.nn.Bidirectional(sj.nn.GRU(4, 8, rngs=rngs, return_sequences=True), rngs=rngs)
      >>> bi(jnp.ones((2, 5, 4))).shape
      (2, 5, 16)

    Args:
      layer: the forward :class:`RNN`.
      rngs: initialises the backward copy (unused when ``backward_layer`` is given).
      backward_layer: an explicit backward :class:`RNN` (its ``reverse`` flag is ignored).
      merge: ``"concat"``, ``"sum"``, ``"mul"`` or ``"ave"``.
    """

    def __init__(self, layer: RNN, *, rngs: nnx.Rngs | None = None,
                 backward_layer: RNN | None = None, merge: str = "concat"):
        if not isinstance(layer, RNN):
            raise ValueError(f"layer must be a seqjax.nn.RNN; got {type(layer).__name__}")
        if merge not in MERGE_MODES:
            raise ValueError(f"merge must be one of {MERGE_MODES}; got {merge!r}")
        if backward_layer is None:
            if rngs is None:
                raise ValueError("rngs is required to initialise the backward layer")
            backward_layer = RNN(
                layer.cell, layer.in_features, rngs=rngs, return_sequences=layer.return_sequences,
                reverse=True, param_dtype=layer.param_dtype, **layer._options(),
            )
        elif not isinstance(backward_layer, RNN):
            raise ValueError(
                f"backward_layer must be a seqjax.nn.RNN; got {type(backward_layer).__name__}"
            )
        self.forward_layer = layer
        self.backward_layer = backward_layer
        self.merge = merge
        self.return_sequences = layer.return_sequences
        self.return_carry = layer.return_carry

    @property
    def cells(self) -> tuple[_cells.Cell, _cells.Cell]:
        return self.forward_layer.cell, self.backward_layer.cell

    @property
    def params(self) -> tuple[Params, Params]:
        return self.forward_layer.params, self.backward_layer.params

    def __call__(self, xs: Array, *, mask=None, lengths=None, resets=None, initial_carry=None):
        """Args as in :func:`seqjax.bidirectional`. Returns merged outputs (and the carry pair)."""
        carries, ys = bidirectional(
            self.cells, self.params, xs, merge=self.merge, mask=mask, lengths=lengths,
            resets=resets, initial_carry=initial_carry, **self.forward_layer._options(),
        )
        if self.return_sequences:
            outputs = ys
        else:
            outputs = merge_directions(carries[0].h.astype(ys.dtype),
                                       carries[1].h.astype(ys.dtype), self.merge)
        return (carries, outputs) if self.return_carry else outputs


class Stacked(nnx.Module):
    """A deep RNN: each layer reads the previous layer's output sequence, with dropout between.

    Every layer but the last must have ``return_sequences=True`` (as in Keras); the stack returns
    the last layer's outputs. Dropout follows NNX: active in ``model.train()`` mode, off after
    ``model.eval()``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqjax as sj
      >>> rngs = nnx.Rngs(0)
      >>> deep = sj.nn.Stacked([
      ...     sj.nn.Bidirectional(sj.nn.LSTM(4, 8, rngs=rngs, return_sequences=True), rngs=rngs),
      ...     sj.nn.LSTM(16, 8, rngs=rngs),
      ... ], dropout=0.2, rngs=rngs)
      >>> deep(jnp.ones((2, 5, 4)), lengths=jnp.array([5, 2])).shape
      (2, 8)

    Args:
      layers: :class:`RNN` or :class:`Bidirectional` modules, in order.
      dropout: rate applied to each layer's outputs except the last's.
      rngs: ``nnx.Rngs`` with a ``dropout`` stream (needed when ``dropout > 0``).
    """

    def __init__(self, layers: Sequence[RNN | Bidirectional], *, dropout: float = 0.0,
                 rngs: nnx.Rngs | None = None):
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, (RNN, Bidirectional)):
                raise ValueError(
                    f"layers[{index}] must be a seqjax.nn.RNN or Bidirectional; "
                    f"got {type(layer).__name__}"
                )
            if index < len(layers) - 1 and not layer.return_sequences:
                raise ValueError(
                    f"layers[{index}] must have return_sequences=True to feed layers[{index + 1}]"
                )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
        if dropout > 0.0 and rngs is None:
            raise ValueError("rngs is required when dropout > 0")
        self.layers = nnx.List(layers)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0.0 else None

    def __call__(self, xs: Array, *, mask=None, lengths=None, resets=None):
        """Args: ``xs [B, T, I]``, ``mask``/``lengths``/``resets`` as in :func:`seqjax.rnn`."""
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            out = layer(xs, mask=mask, lengths=lengths, resets=resets)
            xs = out[1] if layer.return_carry else out
            if index < last and self.dropout is not None:
                xs = self.dropout(xs)
        return out
