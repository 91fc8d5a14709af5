"""An encoder-decoder (sequence to sequence) model, optionally with attention.

The encoder (stacked, optionally bidirectional) reads the source; its final carry, the context
vector, initialises a decoder of the same cell. Teacher forcing trains it: the decoder reads the
target shifted right (``tgt_in = <BOS> y_1 .. y_{L-1}``) and predicts ``tgt_out = y_1 .. y_L``
(ending in ``<EOS>``). ``generate`` decodes greedily or by beam search
(:mod:`seqjax.models.decoding`).

How the decoder uses the source, by ``attention`` (h_t: the top decoder layer's output, E y: the
embedded previous token, K: the encoder outputs, masked by the source mask):

* ``None``: the context vector only. ``h_t = RNN(E y_{t-1}, h_{t-1})``,
  ``logits_t = W_o h_t + b_o``.
* ``"bahdanau"`` (Bahdanau et al. 2015; context into the cell input): the previous state queries
  the source, ``c_t, a_t = attend(h_{t-1}, K)``, ``h_t = RNN([E y_{t-1}; c_t], h_{t-1})``,
  ``logits_t = W_o [h_t; c_t] + b_o``, with the additive score ``v^T tanh(W_q h + W_k k)``.
* ``"luong"`` (Luong et al. 2015, global attention with input feeding): the new state queries the
  source, ``h_t = RNN([E y_{t-1}; h~_{t-1}], h_{t-1})``, ``c_t, a_t = attend(h_t, K)``,
  ``h~_t = tanh(W_c [c_t; h_t])``, ``logits_t = W_o h~_t + b_o``, ``h~_0 = 0``; the score is
  ``h^T k`` (``"dot"``), or ``h^T W k`` (``"general"``) when the encoder is bidirectional and its
  outputs are twice as wide as the decoder.

With a bidirectional encoder each layer's ``(forward, backward)`` final carries become that
decoder layer's initial carry through a learned bridge: every carry field (``h``, and ``c`` for an
LSTM) is ``tanh(W [forward; backward] + b)``, so the decoder keeps ``units`` units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.train.losses import sequence_loss
from seqjax.types import Array, Carry

from . import decoding
from .attention import BahdanauAttention, make_attention
from .config import ConfiguredModel
from .language_model import _positive
from .layers import RecurrentStack, check_mask, check_tokens, make_cell

__all__ = ["Seq2Seq", "Seq2SeqConfig"]


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """:class:`Seq2Seq`'s architecture (its keyword arguments)."""

    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = 64
    units: int = 128
    cell: str = "lstm"
    num_layers: int = 1
    attention: str | None = None
    bidirectional_encoder: bool = False
    dropout: float = 0.0


class DecoderState(NamedTuple):
    """What the attentional decoder carries from step to step (every leaf ``[N, ...]``).

    Attributes:
      carry: the decoder's carries, one per layer.
      feed: Luong's attentional state ``h~_{t-1} [N, H]`` (input feeding); ``[N, 0]`` otherwise.
      keys: the encoder outputs ``[N, S, H_k]``.
      projected_keys: Bahdanau's ``W_k K [N, S, A]``, computed once per source; ``[N, 0]``
        otherwise.
      mask: the source mask ``[N, S]``.
    """

    carry: tuple[Carry, ...]
    feed: Array
    keys: Array
    projected_keys: Array
    mask: Array


def _dropout_key(stack: RecurrentStack) -> Array | None:
    """A key for the dropout between ``stack``'s layers inside a scan, or None when it is off."""
    dropout = stack.dropout
    if dropout is None or dropout.deterministic:
        return None
    return dropout.rngs()


