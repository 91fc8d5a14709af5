"""Sentence/document classification loaders: IMDB, MR sentence polarity, sarcasm headlines.

Every loader here caches its encoded splits on disk (``cache=True``, see
:mod:`seqjax.data.cache`), keyed by the data files and every argument that changes the
result.
"""

from __future__ import annotations

import json
import os
import re
from itertools import chain
from typing import Any

import numpy as np

from .cache import cached_load, check_cache, file_fingerprint
from .padding import pad_sequences
from .paths import DataFormatError, data_file, read_lines
from .records import Examples, LoadedDataset, SkipLog, check_on_error
from .subword import DEFAULT_SUBWORD_VOCAB_SIZE, SubwordTokenizer, tokenizers_version
from .tfds_source import as_text, tfds_records
from .tokenizers import WordTokenizer

__all__ = [
    "keras_word_index",
    "kfold_indices",
    "load_imdb",
    "load_imdb_keras",
    "load_mr",
    "load_sarcasm",
]

PathLike = str | os.PathLike[str]
Tokenizer = WordTokenizer | SubwordTokenizer
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


# -- shared helpers -------------------------------------------------------------------
def _check_source(source: str) -> None:
    if source not in ("files", "tfds"):
        raise ValueError(f"source must be 'files' or 'tfds', got {source!r}")


def _resolve_tokenizer(tokenizer: Tokenizer | str | None, num_words: int | None) -> Tokenizer:
    """The tokenizer a loader's ``tokenizer`` and ``num_words`` arguments ask for."""
    if tokenizer is None or (isinstance(tokenizer, str) and tokenizer == "word"):
        return WordTokenizer(num_words=num_words)
    if isinstance(tokenizer, str) and tokenizer == "subword":
        size = DEFAULT_SUBWORD_VOCAB_SIZE if num_words is None else num_words
        try:
            return SubwordTokenizer(size)
        except ValueError as err:
            raise ValueError(f"num_words (the subword vocabulary's size): {err}") from None
    if not isinstance(tokenizer, (WordTokenizer, SubwordTokenizer)):
        raise ValueError(
            "tokenizer must be 'word', 'subword', a WordTokenizer or a SubwordTokenizer, "
            f"got {tokenizer!r}"
        )
    if num_words is not None:
        raise ValueError("pass num_words to the tokenizer you give, not to the loader")
    return tokenizer


def _tokenizer_key(tokenizer: Tokenizer) -> dict[str, Any]:
    """The tokenizer's part of a cache key: its configuration (and vocabulary, if any)."""
    key: dict[str, Any] = {"config": tokenizer.to_dict()}
    if isinstance(tokenizer, SubwordTokenizer):
        key["tokenizers"] = tokenizers_version()  # the trained merges depend on it
    return key


def _given(tokenizer: Tokenizer | str | None) -> Tokenizer | None:
    """The tokenizer object the caller passed (the loader fits it in place), if any."""
    return None if tokenizer is None or isinstance(tokenizer, str) else tokenizer


def _messages(skips: SkipLog) -> list[str]:
    """The skipped-records warning to emit, as :func:`cached_load` takes it."""
    message = skips.message()
    return [] if message is None else [message]


