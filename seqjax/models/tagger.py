"""A sequence tagger: one tag per token (named entities, parts of speech), the BiLSTM-CRF.

Embedding (+ optional character-level word features) -> stacked BiLSTM/BiGRU -> per-token tag
scores (a Dense layer to K) -> a softmax per token, or a linear-chain :class:`~seqjax.models.CRF`
over the whole sentence: the BiLSTM-CRF of Lample et al. 2016 (arXiv:1603.01360). The character
features follow the same paper: per word, a BiLSTM reads the word's characters, and its forward
state after the last character and backward state after the first are concatenated to the word's
embedding, so a word outside the vocabulary still has a spelling.

Padding may be ``pre`` or ``post``: the recurrent layers and the CRF skip masked steps wherever
they are, so a sentence gets the same tags at its valid steps however it is padded.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> tagger = sj.models.Tagger(vocab_size=50, num_tags=5, embed_dim=8, units=6,
  ...                           rngs=nnx.Rngs(0))
  >>> tokens = jnp.array([[4, 9, 2, 0], [7, 3, 0, 0]])
  >>> mask, tags = tokens != 0, jnp.array([[1, 2, 0, 0], [0, 3, 0, 0]])
  >>> tagger(tokens, mask).shape                     # emissions [B, T, K]
  (2, 4, 5)
  >>> tagger.loss(tokens, mask, tags).shape          # mean negative log-likelihood
  ()
  >>> tagger.predict(tokens, mask)[:, 2:].tolist()   # 0 where masked
  [[0, 0], [0, 0]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.data.padding import pad_sequences
from seqjax.train.losses import example_mask, masked_mean, sequence_loss
from seqjax.types import Array

from .config import ConfiguredModel
from .crf import CRF, check_tags
from .layers import RecurrentStack, _is_concrete, as_units, check_mask, check_tokens, make_cell

__all__ = ["Tagger", "TaggerConfig", "word_chars"]


@dataclasses.dataclass(frozen=True)
class TaggerConfig:
    """:class:`Tagger`'s architecture (see its Args)."""

    vocab_size: int
    num_tags: int
    embed_dim: int = 100
    units: int | tuple[int, ...] = 100
    cell: str = "lstm"
    bidirectional: bool = True
    dropout: float = 0.0
    crf: bool = True
    constraints: str | None = None
    tag_names: tuple[str, ...] | None = None
    char_vocab_size: int | None = None
    char_embed_dim: int = 25
    char_units: int = 25


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


