"""A linear-chain conditional random field (CRF) over per-token tag scores.

The CRF scores a tag path ``y_1 .. y_n`` of a sentence (its ``n`` valid steps, in order) given
emission scores ``e`` (a tagger's per-token scores) and learned transition scores::

    s(y) = start[y_1] + sum_{k=1..n} e_k[y_k] + sum_{k=2..n} A[y_{k-1}, y_k] + end[y_n]
    p(y | e) = exp(s(y)) / Z,    log Z = logsumexp over all K^n paths of s(y)

``A = transitions [K, K]`` holds the score of moving from tag ``i`` to tag ``j`` (``A[i, j]``);
``start_transitions [K]`` and ``end_transitions [K]`` score the first and last tag, as in
pytorch-crf. ``log Z`` comes from the forward algorithm, in log space (``logsumexp``, stable)::

    alpha_1[j] = start[j] + e_1[j]
    alpha_k[j] = logsumexp_i(alpha_{k-1}[i] + A[i, j]) + e_k[j]
    log Z      = logsumexp_j(alpha_n[j] + end[j])

and the best path from Viterbi, the same recursion with ``max`` for ``logsumexp`` and
back-pointers ``argmax_i`` followed back from ``argmax_j(delta_n[j] + end[j])``.

Masks: the CRF reads the valid steps (``mask`` True) in time order and skips the masked ones,
wherever they are. A post-padded row (a valid prefix, the usual case), a pre-padded row (as the
course pads) and any other mask give the same result as the valid steps alone. A row with no
valid step has log-likelihood 0, Viterbi score 0 and a decoded path of zeros. Both recursions
run under one ``lax.scan`` over time, batched, and jit.

Constraints: ``constraints="bio"`` with ``tag_names`` (e.g. ``info["tags"]`` of the NER loaders,
built by :func:`seqjax.data.bio_tag_set`) forbids the transitions BIO never makes: ``I-X`` after
``O``, after ``B-Y`` or ``I-Y`` with ``Y != X``, and ``I-X`` as the first tag. The forbidden
scores are a fixed mask added to the learned ones (not a parameter): ``-inf`` in :meth:`CRF.decode`,
so decoded spans are always well-formed, and ``-1e4`` in :meth:`CRF.log_likelihood`, so a gold
path that breaks the rule (e.g. a sentence truncated inside an entity) costs a large but finite
loss instead of an infinite one.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> tags = ["O", "B-PER", "I-PER"]
  >>> crf = sj.models.CRF(num_tags=3, constraints="bio", tag_names=tags, rngs=nnx.Rngs(0))
  >>> emissions = jnp.zeros((2, 4, 3)).at[:, :, 2].set(5.0)   # I-PER everywhere
  >>> mask = jnp.array([[True, True, True, False], [False] * 4])
  >>> best, score = crf.decode(emissions, mask)
  >>> best.tolist()                                           # B-PER I-PER I-PER, then padding
  [[1, 2, 2, 0], [0, 0, 0, 0]]
  >>> crf.log_likelihood(emissions, best, mask).shape
  (2,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.types import Array

from .config import ConfiguredModel
from .layers import _is_concrete

__all__ = ["CRF", "CRFConfig", "CONSTRAINTS", "bio_constraints", "check_tags"]

CONSTRAINTS = ("bio",)
# A forbidden transition's score in the likelihood: far below any learned score, yet finite so an
# ill-formed gold path yields a finite loss and gradient.
_FORBIDDEN = -1e4


def _split_bio(name: Any, index: int) -> tuple[str, str]:
    if not isinstance(name, str):
        raise ValueError(f"tag_names[{index}] must be a string; got {name!r}")
    if name == "O":
        return "O", ""
    if len(name) > 2 and name[:2] in ("B-", "I-"):
        return name[0], name[2:]
    raise ValueError(f"tag_names[{index}] must be 'O', 'B-<type>' or 'I-<type>'; got {name!r}")


def bio_constraints(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which transitions BIO allows, for a tag vocabulary.

    ``I-X`` may only follow ``B-X`` or ``I-X``, and may not start a sentence; everything else is
    allowed (any tag may end one).

    Args:
      tag_names: K tag strings, ``tag_names[id]`` naming tag id ``id``: ``'O'``, ``'B-X'``,
        ``'I-X'`` (e.g. :func:`seqjax.data.bio_tag_set`). Every ``I-X`` needs its ``B-X``.

    Returns:
      ``(transitions [K, K], start [K], end [K])`` bool numpy arrays, True where allowed;
      ``transitions[i, j]`` is the move from tag ``i`` to tag ``j``.

    Example:
      >>> allowed, start, end = bio_constraints(["O", "B-LOC", "I-LOC"])
      >>> allowed.astype(int).tolist(), start.tolist()
      ([[1, 1, 0], [1, 1, 1], [1, 1, 1]], [True, True, False])
    """
    if isinstance(tag_names, str) or not isinstance(tag_names, Sequence) or not tag_names:
        raise ValueError(
            f"tag_names must be a non-empty sequence of tag strings; got {tag_names!r}")
    parts = [_split_bio(name, i) for i, name in enumerate(tag_names)]
    if len(set(tag_names)) != len(tag_names):
        raise ValueError(f"tag_names must not repeat a tag; got {list(tag_names)}")
    begins = {typ for prefix, typ in parts if prefix == "B"}
    for prefix, typ in parts:
        if prefix == "I" and typ not in begins:
            raise ValueError(f"tag_names has 'I-{typ}' but no 'B-{typ}'")
    k = len(parts)
    allowed = np.ones((k, k), bool)
    start = np.ones(k, bool)
    for j, (prefix_j, type_j) in enumerate(parts):
        if prefix_j != "I":
            continue
        start[j] = False
        for i, (prefix_i, type_i) in enumerate(parts):
            allowed[i, j] = prefix_i in ("B", "I") and type_i == type_j
    return allowed, start, np.ones(k, bool)


