"""A Keras-like summary table of any Flax NNX model, and its parameter count.

:func:`summary` runs the model abstractly (``jax.eval_shape``: shapes only, nothing computed) and
records the output shape of every submodule that is called, by wrapping the ``__call__`` of the
submodules' classes for the duration of the trace (the approach of ``flax.nnx.tabulate``, whose
rich-text table is not Keras-like). Calls through a view of the model (``nnx.view``, sharing its
Variables) count as the model's.

Rows are the model's submodules, depth-first, each indented under its parent and named by its
attribute path relative to it (``nnx.List``/``nnx.Dict`` containers are no rows: ``head.0``):
children in the order they are first called, then those holding variables that are not called
through their ``__call__`` (output shape ``-``; hidden under a called parent, which then uses
their params itself, as ``seqjax.nn.Bidirectional`` does). Variables the model holds itself (a
CRF's transitions) come first, a row each with the variable's shape. A row's ``Param #`` counts
the ``nnx.Param`` entries of its whole subtree, so a parent's count includes its children's; the
totals count every variable once.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> import seqjax as sj
  >>> clf = sj.models.Classifier(vocab_size=100, embed_dim=8, encoder="gru", units=4,
  ...                            head=(6,), rngs=nnx.Rngs(0))
  >>> tokens = jnp.ones((2, 7), jnp.int32)
  >>> print(sj.models.summary(clf, tokens, tokens != 0))
  Model: "Classifier"
  ___________________________________________________________
   Layer (type)                Output Shape           Param #
  ===========================================================
   embed (Embed)               (2, 7, 8)                  800
   encoder (RecurrentStack)    [(2, 4)], (2, 7, 4)        168
     layers.0 (RNN)            [(2, 4)], (2, 7, 4)        168
   head.0 (Linear)             (2, 6)                      30
   out (Linear)                (2, 1)                       7
  ===========================================================
  Total params: 1,005
  Trainable params: 1,005
  Non-trainable params: 0
  ___________________________________________________________
  >>> sj.models.count_params(clf)
  1005
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["summary", "count_params"]

_MISSING = object()
_SHAPE_WIDTH = 32  # Output Shape wraps onto further lines beyond this


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (the entries of every ``nnx.Param``), Keras'
    ``count_params()``."""
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(
        nnx.state(model, nnx.Param)))


def _variable_sizes(model: nnx.Module) -> tuple[dict, dict]:
    """``{path: size}`` of the Params and of the other non-RNG variables (batch stats, ...)."""
    trainable, other = {}, {}
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        if isinstance(variable, nnx.RngState):
            continue
        size = int(np.prod(np.shape(variable.get_value())))
        (trainable if isinstance(variable, nnx.Param) else other)[tuple(path)] = size
    return trainable, other


def _public(path: tuple) -> bool:
    return not any(isinstance(key, str) and key.startswith("_") for key in path)


_CONTAINERS = tuple(t for t in (getattr(nnx, "List", None), getattr(nnx, "Dict", None)) if t)


def _modules(model: nnx.Module) -> dict[tuple, nnx.Module]:
    """The submodules by path; containers (``nnx.List``/``nnx.Dict``) are no layers."""
    return {tuple(path): node for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Module) and not isinstance(node, _CONTAINERS)
            and path and _public(path)}


def _leaf_shapes(tree: Any) -> list[str]:
    """Shapes of the arrays in ``tree``; a run of n equal shapes reads ``n x (..)``."""
    shapes = [str(tuple(int(d) for d in leaf.shape)) for leaf in jax.tree.leaves(tree)
              if hasattr(leaf, "shape")]
    runs: list[list] = []
    for shape in shapes:
        if runs and runs[-1][0] == shape:
            runs[-1][1] += 1
        else:
            runs.append([shape, 1])
    return [shape if count == 1 else f"{count} x {shape}" for shape, count in runs]


