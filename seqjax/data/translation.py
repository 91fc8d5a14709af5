"""Tatoeba / manythings.org English sentence pairs for sequence-to-sequence translation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .cache import cached_load, check_cache, file_fingerprint
from .paths import DataFormatError, data_file, read_lines
from .records import Examples, LoadedDataset, SkipLog, check_on_error
from .tokenizers import CharTokenizer, WordTokenizer

__all__ = ["PAIR_LANGUAGES", "TRANSLATION_PUNCTUATION", "load_tatoeba"]

PathLike = str | os.PathLike[str]
PAIR_LANGUAGES = ("fra", "spa", "deu", "vie")
# Punctuation that carries meaning in translation (questions, exclamations): kept as
# tokens of their own rather than deleted as the Keras defaults would.
TRANSLATION_PUNCTUATION = '.,!?¿¡;:"«»…'


def _tokenizers(level: str, num_words: int | None) -> tuple[Any, Any]:
    if level == "word":
        common = {
            "style": "tokenizer",
            "filters": "",
            "isolate": TRANSLATION_PUNCTUATION,
            "split": None,
        }
        source = WordTokenizer(num_words, start_token=None, eos_token=None, **common)
        target = WordTokenizer(num_words, **common)
    else:
        source = CharTokenizer(pad_token="<PAD>", unk_token="<UNK>")
        target = CharTokenizer(
            pad_token="<PAD>", start_token="<START>", unk_token="<UNK>", eos_token="<EOS>"
        )
    return source, target


def load_tatoeba(
    lang: str = "fra",
    *,
    level: str = "word",
    reverse: bool = False,
    num_examples: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    num_words: int | None = None,
    data_dir: PathLike | None = None,
    on_error: str = "raise",
    cache: bool = True,
) -> LoadedDataset:
    """English <-> ``lang`` sentence pairs (fra 142,787; spa 118,964; deu 169,813; vie 8,050).

    Reads ``pairs/{lang}.tsv.gz`` (``english<TAB>translation``, plus an attribution
    column in ``vie``). The file is ordered roughly by sentence length, so
    ``num_examples`` keeps the first, shortest pairs (as the Keras and TensorFlow
    tutorials do); the kept pairs are then split by a seeded shuffle.

    Word level: lower-cased, split on whitespace, with the punctuation in
    ``TRANSLATION_PUNCTUATION`` as tokens of its own. Character level: every character
    is a token. Tokenizers are fitted on ``train``.

    Args:
        lang: One of ``PAIR_LANGUAGES``.
        level: ``"word"`` or ``"char"``.
        reverse: Translate from ``lang`` to English instead of English to ``lang``.
        num_examples: Use only the first N lines of the file.
        val_fraction: Share of pairs in ``validation``, in [0, 1).
        seed: Seed of the split.
        num_words: V of each word tokenizer (reserved ids included).
        on_error: ``"raise"`` on a malformed line, or ``"skip"`` it (reported).
        cache: Reuse the encoded splits from the on-disk data cache, and store them
            there on a miss; ``False`` bypasses it (see :func:`seqjax.data.clear_cache`).

    Returns:
        :class:`LoadedDataset` with splits ``train``/``validation``: inputs ragged source
        ids [L_i]; targets ``(decoder_inputs, decoder_targets)``, ragged, which are the
        target ids with ``<START>`` prepended and with ``<EOS>`` appended. ``tokenizer``
        is ``(source_tokenizer, target_tokenizer)``.
    """
    if lang not in PAIR_LANGUAGES:
        raise ValueError(f"lang must be one of {PAIR_LANGUAGES}, got {lang!r}")
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    if num_examples is not None and (not isinstance(num_examples, int) or num_examples < 1):
        raise ValueError(f"num_examples must be a positive int or None, got {num_examples!r}")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    check_on_error(on_error)
    check_cache(cache)
    columns = 3 if lang == "vie" else 2
    expected = f"{columns} tab-separated columns (english, {lang}" + (
        ", attribution)" if columns == 3 else ")"
    )
    path = data_file(f"pairs/{lang}.tsv.gz", f"gzip text, one pair per line: {expected}", data_dir)
    key = {}
    if cache:
        key = {
            "files": [file_fingerprint(path)],
            "lang": lang,
            "level": level,
            "reverse": reverse,
            "num_examples": num_examples,
            "val_fraction": val_fraction,
            "seed": seed,
            "num_words": num_words,
            "on_error": on_error,
        }

    def build() -> tuple[LoadedDataset, list[str]]:
        return _build_tatoeba(
            path, lang, columns, expected, level, reverse, num_examples, val_fraction, seed,
            num_words, on_error,
        )  # fmt: skip

    return cached_load("load_tatoeba", key, build, cache=cache)


def _build_tatoeba(
    path: Any,
    lang: str,
    columns: int,
    expected: str,
    level: str,
    reverse: bool,
    num_examples: int | None,
    val_fraction: float,
    seed: int,
    num_words: int | None,
    on_error: str,
) -> tuple[LoadedDataset, list[str]]:
    """load_tatoeba's work after validation: read the pairs, split, fit, encode."""
    skips = SkipLog("load_tatoeba")
    english: list[str] = []
    other: list[str] = []
    lines_read = 0
    for number, line in read_lines(path):
        if num_examples is not None and len(english) >= num_examples:
            break
        lines_read = number
        fields = line.split("\t")
        if len(fields) != columns or not fields[0].strip() or not fields[1].strip():
            where = f"{path}:{number}"
            if on_error == "raise":
                raise DataFormatError(f"{where}: malformed line {line!r}; expected {expected}")
            skips.skip("malformed lines", where)
            continue
        english.append(fields[0])
        other.append(fields[1])
    if not english:
        raise DataFormatError(f"{str(path)!r} holds no sentence pair; expected {expected}")
    sources, targets = (other, english) if reverse else (english, other)

    order = np.random.default_rng(seed).permutation(len(sources))
    n_val = int(round(len(sources) * val_fraction))
    parts = {"train": order[: len(order) - n_val]}
    if n_val:
        parts["validation"] = order[len(order) - n_val :]
    src_tok, tgt_tok = _tokenizers(level, num_words)
    train = parts["train"]
    if level == "word":
        src_tok.fit([sources[i] for i in train], progress=False)
        tgt_tok.fit([targets[i] for i in train], progress=False)
    else:
        src_tok.fit(sources[i] for i in train)
        tgt_tok.fit(targets[i] for i in train)

    splits = {}
    for name, idx in parts.items():
        src = src_tok.texts_to_sequences([sources[i] for i in idx])
        tgt = tgt_tok.texts_to_sequences([targets[i] for i in idx])
        start, eos = [tgt_tok.start_id], [tgt_tok.eos_id]
        splits[name] = Examples(
            [np.asarray(s, np.int32) for s in src],
            (
                [np.asarray(start + t, np.int32) for t in tgt],
                [np.asarray(t + eos, np.int32) for t in tgt],
            ),
        )
    info = {
        "dataset": f"tatoeba-{lang}",
        "source": "files",
        "files": {"all": str(path)},
        "direction": f"{lang}->eng" if reverse else f"eng->{lang}",
        "level": level,
        "lines_read": lines_read,
        "num_examples": num_examples,
        "counts": {name: len(idx) for name, idx in parts.items()},
        "seed": seed,
        "skipped": skips.as_dict(),
    }
    message = skips.message()
    return LoadedDataset(splits, (src_tok, tgt_tok), info), [] if message is None else [message]
