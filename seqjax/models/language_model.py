"""A recurrent language model, word or character level: Embedding -> stacked RNN -> Dense(V).

.. math::

    h_t = \\mathrm{RNN}(E x_t, h_{t-1}), \\qquad p(x_{t+1} \\mid x_{\\le t}) =
    \\mathrm{softmax}(W h_t + b)

Training predicts each token from the ones before it (targets shifted by one), the mean negative
log-likelihood per predicted token; with ``sj.train.fit``::

    def loss_fn(model, batch, key):
        tokens, mask = batch                      # or inputs, targets from data.lm_windows:
        return model.loss(tokens, mask)           #   model.loss(inputs, targets=targets)

The carry streams: ``lm(chunk_2, carry=lm(chunk_1)[1])`` equals one call over both chunks, so a
long text is trained by truncated backpropagation through time over consecutive chunks (each row
of the batch continuing its own stream), the carry handed on with ``jax.lax.stop_gradient``::

    loss, carry = model.loss(inputs, targets=targets, carry=carry, return_carry=True)

``<EOS>`` and ``<UNK>`` come from the tokenizers (:class:`seqjax.data.CharTokenizer`,
:class:`seqjax.data.WordTokenizer`): ``lm.sample(..., eos_id=tok.eos_id, banned_ids=(tok.unk_id,))``
stops at the end of a sequence and never samples the unknown token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.train.losses import sequence_loss
from seqjax.types import Array, Carry, PRNGKey

from . import decoding
from .config import ConfiguredModel
from .layers import RecurrentStack, check_mask, check_tokens

__all__ = ["LanguageModel", "LanguageModelConfig"]


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """:class:`LanguageModel`'s architecture (its keyword arguments)."""

    vocab_size: int
    embed_dim: int = 64
    units: int = 256
    cell: str = "lstm"
    num_layers: int = 2
    dropout: float = 0.0


