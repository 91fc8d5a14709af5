"""Padding ragged sequences into arrays, with exactly ``keras.utils.pad_sequences`` semantics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pad_sequences", "sequence_mask"]

_SIDES = ("pre", "post")


def pad_sequences(
    sequences: Sequence[Any],
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pads (and truncates) sequences to a common length, like ``keras.utils.pad_sequences``.

    Each sequence is first truncated to ``maxlen`` (``truncating="pre"`` keeps the last
    ``maxlen`` steps, ``"post"`` the first), then padded with ``value`` on the ``padding``
    side. Elements may themselves be arrays (shape [L_i, ...]); all must share the
    trailing shape. Empty sequences become all-``value`` rows.

    Two deliberate differences from Keras, both where Keras fails: ``maxlen=0`` returns
    an [N, 0] array (Keras raises for ``truncating="pre"``), and an empty list of
    sequences returns an [0, maxlen or 0] array (Keras raises).

    Args:
        sequences: N sequences of lengths L_i (lists, tuples or arrays).
        maxlen: T, the output length; ``None`` means the longest L_i.
        dtype: Output dtype (``object`` or a string dtype for strings).
        padding: ``"pre"`` or ``"post"``: which side gets the padding.
        truncating: ``"pre"`` or ``"post"``: which side loses steps beyond ``maxlen``.
        value: The padding value.

    Returns:
        Array [N, T, ...] of ``dtype``.

    Raises:
        ValueError: On an unknown ``padding``/``truncating``, a negative ``maxlen``, a
            non-sequence element, inconsistent trailing shapes, or a string ``value``
            with a numeric ``dtype``.
    """
    if padding not in _SIDES:
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in _SIDES:
        raise ValueError(f"truncating must be 'pre' or 'post', got {truncating!r}")
    if not hasattr(sequences, "__len__"):
        raise ValueError(
            f"sequences must be a sized collection of sequences, got {type(sequences)}"
        )
    if maxlen is not None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
            raise ValueError(f"maxlen must be a non-negative int or None, got {maxlen!r}")
        maxlen = int(maxlen)

    lengths = []
    trailing: tuple[int, ...] | None = None
    for i, seq in enumerate(sequences):
        try:
            n = len(seq)
        except TypeError:
            raise ValueError(
                f"sequences[{i}] is not a sequence (got {type(seq).__name__}: {seq!r})"
            ) from None
        lengths.append(n)
        if trailing is None and n:
            trailing = np.asarray(seq).shape[1:]
    trailing = trailing or ()

    is_text_dtype = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text_dtype:
        raise ValueError(
            f"value {value!r} is a string but dtype {dtype!r} is not; use dtype=object"
        )
    if maxlen is None:
        maxlen = max(lengths, default=0)

    out = np.full((len(lengths), maxlen, *trailing), value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
        if n == 0:
            continue
        kept = seq[n - maxlen :] if (truncating == "pre" and n > maxlen) else seq[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != trailing:
            raise ValueError(
                f"sequences[{i}] has element shape {kept.shape[1:]}, expected {trailing} "
                "like the first non-empty sequence"
            )
        k = kept.shape[0]
        if padding == "post":
            out[i, :k] = kept
        else:
            out[i, maxlen - k :] = kept
    return out


def sequence_mask(lengths: Any, maxlen: int | None = None, padding: str = "post") -> np.ndarray:
    """Boolean validity mask for padded sequences.

    Args:
        lengths: Valid lengths [B] (already clipped to ``maxlen`` by the caller, or not:
            lengths beyond ``maxlen`` give an all-True row, matching truncation).
        maxlen: T; ``None`` means ``max(lengths)``.
        padding: ``"post"`` (valid steps first) or ``"pre"`` (valid steps last).

    Returns:
        Bool array [B, T], True at valid steps.
    """
    if padding not in _SIDES:
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"lengths must be non-negative, got minimum {lengths.min()}")
    if maxlen is None:
        maxlen = int(lengths.max(initial=0))
    steps = np.arange(maxlen)
    if padding == "post":
        return steps[None, :] < lengths[:, None]
    return steps[None, :] >= (maxlen - lengths)[:, None]
