"""Many-to-one: :class:`Classifier`, Embedding -> encoder -> Dense head -> logits.

One class covers the course's sentiment models, recurrent and baseline alike::

    Embedding(V, E) -> encoder -> Dense(h, relu) for h in head -> Dense(num_classes)

Encoders:

* ``"simple_rnn"``, ``"lstm"``, ``"gru"``, ``"min_gru"``, ``"min_lstm"``: a
  :class:`~seqjax.models.layers.RecurrentStack` (``units`` an int, or a tuple for stacked layers
  with ``return_sequences`` and ``dropout`` between them; ``bidirectional`` wraps every layer).
  The encoding is the last layer's ``h`` after each sequence's last valid step (Bidirectional:
  forward ``h`` beside backward ``h``, as Keras' ``Bidirectional(LSTM(u))``).
* ``"average"`` / ``"max"``: ``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D`` of the
  embeddings over the valid steps (padding never counts).
* ``"conv1d"``: ``Conv1D(filters, kernel_size, activation="relu", padding="valid")`` (``T-k+1``
  windows) then global pooling (``pooling="average"``, the default, or ``"max"``) over the
  windows that lie entirely on valid steps; a window touching padding never counts, so pre- and
  post-padding give the same logits. A sequence with fewer than ``kernel_size`` valid steps has
  no window and encodes to zeros.
* ``"flatten"``: the ``[maxlen, E]`` embeddings flattened (Keras' ``Flatten``); tokens must have
  exactly ``maxlen`` steps, and padded steps' embeddings are zeroed. Unlike the other encoders
  its logits depend on where the padding is (pre or post), as in Keras.

``use_mask=False`` reproduces the course's Keras code without ``mask_zero``: the encoder sees
every step, padding included (the RNN reads the pad embeddings, pooling averages over all ``T``,
every conv window counts). ``mask`` is then only checked for its shape.

Initialisation follows Keras: the embedding ``uniform(-0.05, 0.05)``; Dense and Conv1D kernels
Glorot-uniform with zero biases; the recurrent layers as their seqjax cells.

Loss: ``num_classes=1`` gives one logit per example (``[B]``; Keras' ``Dense(1, "sigmoid")``
before its sigmoid) trained with binary cross-entropy on logits; ``num_classes > 1`` gives
``[B, num_classes]`` trained with softmax cross-entropy. :meth:`Classifier.loss` computes it,
:meth:`Classifier.loss_fn` is the ``loss_fn`` for :func:`seqjax.train.fit`.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> clf = sj.models.Classifier(vocab_size=100, embed_dim=8, encoder="lstm", units=(8, 4),
  ...                            bidirectional=True, head=(6,), rngs=nnx.Rngs(0))
  >>> tokens = jnp.array([[0, 0, 5, 7], [3, 9, 2, 4]])     # pre-padded with 0
  >>> mask = tokens != 0
  >>> clf(tokens, mask).shape
  (2,)
  >>> float(clf.loss(tokens, mask, jnp.array([0, 1]))) > 0
  True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.models.config import ConfiguredModel
from seqjax.models.layers import CELL_NAMES, RecurrentStack, as_units, check_mask, check_tokens
from seqjax.train.losses import (
    example_mask,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from seqjax.train.metrics import accuracy, binary_accuracy
from seqjax.types import Array

__all__ = [
    "ENCODERS",
    "Classifier",
    "ClassifierConfig",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Flatten",
]

POOLING_ENCODERS = ("average", "max")
ENCODERS = CELL_NAMES + ("conv1d",) + POOLING_ENCODERS + ("flatten",)
POOLINGS = ("average", "max")


def keras_embedding_init(key: jax.Array, shape, dtype=jnp.float32) -> Array:
    """Keras' default ``Embedding`` initializer: ``uniform(-0.05, 0.05)``."""
    return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


