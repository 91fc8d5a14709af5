"""Subword tokenizer: byte-level BPE trained with Hugging Face ``tokenizers``.

The course's BiLSTM models read IMDB through TFDS' ``imdb_reviews/subwords8k``, a
vocabulary of 8,185 subword ids. :class:`SubwordTokenizer` fills that role without
TensorFlow. It is byte-level BPE, the scheme of GPT-2: the text is cut into words
that carry their leading space, each word into bytes, and merges learned on the
training texts join frequent byte sequences into single tokens. Every string can be
encoded (there are no unknown pieces), and decoding gives back the exact text (lower-cased
with ``lower=True``), spacing and punctuation included. WordPiece would decode
``"don't"`` as ``"don ' t"``. The training itself is Hugging Face's Rust ``BpeTrainer``,
which is deterministic for a given corpus and library version.

Ids follow the other tokenizers: the reserved tokens come first, in the order padding,
start, unknown, end (``"<PAD>"=0, "<START>"=1, "<UNK>"=2, "<EOS>"=3`` by default; a
reserved token set to ``None`` takes no id). The 256 byte tokens come next, then the
merges in the order they were learned. Text that spells a reserved token, such as a
review that contains ``"<PAD>"``, is encoded as ordinary text and never as the reserved
id. ``<UNK>`` is reserved for layout compatibility, but byte-level BPE never produces
it. Tokens in :attr:`vocabulary` are in byte-level form: ``"Ġthe"`` is ``" the"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .tokenizers import _check_type, _ReservedVocabulary, _restore_vocab

__all__ = ["DEFAULT_SUBWORD_VOCAB_SIZE", "SubwordTokenizer"]

# TFDS imdb_reviews/subwords8k: a SubwordTextEncoder built with target_vocab_size=2**13.
DEFAULT_SUBWORD_VOCAB_SIZE = 8185
_BYTE_ALPHABET = 256
# Texts per encode_batch call: large enough to keep the Rust threads busy, small
# enough that the progress bar moves.
_CHUNK = 2048


def _hf() -> Any:
    try:
        import tokenizers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "SubwordTokenizer needs Hugging Face tokenizers: pip install 'seqjax[data]' "
            "(or pip install tokenizers)"
        ) from err
    return tokenizers


def tokenizers_version() -> str:
    """Version of the installed Hugging Face ``tokenizers`` (it decides the trained merges)."""
    return str(_hf().__version__)


class SubwordTokenizer(_ReservedVocabulary):
    """Byte-level BPE subword tokenizer with the reserved ids of :class:`WordTokenizer`.

    Example::

        tok = SubwordTokenizer(target_vocab_size=8185).fit(train_texts)
        ids = tok.encode("A fine film.")      # [L] ids; tok.decode(ids) == "A fine film."

    Args:
        target_vocab_size: V after :meth:`fit`, reserved ids and the 256 byte tokens
            included; ``8185`` is the size of TFDS' ``imdb_reviews/subwords8k``. A small
            corpus can run out of merges first, leaving a smaller V.
        lower: Lower-case the text before encoding, so that decoding returns it in
            lower case.
        pad_token, start_token, unk_token, eos_token: The reserved tokens, in id order;
            ``None`` reserves no id for that role.

    Raises:
        ValueError: If ``target_vocab_size`` is not an int with room for the reserved
            tokens and the 256 byte tokens, or if the reserved tokens are invalid.
    """

    def __init__(
        self,
        target_vocab_size: int = DEFAULT_SUBWORD_VOCAB_SIZE,
        *,
        lower: bool = False,
        pad_token: str | None = "<PAD>",
        start_token: str | None = "<START>",
        unk_token: str | None = "<UNK>",
        eos_token: str | None = "<EOS>",
    ) -> None:
        self._init_reserved(pad_token, start_token, unk_token, eos_token)
        smallest = len(self.reserved_tokens) + _BYTE_ALPHABET
        if (
            not isinstance(target_vocab_size, int)
            or isinstance(target_vocab_size, bool)
            or target_vocab_size < smallest
        ):
            raise ValueError(
                f"target_vocab_size must be an int >= {smallest} (the "
                f"{len(self.reserved_tokens)} reserved tokens and {_BYTE_ALPHABET} byte "
                f"tokens), got {target_vocab_size!r}"
            )
        if not isinstance(lower, bool):
            raise ValueError(f"lower must be True or False, got {lower!r}")
        self.target_vocab_size = target_vocab_size
        self.lower = lower
        self._model: Any = None  # the Hugging Face Tokenizer, once fitted

    # -- training ----------------------------------------------------------------------
    def _empty_model(self) -> Any:
        hf = _hf()
        model = hf.Tokenizer(hf.models.BPE())
        if self.lower:
            model.normalizer = hf.normalizers.Lowercase()
        # No prefix space: the first word of a text stays as written, so decoding is exact.
        model.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        model.decoder = hf.decoders.ByteLevel()
        return model

    def fit(self, texts: Iterable[str], progress: bool = True) -> SubwordTokenizer:
        """Learns the merges from ``texts`` (replacing any previous vocabulary).

        Args:
            texts: The training texts (strings).
            progress: Show Hugging Face's training progress bar.

        Returns:
            ``self``.

        Raises:
            ValueError: If ``texts`` is a single string, empty, or holds a non-string.
        """
        texts = _text_list(texts, "texts")
        if not texts:
            raise ValueError("texts must hold at least one string, got none")
        hf = _hf()
        model = self._empty_model()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            special_tokens=list(self.reserved_tokens),  # ids 0.. in this order
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=bool(progress),
        )
        model.train_from_iterator(texts, trainer, length=len(texts))
        self._adopt(model)
        return self

    def _adopt(self, model: Any) -> None:
        """Takes a trained Hugging Face tokenizer as this one's model."""
        # Reserved tokens are registered as special tokens only to give them their ids;
        # matching them inside text would turn a review's literal "<PAD>" into padding.
        model.encode_special_tokens = True
        by_id = model.get_vocab(with_added_tokens=True)
        tokens = sorted(by_id, key=by_id.__getitem__)
        if [by_id[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("the subword model's ids are not 0..V-1 without gaps")
        n = len(self.reserved_tokens)
        if tokens[:n] != self.reserved_tokens:
            raise ValueError(
                f"the subword model starts with {tokens[:n]}, expected the reserved "
                f"tokens {self.reserved_tokens}"
            )
        self._set_learned(tokens[n:])
        self._model = model

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or loading a fitted tokenizer) has given it a vocabulary."""
        return self._model is not None

    def _fitted_model(self) -> Any:
        if self._model is None:
            raise ValueError("this SubwordTokenizer has no vocabulary yet: call fit(texts) first")
        return self._model

    # -- encoding ----------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Splits one text into its subword tokens (byte-level strings, ``"Ġ"`` = space)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        return list(self._fitted_model().encode(text).tokens)

    def texts_to_sequences(
        self,
        texts: Iterable[str],
        *,
        add_start: bool = False,
        add_eos: bool = False,
        progress: bool = True,
    ) -> list[list[int]]:
        """Maps texts to lists of ids.

        Args:
            texts: Strings.
            add_start: Prepend ``start_id``.
            add_eos: Append ``eos_id``.
            progress: Show a progress bar if this takes more than a couple of seconds.

        Returns:
            One list of ids per text (ragged).
        """
        model = self._fitted_model()
        texts = _text_list(texts, "texts")
        prefix = self._edge("start", add_start)
        suffix = self._edge("eos", add_eos)
        out: list[list[int]] = []
        bar = tqdm(total=len(texts), desc="encode", disable=not progress, delay=2.0)
        with bar:
            for begin in range(0, len(texts), _CHUNK):
                chunk = model.encode_batch(texts[begin : begin + _CHUNK], add_special_tokens=False)
                if prefix or suffix:
                    out.extend(prefix + e.ids + suffix for e in chunk)
                else:
                    out.extend(e.ids for e in chunk)
                bar.update(len(chunk))
        return out

    def encode(self, text: str, *, add_start: bool = False, add_eos: bool = False) -> list[int]:
        """:meth:`texts_to_sequences` for a single text: ids [L]."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        return self.texts_to_sequences(
            [text], add_start=add_start, add_eos=add_eos, progress=False
        )[0]

    def sequences_to_texts(
        self, sequences: Iterable[Iterable[int]], *, skip_special: bool = True
    ) -> list[str]:
        """Maps id sequences back to text.

        Args:
            sequences: Id sequences (lists or 1-D arrays).
            skip_special: Leave out padding, start and end ids. ``unk`` is kept as its
                token text, as :class:`WordTokenizer` keeps it.

        Raises:
            ValueError: On an id outside ``0..V-1``.
        """
        model = self._fitted_model()
        skip = self._special_ids() - {self.unk_id} if skip_special else set()
        size = self.vocab_size
        batch = []
        for seq in sequences:
            ids = [int(i) for i in seq]
            for i in ids:
                if not 0 <= i < size:
                    raise ValueError(f"id {i} is outside the vocabulary 0..{size - 1}")
            batch.append([i for i in ids if i not in skip])
        # The byte-level decoder spells kept reserved ids as their token text.
        return list(model.decode_batch(batch, skip_special_tokens=False))

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """:meth:`sequences_to_texts` for a single sequence."""
        return self.sequences_to_texts([ids], skip_special=skip_special)[0]

    def _edge(self, role: str, wanted: bool) -> list[int]:
        if not wanted:
            return []
        idx = self._role_id(role)
        if idx is None:
            raise ValueError(f"add_{role} needs a {role}_token, but {role}_token is None")
        return [idx]

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration, vocabulary and the Hugging Face model (``None`` unfitted)."""
        return {
            "type": "SubwordTokenizer",
            "format_version": 1,
            "target_vocab_size": self.target_vocab_size,
            "lower": self.lower,
            **self._reserved_dict(),
            "vocabulary": self._vocab,
            "model": None if self._model is None else json.loads(self._model.to_str()),
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> SubwordTokenizer:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: If the config is not a SubwordTokenizer's, or its vocabulary
                disagrees with its model.
        """
        config = dict(config)
        _check_type(config, "SubwordTokenizer")
        vocab = config.pop("vocabulary")
        model = config.pop("model", None)
        tok = cls(**config)
        if model is None:
            _restore_vocab(tok, vocab)
            if tok.vocab_size != len(tok.reserved_tokens):
                raise ValueError("config has a learned vocabulary but no 'model'")
            return tok
        if not isinstance(model, dict):
            raise ValueError(f"config's 'model' must be a JSON object, got {type(model).__name__}")
        tok._adopt(_hf().Tokenizer.from_str(json.dumps(model)))
        if tok._vocab != vocab:
            raise ValueError("config's 'vocabulary' does not match the ids of its 'model'")
        return tok

    @classmethod
    def from_json(cls, text: str) -> SubwordTokenizer:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SubwordTokenizer:
        """Reads a tokenizer written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return (
            f"SubwordTokenizer(vocab_size={self.vocab_size}, "
            f"target_vocab_size={self.target_vocab_size}, lower={self.lower})"
        )


def _text_list(texts: Iterable[str], name: str) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{name} must be an iterable of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    return texts