def _shapes(out: Any) -> list[str]:
    """One entry per element of a tuple/list/dict output (a bracketed group where an element
    is itself a pytree, such as a carry), or the shape of a single array."""
    if hasattr(out, "shape"):
        return _leaf_shapes(out)
    elements = list(out.values()) if isinstance(out, dict) else (
        list(out) if isinstance(out, (tuple, list)) else [out])
    texts = []
    for element in elements:
        shapes = _leaf_shapes(element)
        if hasattr(element, "shape") or (len(elements) == 1 and shapes):
            texts.extend(shapes)
        elif shapes:
            texts.append("[" + ", ".join(shapes) + "]")
    return texts


def _pack(shapes: list[str]) -> list[str]:
    """Shapes joined by ", ", onto lines of at most ``_SHAPE_WIDTH`` (a shape is never split)."""
    lines: list[str] = []
    for shape in shapes:
        if lines and len(lines[-1]) + 2 + len(shape) <= _SHAPE_WIDTH:
            lines[-1] += ", " + shape
        else:
            if lines:
                lines[-1] += ","
            lines.append(shape)
    return lines or ["()"]


def _variables_key(module: nnx.Module) -> tuple[type, frozenset]:
    return type(module), frozenset(id(node) for _, node in nnx.iter_graph(module)
                                   if isinstance(node, nnx.Variable))


def _call_records(model: nnx.Module, method: str | Callable, inputs: tuple,
                  kwargs: dict) -> dict[tuple, tuple[int, list[str]]]:
    """``{path: (call order, output shapes)}`` of the submodules called, traced abstractly."""
    graphdef, state = nnx.split(model)
    flat, treedef = jax.tree.flatten((inputs, kwargs))
    dynamic = [i for i, leaf in enumerate(flat)
               if isinstance(leaf, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))]
    records: dict[tuple, tuple[int, list[str]]] = {}

    def run(state, arrays):
        leaves = list(flat)
        for i, array in zip(dynamic, arrays):
            leaves[i] = array
        args, kw = jax.tree.unflatten(treedef, leaves)
        clone = nnx.merge(graphdef, state)
        modules = _modules(clone)
        paths = {id(node): path for path, node in modules.items()}
        # Views of the model (nnx.view, e.g. to switch dropout off while decoding) are new
        # module objects sharing the model's Variables: they are found by those.
        shared: dict[tuple, tuple] = {}
        for path, node in sorted(modules.items(), key=lambda item: len(item[0])):
            key = _variables_key(node)
            if key[1]:
                shared.setdefault(key, path)
        types = {type(node) for node in modules.values() if callable(node)}
        originals = {t: t.__call__ for t in types}
        saved = {t: t.__dict__.get("__call__", _MISSING) for t in types}
        counter = itertools.count()
        active: set[int] = set()

        def wrap(call):
            def recording_call(self, *a, **k):
                path = paths.get(id(self))
                if path is None and shared:
                    path = shared.get(_variables_key(self))
                # a subclass's __call__ reaching its parent's (super()) is one call, not two
                if path is None or id(self) in active:
                    return call(self, *a, **k)
                order = next(counter)
                active.add(id(self))
                try:
                    out = call(self, *a, **k)
                finally:
                    active.discard(id(self))
                records.setdefault(path, (order, _shapes(out)))
                return out
            return recording_call

        try:
            for t in types:
                t.__call__ = wrap(originals[t])
            fn = getattr(clone, method) if isinstance(method, str) else (
                lambda *a, **k: method(clone, *a, **k))
            return fn(*args, **kw)
        finally:
            for t in types:
                if saved[t] is _MISSING:
                    delattr(t, "__call__")
                else:
                    t.__call__ = saved[t]

    jax.eval_shape(run, state, [flat[i] for i in dynamic])
    return records


