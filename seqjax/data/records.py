"""Containers that loaders return, and the bookkeeping of records a loader skipped."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .batching import BatchIterator

__all__ = ["Examples", "LoadedDataset", "SkipLog", "check_on_error"]


class Examples(NamedTuple):
    """One split of a dataset.

    Attributes:
        inputs: Either a list of N int32 arrays of shape [L_i] (ragged, unpadded) or an
            array [N, T] (padded, when the loader was given ``maxlen``).
        targets: Labels [N], a ragged list aligned with ``inputs`` (per-step tags), or a
            tuple of such for seq2seq (e.g. decoder inputs and decoder outputs).
    """

    inputs: Any
    targets: Any

    @property
    def num_examples(self) -> int:
        """N (``len()`` of a NamedTuple is its field count, so this is a property)."""
        return len(self.inputs)


@dataclass
class LoadedDataset:
    """What a loader returns.

    Attributes:
        splits: Split name (``"train"``, ``"validation"``, ``"test"``) -> examples.
        tokenizer: The tokenizer that produced the ids (a tuple of source and target
            tokenizers for translation), or ``None``.
        info: JSON-able facts about the load: source file(s), counts per split, and
            ``skipped``: reason -> number of records skipped (empty when none were).
    """

    splits: dict[str, Examples]
    tokenizer: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, split: str) -> Examples:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; available: {sorted(self.splits)}")
        return self.splits[split]

    def batches(self, split: str, batch_size: int, **kwargs: Any) -> BatchIterator:
        """A :class:`~seqjax.data.BatchIterator` over one split (kwargs are passed on)."""
        from .batching import BatchIterator

        examples = self[split]
        return BatchIterator(examples.inputs, examples.targets, batch_size=batch_size, **kwargs)


def check_on_error(on_error: str) -> None:
    """Validates a loader's ``on_error`` argument."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


class SkipLog:
    """Counts records a loader left out, by reason, so that nothing is dropped silently."""

    def __init__(self, loader: str) -> None:
        self.loader = loader
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def skip(self, reason: str, where: str | None = None, count: int = 1) -> None:
        """Records ``count`` skipped records; ``where`` (file:line) of the first is kept."""
        self.counts[reason] += count
        if where is not None and reason not in self.examples:
            self.examples[reason] = where

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def message(self) -> str | None:
        """The warning text listing every reason and its count, or ``None`` if none."""
        if not self.counts:
            return None
        parts = []
        for reason, count in self.counts.items():
            first = f" (first at {self.examples[reason]})" if reason in self.examples else ""
            parts.append(f"{count} {reason}{first}")
        return f"{self.loader}: skipped {self.total} record(s): " + "; ".join(parts)

    def warn_if_any(self) -> None:
        """Emits :meth:`message` as one ``UserWarning`` when something was skipped."""
        message = self.message()
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=3)