class Tagger(ConfiguredModel):
    """Embedding (+ char BiLSTM) -> stacked (Bi)RNN -> Dense(K) -> softmax or CRF.

    Args:
      vocab_size: V, the number of word ids (id 0 is padding by convention).
      num_tags: K, the number of tags.
      embed_dim: size of the word embeddings.
      units: hidden units of the recurrent layer, or a tuple for stacked layers (first to last).
      cell: the recurrent cell, a name from :data:`seqjax.models.CELL_NAMES` (``"lstm"``,
        ``"gru"``, ...).
      bidirectional: every recurrent layer reads both directions (outputs concatenated).
      dropout: rate applied (in ``model.train()`` mode) to the word representations, between
        recurrent layers and to the last layer's outputs.
      crf: score whole tag paths with a linear-chain CRF (True), or each token with a softmax.
      constraints: with ``crf``, None or ``"bio"`` (forbid ``I-X`` after ``O``/another type and
        at the start; needs ``tag_names``), see :class:`~seqjax.models.CRF`.
      tag_names: K tag strings naming the tag ids (e.g. ``info["tags"]`` of the NER loaders).
      char_vocab_size: size of the character vocabulary (id 0 = padding) to add character
        features; None for none.
      char_embed_dim: size of the character embeddings.
      char_units: hidden units of each direction of the character BiLSTM (the word's features
        grow by ``2 * char_units``).
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).

    Shapes: B batch, T words, C characters per word, K tags. ``tokens`` int ``[B, T]``, ``mask``
    bool ``[B, T]`` (True = real word; None: every word is real), ``chars`` int ``[B, T, C]``
    (see :func:`word_chars`), ``tags`` int ``[B, T]`` in ``[0, K)``.
    """

    config_class = TaggerConfig

    def __init__(self, vocab_size: int, num_tags: int, *, embed_dim: int = 100,
                 units: int | Sequence[int] = 100, cell: str = "lstm",
                 bidirectional: bool = True, dropout: float = 0.0, crf: bool = True,
                 constraints: str | None = None, tag_names: Sequence[str] | None = None,
                 char_vocab_size: int | None = None, char_embed_dim: int = 25,
                 char_units: int = 25, rngs: nnx.Rngs):
        vocab_size = _positive(vocab_size, "vocab_size")
        num_tags = _positive(num_tags, "num_tags")
        embed_dim = _positive(embed_dim, "embed_dim")
        layer_units = as_units(units)
        make_cell(cell, 1)  # an unknown name raises here, naming `cell`
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
        if constraints is not None and not crf:
            raise ValueError("constraints need crf=True (a softmax tagger scores tokens alone)")
        if tag_names is not None:
            if isinstance(tag_names, str) or not isinstance(tag_names, Sequence):
                raise ValueError(f"tag_names must be a sequence of strings; got {tag_names!r}")
            tag_names = tuple(tag_names)
            if len(tag_names) != num_tags:
                raise ValueError(f"tag_names must name num_tags={num_tags} tags; "
                                 f"got {len(tag_names)}")
        char_embed_dim = _positive(char_embed_dim, "char_embed_dim")
        char_units = _positive(char_units, "char_units")
        if char_vocab_size is not None:
            char_vocab_size = _positive(char_vocab_size, "char_vocab_size")
        self.config = TaggerConfig(
            vocab_size=vocab_size, num_tags=num_tags, embed_dim=embed_dim,
            units=layer_units[0] if isinstance(units, (int, np.integer)) else layer_units,
            cell=cell, bidirectional=bool(bidirectional), dropout=float(dropout), crf=bool(crf),
            constraints=constraints, tag_names=tag_names, char_vocab_size=char_vocab_size,
            char_embed_dim=char_embed_dim, char_units=char_units,
        )
        self.vocab_size, self.num_tags = vocab_size, num_tags
        self.char_vocab_size = char_vocab_size
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        features = embed_dim
        if char_vocab_size is not None:
            self.char_embed = nnx.Embed(char_vocab_size, char_embed_dim, rngs=rngs)
            self.char_encoder = RecurrentStack("lstm", char_embed_dim, (char_units,),
                                               bidirectional=True, rngs=rngs)
            features += self.char_encoder.out_features
        else:
            self.char_embed = None
            self.char_encoder = None
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0.0 else None
        self.encoder = RecurrentStack(cell, features, layer_units, bidirectional=bidirectional,
                                      dropout=dropout, rngs=rngs)
        self.head = nnx.Linear(self.encoder.out_features, num_tags, rngs=rngs)
        self.crf = (CRF(num_tags, constraints=constraints, tag_names=tag_names, rngs=rngs)
                    if crf else None)

    def _char_features(self, chars: Any, shape: tuple[int, int]) -> Array:
        """``[B, T, 2 * char_units]``: the char BiLSTM's final states for every word."""
        chars = jnp.asarray(chars)
        if chars.ndim != 3 or chars.shape[:2] != shape:
            raise ValueError(f"chars must be [B, T, C] with [B, T] = {shape} (the tokens' shape); "
                             f"got {chars.shape}")
        if not jnp.issubdtype(chars.dtype, jnp.integer):
            raise ValueError(f"chars must hold integer character ids; got dtype {chars.dtype}")
        if _is_concrete(chars) and chars.size:
            values = np.asarray(chars)
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= self.char_vocab_size:
                raise ValueError(f"chars must lie in [0, {self.char_vocab_size}) "
                                 f"(char_vocab_size); got ids from {low} to {high}")
        chars = chars.reshape(-1, chars.shape[-1])
        carries, _ = self.char_encoder(self.char_embed(chars), chars != 0)
        features = self.char_encoder.last_output(carries)
        return features.reshape(*shape, features.shape[-1])

    def _inputs(self, tokens: Any, mask: Any, chars: Any) -> tuple[Array, Array, Array | None]:
        tokens = check_tokens(tokens, self.vocab_size)
        mask = check_mask(mask, tokens)
        if self.char_encoder is None and chars is not None:
            raise ValueError("chars given, but this tagger has no character features "
                             "(build it with char_vocab_size=...)")
        if self.char_encoder is not None and chars is None:
            raise ValueError(f"chars are required: this tagger reads characters "
                             f"(char_vocab_size={self.char_vocab_size})")
        return tokens, mask, chars

    def __call__(self, tokens: Array, mask: Array | None = None,
                 chars: Array | None = None) -> Array:
        """Per-token tag scores (the CRF's emissions, or the softmax's logits).

        Args:
          tokens: int ``[B, T]`` in ``[0, V)`` (checked where concrete).
          mask: bool ``[B, T]``, or None for every step.
          chars: int ``[B, T, C]`` character ids (0 = padding), with ``char_vocab_size`` only.

        Returns:
          ``[B, T, K]``, 0 at masked steps.
        """
        tokens, mask, chars = self._inputs(tokens, mask, chars)
        words = self.embed(tokens)
        if self.char_encoder is not None:
            words = jnp.concatenate([words, self._char_features(chars, tokens.shape)], axis=-1)
        if self.dropout is not None:
            words = self.dropout(words)
        _, ys = self.encoder(words, mask)
        if self.dropout is not None:
            ys = self.dropout(ys)
        return jnp.where(mask[..., None], self.head(ys), 0.0)

    def loss(self, tokens: Array, mask: Array | None, tags: Array,
             chars: Array | None = None) -> Array:
        """The training loss, a scalar.

        With the CRF: the negative log-likelihood of each sentence's tag path, averaged over the
        sentences with at least one valid word (so all-padding rows do not count). With the
        softmax: the cross-entropy of each valid token, averaged over the valid tokens of the
        batch (:func:`seqjax.train.sequence_loss`).

        Args:
          tokens, mask, chars: as in :meth:`__call__`.
          tags: int ``[B, T]`` in ``[0, K)`` (checked where concrete; ignored where masked).

        Returns:
          float32 scalar.
        """
        tokens = check_tokens(tokens, self.vocab_size)
        tags = check_tags(tags, tokens.shape, self.num_tags, "the tokens' shape")
        mask = check_mask(mask, tokens)
        emissions = self(tokens, mask, chars)
        if self.crf is None:
            return sequence_loss(emissions, tags, mask)
        return masked_mean(-self.crf.log_likelihood(emissions, tags, mask), example_mask(mask))

    def predict(self, tokens: Array, mask: Array | None = None,
                chars: Array | None = None) -> Array:
        """The best tags: Viterbi with the CRF, the per-token argmax with the softmax.

        Args:
          tokens, mask, chars: as in :meth:`__call__`.

        Returns:
          int32 ``[B, T]``, 0 where masked.
        """
        tokens = check_tokens(tokens, self.vocab_size)
        mask = check_mask(mask, tokens)
        emissions = self(tokens, mask, chars)
        if self.crf is None:
            return jnp.where(mask, jnp.argmax(emissions, axis=-1).astype(jnp.int32), 0)
        return self.crf.decode(emissions, mask)[0]


