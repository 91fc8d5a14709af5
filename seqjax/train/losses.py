"""Masked losses on logits.

Every loss here returns a scalar: the mean over the *valid* elements, where validity comes from
an optional boolean ``mask`` (True = valid). Padded positions never contribute, and a batch with no
valid element gives a loss of 0 (not NaN). Shapes use B for batch, T for time, V for vocabulary
(number of classes).

Example:
    >>> import jax.numpy as jnp
    >>> from seqjax.train import softmax_cross_entropy
    >>> logits = jnp.array([[[2.0, 0.0], [0.0, 0.0]]])       # [B=1, T=2, V=2]
    >>> labels = jnp.array([[0, 1]])                          # [B, T]
    >>> mask = jnp.array([[True, False]])                     # second step is padding
    >>> round(float(softmax_cross_entropy(logits, labels, mask)), 4)
    0.1269
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "example_mask",
    "masked_mean",
    "masked_sum_and_count",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "sequence_loss",
    "perplexity_from_loss",
    "bits_per_character_from_loss",
]


def example_mask(mask: jax.Array | None) -> jax.Array | None:
    """Which examples of a batch are real: True where a row has at least one valid step.

    Use it to weight per-example losses (e.g. sentiment labels ``[B]``) so that examples added as
    padding (``fit`` pads a batch with all-masked rows when it does not divide over the devices)
    are ignored.

    Args:
        mask: bool ``[B, T]`` (or ``[B]``), or None.

    Returns:
        bool ``[B]``, or None when ``mask`` is None.
    """
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.ndim <= 1:
        return mask.astype(bool)
    return jnp.any(mask.reshape(mask.shape[0], -1), axis=-1)


def masked_sum_and_count(values: jax.Array, mask: jax.Array | None = None):
    """Sum of ``values`` over valid elements and the number of valid elements.

    Args:
        values: any shape ``[B, ...]``.
        mask: bool, broadcastable to ``values`` from the left (``[B]`` or ``[B, T]`` for values
            ``[B, T, ...]``), or None for all valid.

    Returns:
        ``(total, count)`` float32 scalars.
    """
    values = jnp.asarray(values, jnp.float32)
    if mask is None:
        return jnp.sum(values), jnp.asarray(values.size, jnp.float32)
    mask = jnp.asarray(mask)
    if mask.ndim > values.ndim:
        raise ValueError(f"mask has more dimensions ({mask.ndim}) than values ({values.ndim})")
    if mask.shape != values.shape[: mask.ndim]:
        raise ValueError(f"mask shape {mask.shape} does not prefix values shape {values.shape}")
    weights = mask.astype(jnp.float32).reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
    weights = jnp.broadcast_to(weights, values.shape)
    return jnp.sum(values * weights), jnp.sum(weights)


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over valid elements (0 when there are none).

    Args:
        values: any shape ``[B, ...]``.
        mask: bool prefix-shaped like ``values`` (see :func:`masked_sum_and_count`), or None.

    Returns:
        float32 scalar.
    """
    total, count = masked_sum_and_count(values, mask)
    return total / jnp.maximum(count, 1.0)


def sigmoid_binary_cross_entropy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Binary cross-entropy on logits (numerically stable), averaged over valid elements.

    Args:
        logits: float ``[B]``, ``[B, 1]`` or ``[B, T]``; a trailing axis of size 1 is squeezed when
            ``labels`` lacks it.
        labels: 0/1 (int, bool or float probabilities) with the shape of ``logits``.
        mask: bool ``[B]`` or ``[B, T]`` (a ``[B, T]`` mask with ``[B]`` logits is reduced with
            :func:`example_mask`), or None.

    Returns:
        float32 scalar: mean of ``-[y log σ(z) + (1 - y) log(1 - σ(z))]``.
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.shape != labels.shape:
        raise ValueError(f"logits shape {logits.shape} does not match labels shape {labels.shape}")
    mask = _fit_mask(mask, logits.ndim)
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32))
    return masked_mean(losses, mask)


def softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None = None,
    *,
    label_smoothing: float = 0.0,
) -> jax.Array:
    """Softmax cross-entropy with integer labels, averaged over valid elements.

    Args:
        logits: float ``[..., V]`` (e.g. ``[B, V]`` for classification, ``[B, T, V]`` for tagging or
            language modelling).
        labels: int ``[...]`` in ``[0, V)``.
        mask: bool prefix-shaped like ``labels`` (``[B]`` or ``[B, T]``); a ``[B, T]`` mask with
            ``[B]`` labels is reduced with :func:`example_mask`. None means all valid.
        label_smoothing: in ``[0, 1)``; spreads that much probability mass uniformly over V.

    Returns:
        float32 scalar, the mean negative log-likelihood in nats.
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits shape {logits.shape} must be labels shape {labels.shape} plus a class axis"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    mask = _fit_mask(mask, labels.ndim)
    if label_smoothing:
        num_classes = logits.shape[-1]
        targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
        losses = optax.softmax_cross_entropy(logits, targets)
    else:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))
    return masked_mean(losses, mask)


def sequence_loss(
    logits: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    *,
    average: str = "token",
) -> jax.Array:
    """Token-level softmax cross-entropy for sequences (language models, taggers, decoders).

    Args:
        logits: float ``[B, T, V]``.
        targets: int ``[B, T]``.
        mask: bool ``[B, T]``; padded steps are ignored. None means all valid.
        average: ``"token"`` (default) divides the summed NLL by the number of valid tokens;
            ``"sequence"`` sums over time, then averages over sequences with a valid step (the
            seq2seq convention of ``tfa.seq2seq.sequence_loss`` with
            ``average_across_timesteps=False``).

    Returns:
        float32 scalar.
    """
    logits = jnp.asarray(logits, jnp.float32)
    if logits.ndim != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {logits.shape}")
    if average == "token":
        return softmax_cross_entropy(logits, targets, mask)
    if average != "sequence":
        raise ValueError(f"average must be 'token' or 'sequence', got {average!r}")
    targets = jnp.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits shape {logits.shape} does not match targets {targets.shape}")
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets.astype(jnp.int32))
    if mask is None:
        mask = jnp.ones(targets.shape, bool)
    mask = jnp.asarray(mask)
    per_sequence = jnp.sum(losses * mask.astype(losses.dtype), axis=-1)
    return masked_mean(per_sequence, example_mask(mask))


def perplexity_from_loss(loss) -> jax.Array:
    """``exp(loss)``: the perplexity for a mean NLL in nats per token."""
    return jnp.exp(jnp.asarray(loss, jnp.float32))


def bits_per_character_from_loss(loss) -> jax.Array:
    """``loss / ln 2``: bits per character for a mean NLL in nats per character."""
    return jnp.asarray(loss, jnp.float32) / math.log(2.0)


def _fit_mask(mask, ndim: int):
    """Reduces a ``[B, T]`` mask to ``[B]`` when the losses are per example."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.ndim > ndim:
        mask = example_mask(mask) if ndim == 1 else mask
    return mask
