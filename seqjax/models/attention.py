"""Attention over a source sequence: Bahdanau (additive) and Luong (multiplicative).

Both map a query ``q [B, H]`` (a decoder state) and keys ``k [B, S, H_k]`` (the encoder outputs;
they are also the values) with a source ``mask [B, S]`` to a context vector and the weights

.. math::

    e_s = \\mathrm{score}(q, k_s), \\qquad
    a_s = \\frac{m_s \\exp(e_s)}{\\sum_{s'} m_{s'} \\exp(e_{s'})}, \\qquad
    c = \\sum_s a_s k_s,

so the weights sum to 1 over the valid source positions and are exactly 0 on masked ones (a row
without any valid position gets all-zero weights and a zero context).

A decoder calls :meth:`~BahdanauAttention.project_keys` once per source sequence and passes its
result to every step, so the keys' projection is not recomputed per decoder step.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from seqjax.models.attention import BahdanauAttention
  >>> attn = BahdanauAttention(query_dim=4, key_dim=6, rngs=nnx.Rngs(0))
  >>> keys = jnp.ones((2, 5, 6))
  >>> mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  >>> context, weights = attn(jnp.ones((2, 4)), keys, mask)
  >>> context.shape, weights.shape, weights[0, 3:].tolist()
  ((2, 6), (2, 5), [0.0, 0.0])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.types import Array

__all__ = ["ATTENTION_NAMES", "BahdanauAttention", "LuongAttention", "make_attention"]

ATTENTION_NAMES = ("bahdanau", "luong")


def _check(query: Array, keys: Array, mask: Array | None, query_dim: int, key_dim: int):
    if query.ndim != 2 or query.shape[-1] != query_dim:
        raise ValueError(f"query must be [B, {query_dim}]; got shape {query.shape}")
    if keys.ndim != 3 or keys.shape[-1] != key_dim or keys.shape[0] != query.shape[0]:
        raise ValueError(
            f"keys must be [B={query.shape[0]}, S, {key_dim}]; got shape {keys.shape}")
    if mask is None:
        return jnp.ones(keys.shape[:2], bool)
    mask = jnp.asarray(mask)
    if mask.shape != keys.shape[:2] or mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be bool [B, S] = {keys.shape[:2]}; got {mask.dtype} "
                         f"{mask.shape}")
    return mask


def masked_softmax(scores: Array, mask: Array) -> Array:
    """Softmax over the last axis restricted to ``mask``: exactly 0 where masked.

    Args:
      scores: ``[B, S]``.
      mask: bool ``[B, S]``.

    Returns:
      ``[B, S]`` float32 weights summing to 1 over each row's valid positions (0 if none).
    """
    scores = jnp.where(mask, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
    return jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)


def _context(weights: Array, keys: Array) -> Array:
    return jnp.einsum("bs,bsk->bk", weights.astype(keys.dtype), keys)


class BahdanauAttention(nnx.Module):
    """Additive attention (Bahdanau et al. 2015).

    .. math::

        \\mathrm{score}(q, k_s) = v^\\top \\tanh(W_q q + W_k k_s + b)

    with ``W_q [H, A]``, ``W_k [H_k, A]`` (no bias), ``b [A]`` in ``W_q``'s Dense and ``v [A]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> attn = BahdanauAttention(4, 6, attention_dim=8, rngs=nnx.Rngs(0))
      >>> keys = jnp.ones((2, 5, 6))
      >>> projected = attn.project_keys(keys)         # once per source sequence
      >>> context, weights = attn(jnp.ones((2, 4)), keys, None, projected_keys=projected)
      >>> projected.shape, weights.sum(-1).round(5).tolist()
      ((2, 5, 8), [1.0, 1.0])

    Args:
      query_dim: H, the query's size.
      key_dim: H_k, the keys' size.
      attention_dim: A (default ``query_dim``).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int | None = None, *,
                 rngs: nnx.Rngs):
        attention_dim = query_dim if attention_dim is None else attention_dim
        self.query_dim, self.key_dim, self.attention_dim = query_dim, key_dim, attention_dim
        self.query_proj = nnx.Linear(query_dim, attention_dim, rngs=rngs)
        self.key_proj = nnx.Linear(key_dim, attention_dim, use_bias=False, rngs=rngs)
        self.v = nnx.Linear(attention_dim, 1, use_bias=False, rngs=rngs)

    def project_keys(self, keys: Array) -> Array:
        """``W_k k_s`` for every source position: ``[B, S, H_k] -> [B, S, A]``."""
        return self.key_proj(keys)

    def __call__(self, query: Array, keys: Array, mask: Array | None = None, *,
                 projected_keys: Array | None = None) -> tuple[Array, Array]:
        """Attends over ``keys``.

        Args:
          query: ``[B, H]``.
          keys: ``[B, S, H_k]`` (also the values).
          mask: bool ``[B, S]`` (True = real source position), or None for all.
          projected_keys: :meth:`project_keys` of ``keys`` (computed here when None).

        Returns:
          ``(context [B, H_k], weights [B, S])``.
        """
        mask = _check(query, keys, mask, self.query_dim, self.key_dim)
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        hidden = jnp.tanh(projected_keys + self.query_proj(query)[:, None, :])
        weights = masked_softmax(self.v(hidden)[..., 0], mask)
        return _context(weights, keys), weights


