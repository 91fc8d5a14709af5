"""Reading datasets through tensorflow-datasets' random-access ``tfds.data_source``.

``tfds.data_source`` reads ArrayRecord files and does not need TensorFlow, so this path
works with the ``data`` extra alone (``pip install tensorflow-datasets``). The import is
lazy: nothing here is loaded unless a loader is called with ``source="tfds"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["tfds_feature_names", "tfds_records"]


def _tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "source='tfds' needs tensorflow-datasets: pip install 'seqjax[data]' "
            "(or pip install tensorflow-datasets); TensorFlow itself is not required"
        ) from err
    return tfds


def tfds_records(
    name: str, split: str, *, data_dir: str | None = None, download: bool = True
) -> Iterator[dict[str, Any]]:
    """Yields the records of one TFDS split as dicts of numpy values / Python strings.

    Args:
        name: TFDS dataset name, e.g. ``"imdb_reviews"``.
        split: Split name, e.g. ``"train"``.
        data_dir: TFDS data directory (``None``: TFDS' default, ``~/tensorflow_datasets``).
        download: Let TFDS download and prepare the dataset when it is not there yet.
    """
    tfds = _tfds()
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    for i in range(len(source)):
        yield source[i]


def tfds_feature_names(name: str, feature: str, *, data_dir: str | None = None) -> list[str]:
    """Class names of a ``ClassLabel`` feature, or of the ``ClassLabel`` inside a ``Sequence``."""
    tfds = _tfds()
    features = tfds.builder(name, data_dir=data_dir).info.features[feature]
    inner = getattr(features, "feature", features)
    names = getattr(inner, "names", None)
    if names is None:
        raise ValueError(f"TFDS feature {name}/{feature} is not a ClassLabel")
    return list(names)


def as_text(value: Any) -> str:
    """TFDS text features come back as ``str`` or ``bytes`` depending on the decoder."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8")
    return str(value)
