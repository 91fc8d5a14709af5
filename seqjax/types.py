"""Shared type names and the glossary of dimension letters used in every shape in seqjax.

Dimension letters:
  B  batch (any number of leading batch dims where a function says "...")
  T  time (sequence length)
  I  input features
  H  hidden units
  G  gates of a cell (LSTM 4: i, f, g, o; GRU 3: r, z, n; SimpleRNN 1)
  V  vocabulary size
  L  layers; in seq2seq models, the target length
  S  source length (seq2seq, attention)
  N  rows decoded at once (batch, or batch x beams in beam search)
  A  attention size (Bahdanau's projected keys)

Layout: public functions take batch-major ``[B, T, I]`` by default (``time_major=False``, the Flax
and Keras convention); kernels work time-major ``[T, B, I]`` and the transpose happens once, at the
boundary.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a cell's params NamedTuple
Carry = Any  # a cell's carry NamedTuple
Shape = tuple[int, ...]