@dataclasses.dataclass(frozen=True)
class CRFConfig:
    """:class:`CRF`'s architecture (see its Args)."""

    num_tags: int
    constraints: str | None = None
    tag_names: tuple[str, ...] | None = None


def _nested_tuple(array: np.ndarray) -> Any:
    return tuple(_nested_tuple(a) for a in array) if array.ndim > 1 else tuple(array.tolist())


def check_tags(tags: Any, shape: tuple[int, ...], num_tags: int, like: str) -> Array:
    """``tags`` as int32 ``shape``; ids outside ``[0, num_tags)`` raise where concrete."""
    tags = jnp.asarray(tags)
    if tags.shape != shape:
        raise ValueError(f"tags must be [B, T] = {shape} ({like}); got {tags.shape}")
    if not jnp.issubdtype(tags.dtype, jnp.integer):
        raise ValueError(f"tags must hold integer tag ids; got dtype {tags.dtype}")
    if _is_concrete(tags) and tags.size:
        values = np.asarray(tags)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_tags:
            raise ValueError(f"tags must lie in [0, {num_tags}) (num_tags); "
                             f"got ids from {low} to {high}")
    return tags.astype(jnp.int32)


class CRF(ConfiguredModel):
    """Linear-chain CRF: log-likelihood of tag paths (forward algorithm) and Viterbi decoding.

    The equations and the handling of masks are in the module docstring
    (:mod:`seqjax.models.crf`). Parameters, as in pytorch-crf, initialised uniform in
    ``[-0.1, 0.1]``: ``transitions [K, K]`` (``[i, j]`` scores tag ``i`` followed by tag ``j``),
    ``start_transitions [K]``, ``end_transitions [K]``.

    Args:
      num_tags: K, the number of tags.
      constraints: None, or ``"bio"`` to forbid the transitions BIO never makes (needs
        ``tag_names``; see :func:`bio_constraints`).
      tag_names: K tag strings naming the tag ids (recorded in the config; read by
        ``constraints``).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> crf = CRF(num_tags=4, rngs=nnx.Rngs(0))
      >>> crf.transitions.shape, crf.start_transitions.shape
      ((4, 4), (4,))
      >>> ll = crf.log_likelihood(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), int))
      >>> bool(jnp.all(ll < 0))
      True
    """

    config_class = CRFConfig

    def __init__(self, num_tags: int, *, constraints: str | None = None,
                 tag_names: Sequence[str] | None = None, rngs: nnx.Rngs):
        if isinstance(num_tags, bool) or not isinstance(num_tags, (int, np.integer)) \
                or num_tags < 1:
            raise ValueError(f"num_tags must be a positive int; got {num_tags!r}")
        num_tags = int(num_tags)
        if constraints is not None and constraints not in CONSTRAINTS:
            raise ValueError(f"constraints must be None or one of {CONSTRAINTS}; "
                             f"got {constraints!r}")
        if tag_names is not None:
            if isinstance(tag_names, str) or not isinstance(tag_names, Sequence):
                raise ValueError(f"tag_names must be a sequence of strings; got {tag_names!r}")
            tag_names = tuple(tag_names)
            if len(tag_names) != num_tags:
                raise ValueError(f"tag_names must name num_tags={num_tags} tags; "
                                 f"got {len(tag_names)}")
        if constraints == "bio":
            if tag_names is None:
                raise ValueError('constraints="bio" needs tag_names (e.g. info["tags"])')
            allowed = bio_constraints(tag_names)
        else:
            allowed = None
        self.config = CRFConfig(num_tags=num_tags, constraints=constraints, tag_names=tag_names)
        self.num_tags = num_tags
        # Plain tuples (static, hashable), never a Variable: the mask is fixed, not state.
        self._allowed = None if allowed is None else tuple(_nested_tuple(a) for a in allowed)

        def uniform(key, shape):
            return jax.random.uniform(key, shape, jnp.float32, -0.1, 0.1)

        self.transitions = nnx.Param(uniform(rngs.params(), (num_tags, num_tags)))
        self.start_transitions = nnx.Param(uniform(rngs.params(), (num_tags,)))
        self.end_transitions = nnx.Param(uniform(rngs.params(), (num_tags,)))

    # -- inputs ------------------------------------------------------------------------------

    def _check(self, emissions: Any, mask: Any) -> tuple[Array, Array]:
        emissions = jnp.asarray(emissions)
        if emissions.ndim != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(
                f"emissions must be [B, T, K] with K = num_tags = {self.num_tags}; "
                f"got shape {emissions.shape}"
            )
        if not jnp.issubdtype(emissions.dtype, jnp.floating):
            raise ValueError(f"emissions must be floating point; got dtype {emissions.dtype}")
        if mask is None:
            mask = jnp.ones(emissions.shape[:2], bool)
        mask = jnp.asarray(mask)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(
                f"mask must be [B, T] = {emissions.shape[:2]} (the emissions' first two axes); "
                f"got {mask.shape}"
            )
        if mask.dtype != jnp.bool_:
            raise ValueError(f"mask must be bool (True = real step); got dtype {mask.dtype}")
        return emissions, mask

    def _scores(self, dtype, forbidden: float) -> tuple[Array, Array, Array]:
        """The transition scores with the constraint mask added, in ``dtype``."""
        scores = (self.transitions[...], self.start_transitions[...], self.end_transitions[...])
        scores = tuple(jnp.asarray(s, dtype) for s in scores)
        if self._allowed is None:
            return scores
        return tuple(jnp.where(np.asarray(a), s, jnp.asarray(forbidden, dtype))
                     for a, s in zip(self._allowed, scores, strict=True))

    def _dtype(self, emissions: Array):
        # At least float32: the recursions sum T scores.
        return jnp.promote_types(jnp.promote_types(emissions.dtype, self.transitions[...].dtype),
                                 jnp.float32)

    # -- the two recursions ----------------------------------------------------------------------

    def log_partition(self, emissions: Array, mask: Array | None = None) -> Array:
        """``log Z`` per row by the forward algorithm (0 for a row with no valid step).

        Args:
          emissions: ``[B, T, K]``.
          mask: bool ``[B, T]`` (True = real step), or None for every step.

        Returns:
          ``[B]``.
        """
        emissions, mask = self._check(emissions, mask)
        dtype = self._dtype(emissions)
        trans, start, end = self._scores(dtype, _FORBIDDEN)
        e_tm = jnp.swapaxes(emissions.astype(dtype), 0, 1)  # [T, B, K]

        def step(state, inputs):
            alpha, started = state
            e_t, m_t = inputs
            first = (m_t & ~started)[:, None]
            after = (m_t & started)[:, None]
            alpha_next = jax.nn.logsumexp(alpha[:, :, None] + trans[None], axis=1) + e_t
            alpha = jnp.where(first, start[None] + e_t, jnp.where(after, alpha_next, alpha))
            return (alpha, started | m_t), None

        batch = emissions.shape[0]
        init = (jnp.zeros((batch, self.num_tags), dtype), jnp.zeros((batch,), bool))
        (alpha, started), _ = jax.lax.scan(step, init, (e_tm, mask.T))
        return jnp.where(started, jax.nn.logsumexp(alpha + end[None], axis=-1), 0.0)

    def score(self, emissions: Array, tags: Array, mask: Array | None = None) -> Array:
        """``s(y)``: the unnormalised score of the given tag paths (0 for an empty row).

        Args:
          emissions: ``[B, T, K]``.
          tags: int ``[B, T]`` in ``[0, K)`` (values at masked steps are ignored).
          mask: bool ``[B, T]``, or None for every step.

        Returns:
          ``[B]``.
        """
        emissions, mask = self._check(emissions, mask)
        tags = check_tags(tags, emissions.shape[:2], self.num_tags,
                          "the emissions' first two axes")
        dtype = self._dtype(emissions)
        trans, start, end = self._scores(dtype, _FORBIDDEN)
        time = emissions.shape[1]
        steps = jnp.broadcast_to(jnp.arange(time, dtype=jnp.int32), mask.shape)
        valid_at = jnp.where(mask, steps, -1)
        # The previous valid step of each step (-1: none), so masked steps anywhere are skipped.
        prev_at = jnp.concatenate(
            [jnp.full((mask.shape[0], 1), -1, jnp.int32),
             jax.lax.cummax(valid_at, axis=1)[:, :-1]], axis=1)
        prev_tags = jnp.take_along_axis(tags, jnp.maximum(prev_at, 0), axis=1)
        emitted = jnp.take_along_axis(emissions.astype(dtype), tags[..., None], axis=2)[..., 0]
        per_step = emitted + jnp.where(prev_at >= 0, trans[prev_tags, tags], start[tags])
        total = jnp.sum(jnp.where(mask, per_step, 0.0), axis=1)
        last_at = jnp.max(valid_at, axis=1)
        last_tags = jnp.take_along_axis(tags, jnp.maximum(last_at, 0)[:, None], axis=1)[:, 0]
        return jnp.where(last_at >= 0, total + end[last_tags], 0.0)

    def log_likelihood(self, emissions: Array, tags: Array, mask: Array | None = None) -> Array:
        """``log p(tags | emissions) = s(tags) - log Z`` per row (0 for a row with no valid step).

        Args:
          emissions: ``[B, T, K]``, the tagger's per-token scores.
          tags: int ``[B, T]`` in ``[0, K)``; ids outside raise where concrete (outside ``jit``).
          mask: bool ``[B, T]`` (True = real step; masked steps are skipped wherever they are),
            or None for every step.

        Returns:
          ``[B]`` (negate and average for a loss).
        """
        return self.score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def decode(self, emissions: Array, mask: Array | None = None) -> tuple[Array, Array]:
        """The most likely tag path of each row (Viterbi).

        Args:
          emissions: ``[B, T, K]``.
          mask: bool ``[B, T]``, or None for every step.

        Returns:
          ``(best, score)``: ``best`` int32 ``[B, T]``, the path at valid steps and 0 at masked
          ones; ``score`` ``[B]``, its ``s(y)`` (0 for a row with no valid step). Under
          ``constraints`` the path never takes a forbidden transition.
        """
        emissions, mask = self._check(emissions, mask)
        dtype = self._dtype(emissions)
        trans, start, end = self._scores(dtype, -jnp.inf)
        e_tm = jnp.swapaxes(emissions.astype(dtype), 0, 1)
        identity = jnp.arange(self.num_tags, dtype=jnp.int32)

        def forward(state, inputs):
            delta, started = state
            e_t, m_t = inputs
            first = (m_t & ~started)[:, None]
            after = (m_t & started)[:, None]
            candidates = delta[:, :, None] + trans[None]  # [B, from, to]
            delta_next = jnp.max(candidates, axis=1) + e_t
            delta = jnp.where(first, start[None] + e_t, jnp.where(after, delta_next, delta))
            # Back-pointers are the identity where the path does not move (masked steps, the
            # first valid step), so following them from the end skips those steps.
            pointers = jnp.where(after, jnp.argmax(candidates, axis=1).astype(jnp.int32),
                                 identity[None])
            return (delta, started | m_t), pointers

        batch = emissions.shape[0]
        init = (jnp.zeros((batch, self.num_tags), dtype), jnp.zeros((batch,), bool))
        (delta, started), pointers = jax.lax.scan(forward, init, (e_tm, mask.T))
        final = delta + end[None]
        last = jnp.argmax(final, axis=-1).astype(jnp.int32)
        score = jnp.where(started, jnp.max(final, axis=-1), 0.0)

        def backward(tag, pointers_t):
            return jnp.take_along_axis(pointers_t, tag[:, None], axis=1)[:, 0], tag

        _, best_tm = jax.lax.scan(backward, last, pointers, reverse=True)
        best = jnp.where(mask, best_tm.T, 0)
        return best, score
