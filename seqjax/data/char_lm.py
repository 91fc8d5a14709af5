"""Character-level language-modelling data: Tiny Shakespeare and the dinosaur names."""

from __future__ import annotations

import os

import numpy as np

from .paths import DataFormatError, data_file, read_lines, read_text
from .records import Examples, LoadedDataset, SkipLog
from .tfds_source import as_text, tfds_records
from .tokenizers import CharTokenizer

__all__ = ["lm_windows", "load_dinos", "load_tiny_shakespeare"]

PathLike = str | os.PathLike[str]


def lm_windows(ids: np.ndarray, seq_len: int, stride: int | None = None) -> Examples:
    """Cuts an id stream into next-token prediction windows.

    Window ``k`` covers ``ids[k*stride : k*stride + seq_len + 1]``: inputs are its first
    T steps, targets the last T (shifted by one). Steps after the last full window are
    not used; :func:`load_tiny_shakespeare` reports how many.

    Args:
        ids: Id stream [L].
        seq_len: T.
        stride: Step between window starts (default T: non-overlapping windows).

    Returns:
        ``Examples(inputs [N, T], targets [N, T])`` with ``N = (L - T - 1) // stride + 1``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D [L], got shape {ids.shape}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    stride = seq_len if stride is None else stride
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    if len(ids) < seq_len + 1:
        raise ValueError(f"ids has {len(ids)} steps, fewer than seq_len + 1 = {seq_len + 1}")
    n = (len(ids) - seq_len - 1) // stride + 1
    starts = np.arange(n)[:, None] * stride
    window = ids[starts + np.arange(seq_len + 1)[None, :]]
    return Examples(window[:, :-1], window[:, 1:])


def load_tiny_shakespeare(
    *,
    val_fraction: float = 0.1,
    seq_len: int | None = None,
    tokenizer: CharTokenizer | None = None,
    source: str = "files",
    data_dir: PathLike | None = None,
    tfds_data_dir: str | None = None,
    download: bool = True,
) -> LoadedDataset:
    """Tiny Shakespeare (1,115,394 characters, 65 distinct) for character-level modelling.

    From files, the text is split contiguously: the last ``val_fraction`` of the
    characters is ``validation`` (as char-rnn/nanoGPT do). From TFDS
    (``tiny_shakespeare``), TFDS' own ``train``/``validation``/``test`` splits are used
    and ``val_fraction`` is ignored.

    Args:
        val_fraction: Share of characters for validation, in [0, 1).
        seq_len: When given, each split is cut with :func:`lm_windows` into inputs and
            targets [N, T]; otherwise inputs is the id stream [L] and targets ``None``.
        tokenizer: A fitted :class:`CharTokenizer`; default: one fitted on the whole text.

    Returns:
        :class:`LoadedDataset`; ``info["counts"]`` holds characters per split and, with
        ``seq_len``, ``info["unused_tail"]`` the characters after the last window.
    """
    if source not in ("files", "tfds"):
        raise ValueError(f"source must be 'files' or 'tfds', got {source!r}")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    info: dict = {"dataset": "tiny_shakespeare", "source": source}
    if source == "files":
        path = data_file("tinyshakespeare/input.txt", "the Tiny Shakespeare text (UTF-8)", data_dir)
        info["files"] = {"all": str(path)}
        text = read_text(path)
        if not text:
            raise DataFormatError(f"{str(path)!r} is empty; expected the Tiny Shakespeare text")
        n_val = int(round(len(text) * val_fraction))
        texts = {"train": text[: len(text) - n_val]}
        if n_val:
            texts["validation"] = text[len(text) - n_val :]
    else:
        texts = {}
        for split in ("train", "validation", "test"):
            texts[split] = "".join(
                as_text(r["text"])
                for r in tfds_records(
                    "tiny_shakespeare", split, data_dir=tfds_data_dir, download=download
                )
            )
    if tokenizer is None:
        tokenizer = CharTokenizer().fit(texts.values())
    splits = {}
    unused = {}
    for name, split_text in texts.items():
        ids = np.asarray(tokenizer.encode(split_text), np.int32)
        if seq_len is None:
            splits[name] = Examples(ids, None)
        else:
            windows = lm_windows(ids, seq_len)
            unused[name] = len(ids) - windows.inputs.size - 1
            splits[name] = windows
    info["counts"] = {name: len(t) for name, t in texts.items()}
    info["vocab_size"] = tokenizer.vocab_size
    info["skipped"] = {}
    if seq_len is not None:
        info["unused_tail"] = unused
    return LoadedDataset(splits, tokenizer, info)


def load_dinos(
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    lower: bool = True,
    data_dir: PathLike | None = None,
) -> LoadedDataset:
    """Dinosaur names (1,536 lines) for the deeplearning.ai "Dinosaurus Island" model.

    Each name becomes ``inputs = "\\n" + name`` and ``targets = name + "\\n"`` as ids:
    ``"\\n"`` marks both the start and the end, as in the assignment, and with
    ``lower=True`` the ids are the assignment's (``"\\n"`` = 0, ``a``-``z`` = 1-26,
    V = 27). Names are split into ``train``/``validation`` by a seeded shuffle.
    Empty lines would be skipped, counted in ``info["skipped"]`` and warned about.

    Returns:
        :class:`LoadedDataset`: inputs and targets are ragged int32 [L_i + 1].
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    path = data_file("dinos/dinos.txt", "one dinosaur name per line", data_dir)
    skips = SkipLog("load_dinos")
    names = []
    for number, line in read_lines(path):
        if not line.strip():
            skips.skip("empty lines", f"{path}:{number}")
            continue
        names.append(line.lower() if lower else line)
    tokenizer = CharTokenizer(lower=lower).fit(names + ["\n"])
    newline = tokenizer.encode("\n")
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = int(round(len(names) * val_fraction))
    parts = {"train": order[: len(names) - n_val], "validation": order[len(names) - n_val :]}
    splits = {}
    for name, idx in parts.items():
        if name == "validation" and not len(idx):
            continue
        encoded = [tokenizer.encode(names[i]) for i in idx]
        splits[name] = Examples(
            [np.asarray(newline + e, np.int32) for e in encoded],
            [np.asarray(e + newline, np.int32) for e in encoded],
        )
    info = {
        "dataset": "dinos",
        "source": "files",
        "files": {"all": str(path)},
        "total": len(names),
        "counts": {name: ex.num_examples for name, ex in splits.items()},
        "vocab_size": tokenizer.vocab_size,
        "seed": seed,
        "skipped": skips.as_dict(),
    }
    skips.warn_if_any()
    return LoadedDataset(splits, tokenizer, info)
