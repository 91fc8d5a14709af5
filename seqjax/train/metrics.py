"""Metrics: masked accuracy, perplexity, bits per character, entity span F1, exact match.

Metrics that must be aggregated exactly over an epoch (not as a mean of per-batch means) are
returned as a :class:`Ratio` of two sums; ``fit`` adds numerators and denominators over all batches
and reports ``numerator / denominator`` (``exp`` of it for perplexity). Any other scalar returned by
a loss function is averaged over batches, weighted by the number of real examples.

Shapes: B batch, T time, V vocabulary (classes).

Example:
    >>> import jax.numpy as jnp
    >>> from seqjax.train import accuracy
    >>> logits = jnp.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])   # [B=1, T=3, V=2]
    >>> labels = jnp.array([[0, 0, 1]])
    >>> mask = jnp.array([[True, True, False]])
    >>> float(accuracy(logits, labels, mask).value())
    0.5
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from .losses import example_mask, masked_sum_and_count

__all__ = [
    "Ratio",
    "metric_value",
    "accuracy",
    "binary_accuracy",
    "perplexity",
    "bits_per_character",
    "exact_match_accuracy",
    "get_entities",
    "span_scores",
    "span_f1",
    "span_counts",
]

_POSTS = ("identity", "exp")


@struct.dataclass
class Ratio:
    """A metric kept as ``numerator / denominator`` so that it sums exactly over batches.

    Attributes:
        numerator: float scalar array.
        denominator: float scalar array.
        post: ``"identity"`` or ``"exp"`` (static): applied to the ratio by :meth:`value`.
    """

    numerator: jax.Array
    denominator: jax.Array
    post: str = struct.field(pytree_node=False, default="identity")

    def __post_init__(self):
        if self.post not in _POSTS:
            raise ValueError(f"post must be one of {_POSTS}, got {self.post!r}")

    def value(self) -> jax.Array:
        """The ratio (0 when the denominator is 0), with ``post`` applied."""
        num = jnp.asarray(self.numerator, jnp.float32)
        den = jnp.asarray(self.denominator, jnp.float32)
        ratio = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
        return jnp.exp(ratio) if self.post == "exp" else ratio

    def __add__(self, other: Ratio) -> Ratio:
        if not isinstance(other, Ratio) or other.post != self.post:
            return NotImplemented
        return Ratio(self.numerator + other.numerator, self.denominator + other.denominator,
                     self.post)


def metric_value(metric) -> jax.Array:
    """A metric's scalar value: ``Ratio.value()`` for a :class:`Ratio`, else the array itself."""
    return metric.value() if isinstance(metric, Ratio) else jnp.asarray(metric)


def accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> Ratio:
    """Fraction of valid positions whose arg-max class equals the label.

    Args:
        logits: float ``[..., V]`` (``[B, V]`` or ``[B, T, V]``).
        labels: int ``[...]``.
        mask: bool ``[B]`` or ``[B, T]`` (a ``[B, T]`` mask with ``[B]`` labels is reduced to the
            examples), or None.

    Returns:
        :class:`Ratio` (correct, valid count).
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits shape {logits.shape} must be labels shape {labels.shape} + [V]")
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return Ratio(*masked_sum_and_count(correct, _fit_mask(mask, labels.ndim)))


def binary_accuracy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None, *, threshold: float = 0.0
) -> Ratio:
    """Accuracy of ``logits > threshold`` against 0/1 labels (threshold 0 on logits = 0.5 prob).

    Args:
        logits: float ``[B]``, ``[B, 1]`` or ``[B, T]``.
        labels: 0/1 with the shape of ``logits`` (without a trailing 1).
        mask: bool ``[B]`` or ``[B, T]``, or None.
        threshold: decision threshold on the logit.

    Returns:
        :class:`Ratio` (correct, valid count).
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        logits = logits[..., 0]
    if logits.shape != labels.shape:
        raise ValueError(f"logits shape {logits.shape} does not match labels shape {labels.shape}")
    correct = ((logits > threshold) == (labels.astype(jnp.float32) > 0.5)).astype(jnp.float32)
    return Ratio(*masked_sum_and_count(correct, _fit_mask(mask, labels.ndim)))