_dense_init = nnx.initializers.glorot_uniform()  # Keras' Dense/Conv1D default


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The arguments a :class:`Classifier` was built with (JSON-able; see its docstring)."""

    vocab_size: int
    embed_dim: int
    encoder: str = "lstm"
    units: int | tuple[int, ...] | None = None
    bidirectional: bool = False
    head: tuple[int, ...] = ()
    num_classes: int = 1
    dropout: float = 0.0
    filters: int | None = None
    kernel_size: int | None = None
    pooling: str | None = None
    maxlen: int | None = None
    use_mask: bool = True
    backend: str = "auto"


def _positive_int(value: Any, name: str, what: str = "a positive int") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


class GlobalAveragePooling1D(nnx.Module):
    """Mean over time of the valid steps: ``[B, T, F] -> [B, F]`` (0 for a row with none).

    .. math:: y_b = \\sum_t m_{bt} x_{bt} / \\max(1, \\sum_t m_{bt})
    """

    def __call__(self, xs: Array, mask: Array | None = None) -> Array:
        if mask is None:
            return jnp.mean(xs, axis=1)
        weights = mask.astype(xs.dtype)[..., None]
        count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        return jnp.sum(xs * weights, axis=1) / count


class GlobalMaxPooling1D(nnx.Module):
    """Max over time of the valid steps: ``[B, T, F] -> [B, F]`` (0 for a row with none)."""

    def __call__(self, xs: Array, mask: Array | None = None) -> Array:
        if mask is None:
            return jnp.max(xs, axis=1)
        valid = mask[..., None]
        pooled = jnp.max(jnp.where(valid, xs, -jnp.inf), axis=1)
        return jnp.where(jnp.any(valid, axis=1), pooled, jnp.zeros_like(pooled))


class Flatten(nnx.Module):
    """``[B, T, F] -> [B, T * F]`` (Keras' ``Flatten``)."""

    def __call__(self, xs: Array) -> Array:
        return xs.reshape(xs.shape[0], -1)


class Classifier(ConfiguredModel):
    """Embedding -> encoder -> ``Dense(relu)`` head -> logits: the course's many-to-one models.

    Args:
      vocab_size: V, the number of token ids (id 0 is usually padding).
      embed_dim: E, the embedding size.
      encoder: one of :data:`ENCODERS` (see the module docstring).
      units: recurrent encoders only: hidden units, an int or a tuple (stacked layers, first to
        last, ``return_sequences`` between them).
      bidirectional: recurrent encoders only: every layer is ``Bidirectional`` (concatenated).
      head: widths of the ``Dense(relu)`` layers between the encoder and the output layer.
      num_classes: 1 for one logit per example (binary; logits ``[B]``), else the number of
        classes (logits ``[B, num_classes]``).
      dropout: rate between stacked recurrent layers (needs at least two); active in
        ``model.train()`` mode.
      filters: ``"conv1d"`` only: the number of filters (output channels).
      kernel_size: ``"conv1d"`` only: the window length k.
      pooling: ``"conv1d"`` only: ``"average"`` (the default) or ``"max"`` over the windows.
      maxlen: ``"flatten"`` only (and required there): the number of time steps T.
      use_mask: True (default): padded steps are skipped. False: the encoder reads every step,
        padding included, as the course's Keras models without ``mask_zero`` do.
      backend: the recurrent kernels' backend, as in :func:`seqjax.rnn`.
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    """

    config_class = ClassifierConfig

    def __init__(self, *, vocab_size: int, embed_dim: int, encoder: str = "lstm",
                 units: int | Sequence[int] | None = None, bidirectional: bool = False,
                 head: Sequence[int] = (), num_classes: int = 1, dropout: float = 0.0,
                 filters: int | None = None, kernel_size: int | None = None,
                 pooling: str | None = None, maxlen: int | None = None, use_mask: bool = True,
                 backend: str = "auto", rngs: nnx.Rngs):
        vocab_size = _positive_int(vocab_size, "vocab_size")
        embed_dim = _positive_int(embed_dim, "embed_dim")
        num_classes = _positive_int(num_classes, "num_classes", "a positive int (1: binary)")
        if not isinstance(encoder, str) or encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}; got {encoder!r}")
        recurrent = encoder in CELL_NAMES
        if isinstance(head, (int, np.integer)):
            head = (head,)
        if isinstance(head, str) or not isinstance(head, Sequence) or any(
                isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                for h in head):
            raise ValueError(f"head must be a tuple of positive ints (Dense widths); got {head!r}")
        head = tuple(int(h) for h in head)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
                0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a float in [0, 1); got {dropout!r}")
        dropout = float(dropout)

        if recurrent:
            if units is None:
                raise ValueError(f"units is required for encoder={encoder!r}")
            layer_units = as_units(units)
            units = layer_units[0] if isinstance(units, (int, np.integer)) else layer_units
            if dropout > 0.0 and len(layer_units) < 2:
                raise ValueError(
                    f"dropout applies between stacked recurrent layers; units={units!r} has "
                    f"one layer (give a tuple of widths, or dropout=0.0)"
                )
        else:
            for name, value, default in (("units", units, None),
                                         ("bidirectional", bidirectional, False)):
                if value != default:
                    raise ValueError(
                        f"{name} applies to the recurrent encoders {CELL_NAMES} only; "
                        f"got {name}={value!r} with encoder={encoder!r}")
            if dropout > 0.0:
                raise ValueError(
                    f"dropout applies between stacked recurrent layers; encoder={encoder!r} "
                    f"has none (got dropout={dropout!r})")
        if encoder == "conv1d":
            if filters is None or kernel_size is None:
                raise ValueError(
                    "encoder='conv1d' needs filters and kernel_size "
                    f"(got filters={filters!r}, kernel_size={kernel_size!r})")
            filters = _positive_int(filters, "filters")
            kernel_size = _positive_int(kernel_size, "kernel_size")
            if pooling is not None and pooling not in POOLINGS:
                raise ValueError(f"pooling must be one of {POOLINGS} or None; got {pooling!r}")
        else:
            for name, value in (("filters", filters), ("kernel_size", kernel_size),
                                ("pooling", pooling)):
                if value is not None:
                    raise ValueError(f"{name} applies to encoder='conv1d' only; got "
                                     f"{name}={value!r} with encoder={encoder!r}")
        if encoder == "flatten":
            if maxlen is None:
                raise ValueError(
                    "encoder='flatten' needs maxlen (the number of time steps it flattens)")
            maxlen = _positive_int(maxlen, "maxlen")
        elif maxlen is not None:
            raise ValueError(
                f"maxlen applies to encoder='flatten' only; got maxlen={maxlen!r} with "
                f"encoder={encoder!r}")

        self.config = ClassifierConfig(
            vocab_size=vocab_size, embed_dim=embed_dim, encoder=encoder, units=units,
            bidirectional=bool(bidirectional), head=head, num_classes=num_classes,
            dropout=dropout, filters=filters, kernel_size=kernel_size, pooling=pooling,
            maxlen=maxlen, use_mask=bool(use_mask), backend=backend,
        )
        self.embed = nnx.Embed(vocab_size, embed_dim, embedding_init=keras_embedding_init,
                               rngs=rngs)
        if recurrent:
            self.encoder = RecurrentStack(encoder, embed_dim, as_units(units),
                                          bidirectional=bool(bidirectional), dropout=dropout,
                                          backend=backend, rngs=rngs)
            size = self.encoder.out_features
        elif encoder == "conv1d":
            self.conv = nnx.Conv(embed_dim, filters, kernel_size=(kernel_size,), padding="VALID",
                                 kernel_init=_dense_init, rngs=rngs)
            self.pool = (GlobalMaxPooling1D() if pooling == "max" else GlobalAveragePooling1D())
            size = filters
        elif encoder == "average":
            self.pool = GlobalAveragePooling1D()
            size = embed_dim
        elif encoder == "max":
            self.pool = GlobalMaxPooling1D()
            size = embed_dim
        else:  # flatten
            self.flatten = Flatten()
            size = maxlen * embed_dim
        dense = []
        for width in head:
            dense.append(nnx.Linear(size, width, kernel_init=_dense_init, rngs=rngs))
            size = width
        self.head = nnx.List(dense)
        self.out = nnx.Linear(size, num_classes, kernel_init=_dense_init, rngs=rngs)

    def encode(self, tokens: Array, mask: Array | None = None) -> Array:
        """The encoder's output, the head's input: ``[B, F]``.

        Args:
          tokens: int ``[B, T]`` in ``[0, vocab_size)`` (checked where concrete).
          mask: bool ``[B, T]`` (True = real token), or None for every step real.
        """
        config = self.config
        tokens = check_tokens(tokens, config.vocab_size)
        mask = check_mask(mask, tokens)
        step_mask = mask if config.use_mask else None
        xs = self.embed(tokens)                                          # [B, T, E]
        if config.encoder in CELL_NAMES:
            carries, _ = self.encoder(xs, step_mask)
            return self.encoder.last_output(carries)
        if config.encoder == "conv1d":
            steps, k = tokens.shape[1], config.kernel_size
            if steps < k:
                raise ValueError(
                    f"tokens must have at least kernel_size={k} steps for encoder='conv1d'; "
                    f"got shape {tokens.shape}")
            windows = jax.nn.relu(self.conv(xs))                         # [B, T-k+1, F]
            if step_mask is not None:
                # window t covers steps t..t+k-1; it counts only if all k are real tokens
                real = jnp.cumsum(step_mask.astype(jnp.int32), axis=1)
                real = jnp.pad(real, ((0, 0), (1, 0)))
                step_mask = (real[:, k:] - real[:, :-k]) == k           # [B, T-k+1]
            return self.pool(windows, step_mask)
        if config.encoder in POOLING_ENCODERS:
            return self.pool(xs, step_mask)
        if tokens.shape[1] != config.maxlen:
            raise ValueError(
                f"tokens must have maxlen={config.maxlen} steps for encoder='flatten'; got shape "
                f"{tokens.shape}")
        if step_mask is not None:
            xs = jnp.where(step_mask[..., None], xs, jnp.zeros_like(xs))
        return self.flatten(xs)

    def __call__(self, tokens: Array, mask: Array | None = None) -> Array:
        """Logits.

        Args:
          tokens: int ``[B, T]`` in ``[0, vocab_size)`` (checked where concrete).
          mask: bool ``[B, T]`` (True = real token; pre- or post-padding), or None.

        Returns:
          ``[B]`` when ``num_classes == 1`` (the logit of class 1), else ``[B, num_classes]``.
        """
        h = self.encode(tokens, mask)
        for dense in self.head:
            h = jax.nn.relu(dense(h))
        logits = self.out(h)
        return logits[:, 0] if self.config.num_classes == 1 else logits

    def loss(self, tokens: Array, mask: Array | None, labels: Array) -> Array:
        """Mean cross-entropy over the examples with at least one real token.

        Binary cross-entropy on the logit for ``num_classes == 1`` (labels 0/1 ``[B]``), softmax
        cross-entropy otherwise (labels int ``[B]`` in ``[0, num_classes)``). Rows whose mask is
        all False (the padding examples :func:`seqjax.train.fit` adds) do not count.
        """
        return self._loss_and_metrics(self(tokens, mask), mask, labels)[0]

    def _loss_and_metrics(self, logits: Array, mask: Array | None, labels: Array):
        rows = None if mask is None else example_mask(mask)
        if self.config.num_classes == 1:
            return (sigmoid_binary_cross_entropy(logits, labels, rows),
                    {"accuracy": binary_accuracy(logits, labels, rows)})
        return (softmax_cross_entropy(logits, labels, rows),
                {"accuracy": accuracy(logits, labels, rows)})

    @staticmethod
    def loss_fn(model: Classifier, batch: Any, key: jax.Array | None = None):
        """``loss_fn`` for :func:`seqjax.train.fit`: ``(loss, {"accuracy": Ratio})``.

        ``batch`` is ``(tokens, mask, labels)``, e.g. a :class:`seqjax.data.Batch`; ``key`` is
        unused (dropout draws from the model's ``rngs``). The loss is :meth:`loss`'s.
        """
        tokens, mask, labels = batch
        return model._loss_and_metrics(model(tokens, mask), mask, labels)
