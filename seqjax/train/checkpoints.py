"""Orbax checkpoints of a :class:`~seqjax.train.steps.TrainState` plus JSON metadata.

Layout under ``directory``::

    latest/<step>/model   params and model variables (orbax, tensorstore/OCDBT arrays)
    latest/<step>/train   step, optimizer state, base RNG key
    latest/<step>/meta    JSON: epoch, batches done in the epoch, data-iterator state, metric
                          accumulators, history, callback states
    best/<step>/...       the same, for the best epoch by the monitored metric

Only arrays and JSON are written (no pickle, no code). PRNG keys are stored as their raw
``key_data`` and re-wrapped on restore. Restoring needs a template state (for shapes, dtypes,
shardings and the tree structure), e.g. a freshly created ``TrainState``.

A process killed at any moment leaves a usable directory: orbax writes each checkpoint under a
temporary name and renames it when complete (unfinished ones are never listed), and a restore
without an explicit step takes the newest checkpoint that reads back whole and consistent
(its ``meta["global_step"]``, when present, equal to its step and to the restored
``state.step``), warning about any newer one it had to pass over.

Example:
    >>> import tempfile, optax
    >>> from flax import nnx
    >>> from seqjax.train import TrainState, Checkpointer
    >>> state = TrainState.create(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    >>> ckpt = Checkpointer(tempfile.mkdtemp())
    >>> ckpt.save(0, state, {"epoch": 0})
    >>> restored, meta = ckpt.restore(state)
    >>> meta["epoch"]
    0
    >>> ckpt.close()
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from .steps import TrainState

__all__ = ["Checkpointer", "restore_model"]


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_nested(tree) -> dict:
    """A nested dict of arrays named by the tree paths (PRNG keys as raw key data)."""
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [_key_name(p) for p in path] or ["value"]
        node = out
        for name in names[:-1]:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"checkpoint: path {'/'.join(names)} collides with a leaf")
        if names[-1] in node:
            raise ValueError(f"checkpoint: two leaves map to {'/'.join(names)}")
        node[names[-1]] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    return out


def _abstract(tree) -> dict:
    def leaf_struct(x):
        if _is_key(x):
            x = jax.random.key_data(x)
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

    return _to_nested(jax.tree.map(leaf_struct, tree))


def _from_nested(template, nested: dict):
    """Rebuilds ``template``'s tree from a nested dict written by :func:`_to_nested`."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, tmpl in leaves_with_path:
        node = nested
        names = [_key_name(p) for p in path] or ["value"]
        for name in names:
            if not isinstance(node, dict) or name not in node:
                raise ValueError(f"checkpoint has no entry {'/'.join(names)}: model changed?")
            node = node[name]
        if _is_key(tmpl):
            node = jax.random.wrap_key_data(node, impl=jax.random.key_impl(tmpl))
        leaves.append(node)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _split_state(state: TrainState):
    model_part = {"params": state.params, "model_state": state.model_state}
    train_part = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
    return model_part, train_part


