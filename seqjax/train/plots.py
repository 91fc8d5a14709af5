"""Learning-curve plots (matplotlib, imported lazily; no pyplot, no global backend change)."""

from __future__ import annotations

import math
import os

__all__ = ["plot_history"]


def plot_history(
    history, path=None, *, metrics=None, title_prefix: str = "Training and validation"
):
    """Plots ``name`` against ``val_name`` per epoch, one panel per metric.

    Training values are dots (``'bo'``), validation values a line (``'b'``), like the classic
    Keras loss/val_loss and accuracy/val_accuracy figures.

    Args:
        history: a :class:`~seqjax.train.history.History` or a ``{name: [values]}`` dict.
        path: PNG file to write (directories are created); None to only return the figure.
        metrics: base names to plot (default: every name that does not start with ``val_``,
            ``"loss"`` first; names without values are skipped).
        title_prefix: panel title prefix, e.g. ``"Training and validation loss"``.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = history.history if hasattr(history, "history") else dict(history)
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_")]
        for k in logs:
            if k.startswith("val_") and k[4:] not in metrics:
                metrics.append(k[4:])
        metrics.sort(key=lambda k: (k != "loss", k))
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = [m for m in metrics if m in logs or f"val_{m}" in logs]
    if not metrics:
        raise ValueError("metrics: nothing to plot (no matching names in the history)")
    fig = Figure(figsize=(5 * len(metrics), 4))
    FigureCanvasAgg(fig)
    for i, name in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for key, style, label in ((name, "bo", "Training"), (f"val_{name}", "b", "Validation")):
            values = logs.get(key)
            if values and not all(isinstance(v, float) and math.isnan(v) for v in values):
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, style, label=f"{label} {name}")
        ax.set_title(f"{title_prefix} {name}")
        ax.set_xlabel("Epochs")
        ax.set_ylabel(name.capitalize())
        ax.legend()
    fig.tight_layout()
    if path is not None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return fig
