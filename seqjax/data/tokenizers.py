"""Word and character tokenizers with reserved ids, Keras-compatible text handling and JSON.

Behaviour matched (and tested) against Keras:

* ``style="tokenizer"`` (default) is the legacy ``keras.preprocessing.text.Tokenizer``
  (still shipped in Keras 3 as ``keras._legacy.preprocessing.text.Tokenizer``):
  lower-case with ``str.lower``, replace every character of
  ``'!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\\t\\n'`` by the split character, split on ``" "``,
  drop empty tokens. The apostrophe is kept, so ``"don't"`` is one token. The vocabulary
  is ordered by descending count, ties in order of first appearance, and ``num_words``
  keeps the ids ``< num_words`` (so ``num_words - 1`` ids besides padding).
* ``style="text_vectorization"`` is ``keras.layers.TextVectorization``'s defaults
  (``standardize="lower_and_strip_punctuation"``, ``split="whitespace"``): lower-case,
  delete every character of ``'!"#$%&\\'()*+,-./:;<=>?@[\\]^_`{|}~'`` (apostrophe
  included, so ``"don't"`` becomes ``"dont"`` and ``"a,b"`` becomes ``"ab"``), split on
  runs of whitespace. Ties in the vocabulary are broken like TextVectorization's
  ``adapt`` (reverse code-point order of the token). ``num_words`` plays the role of
  ``max_tokens``. Two known differences: TextVectorization lower-cases ASCII only
  (``tf.strings.lower``) while this uses ``str.lower``; and it splits on ASCII whitespace
  while ``str.split`` also splits on Unicode spaces.

Ids: the reserved tokens come first, in the order padding, start, unknown, end
(``"<PAD>"=0, "<START>"=1, "<UNK>"=2, "<EOS>"=3`` by default; a reserved token set to
``None`` takes no id), then the words by frequency. With the defaults the most frequent
word has id 4 = rank + 3, which is exactly the layout of ``keras.datasets.imdb``
(``index_from=3``: 0 padding, 1 start, 2 out-of-vocabulary; Keras leaves 3 unused, here
it is ``<EOS>``). ``WordTokenizer(pad_token="", unk_token="[UNK]", start_token=None,
eos_token=None, style="text_vectorization")`` gives TextVectorization's ids, and
``WordTokenizer(start_token=None, eos_token=None, unk_token=oov)`` gives the legacy
Tokenizer's ids with ``oov_token=oov``.

Words that equal a reserved token are never added to the vocabulary; they map to the
reserved id. With ``unk_token=None`` unknown words are left out of the output, like the
legacy Tokenizer with ``oov_token=None``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = [
    "KERAS_TOKENIZER_FILTERS",
    "TEXT_VECTORIZATION_PUNCTUATION",
    "CharTokenizer",
    "WordTokenizer",
    "load_tokenizer",
    "tokenizer_from_dict",
]

KERAS_TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
TEXT_VECTORIZATION_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

_STYLES = ("tokenizer", "text_vectorization")
_UNSET: Any = object()
_FORMAT_VERSION = 1


class _ReservedVocabulary:
    """Shared id bookkeeping: reserved tokens first, then the learned tokens."""

    _ROLES = ("pad", "start", "unk", "eos")

    def _init_reserved(
        self,
        pad_token: str | None,
        start_token: str | None,
        unk_token: str | None,
        eos_token: str | None,
    ) -> None:
        tokens = {"pad": pad_token, "start": start_token, "unk": unk_token, "eos": eos_token}
        for role, token in tokens.items():
            if token is not None and not isinstance(token, str):
                raise ValueError(f"{role}_token must be a string or None, got {token!r}")
        present = [t for t in tokens.values() if t is not None]
        if len(set(present)) != len(present):
            raise ValueError(f"reserved tokens must be distinct, got {tokens}")
        self._reserved_by_role = tokens
        self.reserved_tokens: list[str] = present
        self._vocab: list[str] = list(present)
        self._index: dict[str, int] = {t: i for i, t in enumerate(self._vocab)}

    def _set_learned(self, learned: Iterable[str]) -> None:
        reserved = set(self.reserved_tokens)
        self._vocab = list(self.reserved_tokens)
        self._vocab.extend(t for t in learned if t not in reserved)
        self._index = {t: i for i, t in enumerate(self._vocab)}

    def _role_id(self, role: str) -> int | None:
        token = self._reserved_by_role[role]
        return None if token is None else self._index[token]

    @property
    def pad_id(self) -> int | None:
        """Id of the padding token (0 when present)."""
        return self._role_id("pad")

    @property
    def start_id(self) -> int | None:
        """Id of the start-of-sequence token, or ``None``."""
        return self._role_id("start")

    @property
    def unk_id(self) -> int | None:
        """Id of the out-of-vocabulary token, or ``None``."""
        return self._role_id("unk")

    @property
    def eos_id(self) -> int | None:
        """Id of the end-of-sequence token, or ``None``."""
        return self._role_id("eos")

    @property
    def vocab_size(self) -> int:
        """V: number of ids in use, reserved ones included (ids are ``0..V-1``)."""
        return len(self._vocab)

    @property
    def vocabulary(self) -> list[str]:
        """All tokens, indexed by id."""
        return list(self._vocab)

    @property
    def token_index(self) -> dict[str, int]:
        """Token -> id, reserved tokens included."""
        return dict(self._index)

    def id_to_token(self, idx: int) -> str:
        if not 0 <= idx < len(self._vocab):
            raise ValueError(f"id {idx} is outside the vocabulary 0..{len(self._vocab) - 1}")
        return self._vocab[idx]

    def _special_ids(self) -> set[int]:
        return {self._index[t] for t in self.reserved_tokens}

    def _reserved_dict(self) -> dict[str, str | None]:
        return {f"{role}_token": tok for role, tok in self._reserved_by_role.items()}

    def to_json(self, **dumps_kwargs: Any) -> str:
        """Serialises the tokenizer (configuration and vocabulary) to a JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **dumps_kwargs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`to_json` to ``path`` (UTF-8)."""
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _take_state(self, other: _ReservedVocabulary) -> None:
        """Becomes a copy of ``other`` (same class) in place.

        A loader fits a tokenizer it was given in place; when the fitted result comes
        from the data cache instead, this gives the caller's object the same state.
        """
        if type(other) is not type(self):
            raise TypeError(f"cannot take the state of a {type(other).__name__}")
        self.__dict__.update(other.__dict__)


class WordTokenizer(_ReservedVocabulary):
    """Word-level tokenizer.

    Args:
        num_words: V, the largest vocabulary to keep, reserved ids included: after
            :meth:`fit`, only ids ``< num_words`` exist and rarer words become
            ``unk_token``. ``None`` keeps every word.
        style: ``"tokenizer"`` (Keras legacy ``Tokenizer`` defaults) or
            ``"text_vectorization"`` (``TextVectorization`` defaults); see the module
            docstring. It sets the defaults of ``filters``, ``strip``, ``split`` and
            ``tie_break``.
        lower: Lower-case the text first.
        filters: Characters replaced by a word boundary.
        strip: Characters deleted (so they glue their neighbours together).
        isolate: Characters that become tokens of their own (e.g. ``"?!.,"`` for
            translation, where punctuation carries meaning); they are taken out of the
            style's default ``filters``/``strip``.
        split: Separator string; ``None`` splits on runs of any whitespace.
        tie_break: ``"first_seen"`` or ``"reverse_lexical"`` order among equal counts.
        pad_token, start_token, unk_token, eos_token: The reserved tokens, in id order;
            ``None`` reserves no id for that role.
    """

    def __init__(
        self,
        num_words: int | None = None,
        *,
        style: str = "tokenizer",
        lower: bool = True,
        filters: str = _UNSET,
        strip: str = _UNSET,
        isolate: str = "",
        split: str | None = _UNSET,
        tie_break: str = _UNSET,
        pad_token: str | None = "<PAD>",
        start_token: str | None = "<START>",
        unk_token: str | None = "<UNK>",
        eos_token: str | None = "<EOS>",
    ) -> None:
        if style not in _STYLES:
            raise ValueError(f"style must be one of {_STYLES}, got {style!r}")
        keras_style = style == "tokenizer"
        # Characters asked for in `isolate` win over the style's default filters/strip.
        if filters is _UNSET:
            filters = _without(KERAS_TOKENIZER_FILTERS if keras_style else "", isolate)
        if strip is _UNSET:
            strip = _without("" if keras_style else TEXT_VECTORIZATION_PUNCTUATION, isolate)
        if split is _UNSET:
            split = " " if keras_style else None
        if tie_break is _UNSET:
            tie_break = "first_seen" if keras_style else "reverse_lexical"
        if num_words is not None and (not isinstance(num_words, int) or num_words < 1):
            raise ValueError(f"num_words must be a positive int or None, got {num_words!r}")
        if tie_break not in ("first_seen", "reverse_lexical"):
            raise ValueError(
                f"tie_break must be 'first_seen' or 'reverse_lexical', got {tie_break!r}"
            )
        if split is not None and (not isinstance(split, str) or not split):
            raise ValueError(f"split must be a non-empty string or None, got {split!r}")
        for name, chars in (("filters", filters), ("strip", strip), ("isolate", isolate)):
            if not isinstance(chars, str):
                raise ValueError(f"{name} must be a string of characters, got {chars!r}")
        overlap = (set(filters) & set(strip)) | (set(filters) & set(isolate))
        overlap |= set(strip) & set(isolate)
        if overlap:
            raise ValueError(
                f"filters, strip and isolate must not share characters, shared: {sorted(overlap)}"
            )
        self._init_reserved(pad_token, start_token, unk_token, eos_token)
        if num_words is not None and num_words < len(self.reserved_tokens):
            raise ValueError(
                f"num_words={num_words} leaves no room for the {len(self.reserved_tokens)} "
                "reserved tokens"
            )
        self.num_words = num_words
        self.style = style
        self.lower = bool(lower)
        self.filters = filters
        self.strip = strip
        self.isolate = isolate
        self.split = split
        self.tie_break = tie_break
        boundary = " " if split is None else split
        table: dict[int, str | None] = {ord(c): boundary for c in filters}
        table.update({ord(c): None for c in strip})
        table.update({ord(c): f"{boundary}{c}{boundary}" for c in isolate})
        self._table = table
        self.word_counts: Counter[str] = Counter()

    # -- text handling ---------------------------------------------------------------
    def tokenize(self, text: str | Sequence[str]) -> list[str]:
        """Splits one text into words (a list of strings is taken as already split).

        Args:
            text: A string, or a sequence of tokens which is only lower-cased (as the
                Keras Tokenizer does with list inputs).

        Returns:
            The list of word strings.
        """
        if not isinstance(text, str):
            return [t.lower() for t in text] if self.lower else list(text)
        if self.lower:
            text = text.lower()
        if self._table:
            text = text.translate(self._table)
        if self.split is None:
            return text.split()
        return list(filter(None, text.split(self.split)))

    def tokenize_many(
        self, texts: Iterable[str | Sequence[str]], progress: bool = True
    ) -> list[list[str]]:
        """:meth:`tokenize` over many texts (tokenize once, then :meth:`fit_tokens` and
        :meth:`tokens_to_sequences`, to avoid tokenizing a large corpus twice)."""
        with _gc_paused():
            return [
                self.tokenize(t)
                for t in tqdm(texts, desc="tokenize", disable=not progress, delay=2.0)
            ]

    def fit(self, texts: Iterable[str | Sequence[str]], progress: bool = True) -> WordTokenizer:
        """Builds the vocabulary from ``texts`` (replacing any previous one).

        Args:
            texts: Strings, or token lists.
            progress: Show a progress bar if this takes more than a couple of seconds.

        Returns:
            ``self``.
        """
        return self.fit_tokens(self.tokenize_many(texts, progress=progress))

    def fit_tokens(self, token_lists: Iterable[Sequence[str]]) -> WordTokenizer:
        """Builds the vocabulary from already tokenized texts (no standardisation)."""
        with _gc_paused():
            counts = Counter(chain.from_iterable(token_lists))
        self.word_counts = counts
        reserved = set(self.reserved_tokens)
        items = [(w, c) for w, c in counts.items() if w not in reserved]
        if self.tie_break == "first_seen":
            # Counter keeps first-seen order and sorted() is stable: Keras' tie order.
            items.sort(key=lambda wc: wc[1], reverse=True)
        else:
            items.sort(key=lambda wc: (wc[1], wc[0]), reverse=True)
        words = [w for w, _ in items]
        if self.num_words is not None:
            words = words[: max(0, self.num_words - len(self.reserved_tokens))]
        self._set_learned(words)
        return self

    fit_on_texts = fit

    def texts_to_sequences(
        self,
        texts: Iterable[str | Sequence[str]],
        *,
        add_start: bool = False,
        add_eos: bool = False,
        progress: bool = True,
    ) -> list[list[int]]:
        """Maps texts to lists of ids.

        Args:
            texts: Strings, or token lists.
            add_start: Prepend ``start_id``.
            add_eos: Append ``eos_id``.
            progress: Show a progress bar if this takes more than a couple of seconds.

        Returns:
            One list of ids per text (ragged).
        """
        return self.tokens_to_sequences(
            self.tokenize_many(texts, progress=progress), add_start=add_start, add_eos=add_eos
        )

    def tokens_to_sequences(
        self,
        token_lists: Iterable[Sequence[str]],
        *,
        add_start: bool = False,
        add_eos: bool = False,
    ) -> list[list[int]]:
        """Maps already tokenized texts to lists of ids (no standardisation)."""
        prefix = self._edge("start", add_start)
        suffix = self._edge("eos", add_eos)
        index = self._index
        out = []
        with _gc_paused():
            if self.unk_id is None:
                for words in token_lists:
                    out.append(prefix + [index[w] for w in words if w in index] + suffix)
            else:
                lookup = _DefaultIndex(index, self.unk_id).__getitem__
                for words in token_lists:
                    ids = list(map(lookup, words))
                    out.append(prefix + ids + suffix if (prefix or suffix) else ids)
        return out

    def encode(self, text: str | Sequence[str], **kwargs: Any) -> list[int]:
        """``texts_to_sequences`` for a single text."""
        return self.texts_to_sequences([text], progress=False, **kwargs)[0]

    def sequences_to_texts(
        self, sequences: Iterable[Iterable[int]], *, skip_special: bool = True
    ) -> list[str]:
        """Maps id sequences back to text, words joined by the split string (or a space).

        Args:
            sequences: Id sequences (lists or 1-D arrays).
            skip_special: Leave out padding, start and end ids (``unk`` is kept, since it
                stands for a word). Keras' Tokenizer instead turns id 0 into the OOV word.

        Raises:
            ValueError: On an id outside ``0..V-1``.
        """
        joiner = " " if self.split is None else self.split
        skip = self._special_ids() - {self.unk_id} if skip_special else set()
        texts = []
        for seq in sequences:
            words = [self.id_to_token(int(i)) for i in seq if int(i) not in skip]
            texts.append(joiner.join(words))
        return texts

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """``sequences_to_texts`` for a single sequence."""
        return self.sequences_to_texts([ids], skip_special=skip_special)[0]

    def _edge(self, role: str, wanted: bool) -> list[int]:
        if not wanted:
            return []
        idx = self._role_id(role)
        if idx is None:
            raise ValueError(f"add_{role} needs a {role}_token, but {role}_token is None")
        return [idx]

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration and vocabulary."""
        return {
            "type": "WordTokenizer",
            "format_version": _FORMAT_VERSION,
            "num_words": self.num_words,
            "style": self.style,
            "lower": self.lower,
            "filters": self.filters,
            "strip": self.strip,
            "isolate": self.isolate,
            "split": self.split,
            "tie_break": self.tie_break,
            **self._reserved_dict(),
            "vocabulary": self._vocab,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> WordTokenizer:
        """Inverse of :meth:`to_dict`."""
        config = dict(config)
        _check_type(config, "WordTokenizer")
        vocab = config.pop("vocabulary")
        tok = cls(**config)
        _restore_vocab(tok, vocab)
        return tok

    @classmethod
    def from_json(cls, text: str) -> WordTokenizer:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WordTokenizer:
        """Reads a tokenizer written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return (
            f"WordTokenizer(vocab_size={self.vocab_size}, num_words={self.num_words}, "
            f"style={self.style!r})"
        )


class CharTokenizer(_ReservedVocabulary):
    """Character-level tokenizer; characters get ids in code-point order after the reserved ones.

    With no reserved tokens (the default) the ids are those of the classic char-RNN
    setups: ``sorted(set(text))``.

    Args:
        lower: Lower-case the text first.
        pad_token, start_token, unk_token, eos_token: Reserved tokens (multi-character
            names such as ``"<PAD>"`` cannot collide with characters). Without
            ``unk_token``, encoding an unknown character raises ``ValueError``.
    """

    def __init__(
        self,
        *,
        lower: bool = False,
        pad_token: str | None = None,
        start_token: str | None = None,
        unk_token: str | None = None,
        eos_token: str | None = None,
    ) -> None:
        self.lower = bool(lower)
        self._init_reserved(pad_token, start_token, unk_token, eos_token)

    def fit(self, texts: str | Iterable[str]) -> CharTokenizer:
        """Builds the character set from a text or an iterable of texts; returns ``self``."""
        if isinstance(texts, str):
            texts = [texts]
        chars: set[str] = set()
        for text in texts:
            chars.update(text.lower() if self.lower else text)
        self._set_learned(sorted(c for c in chars if c not in self.reserved_tokens))
        return self

    def encode(self, text: str, *, add_start: bool = False, add_eos: bool = False) -> list[int]:
        """Maps a string to ids [L].

        Raises:
            ValueError: On a character outside the vocabulary when there is no unk_token.
        """
        if self.lower:
            text = text.lower()
        index = self._index
        unk = self.unk_id
        if unk is None:
            try:
                ids = [index[c] for c in text]
            except KeyError as err:
                raise ValueError(
                    f"character {err.args[0]!r} is not in the vocabulary and unk_token is None"
                ) from None
        else:
            ids = [index.get(c, unk) for c in text]
        if add_start:
            ids.insert(0, self._need("start"))
        if add_eos:
            ids.append(self._need("eos"))
        return ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Maps ids back to a string, leaving out padding/start/end when ``skip_special``."""
        skip = self._special_ids() - {self.unk_id} if skip_special else set()
        return "".join(self.id_to_token(int(i)) for i in ids if int(i) not in skip)

    def texts_to_sequences(self, texts: Iterable[str], **kwargs: Any) -> list[list[int]]:
        """:meth:`encode` over many texts."""
        return [self.encode(t, **kwargs) for t in texts]

    def sequences_to_texts(self, sequences: Iterable[Iterable[int]], **kwargs: Any) -> list[str]:
        """:meth:`decode` over many sequences."""
        return [self.decode(s, **kwargs) for s in sequences]

    def _need(self, role: str) -> int:
        idx = self._role_id(role)
        if idx is None:
            raise ValueError(f"add_{role} needs a {role}_token, but {role}_token is None")
        return idx

    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration and vocabulary."""
        return {
            "type": "CharTokenizer",
            "format_version": _FORMAT_VERSION,
            "lower": self.lower,
            **self._reserved_dict(),
            "vocabulary": self._vocab,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> CharTokenizer:
        """Inverse of :meth:`to_dict`."""
        config = dict(config)
        _check_type(config, "CharTokenizer")
        vocab = config.pop("vocabulary")
        tok = cls(**config)
        _restore_vocab(tok, vocab)
        return tok

    @classmethod
    def from_json(cls, text: str) -> CharTokenizer:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Reads a tokenizer written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, lower={self.lower})"


def _without(chars: str, removed: object) -> str:
    removed = set(removed) if isinstance(removed, str) else set()
    return "".join(c for c in chars if c not in removed)


class _DefaultIndex(dict):
    """Token -> id with a default, so that lookups run in C through ``map``."""

    def __init__(self, index: dict[str, int], default: int) -> None:
        super().__init__(index)
        self._default = default

    def __missing__(self, key: str) -> int:
        return self._default


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Millions of short-lived token strings make the cyclic GC run over and over for
    # nothing (strings hold no references); pausing it roughly halves tokenizing time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_KINDS = ("WordTokenizer", "CharTokenizer", "SubwordTokenizer")


def tokenizer_from_dict(config: Any, what: str = "config") -> Any:
    """Builds the tokenizer that ``config`` (a ``to_dict`` result) describes, by its type.

    Raises:
        ValueError: If ``config`` is not a seqjax tokenizer's, naming ``what`` it came from.
    """
    kind = config.get("type") if isinstance(config, dict) else None
    if kind == "WordTokenizer":
        return WordTokenizer.from_dict(config)
    if kind == "CharTokenizer":
        return CharTokenizer.from_dict(config)
    if kind == "SubwordTokenizer":
        from .subword import SubwordTokenizer  # imports Hugging Face tokenizers

        return SubwordTokenizer.from_dict(config)
    raise ValueError(
        f'{what} is not a seqjax tokenizer: expected a JSON object with "type" one of '
        f"{_KINDS}, got type {kind!r}"
    )


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """Reads any seqjax tokenizer (word, character or subword) from a file written by ``save``.

    Returns:
        A :class:`WordTokenizer`, :class:`CharTokenizer` or
        :class:`~seqjax.data.SubwordTokenizer`, as the file's ``"type"`` says.
    """
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    return tokenizer_from_dict(config, what=f"{str(path)!r}")


def _check_type(config: dict[str, Any], expected: str) -> None:
    kind = config.pop("type", None)
    version = config.pop("format_version", None)
    if kind != expected:
        raise ValueError(f"config describes a {kind!r}, expected {expected!r}")
    if version != _FORMAT_VERSION:
        raise ValueError(f"unsupported tokenizer format_version {version!r}, expected 1")
    if "vocabulary" not in config or not isinstance(config["vocabulary"], list):
        raise ValueError("config has no 'vocabulary' list")


def _restore_vocab(tok: _ReservedVocabulary, vocab: list[str]) -> None:
    n = len(tok.reserved_tokens)
    if vocab[:n] != tok.reserved_tokens:
        raise ValueError(
            f"vocabulary starts with {vocab[:n]}, "
            f"expected the reserved tokens {tok.reserved_tokens}"
        )
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocabulary has duplicate tokens")
    tok._set_learned(vocab[n:])