class Checkpointer:
    """Saves and restores train states with orbax ``CheckpointManager``s.

    Args:
        directory: root directory (created if missing).
        max_to_keep: latest checkpoints to keep (older ones are deleted).
        keep_best: also keep the best checkpoint (see :meth:`save_best`) in ``best/``.
        monitor: the metric that decides the best checkpoint (recorded in its metadata).
        mode: ``"min"`` or ``"max"`` for ``monitor``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        keep_best: bool = True,
        monitor: str = "val_loss",
        mode: str = "min",
    ):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.monitor, self.mode = monitor, mode
        os.makedirs(self.directory, exist_ok=True)
        self._latest = self._manager("latest", max_to_keep)
        self._best = self._manager("best", 1) if keep_best else None

    def _manager(self, name, max_to_keep):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        return ocp.CheckpointManager(os.path.join(self.directory, name), options=options,
                                     item_names=("model", "train", "meta"))

    @staticmethod
    def _save(manager, step: int, state: TrainState, meta: dict[str, Any]):
        if step in manager.all_steps():
            # Not atomic: a kill in between loses this step (the restore then falls back).
            manager.delete(step)
        model_part, train_part = _split_state(state)
        manager.save(
            int(step),
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(_to_nested(model_part)),
                train=ocp.args.StandardSave(_to_nested(train_part)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        manager.wait_until_finished()

    def save(self, step: int, state: TrainState, meta: dict[str, Any] | None = None) -> None:
        """Saves ``state`` and JSON ``meta`` as checkpoint ``step`` (replacing one of that step)."""
        self._save(self._latest, step, state, dict(meta or {}))

    def save_best(self, step: int, state: TrainState, value: float, meta=None) -> bool:
        """Saves ``state`` in ``best/`` if ``value`` beats the best so far.

        Returns:
            Whether it was saved.
        """
        if self._best is None:
            return False
        best = self.best_value()
        if best is not None and not (value < best if self.mode == "min" else value > best):
            return False
        meta = dict(meta or {})
        meta["best"] = {"monitor": self.monitor, "value": float(value), "mode": self.mode}
        self._save(self._best, step, state, meta)
        return True

    def _manager_for(self, which: str):
        if which == "latest":
            return self._latest
        if which == "best":
            if self._best is None:
                raise ValueError("which='best' needs a Checkpointer with keep_best=True")
            return self._best
        raise ValueError(f"which must be 'latest' or 'best', got {which!r}")

    def latest_step(self, which: str = "latest") -> int | None:
        """The newest saved step in ``latest/`` (or ``best/``), None if there is none."""
        return self._manager_for(which).latest_step()

    def best_value(self) -> float | None:
        """The monitored value of the best checkpoint, None if there is none."""
        if self._best is None or self._best.latest_step() is None:
            return None
        return float(self.read_meta(which="best")["best"]["value"])

    def read_meta(self, step: int | None = None, which: str = "latest") -> dict:
        """The JSON metadata of a checkpoint (newest by default)."""
        manager = self._manager_for(which)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no checkpoint in {os.path.join(self.directory, which)}")
        return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(
        self, template: TrainState, step: int | None = None, which: str = "latest"
    ) -> tuple[TrainState, dict]:
        """Restores a state shaped (and sharded) like ``template`` and its metadata.

        Args:
            template: a ``TrainState`` with the right structure, e.g. ``TrainState.create(...)``.
            step: the step to restore (default: the newest that restores whole and consistent;
                newer ones that do not are passed over with a warning).
            which: ``"latest"`` or ``"best"``.

        Returns:
            ``(state, meta)``.
        """
        manager = self._manager_for(which)
        if step is not None:
            return self._restore_step(manager, template, step)
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise ValueError(f"no checkpoint in {os.path.join(self.directory, which)}")
        for newest in steps:
            try:
                return self._restore_step(manager, template, newest)
            except Exception as error:  # a damaged checkpoint: try an older one
                if newest == steps[-1]:
                    raise
                warnings.warn(
                    f"checkpoint {which}/{newest} in {self.directory} cannot be restored "
                    f"({type(error).__name__}: {error}); trying an older one",
                    stacklevel=2,
                )
        raise AssertionError("unreachable")

    def _restore_step(self, manager, template: TrainState, step: int):
        model_part, train_part = _split_state(template)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(_abstract(model_part)),
                train=ocp.args.StandardRestore(_abstract(train_part)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        model_part = _from_nested(model_part, restored["model"])
        train_part = _from_nested(train_part, restored["train"])
        state = template.replace(
            step=train_part["step"], params=model_part["params"],
            model_state=model_part["model_state"], opt_state=train_part["opt_state"],
            rng=train_part["rng"],
        )
        meta = restored["meta"]
        if not isinstance(meta, dict):
            raise ValueError(f"checkpoint {step}: meta is not a JSON object")
        if "global_step" in meta:
            state_step = int(np.asarray(jax.device_get(state.step)))
            if not int(meta["global_step"]) == state_step == int(step):
                raise ValueError(
                    f"checkpoint {step} is inconsistent: meta global_step "
                    f"{meta['global_step']}, state step {state_step}")
        return state, meta

    def restore_weights(self, template: TrainState, step: int | None = None, which="latest"):
        """Only ``(params, model_state)`` of a checkpoint, shaped like ``template``."""
        manager = self._manager_for(which)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no checkpoint in {os.path.join(self.directory, which)}")
        model_part, _ = _split_state(template)
        restored = manager.restore(
            step, args=ocp.args.Composite(model=ocp.args.StandardRestore(_abstract(model_part)))
        )
        model_part = _from_nested(model_part, restored["model"])
        return model_part["params"], model_part["model_state"]

    def close(self) -> None:
        self._latest.close()
        if self._best is not None:
            self._best.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def restore_model(model: nnx.Module, directory: str | os.PathLike, *, which: str = "best",
                  step: int | None = None) -> nnx.Module:
    """Loads the weights of a checkpoint written by ``fit`` into ``model`` (in place).

    Args:
        model: a module with the same structure as the trained one (fresh initialisation is
            fine).
        directory: the ``checkpoint_dir`` given to ``fit``.
        which: ``"best"`` (default; falls back to ``"latest"`` when there is no best) or
            ``"latest"``.
        step: a specific step (default: newest).

    Returns:
        ``model``, updated.
    """
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    template = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                          opt_state=None, rng=jax.random.key(0))
    with Checkpointer(directory, keep_best=True) as ckpt:
        if which == "best" and ckpt.latest_step("best") is None:
            which = "latest"
        params, model_state = ckpt.restore_weights(template, step, which)
    nnx.update(model, params, model_state)
    return model
