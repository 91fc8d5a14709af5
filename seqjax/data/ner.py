"""Named-entity recognition in CoNLL column format: WNUT-17 and CoNLL-2003.

CoNLL-2003 (Reuters text) may not be redistributed: it is read in place from the data
directory, or through TFDS, and this module never writes it anywhere.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .paths import DataFormatError, data_file, read_lines
from .records import Examples, LoadedDataset, SkipLog, check_on_error
from .tfds_source import as_text, tfds_feature_names, tfds_records
from .tokenizers import WordTokenizer

__all__ = [
    "Sentence",
    "bio_tag_set",
    "count_entities",
    "iob1_to_bio",
    "load_conll2003",
    "load_wnut17",
    "read_conll",
]

PathLike = str | os.PathLike[str]
_TAG = re.compile(r"^(O|[BI]-\S+)$")
_SPLIT_FILES = {"train": "train", "validation": "dev", "test": "test"}


class Sentence(NamedTuple):
    """One sentence: its tokens and (BIO) tags, of equal length."""

    tokens: list[str]
    tags: list[str]


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """Converts IOB1 tags to BIO (IOB2): every entity starts with ``B-``.

    In IOB1, ``B-`` appears only between two adjacent entities of the same type; an
    ``I-X`` that follows ``O`` or a tag of another type starts an entity. Input that is
    already BIO is returned unchanged, so the conversion is safe to apply to both.
    """
    out = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def count_entities(sentences: Iterable[Sentence]) -> Counter[str]:
    """Entities per type in BIO-tagged sentences (one per ``B-`` tag)."""
    counts: Counter[str] = Counter()
    for sentence in sentences:
        counts.update(t[2:] for t in sentence.tags if t.startswith("B-"))
    return counts


def bio_tag_set(types: Iterable[str]) -> list[str]:
    """``["O", "B-T1", "I-T1", "B-T2", ...]`` over the sorted entity types."""
    tags = ["O"]
    for typ in sorted(set(types)):
        tags += [f"B-{typ}", f"I-{typ}"]
    return tags


def read_conll(
    path: PathLike, *, on_error: str = "raise", skips: SkipLog | None = None
) -> tuple[list[Sentence], dict[str, Any]]:
    """Reads a CoNLL column file: first column the token, last column the NER tag.

    Columns are tab-separated when the line has a tab, else space-separated; sentences
    are separated by blank lines (whitespace-only lines count as blank: WNUT-17's
    training file separates 2,394 of its sentences with a line holding just a tab),
    documents by ``-DOCSTART-`` lines. Tags must be ``O``, ``B-type`` or ``I-type`` and
    are converted from IOB1 to BIO.

    Args:
        path: The file (``*.gz`` is gunzipped on the fly).
        on_error: ``"raise"`` on a malformed line, or ``"skip"`` its whole sentence.
        skips: Where skipped lines/sentences are counted (a new log when ``None``).

    Returns:
        The sentences and facts: ``documents``, ``tokens``, ``columns``,
        ``iob1_tags_converted``.

    Raises:
        DataFormatError: Naming the file and line of the first malformed line.
    """
    check_on_error(on_error)
    skips = skips if skips is not None else SkipLog("read_conll")
    expected = (
        "'token<TAB>tag' or 'token POS chunk tag' columns with a tag O, B-type or I-type, "
        "blank lines between sentences"
    )
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    bad_line: str | None = None
    columns: int | None = None
    documents = 0
    converted = 0

    def close_sentence() -> None:
        nonlocal tokens, tags, bad_line, converted
        if tokens or bad_line:
            if bad_line is not None:
                skips.skip("sentences with a malformed line", bad_line)
            else:
                bio = iob1_to_bio(tags)
                converted += sum(a != b for a, b in zip(tags, bio, strict=True))
                sentences.append(Sentence(tokens, bio))
        tokens, tags, bad_line = [], [], None

    for number, line in read_lines(path):
        where = f"{os.fspath(path)}:{number}"
        if not line.strip():
            close_sentence()
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if fields[0] == "-DOCSTART-":
            close_sentence()
            documents += 1
            continue
        problem = None
        if len(fields) < 2 or not fields[0]:
            problem = f"{len(fields)} column(s)"
        elif columns is not None and len(fields) != columns:
            problem = f"{len(fields)} columns where earlier lines have {columns}"
        elif not _TAG.match(fields[-1]):
            problem = f"tag {fields[-1]!r}"
        if problem is not None:
            message = f"{where}: malformed line {line!r} ({problem}); expected {expected}"
            if on_error == "raise":
                raise DataFormatError(message)
            bad_line = bad_line or where
            continue
        columns = columns or len(fields)
        tokens.append(fields[0])
        tags.append(fields[-1])
    close_sentence()
    facts = {
        "documents": documents,
        "sentences": len(sentences),
        "tokens": sum(len(s.tokens) for s in sentences),
        "columns": columns,
        "iob1_tags_converted": converted,
    }
    return sentences, facts


def _encode(
    raw: dict[str, list[Sentence]],
    tokenizer: WordTokenizer | None,
    num_words: int | None,
    lower: bool,
    tags: Sequence[str] | None,
    info: dict[str, Any],
) -> LoadedDataset:
    if tokenizer is None:
        tokenizer = WordTokenizer(
            num_words=num_words, lower=lower, start_token=None, eos_token=None
        )
    elif num_words is not None:
        raise ValueError("pass num_words to the tokenizer you give, not to the loader")
    if tokenizer.vocab_size == len(tokenizer.reserved_tokens):
        tokenizer.fit([s.tokens for s in raw["train"]], progress=False)
    if tags is None:
        types = {t[2:] for sents in raw.values() for s in sents for t in s.tags if t != "O"}
        tags = bio_tag_set(types)
    tag_index = {t: i for i, t in enumerate(tags)}
    splits = {}
    for name, sents in raw.items():
        ids = tokenizer.texts_to_sequences([s.tokens for s in sents], progress=False)
        try:
            tag_ids = [np.asarray([tag_index[t] for t in s.tags], np.int32) for s in sents]
        except KeyError as err:
            raise ValueError(
                f"tag {err.args[0]!r} in split {name!r} is not in tags={list(tags)}"
            ) from None
        splits[name] = Examples([np.asarray(x, np.int32) for x in ids], tag_ids)
    info["tags"] = list(tags)
    info["entities"] = {name: dict(sorted(count_entities(s).items())) for name, s in raw.items()}
    info["counts"] = {name: len(s) for name, s in raw.items()}
    return LoadedDataset(splits, tokenizer, info)


def _load_files(
    loader: str,
    folder: str,
    suffix: str,
    data_dir: PathLike | None,
    on_error: str,
) -> tuple[dict[str, list[Sentence]], dict[str, Any], SkipLog]:
    check_on_error(on_error)
    skips = SkipLog(loader)
    raw, info = {}, {"source": "files", "files": {}, "facts": {}}
    for split, stem in _SPLIT_FILES.items():
        path = data_file(f"{folder}/{stem}{suffix}", "CoNLL columns (token ... NER tag)", data_dir)
        sentences, facts = read_conll(path, on_error=on_error, skips=skips)
        if not sentences:
            raise DataFormatError(f"{str(path)!r} holds no sentence; expected CoNLL columns")
        raw[split] = sentences
        info["files"][split] = str(path)
        info["facts"][split] = facts
    return raw, info, skips


def load_wnut17(
    *,
    num_words: int | None = None,
    lower: bool = False,
    tokenizer: WordTokenizer | None = None,
    tags: Sequence[str] | None = None,
    data_dir: PathLike | None = None,
    on_error: str = "raise",
) -> LoadedDataset:
    """WNUT-17 emerging entities (sentences 3,394 / 1,009 / 1,287; 6 types, BIO).

    Reads ``ner/wnut17/{train,dev,test}.conll``.

    Args:
        num_words: V of the default word tokenizer (fitted on train; case kept unless
            ``lower``; reserved ids ``<PAD>``=0, ``<UNK>``=1).
        tags: Tag list defining the tag ids (default: :func:`bio_tag_set` of the types).
        on_error: ``"raise"`` on a malformed line or ``"skip"`` its sentence (reported).

    Returns:
        :class:`LoadedDataset` with splits ``train``/``validation``/``test``: inputs and
        targets ragged int32 [L_i] (word ids, tag ids); ``info["tags"]`` names the tag
        ids and ``info["entities"]`` counts entities per type.
    """
    raw, info, skips = _load_files("load_wnut17", "ner/wnut17", ".conll", data_dir, on_error)
    info["dataset"] = "wnut17"
    info["skipped"] = skips.as_dict()
    skips.warn_if_any()
    return _encode(raw, tokenizer, num_words, lower, tags, info)


def load_conll2003(
    *,
    num_words: int | None = None,
    lower: bool = False,
    tokenizer: WordTokenizer | None = None,
    tags: Sequence[str] | None = None,
    source: str = "files",
    data_dir: PathLike | None = None,
    tfds_data_dir: str | None = None,
    download: bool = True,
    on_error: str = "raise",
) -> LoadedDataset:
    """CoNLL-2003 English NER (sentences 14,041 / 3,250 / 3,453; LOC, MISC, ORG, PER).

    The original tags are IOB1 and are converted to BIO. From files, reads
    ``ner/conll2003/{train,dev,test}.txt.gz`` in place (the Reuters text may not be
    redistributed, so nothing is copied or cached). From TFDS (``conll2003``), TFDS'
    ``train``/``dev``/``test`` splits become ``train``/``validation``/``test``.

    Arguments and result as for :func:`load_wnut17`.
    """
    if source not in ("files", "tfds"):
        raise ValueError(f"source must be 'files' or 'tfds', got {source!r}")
    if source == "files":
        raw, info, skips = _load_files(
            "load_conll2003", "ner/conll2003", ".txt.gz", data_dir, on_error
        )
    else:
        check_on_error(on_error)
        skips = SkipLog("load_conll2003")
        names = tfds_feature_names("conll2003", "ner", data_dir=tfds_data_dir)
        raw, info = {}, {"source": "tfds", "facts": {}}
        for split, tfds_split in _SPLIT_FILES.items():
            sentences = []
            converted = 0
            records = tfds_records(
                "conll2003", tfds_split, data_dir=tfds_data_dir, download=download
            )
            for i, record in enumerate(records):
                toks = [as_text(t) for t in np.asarray(record["tokens"]).reshape(-1)]
                tag_list = [names[int(t)] for t in np.asarray(record["ner"]).reshape(-1)]
                if len(toks) != len(tag_list) or not toks:
                    where = f"tfds conll2003/{tfds_split}[{i}]"
                    message = (
                        f"{where}: {len(toks)} tokens but {len(tag_list)} tags; "
                        "expected one tag per token"
                    )
                    if on_error == "raise":
                        raise DataFormatError(message)
                    skips.skip("records whose tokens and tags differ in length", where)
                    continue
                bio = iob1_to_bio(tag_list)
                converted += sum(a != b for a, b in zip(tag_list, bio, strict=True))
                sentences.append(Sentence(toks, bio))
            raw[split] = sentences
            info["facts"][split] = {
                "sentences": len(sentences),
                "tokens": sum(len(s.tokens) for s in sentences),
                "iob1_tags_converted": converted,
            }
    info["dataset"] = "conll2003"
    info["skipped"] = skips.as_dict()
    skips.warn_if_any()
    return _encode(raw, tokenizer, num_words, lower, tags, info)