def _token_nll_sums(logits, targets, mask):
    logits = jnp.asarray(logits, jnp.float32)
    targets = jnp.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits shape {logits.shape} must be targets shape {targets.shape} + [V]")
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets.astype(jnp.int32))
    return masked_sum_and_count(nll, mask)


def perplexity(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> Ratio:
    """Perplexity ``exp(mean NLL per valid token)``, exact over an epoch.

    Args:
        logits: float ``[B, T, V]``.
        targets: int ``[B, T]``.
        mask: bool ``[B, T]`` or None.

    Returns:
        :class:`Ratio` (summed NLL in nats, token count) with ``post="exp"``.
    """
    total, count = _token_nll_sums(logits, targets, mask)
    return Ratio(total, count, "exp")


def bits_per_character(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> Ratio:
    """Bits per character: mean NLL per valid character in base 2.

    Args:
        logits: float ``[B, T, V]`` over characters.
        targets: int ``[B, T]``.
        mask: bool ``[B, T]`` or None.

    Returns:
        :class:`Ratio` (summed NLL in bits, character count).
    """
    total, count = _token_nll_sums(logits, targets, mask)
    return Ratio(total / math.log(2.0), count)


def exact_match_accuracy(
    predictions: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> Ratio:
    """Fraction of sequences predicted exactly right at every valid step (seq2seq, dates).

    Rows with no valid step (padding examples) are not counted.

    Args:
        predictions: int ``[B, T]`` token ids (take ``argmax`` of logits first), or logits
            ``[B, T, V]`` (float; the arg-max is taken for you).
        targets: int ``[B, T]``.
        mask: bool ``[B, T]`` or None (all steps valid).

    Returns:
        :class:`Ratio` (exactly matched sequences, valid sequences).
    """
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    if predictions.ndim == targets.ndim + 1 and jnp.issubdtype(predictions.dtype, jnp.floating):
        predictions = jnp.argmax(predictions, axis=-1)
    if predictions.shape != targets.shape or targets.ndim < 2:
        raise ValueError(
            f"predictions {predictions.shape} and targets {targets.shape} must both be [B, T]"
        )
    if mask is None:
        mask = jnp.ones(targets.shape, bool)
    mask = jnp.asarray(mask, bool)
    wrong = jnp.logical_and(predictions != targets, mask)
    row_ok = ~jnp.any(wrong.reshape(wrong.shape[0], -1), axis=-1)
    return Ratio(*masked_sum_and_count(row_ok.astype(jnp.float32), example_mask(mask)))


# ---------------------------------------------------------------------------------------------
# Entity-level span scores (seqeval / conlleval semantics, default non-strict mode).
# ---------------------------------------------------------------------------------------------

_PREFIX_CODES = {"O": 0, "B": 1, "I": 2, "E": 3, "S": 4}


def _split_tag(tag: str) -> tuple[str, str]:
    """Prefix letter and entity type of a tag, as seqeval does (``'O'`` has type ``'_'``)."""
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tags must be non-empty strings, got {tag!r}")
    prefix = tag[0]
    type_ = tag[1:].split("-", maxsplit=1)[-1] or "_"
    return prefix, type_


def _end_of_chunk(prev_tag, tag, prev_type, type_) -> bool:
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _start_of_chunk(prev_tag, tag, prev_type, type_) -> bool:
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def get_entities(seq: Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """Entity chunks ``(type, start, end)`` (inclusive end) in a tag sequence, as seqeval does.

    Accepts BIO (IOB2) tags and also IOBES; an ``I-X`` after ``O`` or after another type starts a
    chunk (conlleval behaviour). A list of sentences is joined with ``'O'`` between them, so
    offsets run over the concatenation.

    Args:
        seq: tags such as ``['B-PER', 'I-PER', 'O', 'B-LOC']``, or a list of such lists.

    Returns:
        list of ``(type, start, end)``; e.g. ``[('PER', 0, 1), ('LOC', 3, 3)]`` for the above.
    """
    seq = list(seq)
    if any(isinstance(s, (list, tuple)) for s in seq):
        seq = [tag for sentence in seq for tag in [*sentence, "O"]]
    prev_tag, prev_type, begin, chunks = "O", "", 0, []
    for i, chunk in enumerate([*seq, "O"]):
        tag, type_ = _split_tag(chunk)
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_true}


def span_scores(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
) -> dict[str, object]:
    """Entity-level precision, recall and F1 on string tags (host side, like ``seqeval``).

    An entity counts as correct only when type, start and end all match. Zero divisions give 0.

    Args:
        y_true: gold tags, one list per sentence.
        y_pred: predicted tags, the same lengths as ``y_true``.

    Returns:
        dict with micro-averaged ``precision``, ``recall``, ``f1``, ``support`` (number of true
        entities), ``macro_f1`` (unweighted mean over types), and ``per_type``:
        ``{type: {precision, recall, f1, support}}``.

    Example:
        >>> y_true = [['O', 'O', 'B-MISC', 'I-MISC', 'B-MISC', 'O', 'O'],
        ...           ['B-PER', 'I-PER', 'O']]
        >>> y_pred = [['O', 'O', 'B-MISC', 'I-MISC', 'B-MISC', 'I-MISC', 'O'],
        ...           ['B-PER', 'I-PER', 'O']]
        >>> round(span_scores(y_true, y_pred)['f1'], 4)
        0.6667
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}")
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: y_true has {len(t)} tags but y_pred has {len(p)}")
    true_by_type, pred_by_type = defaultdict(set), defaultdict(set)
    for type_, start, end in get_entities([list(s) for s in y_true]):
        true_by_type[type_].add((start, end))
    for type_, start, end in get_entities([list(s) for s in y_pred]):
        pred_by_type[type_].add((start, end))
    per_type, tp_all, pred_all, true_all = {}, 0, 0, 0
    for type_ in sorted(set(true_by_type) | set(pred_by_type)):
        tp = len(true_by_type[type_] & pred_by_type[type_])
        n_pred, n_true = len(pred_by_type[type_]), len(true_by_type[type_])
        per_type[type_] = _prf(tp, n_pred, n_true)
        tp_all, pred_all, true_all = tp_all + tp, pred_all + n_pred, true_all + n_true
    scores = _prf(tp_all, pred_all, true_all)
    scores["macro_f1"] = float(np.mean([s["f1"] for s in per_type.values()])) if per_type else 0.0
    scores["per_type"] = per_type
    return scores


def _tag_tables(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Prefix codes and type ids (0 for 'O' and untyped tags) for a tag vocabulary."""
    if isinstance(tag_names, str) or len(tag_names) == 0:
        raise ValueError("tag_names must be a non-empty sequence of tag strings")
    types: dict[str, int] = {"_": 0}
    prefixes, type_ids = [], []
    for name in tag_names:
        prefix, type_ = _split_tag(name)
        if prefix not in _PREFIX_CODES:
            raise ValueError(
                f"tag_names: {name!r} is not an O/B-/I-/E-/S- tag (padding tags should be 'O')"
            )
        prefixes.append(_PREFIX_CODES[prefix])
        type_ids.append(types.setdefault(type_, len(types)))
    return np.asarray(prefixes, np.int32), np.asarray(type_ids, np.int32)


def _chunk_ends(prefix, types):
    """Per position t of ``[B, T+1]`` codes: a chunk ends at t-1, and where it began.

    ``prefix``/``types`` carry an 'O' column appended at the end (position T).
    Returns ``(ends [B, T+1], begin [B, T+1] of the chunk that ends at t-1, type [B, T+1])``.
    """
    B = prefix.shape[0]
    zero = jnp.zeros((B, 1), prefix.dtype)
    prev_p = jnp.concatenate([zero, prefix[:, :-1]], axis=1)  # 'O' before the first step
    prev_k = jnp.concatenate([zero - 1, types[:, :-1]], axis=1)  # seqeval's initial type is ''
    O, Bp, I, E, S = 0, 1, 2, 3, 4
    type_change = prev_k != types
    ends = (
        (prev_p == E) | (prev_p == S)
        | (((prev_p == Bp) | (prev_p == I)) & ((prefix == Bp) | (prefix == S) | (prefix == O)))
        | ((prev_p != O) & type_change)
    )
    starts = (
        (prefix == Bp) | (prefix == S)
        | (((prev_p == E) | (prev_p == S) | (prev_p == O)) & ((prefix == E) | (prefix == I)))
        | ((prefix != O) & type_change)
    )
    idx = jnp.broadcast_to(jnp.arange(prefix.shape[1]), prefix.shape)
    last_start = jax.lax.cummax(jnp.where(starts, idx, -1), axis=1)
    begin_of_prev = jnp.concatenate([jnp.full((B, 1), -1, last_start.dtype), last_start[:, :-1]],
                                    axis=1)
    return ends, begin_of_prev, prev_k


def span_counts(
    pred_ids: jax.Array, true_ids: jax.Array, mask: jax.Array | None, tag_names: Sequence[str]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Jittable entity counts on integer tag ids (same chunking as :func:`get_entities`).

    Each row is its own sentence; masked positions are read as ``'O'``.

    Args:
        pred_ids: int ``[B, T]`` predicted tag ids (``argmax`` of the tagger's logits).
        true_ids: int ``[B, T]`` gold tag ids.
        mask: bool ``[B, T]`` or None.
        tag_names: the tag vocabulary, ``tag_names[id]`` is e.g. ``'B-PER'`` (static).

    Returns:
        ``(correct, n_pred, n_true)`` float32 scalars.
    """
    prefix_table, type_table = (jnp.asarray(a) for a in _tag_tables(tag_names))
    pred_ids, true_ids = jnp.asarray(pred_ids), jnp.asarray(true_ids)
    if pred_ids.shape != true_ids.shape or pred_ids.ndim != 2:
        raise ValueError(f"pred_ids {pred_ids.shape} and true_ids {true_ids.shape} must be [B, T]")
    valid = jnp.ones(true_ids.shape, bool) if mask is None else jnp.asarray(mask, bool)

    def codes(ids):
        ids = jnp.clip(ids, 0, len(tag_names) - 1)
        p = jnp.where(valid, prefix_table[ids], 0)
        k = jnp.where(valid, type_table[ids], 0)
        pad = jnp.zeros((ids.shape[0], 1), p.dtype)
        return jnp.concatenate([p, pad], axis=1), jnp.concatenate([k, pad], axis=1)

    p_end, p_begin, p_type = _chunk_ends(*codes(pred_ids))
    t_end, t_begin, t_type = _chunk_ends(*codes(true_ids))
    correct = p_end & t_end & (p_begin == t_begin) & (p_type == t_type)
    f32 = jnp.float32
    return jnp.sum(correct, dtype=f32), jnp.sum(p_end, dtype=f32), jnp.sum(t_end, dtype=f32)


def span_f1(
    pred_ids: jax.Array,
    true_ids: jax.Array,
    mask: jax.Array | None,
    tag_names: Sequence[str],
) -> dict[str, Ratio]:
    """Entity-level micro precision, recall and F1 as exact-over-epoch :class:`Ratio` metrics.

    F1 is kept as ``2 * correct / (n_pred + n_true)``, which equals ``2PR / (P + R)`` and sums
    exactly over batches.

    Args:
        pred_ids: int ``[B, T]`` predicted tag ids.
        true_ids: int ``[B, T]`` gold tag ids.
        mask: bool ``[B, T]`` or None.
        tag_names: tag vocabulary (static), e.g. ``['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']``.

    Returns:
        ``{"span_precision": Ratio, "span_recall": Ratio, "span_f1": Ratio}``.
    """
    correct, n_pred, n_true = span_counts(pred_ids, true_ids, mask, tag_names)
    return {
        "span_precision": Ratio(correct, n_pred),
        "span_recall": Ratio(correct, n_true),
        "span_f1": Ratio(2.0 * correct, n_pred + n_true),
    }


def _fit_mask(mask, ndim: int):
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.ndim > ndim and ndim == 1:
        return example_mask(mask)
    return mask