def _encode_splits(
    texts: dict[str, list[str]],
    labels: dict[str, np.ndarray],
    tokenizer: Tokenizer,
    maxlen: int | None,
    padding: str,
    truncating: str,
    progress: bool,
    info: dict[str, Any],
) -> LoadedDataset:
    """Fits the tokenizer on ``train`` (unless already fitted) and encodes every split."""
    fitted = tokenizer.vocab_size > len(tokenizer.reserved_tokens)
    if isinstance(tokenizer, WordTokenizer):
        # Tokenize once for both fitting and encoding: the word split is the slow part.
        tokens = {n: tokenizer.tokenize_many(t, progress=progress) for n, t in texts.items()}
        if not fitted:
            tokenizer.fit_tokens(tokens["train"])
        sequences = {n: tokenizer.tokens_to_sequences(t) for n, t in tokens.items()}
    else:
        if not fitted:
            tokenizer.fit(texts["train"], progress=progress)
        sequences = {
            n: tokenizer.texts_to_sequences(t, progress=progress) for n, t in texts.items()
        }
    splits = {}
    truncated = {}
    for name, seqs in sequences.items():
        if maxlen is None:
            inputs: Any = [np.asarray(s, np.int32) for s in seqs]
        else:
            truncated[name] = sum(len(s) > maxlen for s in seqs)
            inputs = pad_sequences(seqs, maxlen, "int32", padding, truncating, 0)
        splits[name] = Examples(inputs, labels[name])
    if maxlen is not None:
        info["truncated_to_maxlen"] = truncated
    return LoadedDataset(splits, tokenizer, info)


def _check_fields(
    record: Any, fields: dict[str, tuple[type, ...]], where: str, expected: str
) -> str | None:
    """Returns a description of what is wrong with a JSON record, or None."""
    if not isinstance(record, dict):
        return f"{where}: expected a JSON object {expected}, got {type(record).__name__}"
    for key, types in fields.items():
        if key not in record:
            return f"{where}: missing key {key!r}; expected {expected}"
        if (
            not isinstance(record[key], types)
            or isinstance(record[key], bool)
            and bool not in types
        ):
            return f"{where}: key {key!r} has {record[key]!r}; expected {expected}"
    return None


def _read_jsonl(
    path: PathLike,
    fields: dict[str, tuple[type, ...]],
    expected: str,
    skips: SkipLog,
    on_error: str,
    extra_check: Any = None,
) -> list[dict[str, Any]]:
    records = []
    for number, line in read_lines(path):
        where = f"{os.fspath(path)}:{number}"
        if not line.strip():
            problem, reason = f"{where}: empty line; expected {expected}", "empty lines"
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                problem = f"{where}: not valid JSON ({err.msg}); expected {expected}"
                reason = "lines that are not valid JSON"
            else:
                problem = _check_fields(record, fields, where, expected)
                if problem is None and extra_check is not None:
                    problem = extra_check(record, where)
                reason = "records with missing or invalid fields"
                if problem is None:
                    records.append(record)
                    continue
        if on_error == "raise":
            raise DataFormatError(problem)
        skips.skip(reason, where)
    return records


# -- IMDB -----------------------------------------------------------------------------
_IMDB_EXPECTED = '{"id": int, "text": str, "label": 0|1, "rating": int} per line'


def _imdb_label_ok(record: dict[str, Any], where: str) -> str | None:
    if record["label"] not in (0, 1):
        return f"{where}: label {record['label']!r}; expected 0 or 1"
    return None


def _imdb_files(data_dir: PathLike | None) -> list[Any]:
    return [
        data_file(f"imdb/{split}.jsonl.gz", f"gzip JSON lines {_IMDB_EXPECTED}", data_dir)
        for split in ("train", "test")
    ]


def _read_imdb(
    source: str,
    data_dir: PathLike | None,
    tfds_data_dir: str | None,
    download: bool,
    strip_html: bool,
    skips: SkipLog,
    on_error: str,
) -> tuple[dict[str, list[str]], dict[str, np.ndarray], dict[str, Any]]:
    texts, labels = {}, {}
    info: dict[str, Any] = {"dataset": "imdb", "source": source}
    if source == "files":
        info["files"] = {}
        for split, path in zip(("train", "test"), _imdb_files(data_dir), strict=True):
            info["files"][split] = str(path)
            fields = {"text": (str,), "label": (int,)}
            records = _read_jsonl(path, fields, _IMDB_EXPECTED, skips, on_error, _imdb_label_ok)
            texts[split] = [r["text"] for r in records]
            labels[split] = np.fromiter((r["label"] for r in records), np.int32, len(records))
    else:
        for split in ("train", "test"):
            rows = list(
                tfds_records("imdb_reviews", split, data_dir=tfds_data_dir, download=download)
            )
            texts[split] = [as_text(r["text"]) for r in rows]
            labels[split] = np.asarray([int(r["label"]) for r in rows], np.int32)
    if strip_html:
        # The reviews keep the site's "<br />" line breaks; as words they would only add noise.
        for split in texts:
            texts[split] = [_HTML_BREAK.sub(" ", t) for t in texts[split]]
    info["counts"] = {s: len(t) for s, t in texts.items()}
    info["label_counts"] = {s: np.bincount(y, minlength=2).tolist() for s, y in labels.items()}
    return texts, labels, info