def summary(model: nnx.Module, *inputs: Any, method: str | Callable = "__call__",
            depth: int | None = None, **kwargs: Any) -> str:
    """A Keras-like table of ``model``: layer (type), output shape, parameter count, totals.

    Args:
      model: any ``nnx.Module`` (every model of :mod:`seqjax.models`).
      *inputs: the arguments to call it with (arrays, or ``jax.ShapeDtypeStruct``\\ s; other
        values such as ints or None are passed through as they are). Nothing is computed: the
        call is traced with ``jax.eval_shape``.
      method: the method to trace, by name (e.g. ``"log_likelihood"``), or a function
        ``method(model, *inputs, **kwargs)``.
      depth: show submodules at most this many levels down (1: the model's own attributes);
        None shows all.
      **kwargs: keyword arguments for the call.

    Returns:
      The table as a string (print it). Output shapes are the concrete shapes of this call (the
      batch size included). A module returning a tuple shows each element's shape, an element
      that is itself a pytree (e.g. the carries of ``(carries, ys)``) as a bracketed group,
      where ``4 x (2, 64)`` stands for four arrays of that shape.
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"model must be an nnx.Module; got {type(model).__name__}")
    if isinstance(method, str) and not callable(getattr(model, method, None)):
        raise ValueError(f"method: {type(model).__name__} has no method {method!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or depth < 1):
        raise ValueError(f"depth must be a positive int or None; got {depth!r}")
    records = _call_records(model, method, inputs, kwargs)
    modules = _modules(model)
    trainable, other = _variable_sizes(model)

    def subtree(sizes: dict, path: tuple) -> int:
        return sum(size for p, size in sizes.items() if p[:len(path)] == path)

    def parent(path: tuple, among) -> tuple:
        for cut in range(len(path) - 1, 0, -1):
            if path[:cut] in among:
                return path[:cut]
        return ()

    # A module that is not called is shown only where its parent is not called either: a called
    # parent that reads its children's params itself (Bidirectional) is one layer, as in Keras.
    holding = {path for path in modules
               if path in records or subtree(trainable, path) or subtree(other, path)}
    shown = {path for path in holding
             if path in records or parent(path, holding) not in records}

    children: dict[tuple, list[tuple]] = {}
    for path in shown:
        children.setdefault(parent(path, shown), []).append(path)
    rows: list[tuple[str, list[str], str]] = []

    def visit(node: tuple, level: int) -> None:
        if depth is not None and level >= depth:
            return
        kids = sorted(children.get(node, []),
                      key=lambda p: (records.get(p, (float("inf"),))[0], [str(k) for k in p]))
        for path in kids:
            name = ".".join(str(k) for k in path[len(node):])
            label = "  " * level + f"{name} ({type(modules[path]).__name__})"
            shape = _pack(records[path][1]) if path in records else ["-"]
            rows.append((label, shape, f"{subtree(trainable, path):,}"))
            visit(path, level + 1)

    own = [(path, variable) for path, variable in nnx.to_flat_state(nnx.state(model))
           if len(path) == 1 and _public(tuple(path)) and not isinstance(variable, nnx.RngState)]
    for (name,), variable in own:
        value = variable.get_value()
        shape = str(tuple(int(d) for d in np.shape(value)))
        size = int(np.prod(np.shape(value)))
        rows.append((f"{name} ({type(variable).__name__})", [shape],
                     f"{size if isinstance(variable, nnx.Param) else 0:,}"))
    visit((), 0)
    total_trainable = sum(trainable.values())
    total_other = sum(other.values())
    return _render(type(model).__name__, rows, total_trainable, total_other)


def _render(title: str, wrapped: list[tuple[str, list[str], str]], trainable: int,
            other: int) -> str:
    headers = ("Layer (type)", "Output Shape", "Param #")
    name_w = max([len(headers[0])] + [len(r[0]) for r in wrapped]) + 4
    shape_w = max([len(headers[1])] + [len(line) for r in wrapped for line in r[1]]) + 4
    param_w = max([len(headers[2])] + [len(r[2]) for r in wrapped])
    width = 1 + name_w + shape_w + param_w
    lines = [f'Model: "{title}"', "_" * width,
             " " + headers[0].ljust(name_w) + headers[1].ljust(shape_w) + headers[2].rjust(param_w),
             "=" * width]
    for label, shape_lines, params in wrapped:
        lines.append(" " + label.ljust(name_w) + shape_lines[0].ljust(shape_w)
                     + params.rjust(param_w))
        lines.extend(" " + "".ljust(name_w) + extra for extra in shape_lines[1:])
    lines += ["=" * width,
              f"Total params: {trainable + other:,}",
              f"Trainable params: {trainable:,}",
              f"Non-trainable params: {other:,}",
              "_" * width]
    return "\n".join(line.rstrip() for line in lines)