class Seq2Seq(ConfiguredModel):
    """Encoder-decoder with optional attention (see the module docstring for the equations).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import seqjax as sj
      >>> s2s = sj.models.Seq2Seq(src_vocab_size=10, tgt_vocab_size=12, embed_dim=8, units=16,
      ...                         attention="luong", rngs=nnx.Rngs(0))
      >>> src = jnp.array([[4, 5, 6, 0], [7, 8, 9, 5]])
      >>> tgt_in = jnp.array([[1, 6, 5], [1, 5, 9]])    # <BOS> = 1
      >>> s2s(src, src > 0, tgt_in).shape
      (2, 3, 12)
      >>> out = s2s.generate(src, src > 0, bos_id=1, eos_id=2, max_len=5, beam_size=3)
      >>> out.tokens.shape, out.scores.shape, out.attention.shape
      ((2, 5), (2,), (2, 5, 4))

    Args:
      src_vocab_size: Vs, the source vocabulary.
      tgt_vocab_size: Vt, the target vocabulary (with ``<BOS>`` and ``<EOS>``).
      embed_dim: size of the source and target embeddings.
      units: hidden units of every encoder and decoder layer (per direction).
      cell: one of :data:`seqjax.models.CELL_NAMES`, for the encoder and the decoder.
      num_layers: stacked layers of the encoder and of the decoder.
      attention: None, ``"bahdanau"`` or ``"luong"``.
      bidirectional_encoder: a bidirectional encoder (bridged to the decoder).
      dropout: rate between stacked layers (in ``model.train()`` mode).
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    """

    config_class = Seq2SeqConfig

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_dim: int = 64,
                 units: int = 128, cell: str = "lstm", num_layers: int = 1,
                 attention: str | None = None, bidirectional_encoder: bool = False,
                 dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.src_vocab_size = src_vocab_size = _positive(src_vocab_size, "src_vocab_size")
        self.tgt_vocab_size = tgt_vocab_size = _positive(tgt_vocab_size, "tgt_vocab_size")
        embed_dim = _positive(embed_dim, "embed_dim")
        self.units = units = _positive(units, "units")
        num_layers = _positive(num_layers, "num_layers")
        layer_units = (units,) * num_layers
        fields = len(make_cell(cell, units).initial_carry((1,)))
        if attention is not None and not isinstance(attention, str):
            raise ValueError(f"attention must be None, 'bahdanau' or 'luong'; got {attention!r}")
        self.config = Seq2SeqConfig(src_vocab_size, tgt_vocab_size, embed_dim, units, cell,
                                    num_layers, attention, bool(bidirectional_encoder),
                                    float(dropout))

        self.src_embed = nnx.Embed(src_vocab_size, embed_dim, rngs=rngs)
        self.encoder = RecurrentStack(cell, embed_dim, layer_units,
                                      bidirectional=bidirectional_encoder, dropout=dropout,
                                      rngs=rngs)
        key_dim = self.encoder.out_features
        # One Dense per decoder layer and carry field: tanh(W [forward; backward] + b).
        self.bridge = nnx.List([nnx.Linear(2 * units, units, rngs=rngs)
                                for _ in range(len(layer_units) * fields)]
                               ) if bidirectional_encoder else None
        self.attention = (None if attention is None
                          else make_attention(attention, units, key_dim, rngs=rngs))
        self.attention_kind = attention
        decoder_in = embed_dim + {None: 0, "bahdanau": key_dim, "luong": units}[attention]
        self.tgt_embed = nnx.Embed(tgt_vocab_size, embed_dim, rngs=rngs)
        self.decoder = RecurrentStack(cell, decoder_in, layer_units, dropout=dropout, rngs=rngs)
        self.combine = (nnx.Linear(key_dim + units, units, use_bias=False, rngs=rngs)
                        if attention == "luong" else None)
        head_in = units + (key_dim if attention == "bahdanau" else 0)
        self.head = nnx.Linear(head_in, tgt_vocab_size, rngs=rngs)

    # ------------------------------------------------------------------ encoder and one step

    def _bridge(self, carries: tuple) -> tuple[Carry, ...]:
        if self.bridge is None:
            return carries
        out = []
        for index, (forward, backward) in enumerate(carries):
            fields = len(forward)
            out.append(type(forward)(*[
                jnp.tanh(self.bridge[index * fields + f](jnp.concatenate(
                    [forward[f], backward[f]], axis=-1)))
                for f in range(fields)
            ]))
        return tuple(out)

    def _encode(self, src: Array, src_mask: Array | None) -> tuple[Carry, ...] | DecoderState:
        """The decoder's initial state: its carries, and with attention what it attends over."""
        src = check_tokens(src, self.src_vocab_size, "src")
        src_mask = check_mask(src_mask, src, "src_mask")
        carries, outputs = self.encoder(self.src_embed(src), src_mask)
        carry = self._bridge(carries)
        if self.attention is None:
            return carry
        n = src.shape[0]
        feed = jnp.zeros((n, self.units if self.combine is not None else 0), outputs.dtype)
        projected = (self.attention.project_keys(outputs)
                     if isinstance(self.attention, BahdanauAttention)
                     else jnp.zeros((n, 0), outputs.dtype))
        return DecoderState(carry, feed, outputs, projected, src_mask)

    def _advance(self, x_t: Array, state: Any, key: Array | None = None):
        """One decoder step on the embedded previous token: ``(logits, state, weights)``."""
        if self.attention is None:
            carry, h = self.decoder.step(x_t, state, rngs=key)
            return self.head(h), carry, None
        carry, feed = state.carry, state.feed
        if self.combine is None:  # Bahdanau: the previous state asks, the context feeds the cell
            context, weights = self.attention(carry[-1].h, state.keys, state.mask,
                                              projected_keys=state.projected_keys)
            carry, h = self.decoder.step(jnp.concatenate([x_t, context], -1), carry, rngs=key)
            logits = self.head(jnp.concatenate([h, context], -1))
        else:  # Luong: the new state asks; h~ goes to the output and into the next input
            carry, h = self.decoder.step(jnp.concatenate([x_t, feed], -1), carry, rngs=key)
            context, weights = self.attention(h, state.keys, state.mask)
            feed = jnp.tanh(self.combine(jnp.concatenate([context, h], -1)))
            logits = self.head(feed)
        return logits, state._replace(carry=carry, feed=feed), weights

    def _decode(self, state: Any, tgt_in: Array, tgt_mask: Array | None):
        """Teacher forcing from the initial ``state``: ``(logits [B, L, Vt], weights or None)``."""
        tgt_in = check_tokens(tgt_in, self.tgt_vocab_size, "tgt_in")
        tgt_mask = None if tgt_mask is None else check_mask(tgt_mask, tgt_in, "tgt_mask")
        batch = jax.tree.leaves(state)[0].shape[0]
        if tgt_in.shape[0] != batch:
            raise ValueError(f"tgt_in must have the source's batch size {batch}; "
                             f"got shape {tgt_in.shape}")
        xs = self.tgt_embed(tgt_in)
        if self.attention is None:
            _, ys = self.decoder(xs, tgt_mask, state)
            return self.head(ys), None
        mask = jnp.ones(tgt_in.shape, bool) if tgt_mask is None else tgt_mask
        key = _dropout_key(self.decoder)

        def body(state, inputs):
            t, x_t, m_t = inputs
            step_key = None if key is None else jax.random.fold_in(key, t)
            logits, new, weights = self._advance(x_t, state, step_key)
            # A padded target step leaves the state as it was (as seqjax.rnn does).
            state = jax.tree.map(
                lambda a, b: jnp.where(m_t.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                new, state)
            return state, (logits, jnp.where(m_t[:, None], weights, 0.0))

        steps = (jnp.arange(tgt_in.shape[1]), jnp.swapaxes(xs, 0, 1), jnp.swapaxes(mask, 0, 1))
        _, (logits, weights) = jax.lax.scan(body, state, steps)
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)

    # ------------------------------------------------------------------ public API

    def __call__(self, src: Array, src_mask: Array | None, tgt_in: Array,
                 tgt_mask: Array | None = None, *, return_attention: bool = False):
        """Teacher forcing: next-token logits for every target step.

        Args:
          src: int ``[B, S]`` source ids.
          src_mask: bool ``[B, S]`` (True = real token; pre- or post-padding), or None.
          tgt_in: int ``[B, L]``: ``<BOS>`` then the target without its last token.
          tgt_mask: bool ``[B, L]``, or None; padded steps leave the decoder state unchanged.
          return_attention: also return the attention weights ``[B, L, S]`` (None without
            attention; 0 on masked source positions and padded target steps).

        Returns:
          ``logits [B, L, Vt]``, or ``(logits, weights)`` with ``return_attention``.
        """
        logits, weights = self._decode(self._encode(src, src_mask), tgt_in, tgt_mask)
        return (logits, weights) if return_attention else logits

    def loss(self, src: Array, src_mask: Array | None, tgt_in: Array, tgt_out: Array,
             tgt_mask: Array | None = None) -> Array:
        """Mean negative log-likelihood per real target token (teacher forcing).

        Args:
          src, src_mask, tgt_in, tgt_mask: as in :meth:`__call__`.
          tgt_out: int ``[B, L]``: the targets (``tgt_in`` shifted left, ending in ``<EOS>``).

        Returns:
          Scalar loss (nats per token).
        """
        logits = self(src, src_mask, tgt_in, tgt_mask)
        tgt_out = check_tokens(tgt_out, self.tgt_vocab_size, "tgt_out")
        if tgt_out.shape != logits.shape[:2]:
            raise ValueError(f"tgt_out must have tgt_in's shape {logits.shape[:2]}; "
                             f"got {tgt_out.shape}")
        return sequence_loss(logits, tgt_out, tgt_mask)

    def start_decoding(self, src: Array, src_mask: Array | None = None
                       ) -> tuple[Callable[[Array, Any], tuple[Array, Any]], Any]:
        """``(step, state)`` for :func:`seqjax.models.sample` / :func:`~seqjax.models.beam_search`.

        ``step(tokens [N], state) -> (logits [N, Vt], state)`` runs one decoder step (dropout
        off); ``state`` is the decoder's initial state for ``src`` (start from ``<BOS>``). Use it
        to sample translations with a temperature, e.g.
        ``sj.models.sample(step, state, jnp.full(B, bos_id), key=key, max_len=20)``.
        """
        model = nnx.view(self, deterministic=True, raise_if_not_found=False)
        return model._step, model._encode(src, src_mask)

    def _step(self, tokens: Array, state: Any) -> tuple[Array, Any]:
        logits, state, _ = self._advance(self.tgt_embed(tokens), state)
        return logits, state

    def generate(self, src: Array, src_mask: Array | None = None, bos_id: int = 1,
                 eos_id: int | None = 2, max_len: int = 50, beam_size: int = 1,
                 length_penalty: float = 0.0) -> decoding.Decoded:
        """Decodes a target for every source: greedy (``beam_size=1``) or beam search.

        One ``lax.while_loop`` (jit it as ``nnx.jit(lambda m, s, k: m.generate(s, k, ...))``).
        With attention, the weights are those of the decoder reading the generated tokens.

        Args:
          src: int ``[B, S]``.
          src_mask: bool ``[B, S]``, or None.
          bos_id: the first decoder input.
          eos_id: ends a hypothesis (emitted; 0 afterwards); None decodes ``max_len`` tokens.
          max_len: L, tokens generated (static).
          beam_size: 1 for greedy decoding, else the beam width (static).
          length_penalty: GNMT's alpha for beam search (see
            :func:`seqjax.models.beam_search`); 0 disables it.

        Returns:
          :class:`seqjax.models.Decoded`: ``tokens [B, L]`` (0 after ``eos_id``), ``scores [B]``
          (sum of log-probs, before the length penalty), ``attention [B, L, S]`` or None.
        """
        beam_size = decoding._check_int(beam_size, "beam_size")
        bos_id = decoding._check_id(bos_id, "bos_id", self.tgt_vocab_size)
        model = nnx.view(self, deterministic=True, raise_if_not_found=False)
        state = model._encode(src, src_mask)
        start = jnp.full((jnp.shape(src)[0],), bos_id, jnp.int32)
        if beam_size == 1:
            out = decoding.sample(model._step, state, start, key=jax.random.key(0),
                                  max_len=max_len, temperature=0.0, eos_id=eos_id)
        else:
            out = decoding.beam_search(model._step, state, start, beam_size=beam_size,
                                       max_len=max_len, eos_id=eos_id,
                                       length_penalty=length_penalty)
        if self.attention is None:
            return out
        tokens = out.tokens
        tgt_in = jnp.concatenate([start[:, None], tokens[:, :-1]], axis=1)
        tgt_mask = None
        if eos_id is not None:
            ends = (tokens == eos_id).astype(jnp.int32)
            tgt_mask = jnp.cumsum(ends, axis=1) - ends == 0  # up to and including <EOS>
        _, weights = model._decode(state, tgt_in, tgt_mask)
        return out._replace(attention=weights)