def load_imdb(
    *,
    num_words: int | None = None,
    maxlen: int | None = None,
    padding: str = "pre",
    truncating: str = "pre",
    tokenizer: Tokenizer | str | None = None,
    strip_html: bool = True,
    source: str = "files",
    data_dir: PathLike | None = None,
    tfds_data_dir: str | None = None,
    download: bool = True,
    on_error: str = "raise",
    progress: bool = True,
    cache: bool = True,
) -> LoadedDataset:
    """IMDB movie reviews (25,000 train / 25,000 test), word or subword ids and 0/1 labels.

    The tokenizer (a default :class:`WordTokenizer` unless one is given) is fitted on
    the training texts only. ``tokenizer="subword"`` reads the reviews the way TFDS'
    ``imdb_reviews/subwords8k`` does: a :class:`SubwordTokenizer` of
    ``num_words`` (default 8,185) ids.

    Args:
        num_words: V of the default tokenizer (reserved ids included): the word
            vocabulary's size (``None``: every word), or the subword vocabulary's
            target size (``None``: 8,185).
        maxlen: T: pad/truncate every review to [T] (``None``: ragged lists).
        padding, truncating: As in :func:`pad_sequences` (Keras default ``"pre"``).
        tokenizer: ``"word"`` (the default), ``"subword"``, or a tokenizer to use: a
            :class:`WordTokenizer` or :class:`SubwordTokenizer`, fitted on train in
            place if it has no vocabulary yet.
        strip_html: Replace the ``<br />`` tags of the raw reviews by spaces.
        source: ``"files"`` (``imdb/{train,test}.jsonl.gz`` in the data directory) or
            ``"tfds"`` (``imdb_reviews`` through tensorflow-datasets).
        data_dir: Data directory (default: see :func:`seqjax.data.data_dir`).
        tfds_data_dir: TFDS' own data directory.
        download: Let TFDS download the dataset when missing.
        on_error: ``"raise"`` on a malformed line, or ``"skip"`` it (counted in
            ``info["skipped"]`` and warned about).
        progress: Allow progress bars for the slow steps.
        cache: Reuse the encoded splits from the on-disk data cache, and store them
            there on a miss (``source="files"`` only); ``False`` bypasses it. See
            :func:`seqjax.data.clear_cache`.

    Returns:
        :class:`LoadedDataset` with splits ``train``/``test``: inputs ragged int32 [L_i]
        (or [N, T]), targets int32 [N]; ``info`` has counts and ``skipped``.
    """
    _check_source(source)
    check_on_error(on_error)
    check_cache(cache)
    tok = _resolve_tokenizer(tokenizer, num_words)

    def build() -> tuple[LoadedDataset, list[str]]:
        skips = SkipLog("load_imdb")
        texts, labels, info = _read_imdb(
            source, data_dir, tfds_data_dir, download, strip_html, skips, on_error
        )
        info["skipped"] = skips.as_dict()
        ds = _encode_splits(texts, labels, tok, maxlen, padding, truncating, progress, info)
        return ds, _messages(skips)

    use_cache = cache and source == "files"
    key = {}
    if use_cache:
        key = {
            "files": [file_fingerprint(p) for p in _imdb_files(data_dir)],
            "tokenizer": _tokenizer_key(tok),
            "maxlen": maxlen,
            "padding": padding,
            "truncating": truncating,
            "strip_html": strip_html,
            "on_error": on_error,
        }
    return cached_load("load_imdb", key, build, cache=use_cache, given_tokenizer=_given(tokenizer))