class LanguageModel(ConfiguredModel):
    """Embedding -> ``num_layers`` unidirectional recurrent layers -> Dense(V) at every step.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqjax as sj
      >>> lm = sj.models.LanguageModel(vocab_size=20, embed_dim=8, units=16, num_layers=1,
      ...                              rngs=nnx.Rngs(0))
      >>> tokens = jnp.array([[3, 4, 5, 6], [7, 8, 9, 0]])
      >>> mask = tokens > 0
      >>> logits, carry = lm(tokens, mask)
      >>> logits.shape, lm.log_prob(tokens, mask).shape
      ((2, 4, 20), (2,))
      >>> lm.sample(jax.random.key(0), tokens[:, :2], max_len=5, banned_ids=(0,)).shape
      (2, 5)

    Args:
      vocab_size: V (ids ``0 .. V-1``).
      embed_dim: size of the token embeddings.
      units: hidden units of every recurrent layer.
      cell: one of :data:`seqjax.models.CELL_NAMES`.
      num_layers: stacked recurrent layers.
      dropout: rate between the recurrent layers (in ``model.train()`` mode).
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    """

    config_class = LanguageModelConfig

    def __init__(self, vocab_size: int, embed_dim: int = 64, units: int = 256, cell: str = "lstm",
                 num_layers: int = 2, dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size = _positive(vocab_size, "vocab_size")
        embed_dim = _positive(embed_dim, "embed_dim")
        units = _positive(units, "units")
        num_layers = _positive(num_layers, "num_layers")
        self.config = LanguageModelConfig(vocab_size, embed_dim, units, str(cell), num_layers,
                                          float(dropout))
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.rnn = RecurrentStack(cell, embed_dim, (units,) * num_layers, dropout=dropout,
                                  rngs=rngs)
        self.head = nnx.Linear(units, vocab_size, rngs=rngs)

    def __call__(self, tokens: Array, mask: Array | None = None,
                 carry: Sequence[Carry] | None = None) -> tuple[Array, tuple[Carry, ...]]:
        """Next-token logits at every step.

        Args:
          tokens: int ``[B, T]``.
          mask: bool ``[B, T]`` (True = real token), or None for all; masked steps leave the
            carry unchanged.
          carry: the carry returned for the previous chunk (one per layer), or None for zeros.

        Returns:
          ``(logits [B, T, V], carry)``: ``logits[:, t]`` predicts ``tokens[:, t + 1]``.
        """
        tokens = check_tokens(tokens, self.vocab_size)
        mask = None if mask is None else check_mask(mask, tokens)
        carry, ys = self.rnn(self.embed(tokens), mask, carry)
        return self.head(ys), carry

    def loss(self, tokens: Array, mask: Array | None = None, *, targets: Array | None = None,
             carry: Sequence[Carry] | None = None, return_carry: bool = False):
        """Mean negative log-likelihood per predicted token (nats).

        Without ``targets``, each ``tokens[:, t]`` (t >= 1) is predicted from ``tokens[:, :t]``
        and counts where it and the token before it are real (pre- or post-padding). With
        ``targets`` (e.g. :func:`seqjax.data.lm_windows`' shifted windows), ``targets[:, t]`` is
        predicted from ``tokens[:, :t+1]`` and counts where ``mask[:, t]`` is real.

        Args:
          tokens: int ``[B, T]``.
          mask: bool ``[B, T]``, or None for all real.
          targets: int ``[B, T]``, or None to shift ``tokens``.
          carry: the previous chunk's carry (truncated BPTT), or None for zeros.
          return_carry: also return the carry after this chunk.

        Returns:
          The scalar loss, or ``(loss, carry)`` with ``return_carry``.
        """
        logits, carry = self(tokens, mask, carry)
        if targets is None:
            valid = _shifted_mask(mask, tokens.shape)
            loss = sequence_loss(logits[:, :-1], jnp.asarray(tokens)[:, 1:], valid)
        else:
            targets = check_tokens(targets, self.vocab_size, "targets")
            if targets.shape != logits.shape[:2]:
                raise ValueError(f"targets must have the tokens' shape {logits.shape[:2]}; "
                                 f"got {targets.shape}")
            loss = sequence_loss(logits, targets, mask)
        return (loss, carry) if return_carry else loss

    def log_prob(self, tokens: Array, mask: Array | None = None) -> Array:
        """``sum_{t >= 1} log p(x_t | x_<t)`` of each sequence.

        The first real token is given, not predicted (as in :meth:`loss` without ``targets``).

        Args:
          tokens: int ``[B, T]``.
          mask: bool ``[B, T]`` (pre- or post-padding), or None for all real.

        Returns:
          float32 ``[B]``.
        """
        logits, _ = self(tokens, mask)
        log_probs = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
        picked = jnp.take_along_axis(log_probs, jnp.asarray(tokens)[:, 1:, None], axis=-1)[..., 0]
        valid = _shifted_mask(mask, logits.shape[:2])
        return jnp.sum(jnp.where(valid, picked, 0.0), axis=-1)

    def sample(self, key: PRNGKey, prompt: Array, max_len: int = 100,
               temperature: float | Array = 1.0, top_k: int | None = None,
               eos_id: int | None = None, banned_ids: Sequence[int] = (), *,
               prompt_mask: Array | None = None) -> Array:
        """Samples a continuation of ``prompt`` (one ``lax.while_loop``; see
        :func:`seqjax.models.sample`).

        The prompt runs through the stack (dropout off) to build the carry; its last token is the
        first input of the loop.

        Args:
          key: PRNG key; the same key gives the same sample.
          prompt: int ``[B, P]``, P >= 1 (e.g. ``<START>`` alone, or a few words).
          max_len: tokens generated (static).
          temperature: tau >= 0; 0 is greedy.
          top_k: sample among the k most likely tokens only (static), or None.
          eos_id: stop a row at this id (emitted; 0 afterwards), or None.
          banned_ids: ids never sampled, e.g. ``(tokenizer.unk_id,)`` (static).
          prompt_mask: bool ``[B, P]`` for prompts of different lengths, pre-padded (the last
            column real), or None.

        Returns:
          int32 ``[B, max_len]``: the ids after the prompt.
        """
        prompt = check_tokens(prompt, self.vocab_size, "prompt")
        if prompt.shape[1] < 1:
            raise ValueError(f"prompt must hold at least one token per row; got {prompt.shape}")
        if prompt_mask is not None:
            prompt_mask = check_mask(prompt_mask, prompt, "prompt_mask")
            if not isinstance(prompt_mask, jax.core.Tracer) and not bool(prompt_mask[:, -1].all()):
                raise ValueError("prompt_mask: prompts must be pre-padded (the last column real)")
        model = nnx.view(self, deterministic=True, raise_if_not_found=False)
        carry = model.rnn.initial_carry(prompt.shape[0])
        if prompt.shape[1] > 1:
            context_mask = None if prompt_mask is None else prompt_mask[:, :-1]
            carry, _ = model.rnn(model.embed(prompt[:, :-1]), context_mask, carry)

        def step(tokens, carry):
            carry, y = model.rnn.step(model.embed(tokens), carry)
            return model.head(y), carry

        return decoding.sample(step, carry, prompt[:, -1], key=key, max_len=max_len,
                               temperature=temperature, top_k=top_k, eos_id=eos_id,
                               banned_ids=tuple(banned_ids)).tokens


def _shifted_mask(mask: Array | None, shape: tuple[int, int]) -> Array:
    """Which next-token predictions count: ``[B, T-1]``, a real token after a real token."""
    if mask is None:
        return jnp.ones((shape[0], shape[1] - 1), bool)
    mask = jnp.asarray(mask)
    return mask[:, 1:] & mask[:, :-1]
