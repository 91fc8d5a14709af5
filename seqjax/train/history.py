"""Keras-like training history: per-epoch ``loss``, ``val_loss`` and every metric."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["History"]


class History:
    """Per-epoch logs, like ``keras.callbacks.History``.

    Attributes:
        history: ``{name: [value per epoch]}``, e.g. ``{"loss": [...], "val_loss": [...],
            "accuracy": [...], "val_accuracy": [...]}``.
        epoch: the epoch indices (0-based) that were logged.
        train_state: the final :class:`~seqjax.train.steps.TrainState` after ``fit`` (not saved).

    Example:
        >>> h = History()
        >>> h.append(0, {"loss": 0.9, "val_loss": 1.0})
        >>> h.append(1, {"loss": 0.5, "val_loss": 0.7})
        >>> h.history["val_loss"], h.best("val_loss")
        ([1.0, 0.7], (1, 0.7))
    """

    def __init__(self, history: Mapping[str, list[float]] | None = None, epoch=None):
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.epoch: list[int] = list(epoch or [])
        self.train_state: Any = None

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Adds one epoch's logs (missing names are padded with NaN to keep lists aligned)."""
        n = len(self.epoch)
        for name in logs:
            if name not in self.history:
                self.history[name] = [math.nan] * n
        for name, values in self.history.items():
            values.append(float(logs[name]) if name in logs else math.nan)
        self.epoch.append(int(epoch))

    def __getitem__(self, name: str) -> list[float]:
        return self.history[name]

    def __contains__(self, name: str) -> bool:
        return name in self.history

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    def best(self, monitor: str = "val_loss", mode: str = "auto") -> tuple[int, float]:
        """``(epoch, value)`` of the best logged value of ``monitor``.

        Args:
            monitor: a history key.
            mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy/F1-like names).
        """
        if monitor not in self.history:
            raise ValueError(f"monitor {monitor!r} is not in the history {sorted(self.history)}")
        better_is_max = resolve_mode(mode, monitor) == "max"
        pairs = [(e, v) for e, v in zip(self.epoch, self.history[monitor], strict=True)
                 if not math.isnan(v)]
        if not pairs:
            raise ValueError(f"monitor {monitor!r} has no values yet")
        return (max if better_is_max else min)(pairs, key=lambda p: p[1])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict ``{"epoch": [...], "history": {...}}``."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        if "history" not in data:
            raise ValueError("data must have a 'history' entry (as written by History.to_dict)")
        return cls(data["history"], data.get("epoch", range(len(next(iter(data["history"].values()),
                                                                       [])))))

    def save(self, path: str | os.PathLike) -> str:
        """Writes the history as JSON (NaN written as ``null``); returns the path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = self.to_dict()
        data["history"] = {
            k: [None if isinstance(v, float) and math.isnan(v) else v for v in vals]
            for k, vals in data["history"].items()
        }
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Reads a history written by :meth:`save`."""
        with open(path) as f:
            data = json.load(f)
        data["history"] = {
            k: [math.nan if v is None else v for v in vals] for k, vals in data["history"].items()
        }
        return cls.from_dict(data)

    def plot(self, path: str | os.PathLike | None = None, metrics=None, **kwargs):
        """Plots the curves; see :func:`seqjax.train.plots.plot_history`."""
        from .plots import plot_history

        return plot_history(self, path, metrics=metrics, **kwargs)


_MAX_HINTS = ("acc", "f1", "precision", "recall", "auc", "match")


def resolve_mode(mode: str, monitor: str) -> str:
    """``"min"`` or ``"max"`` for a monitored name (``"auto"``: max for accuracy-like names)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if any(h in monitor.lower() for h in _MAX_HINTS) else "min"