def load_imdb_keras(
    *,
    num_words: int | None = None,
    skip_top: int = 0,
    maxlen: int | None = None,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
    strip_html: bool = True,
    source: str = "files",
    data_dir: PathLike | None = None,
    tfds_data_dir: str | None = None,
    download: bool = True,
    on_error: str = "raise",
    progress: bool = True,
    cache: bool = True,
) -> LoadedDataset:
    """IMDB in the form of ``keras.datasets.imdb.load_data``, built from the raw reviews.

    Word ids are frequency ranks over the training texts (1 = most frequent) plus
    ``index_from``; each review starts with ``start_char``; ids outside
    ``[skip_top, num_words)`` become ``oov_char`` (dropped when it is ``None``); test
    words never seen in training are ``oov_char`` too. Both splits are shuffled with
    ``np.random.RandomState(seed)`` the way Keras does. Keras' own ids came from its own
    preprocessing, so individual ids differ from ``keras.datasets.imdb``; the semantics
    are the same, except that with ``num_words=None`` Keras also turns the single largest
    id into ``oov_char`` (an off-by-one) and this does not. With ``maxlen``, reviews of
    ``maxlen`` ids or more are left out, as Keras does, but counted in ``info["skipped"]``
    and warned about.

    With the default ``start_char``/``oov_char``/``index_from`` the returned
    :class:`WordTokenizer` uses the same ids, so ``tokenizer.decode(x)`` reads a review
    back; :func:`keras_word_index` gives the word -> rank dict of ``get_word_index()``.
    The other arguments are those of :func:`load_imdb`; ``cache=True`` (the default)
    reuses the encoded splits from the on-disk data cache (``source="files"`` only).

    Returns:
        :class:`LoadedDataset`, splits ``train``/``test``: inputs a list of int32 arrays
        [L_i], targets int32 [N].
    """
    _check_source(source)
    check_on_error(on_error)
    for name, value in (("skip_top", skip_top), ("index_from", index_from)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if num_words is not None and (not isinstance(num_words, int) or num_words < 1):
        raise ValueError(f"num_words must be a positive int or None, got {num_words!r}")
    if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 1):
        raise ValueError(f"maxlen must be a positive int or None, got {maxlen!r}")
    check_cache(cache)
    use_cache = cache and source == "files"
    key = {}
    if use_cache:
        key = {
            "files": [file_fingerprint(p) for p in _imdb_files(data_dir)],
            "num_words": num_words,
            "skip_top": skip_top,
            "maxlen": maxlen,
            "seed": seed,
            "start_char": start_char,
            "oov_char": oov_char,
            "index_from": index_from,
            "strip_html": strip_html,
            "on_error": on_error,
        }

    def build() -> tuple[LoadedDataset, list[str]]:
        return _build_imdb_keras(
            num_words, skip_top, maxlen, seed, start_char, oov_char, index_from, strip_html,
            source, data_dir, tfds_data_dir, download, on_error, progress,
        )  # fmt: skip

    return cached_load("load_imdb_keras", key, build, cache=use_cache)


