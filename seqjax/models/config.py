"""Model configs as plain data, and saving/loading a model with its config beside its weights.

Every model in :mod:`seqjax.models` records the arguments it was built with in a flat, frozen
dataclass of JSON-able fields (``model.config``). ``Model.from_config(config, rngs=...)`` builds
the same architecture again, so ``json.dumps(dataclasses.asdict(model.config))`` is all an
experiment or a checkpoint needs to say what was trained.

Layout written by :func:`save`::

    directory/config.json    {"model": "Classifier", "config": {...}}
    directory/weights/       the model's params and variables (orbax, via seqjax.train)

Example:
  >>> import tempfile
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> clf = sj.models.Classifier(vocab_size=50, embed_dim=8, encoder="gru", units=4,
  ...                            rngs=nnx.Rngs(0))
  >>> path = tempfile.mkdtemp()
  >>> sj.models.save(clf, path)
  >>> sj.models.load(path).config == clf.config
  True
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import optax
from flax import nnx

__all__ = ["ConfiguredModel", "config_to_json", "config_from_json", "save", "load"]

_REGISTRY: dict[str, type[ConfiguredModel]] = {}


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples a frozen (hashable) config holds."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


class ConfiguredModel(nnx.Module):
    """Base of the models: a ``config`` attribute and ``from_config``.

    A subclass sets ``config_class`` (a frozen dataclass whose fields are the keyword arguments of
    its ``__init__`` besides ``rngs``) and stores ``self.config`` in ``__init__``. Subclasses are
    registered by name so :func:`load` can rebuild them.
    """

    config_class: ClassVar[type]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    @classmethod
    def from_config(cls, config: Any, *, rngs: nnx.Rngs):
        """Builds the model from its config (the dataclass, or a dict as read from JSON)."""
        if isinstance(config, Mapping):
            names = {f.name for f in dataclasses.fields(cls.config_class)}
            unknown = sorted(set(config) - names)
            if unknown:
                raise ValueError(f"config: unknown fields {unknown} for {cls.__name__}")
            config = cls.config_class(**{k: _tuples(v) for k, v in config.items()})
        if not isinstance(config, cls.config_class):
            raise ValueError(
                f"config must be a {cls.config_class.__name__} or a dict; "
                f"got {type(config).__name__}"
            )
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                   rngs=rngs)


def config_to_json(model: ConfiguredModel) -> str:
    """``{"model": class name, "config": fields}`` as JSON."""
    return json.dumps({"model": type(model).__name__, "config": dataclasses.asdict(model.config)},
                      indent=2)


def config_from_json(text: str, *, rngs: nnx.Rngs | None = None) -> ConfiguredModel:
    """Builds a freshly initialised model from :func:`config_to_json`'s output."""
    data = json.loads(text)
    if not isinstance(data, dict) or "model" not in data or "config" not in data:
        raise ValueError('config JSON must be {"model": name, "config": {...}}')
    cls = _REGISTRY.get(data["model"])
    if cls is None:
        raise ValueError(
            f"config JSON: unknown model {data['model']!r}; known: {sorted(_REGISTRY)}")
    return cls.from_config(data["config"], rngs=rngs or nnx.Rngs(0))


def save(model: ConfiguredModel, directory: str | os.PathLike) -> None:
    """Writes ``model``'s config (JSON) and weights (an orbax checkpoint) under ``directory``."""
    from seqjax.train import Checkpointer, TrainState

    if not isinstance(model, ConfiguredModel):
        raise ValueError(f"model must be a seqjax.models model; got {type(model).__name__}")
    directory = pathlib.Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(config_to_json(model))
    state = TrainState.create(model, optax.identity(), seed=0)
    with Checkpointer(directory / "weights", keep_best=False, max_to_keep=1) as ckpt:
        ckpt.save(0, state, {"model": type(model).__name__})


def load(directory: str | os.PathLike) -> ConfiguredModel:
    """Rebuilds the model :func:`save` wrote under ``directory``, weights included."""
    from seqjax.train import restore_model

    directory = pathlib.Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(f"directory: no config.json in {directory}")
    model = config_from_json(config_path.read_text())
    return restore_model(model, directory / "weights", which="latest")