def word_chars(sentences: Sequence[Sequence[str]], char_tokenizer: Any, *,
               maxlen: int | None = None, word_len: int | None = None,
               padding: str = "post", truncating: str = "post") -> np.ndarray:
    """Character ids of every word, padded to line up with the words' ids: ``[N, T, C]``.

    Pass the same ``maxlen``, ``padding`` and ``truncating`` as for the word ids
    (:func:`seqjax.data.pad_sequences` semantics) so ``chars[n, t]`` spells ``tokens[n, t]``.

    Args:
      sentences: N sentences, each a list of words (strings).
      char_tokenizer: a fitted :class:`seqjax.data.CharTokenizer` whose padding id is 0, e.g.
        ``CharTokenizer(pad_token="<PAD>", unk_token="<UNK>").fit(words)``.
      maxlen: T (None: the longest sentence).
      word_len: C; longer words keep their first C characters (None: the longest word).
      padding, truncating: ``"pre"`` or ``"post"``, for the sentences.

    Returns:
      int32 ``[N, T, C]``; 0 pads short words and padding words.

    Example:
      >>> from seqjax.data import CharTokenizer
      >>> chars = CharTokenizer(pad_token="<PAD>").fit(["ab", "c"])
      >>> word_chars([["ab", "c"], ["c"]], chars, padding="pre").tolist()
      [[[1, 2], [3, 0]], [[0, 0], [3, 0]]]
    """
    if getattr(char_tokenizer, "pad_id", None) != 0:
        raise ValueError("char_tokenizer must reserve id 0 for padding, e.g. "
                         "CharTokenizer(pad_token='<PAD>', unk_token='<UNK>')")
    if isinstance(sentences, str):
        raise ValueError("sentences must be a list of sentences, each a list of words")
    encoded = [[char_tokenizer.encode(word) for word in sentence] for sentence in sentences]
    if word_len is None:
        word_len = max((len(w) for s in encoded for w in s), default=0)
    elif isinstance(word_len, bool) or not isinstance(word_len, (int, np.integer)) \
            or word_len < 1:
        raise ValueError(f"word_len must be a positive int or None; got {word_len!r}")
    rows = []
    for sentence in encoded:
        row = np.zeros((len(sentence), word_len), np.int32)
        for t, word in enumerate(sentence):
            word = word[:word_len]
            row[t, :len(word)] = word
        rows.append(row)
    return pad_sequences(rows, maxlen=maxlen, dtype="int32", padding=padding,
                         truncating=truncating, value=0)