def _build_imdb_keras(
    num_words: int | None,
    skip_top: int,
    maxlen: int | None,
    seed: int,
    start_char: int | None,
    oov_char: int | None,
    index_from: int,
    strip_html: bool,
    source: str,
    data_dir: PathLike | None,
    tfds_data_dir: str | None,
    download: bool,
    on_error: str,
    progress: bool,
) -> tuple[LoadedDataset, list[str]]:
    """load_imdb_keras' work after validation: read, fit, shuffle, remap the ids."""
    skips = SkipLog("load_imdb_keras")
    texts, labels, info = _read_imdb(
        source, data_dir, tfds_data_dir, download, strip_html, skips, on_error
    )
    tokenizer = WordTokenizer()
    tokens = {name: tokenizer.tokenize_many(t, progress=progress) for name, t in texts.items()}
    tokenizer.fit_tokens(tokens["train"])
    # Tokenizer id -> keras id: rank = id - first_word_id + 1, keras id = rank + index_from.
    shift = index_from + 1 - len(tokenizer.reserved_tokens)
    unk = tokenizer.unk_id
    has_start = start_char is not None

    # Work on one flat id array per split (row lengths alongside): per-token Python
    # loops over IMDB's ~12M tokens would take seconds.
    rng = np.random.RandomState(seed)
    flats, row_lengths, ys = [], [], []
    for split in ("train", "test"):
        seqs = tokenizer.tokens_to_sequences(tokens[split])
        order = np.arange(len(seqs))
        rng.shuffle(order)
        lengths = np.fromiter((len(seqs[i]) for i in order), np.int64, len(order))
        ids = np.fromiter(chain.from_iterable(seqs[i] for i in order), np.int64, int(lengths.sum()))
        ids = np.where(ids == unk, -1, ids + shift)  # -1: unseen word, becomes oov_char
        if has_start:
            lengths = lengths + 1
            starts = np.cumsum(lengths) - lengths
            with_start = np.empty(int(lengths.sum()), np.int64)
            is_start = np.zeros(len(with_start), bool)
            is_start[starts] = True
            with_start[is_start] = start_char
            with_start[~is_start] = ids
            ids = with_start
        y = labels[split][order]
        if maxlen is not None:
            keep = lengths < maxlen
            dropped = int((~keep).sum())
            if dropped:
                skips.skip(
                    f"{split} reviews with >= maxlen={maxlen} ids (Keras' maxlen filter)",
                    count=dropped,
                )
            if not keep.any():
                raise ValueError(f"maxlen={maxlen} leaves no {split} review; increase maxlen")
            ids = ids[np.repeat(keep, lengths)]
            lengths, y = lengths[keep], y[keep]
        flats.append(ids)
        row_lengths.append(lengths)
        ys.append(y)

    if num_words is not None:
        limit = num_words
    else:
        limit = max(int(f.max(initial=0)) for f in flats) + 1
    out = []
    for ids, lengths in zip(flats, row_lengths, strict=True):
        in_range = (ids >= skip_top) & (ids < limit)
        if oov_char is None:
            rows = np.repeat(np.arange(len(lengths)), lengths)
            lengths = np.bincount(rows[in_range], minlength=len(lengths))
            ids = ids[in_range]
        else:
            ids = np.where(in_range, ids, oov_char)
        out.append(np.split(ids.astype(np.int32), np.cumsum(lengths)[:-1]))
    split_sizes = [len(o) for o in out]
    n_train = split_sizes[0]
    splits = {"train": Examples(out[0], ys[0]), "test": Examples(out[1], ys[1])}
    info.update(
        {
            "counts": {"train": n_train, "test": split_sizes[1]},
            "num_words": num_words,
            "skip_top": skip_top,
            "index_from": index_from,
            "start_char": start_char,
            "oov_char": oov_char,
            "seed": seed,
            "skipped": skips.as_dict(),
        }
    )
    return LoadedDataset(splits, tokenizer, info), _messages(skips)


def keras_word_index(tokenizer: WordTokenizer) -> dict[str, int]:
    """Word -> frequency rank (1-based), like ``keras.datasets.imdb.get_word_index()``."""
    first = len(tokenizer.reserved_tokens)
    return {w: i - first + 1 for i, w in enumerate(tokenizer.vocabulary) if i >= first}