class LuongAttention(nnx.Module):
    """Multiplicative attention (Luong et al. 2015), ``"dot"`` or ``"general"``.

    .. math::

        \\mathrm{score}_{dot}(q, k_s) = q^\\top k_s, \\qquad
        \\mathrm{score}_{general}(q, k_s) = q^\\top W k_s = (W^\\top q)^\\top k_s

    ``"dot"`` has no parameters and needs ``H = H_k``; ``"general"`` has ``W [H, H_k]`` and is
    computed by projecting the query once per step, which is cheaper than projecting every key.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> attn = LuongAttention(4, 4, rngs=nnx.Rngs(0))
      >>> keys = jnp.eye(4)[None]                     # [1, S=4, H_k=4]
      >>> context, weights = attn(jnp.array([[0.0, 9.0, 0.0, 0.0]]), keys, None)
      >>> int(weights.argmax()), weights.shape
      (1, (1, 4))

    Args:
      query_dim: H.
      key_dim: H_k.
      score: ``"dot"`` or ``"general"``.
      rngs: ``nnx.Rngs`` with a ``params`` stream (used by ``"general"``).
    """

    def __init__(self, query_dim: int, key_dim: int, score: str = "dot", *, rngs: nnx.Rngs):
        if score not in ("dot", "general"):
            raise ValueError(f"score must be 'dot' or 'general'; got {score!r}")
        if score == "dot" and query_dim != key_dim:
            raise ValueError(
                f"score='dot' needs query_dim == key_dim; got {query_dim} and {key_dim} "
                "(use score='general')")
        self.query_dim, self.key_dim, self.score = query_dim, key_dim, score
        self.query_proj = (nnx.Linear(query_dim, key_dim, use_bias=False, rngs=rngs)
                           if score == "general" else None)

    def project_keys(self, keys: Array) -> Array:
        """The keys unchanged (``"general"`` projects the query instead); for a uniform API."""
        return keys

    def __call__(self, query: Array, keys: Array, mask: Array | None = None, *,
                 projected_keys: Array | None = None) -> tuple[Array, Array]:
        """Attends over ``keys``.

        Args:
          query: ``[B, H]``.
          keys: ``[B, S, H_k]`` (also the values).
          mask: bool ``[B, S]`` (True = real source position), or None for all.
          projected_keys: ignored (:meth:`project_keys` is the identity).

        Returns:
          ``(context [B, H_k], weights [B, S])``.
        """
        del projected_keys
        mask = _check(query, keys, mask, self.query_dim, self.key_dim)
        if self.query_proj is not None:
            query = self.query_proj(query)
        weights = masked_softmax(jnp.einsum("bk,bsk->bs", query, keys), mask)
        return _context(weights, keys), weights


def make_attention(name: str, query_dim: int, key_dim: int, *, rngs: nnx.Rngs,
                   argname: str = "attention") -> BahdanauAttention | LuongAttention:
    """The attention called ``name`` (one of :data:`ATTENTION_NAMES`).

    ``"luong"`` uses the ``"dot"`` score when ``query_dim == key_dim`` and ``"general"`` otherwise
    (e.g. over a bidirectional encoder's outputs).
    """
    if name == "bahdanau":
        return BahdanauAttention(query_dim, key_dim, rngs=rngs)
    if name == "luong":
        return LuongAttention(query_dim, key_dim,
                              "dot" if query_dim == key_dim else "general", rngs=rngs)
    raise ValueError(f"{argname} must be one of {ATTENTION_NAMES} or None; got {name!r}")