# -- MR sentence polarity -------------------------------------------------------------
def kfold_indices(num_examples: int, num_folds: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Seeded k-fold partition of ``range(num_examples)``.

    Returns:
        ``num_folds`` sorted index arrays, disjoint, covering every example once, sizes
        differing by at most one.
    """
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"num_folds must be an int >= 2, got {num_folds!r}")
    if num_examples < num_folds:
        raise ValueError(f"num_examples={num_examples} is smaller than num_folds={num_folds}")
    perm = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(fold) for fold in np.array_split(perm, num_folds)]


def load_mr(
    *,
    fold: int = 0,
    num_folds: int = 10,
    seed: int = 0,
    num_words: int | None = None,
    maxlen: int | None = None,
    padding: str = "pre",
    truncating: str = "pre",
    tokenizer: Tokenizer | str | None = None,
    data_dir: PathLike | None = None,
    progress: bool = True,
    cache: bool = True,
) -> LoadedDataset:
    """MR sentence polarity (5,331 positive + 5,331 negative snippets) with a seeded k-fold split.

    There is no official split; the usual protocol is 10-fold cross-validation. Fold
    ``fold`` of :func:`kfold_indices` (``seed``) is the ``test`` split, the rest is
    ``train`` (and the tokenizer is fitted on ``train``). Labels: 1 positive, 0 negative.
    Empty lines would be skipped, counted in ``info["skipped"]`` and warned about.
    ``num_words``, ``maxlen``, ``padding``, ``truncating``, ``tokenizer`` and ``cache``
    are those of :func:`load_imdb`.

    Returns:
        :class:`LoadedDataset` with splits ``train``/``test``.
    """
    if not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ValueError(f"fold must be an int in 0..{num_folds - 1}, got {fold!r}")
    check_cache(cache)
    tok = _resolve_tokenizer(tokenizer, num_words)
    paths = {
        name: data_file(f"mr/rt-polarity.{name}", "one UTF-8 snippet per line", data_dir)
        for name in ("pos", "neg")
    }
    key = {}
    if cache:
        key = {
            "files": [file_fingerprint(p) for p in paths.values()],
            "tokenizer": _tokenizer_key(tok),
            "fold": fold,
            "num_folds": num_folds,
            "seed": seed,
            "maxlen": maxlen,
            "padding": padding,
            "truncating": truncating,
        }

    def build() -> tuple[LoadedDataset, list[str]]:
        return _build_mr(paths, fold, num_folds, seed, tok, maxlen, padding, truncating, progress)

    return cached_load("load_mr", key, build, cache=cache, given_tokenizer=_given(tokenizer))


def _build_mr(
    paths: dict[str, Any],
    fold: int,
    num_folds: int,
    seed: int,
    tokenizer: Tokenizer,
    maxlen: int | None,
    padding: str,
    truncating: str,
    progress: bool,
) -> tuple[LoadedDataset, list[str]]:
    skips = SkipLog("load_mr")
    all_texts: list[str] = []
    all_labels: list[int] = []
    files = {}
    for label, name in ((1, "pos"), (0, "neg")):
        path = paths[name]
        files[name] = str(path)
        for number, line in read_lines(path):
            if not line.strip():
                skips.skip("empty lines", f"{path}:{number}")
                continue
            all_texts.append(line)
            all_labels.append(label)
    labels_arr = np.asarray(all_labels, np.int32)
    folds = kfold_indices(len(all_texts), num_folds, seed)
    test_idx = folds[fold]
    train_idx = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != fold]))
    texts = {
        "train": [all_texts[i] for i in train_idx],
        "test": [all_texts[i] for i in test_idx],
    }
    labels = {"train": labels_arr[train_idx], "test": labels_arr[test_idx]}
    info = {
        "dataset": "mr",
        "source": "files",
        "files": files,
        "total": len(all_texts),
        "label_counts": np.bincount(labels_arr, minlength=2).tolist(),
        "fold": fold,
        "num_folds": num_folds,
        "seed": seed,
        "counts": {"train": len(train_idx), "test": len(test_idx)},
        "skipped": skips.as_dict(),
    }
    ds = _encode_splits(texts, labels, tokenizer, maxlen, padding, truncating, progress, info)
    return ds, _messages(skips)


# -- sarcasm headlines ----------------------------------------------------------------
_SARCASM_EXPECTED = '{"article_link": str, "headline": str, "is_sarcastic": 0|1} per line'


def _sarcasm_label_ok(record: dict[str, Any], where: str) -> str | None:
    if record["is_sarcastic"] not in (0, 1):
        return f"{where}: is_sarcastic {record['is_sarcastic']!r}; expected 0 or 1"
    return None


def load_sarcasm(
    *,
    train_size: int | float = 20000,
    seed: int | None = None,
    num_words: int | None = None,
    maxlen: int | None = None,
    padding: str = "post",
    truncating: str = "post",
    tokenizer: Tokenizer | str | None = None,
    data_dir: PathLike | None = None,
    on_error: str = "raise",
    progress: bool = True,
    cache: bool = True,
) -> LoadedDataset:
    """News headlines for sarcasm detection (v1, 26,709 headlines; label 1 = sarcastic).

    There is no official split. By default the first 20,000 headlines in file order are
    ``train`` and the rest ``test`` (as in the TensorFlow in Practice course, whose
    padding/truncating are ``"post"``); give ``seed`` to shuffle first. Only the
    headline is used: the article link gives the label away.

    Args:
        train_size: Number (int) or fraction (float in (0, 1)) of training headlines.
        seed: Shuffle seed; ``None`` keeps the file order.

    The other arguments are those of :func:`load_imdb`.

    Returns:
        :class:`LoadedDataset` with splits ``train``/``test``.
    """
    check_on_error(on_error)
    check_cache(cache)
    tok = _resolve_tokenizer(tokenizer, num_words)
    path = data_file(
        "sarcasm/sarcasm_headlines_v1.jsonl.gz", f"gzip JSON lines {_SARCASM_EXPECTED}", data_dir
    )
    key = {}
    if cache:
        key = {
            "files": [file_fingerprint(path)],
            "tokenizer": _tokenizer_key(tok),
            "train_size": train_size,
            "seed": seed,
            "maxlen": maxlen,
            "padding": padding,
            "truncating": truncating,
            "on_error": on_error,
        }

    def build() -> tuple[LoadedDataset, list[str]]:
        return _build_sarcasm(
            path, train_size, seed, tok, maxlen, padding, truncating, on_error, progress
        )

    return cached_load("load_sarcasm", key, build, cache=cache, given_tokenizer=_given(tokenizer))


def _build_sarcasm(
    path: Any,
    train_size: int | float,
    seed: int | None,
    tokenizer: Tokenizer,
    maxlen: int | None,
    padding: str,
    truncating: str,
    on_error: str,
    progress: bool,
) -> tuple[LoadedDataset, list[str]]:
    skips = SkipLog("load_sarcasm")
    fields = {"headline": (str,), "is_sarcastic": (int,)}
    records = _read_jsonl(path, fields, _SARCASM_EXPECTED, skips, on_error, _sarcasm_label_ok)
    n = len(records)
    if isinstance(train_size, float):
        if not 0.0 < train_size < 1.0:
            raise ValueError(f"train_size as a fraction must lie in (0, 1), got {train_size}")
        n_train = int(round(train_size * n))
    elif isinstance(train_size, int) and 0 < train_size < n:
        n_train = train_size
    else:
        raise ValueError(
            f"train_size must be an int in 1..{n - 1} or a fraction, got {train_size!r}"
        )
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    headlines = [records[i]["headline"] for i in order]
    y = np.asarray([records[i]["is_sarcastic"] for i in order], np.int32)
    texts = {"train": headlines[:n_train], "test": headlines[n_train:]}
    labels = {"train": y[:n_train], "test": y[n_train:]}
    info = {
        "dataset": "sarcasm",
        "source": "files",
        "files": {"all": str(path)},
        "total": n,
        "label_counts": np.bincount(y, minlength=2).tolist(),
        "counts": {"train": n_train, "test": n - n_train},
        "seed": seed,
        "skipped": skips.as_dict(),
    }
    ds = _encode_splits(texts, labels, tokenizer, maxlen, padding, truncating, progress, info)
    return ds, _messages(skips)
