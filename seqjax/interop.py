"""Weights from and to PyTorch and Keras.

:func:`from_torch` / :func:`to_torch` convert ``torch.nn.RNN``, ``torch.nn.LSTM`` and
``torch.nn.GRU`` (any ``num_layers``, ``bidirectional``, ``batch_first``, with or without bias);
:func:`from_keras` / :func:`to_keras` convert Keras 3 ``SimpleRNN``, ``LSTM``, ``GRU`` (both
``reset_after`` forms) and ``Bidirectional``.

The converted form (the contract in DESIGN.md):

* ``(cell, params)`` for a single-layer, one-directional module or layer;
* ``((cell_f, params_f), (cell_b, params_b))`` for a bidirectional layer (a *tuple* of two);
* a *list* over layers whose items are either of the above, for a multi-layer or bidirectional
  PyTorch module (or a list of Keras layers).

A pair runs with :func:`seqjax.bidirectional`; a list runs with :func:`seqjax.stacked` once split
into per-layer cells (a cell or a pair of cells) and per-layer params (params or a pair).

Conventions bridged here:

* PyTorch stores ``weight_ih [G*H, I]`` and ``weight_hh [G*H, H]`` (seqjax stores the transposes)
  and two biases. For SimpleRNN and LSTM only their sum matters, so ``b = b_ih + b_hh`` and
  :func:`to_torch` writes ``b`` to ``b_ih`` and zeros to ``b_hh``. PyTorch's GRU is the
  ``reset_after=True`` form: ``b = b_ih``, ``b_h = b_hh``.
* Keras stores kernels as seqjax does (``[I, G*H]``). Its LSTM gate order ``i, f, c, o`` is
  seqjax's; its GRU order ``z, r, h`` is permuted to ``r, z, n``. A ``reset_after=True`` Keras GRU
  has a bias of shape ``[2, 3H]`` (row 0 input, row 1 recurrent).
* Modules without biases convert to zero biases.

torch and keras are imported lazily, only by the functions that build their objects: seqjax
never needs either.
"""

from __future__ import annotations

import sys
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqjax.cells import Cell, GRUParams, LSTMParams, RNNParams, gru, lstm, simple_rnn
from seqjax.types import Params

__all__ = ["from_torch", "to_torch", "from_keras", "to_keras"]

Direction = tuple[Cell, Params]
Converted = Any  # Direction | tuple[Direction, Direction] | list[Direction | tuple[...]]

_SUPPORTED_KINDS = ("simple_rnn", "lstm", "gru")
_PARAMS_TYPE = {"simple_rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}


# ----------------------------------------------------------------------------- converted form


def _is_direction(value) -> bool:
    return (
        isinstance(value, (tuple, list))
        and not hasattr(value, "_fields")
        and len(value) == 2
        and isinstance(value[0], Cell)
    )


def _is_pair(value) -> bool:
    # Only a tuple is a (forward, backward) pair; a list is always a list over layers.
    return (
        isinstance(value, tuple)
        and not hasattr(value, "_fields")
        and len(value) == 2
        and _is_direction(value[0])
        and _is_direction(value[1])
    )


def _check_direction(direction, where: str) -> int:
    """Validate one ``(cell, params)``; return its input size."""
    cell, params = direction
    spec = cell.spec
    if spec.kind not in _SUPPORTED_KINDS:
        raise ValueError(
            f"{where}: cells of kind {spec.kind!r} have no PyTorch/Keras counterpart; "
            f"supported kinds are {_SUPPORTED_KINDS}"
        )
    expected_type = _PARAMS_TYPE[spec.kind]
    if not isinstance(params, expected_type):
        raise ValueError(
            f"{where}: a {spec.kind} cell needs {expected_type.__name__} params; "
            f"got {type(params).__name__}"
        )
    H, G = spec.hidden_size, spec.num_gates
    w_x, w_h, b = (np.shape(params.w_x), np.shape(params.w_h), np.shape(params.b))
    if len(w_x) != 2 or w_x[1] != G * H or w_h != (H, G * H) or b != (G * H,):
        raise ValueError(
            f"{where}: params shapes w_x {w_x}, w_h {w_h}, b {b} do not match a {spec.kind} cell "
            f"with H={H} (expected [I, {G * H}], ({H}, {G * H}), ({G * H},))"
        )
    if spec.kind == "gru":
        b_h = params.b_h
        if spec.reset_after and (b_h is None or np.shape(b_h) != (G * H,)):
            raise ValueError(
                f"{where}: a reset_after=True GRU needs b_h of shape ({G * H},); "
                f"got {None if b_h is None else np.shape(b_h)}"
            )
        if not spec.reset_after and b_h is not None:
            raise ValueError(f"{where}: a reset_after=False GRU has b_h=None; got an array")
    return w_x[0]


def _layers(converted, name: str) -> tuple[list[list[Direction]], str]:
    """Normalise ``converted`` to a list over layers of lists over directions.

    Returns the layers and the form that came in: ``"direction"``, ``"pair"`` or ``"list"``.
    """
    if _is_direction(converted):
        layers, form = [[tuple(converted)]], "direction"
    elif _is_pair(converted):
        layers, form = [[tuple(converted[0]), tuple(converted[1])]], "pair"
    elif isinstance(converted, list) and converted:
        layers = []
        for i, item in enumerate(converted):
            if _is_direction(item):
                layers.append([tuple(item)])
            elif _is_pair(item):
                layers.append([tuple(item[0]), tuple(item[1])])
            else:
                raise ValueError(
                    f"{name}[{i}] must be (cell, params) or a tuple "
                    f"((cell_f, params_f), (cell_b, params_b)); got {type(item).__name__}"
                )
        form = "list"
    else:
        raise ValueError(
            f"{name} must be (cell, params), a tuple ((cell_f, params_f), (cell_b, params_b)), "
            f"or a non-empty list over layers of those (what from_torch/from_keras return); "
            f"got {type(converted).__name__}"
        )
    for i, layer in enumerate(layers):
        for d, direction in enumerate(layer):
            where = f"{name}" + (f"[{i}]" if form == "list" else "")
            where += ("", " (backward)")[d] if len(layer) == 2 else ""
            _check_direction(direction, where)
    return layers, form


def _to_numpy32(x) -> np.ndarray:
    # Through float32 so bfloat16 params (which torch cannot read from numpy) convert too.
    x = jnp.asarray(x)
    return np.asarray(x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x)


def _all_zero(x) -> bool:
    return x is None or not np.any(_to_numpy32(x))


# ----------------------------------------------------------------------------- PyTorch

_TORCH_MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")


def _check_torch_module(module):
    torch = sys.modules.get("torch")  # an object can only be a torch module if torch is loaded
    if torch is None or not isinstance(module, torch.nn.RNNBase) or module.mode not in _TORCH_MODES:
        raise ValueError(
            "module must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU; "
            f"got {type(module).__module__}.{type(module).__name__}"
        )
    if getattr(module, "proj_size", 0) > 0:
        raise ValueError(
            f"module: torch.nn.LSTM with proj_size={module.proj_size} is not supported "
            "(seqjax's LSTM has no projection); use proj_size=0"
        )
    return torch


def _from_torch_tensor(tensor):
    torch = sys.modules["torch"]
    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        return jnp.asarray(t.float().numpy(), jnp.bfloat16)
    return jnp.asarray(t.numpy())


def from_torch(module) -> Converted:
    """Convert a PyTorch ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` to seqjax cells and params.

    ``batch_first`` does not change the weights: run seqjax with ``time_major=not batch_first``
    to use the same layout. Dropout between layers is a training setting and is not converted.

    Example:
      >>> import torch, jax.numpy as jnp, seqjax as sj  # doctest: +SKIP
      >>> module = torch.nn.LSTM(4, 8, batch_first=True)  # doctest: +SKIP
      >>> cell, params = sj.interop.from_torch(module)  # doctest: +SKIP
      >>> carry, ys = sj.rnn(cell, params, jnp.ones((2, 5, 4)))  # doctest: +SKIP
      >>> ys.shape  # doctest: +SKIP
      (2, 5, 8)
      >>> layers = sj.interop.from_torch(torch.nn.GRU(4, 8, num_layers=2))  # doctest: +SKIP
      >>> len(layers)  # doctest: +SKIP
      2

    Args:
      module: a ``torch.nn.RNN`` (``nonlinearity`` tanh or relu), ``torch.nn.LSTM`` (with
        ``proj_size=0``) or ``torch.nn.GRU``.

    Returns:
      ``(cell, params)`` for a single-layer one-directional module; otherwise a list with one item
      per layer, each ``(cell, params)`` or, for a bidirectional module,
      ``((cell_f, params_f), (cell_b, params_b))``. A module without biases gives zero biases.

    Raises:
      ValueError: ``module`` is not one of the supported modules, or is an LSTM with
        ``proj_size > 0``.
    """
    _check_torch_module(module)
    H = module.hidden_size
    mode = module.mode
    if mode == "LSTM":
        cell = lstm(H, unit_forget_bias=False)  # PyTorch initialises no forget bias
    elif mode == "GRU":
        cell = gru(H, reset_after=True)
    else:
        cell = simple_rnn(H, activation="tanh" if mode == "RNN_TANH" else "relu")

    suffixes = ("", "_reverse") if module.bidirectional else ("",)
    layers = []
    for layer in range(module.num_layers):
        directions = []
        for suffix in suffixes:
            name = f"l{layer}{suffix}"
            w_x = _from_torch_tensor(getattr(module, f"weight_ih_{name}")).T
            w_h = _from_torch_tensor(getattr(module, f"weight_hh_{name}")).T
            if module.bias:
                b_ih = _from_torch_tensor(getattr(module, f"bias_ih_{name}"))
                b_hh = _from_torch_tensor(getattr(module, f"bias_hh_{name}"))
            else:
                b_ih = b_hh = jnp.zeros((w_x.shape[1],), w_x.dtype)
            if mode == "GRU":
                params = GRUParams(w_x, w_h, b_ih, b_hh)
            elif mode == "LSTM":
                params = LSTMParams(w_x, w_h, b_ih + b_hh)
            else:
                params = RNNParams(w_x, w_h, b_ih + b_hh)
            directions.append((cell, params))
        layers.append(directions[0] if len(directions) == 1 else tuple(directions))
    if module.num_layers == 1 and not module.bidirectional:
        return layers[0]
    return layers


def _torch_dtype(torch, x):
    return getattr(torch, str(jnp.asarray(x).dtype))


def to_torch(converted: Converted, *, batch_first: bool = True, bias: bool = True):
    """Build a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` holding the given weights.

    The inverse of :func:`from_torch`: ``from_torch(to_torch(x))`` gives back the same params.

    Args:
      converted: ``(cell, params)``, a tuple ``((cell_f, params_f), (cell_b, params_b))``, or a
        list over layers of those (all layers one kind and hidden size, all bidirectional or
        none, each layer reading the previous one's output), as :func:`from_torch` returns.
        Cells must be ``simple_rnn``, ``lstm`` or ``gru(reset_after=True)``.
      batch_first: the module's ``batch_first`` (default True, seqjax's batch-major layout).
      bias: build the module with biases; with ``bias=False`` every bias must be zero.

    Returns:
      A ``torch.nn.Module`` in the params' dtype, on the CPU. SimpleRNN and LSTM biases go to
      ``bias_ih`` (``bias_hh`` is zero).

    Raises:
      ValueError: ``converted`` is malformed or has no PyTorch equivalent (mixed kinds or
        sizes across layers, a ``reset_after=False`` GRU, non-zero biases with ``bias=False``).
    """
    layers, _ = _layers(converted, "converted")
    import torch  # lazily: seqjax itself never needs torch

    first_cell, first_params = layers[0][0]
    spec = first_cell.spec
    num_dirs = len(layers[0])
    for i, layer in enumerate(layers):
        if len(layer) != num_dirs:
            raise ValueError(
                f"converted[{i}]: torch modules are bidirectional in every layer or in none; "
                f"layer 0 has {num_dirs} direction(s), layer {i} has {len(layer)}"
            )
        for cell, params in layer:
            other = cell.spec
            if (other.kind, other.hidden_size, other.activation) != (
                spec.kind,
                spec.hidden_size,
                spec.activation,
            ):
                raise ValueError(
                    f"converted: a torch module has one cell kind, hidden size and activation in "
                    f"every layer; got {spec} and {other}"
                )
            want = first_params.w_x.shape[0] if i == 0 else spec.hidden_size * num_dirs
            if params.w_x.shape[0] != want:
                raise ValueError(
                    f"converted[{i}]: input size {params.w_x.shape[0]} (w_x shape "
                    f"{params.w_x.shape}) must be {want}, the previous layer's output size"
                )
            if not bias and not all(_all_zero(b) for b in params[2:]):
                raise ValueError(
                    "bias=False but the params have non-zero biases; pass bias=True to keep them"
                )
    if spec.kind == "gru" and not spec.reset_after:
        raise ValueError(
            "converted: torch.nn.GRU is the reset_after=True form; a reset_after=False GRU "
            "cannot be converted"
        )

    kwargs = dict(
        input_size=int(first_params.w_x.shape[0]),
        hidden_size=spec.hidden_size,
        num_layers=len(layers),
        bias=bool(bias),
        batch_first=bool(batch_first),
        bidirectional=num_dirs == 2,
        dtype=_torch_dtype(torch, first_params.w_x),
    )
    if spec.kind == "lstm":
        module = torch.nn.LSTM(**kwargs)
    elif spec.kind == "gru":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity=spec.activation, **kwargs)

    def assign(name, value):
        target = getattr(module, name)
        target.copy_(torch.from_numpy(np.array(_to_numpy32(value))).to(target.dtype))

    with torch.no_grad():
        for i, layer in enumerate(layers):
            for suffix, (_, params) in zip(("", "_reverse")[: len(layer)], layer, strict=True):
                name = f"l{i}{suffix}"
                assign(f"weight_ih_{name}", jnp.asarray(params.w_x).T)
                assign(f"weight_hh_{name}", jnp.asarray(params.w_h).T)
                if bias:
                    assign(f"bias_ih_{name}", params.b)
                    b_hh = params.b_h if spec.kind == "gru" else jnp.zeros_like(params.b)
                    assign(f"bias_hh_{name}", b_hh)
    return module


# ----------------------------------------------------------------------------- Keras


def _keras_or_none():
    return sys.modules.get("keras")  # an object can only be a Keras layer if keras is loaded


def _activation_name(fn) -> str:
    return getattr(fn, "__name__", repr(fn))


def _swap_zr(x, H: int, axis: int = -1):
    # Keras' GRU gate order z, r, h <-> seqjax's r, z, n: swapping the first two blocks is its own
    # inverse, so the same function converts in both directions.
    z, r, n = np.split(np.asarray(x), [H, 2 * H], axis=axis)
    return np.concatenate([r, z, n], axis=axis)


def _keras_direction(keras, rnn_layer, name: str, allow_backwards: bool = False) -> Direction:
    rnn_cell = getattr(rnn_layer, "cell", None)
    cell_types = (keras.layers.SimpleRNNCell, keras.layers.LSTMCell, keras.layers.GRUCell)
    if not isinstance(rnn_layer, keras.layers.RNN) or not isinstance(rnn_cell, cell_types):
        raise ValueError(
            f"{name} must be a keras.layers.SimpleRNN, LSTM, GRU (or RNN of one such cell) or a "
            f"Bidirectional of those; got {type(rnn_layer).__name__}"
        )
    label = f"{name} ({type(rnn_layer).__name__} {rnn_layer.name!r})"
    if rnn_layer.go_backwards and not allow_backwards:
        raise ValueError(
            f"{label}: go_backwards=True outside Bidirectional is not supported (Keras returns "
            "the outputs in reversed time order); use sj.rnn(..., reverse=True) instead"
        )
    if not rnn_cell.built or getattr(rnn_cell, "kernel", None) is None:
        raise ValueError(
            f"{label} has no weights yet: build it first, e.g. layer.build((None, None, I)) or "
            "call it on a batch"
        )
    H = rnn_cell.units
    activation = _activation_name(rnn_cell.activation)
    kernel = keras.ops.convert_to_numpy(rnn_cell.kernel.value)
    recurrent = keras.ops.convert_to_numpy(rnn_cell.recurrent_kernel.value)
    bias = keras.ops.convert_to_numpy(rnn_cell.bias.value) if rnn_cell.use_bias else None

    if isinstance(rnn_cell, keras.layers.SimpleRNNCell):
        if activation not in ("tanh", "relu"):
            raise ValueError(
                f"{label}: activation={activation!r} is not supported; use tanh or relu"
            )
        b = np.zeros((H,), kernel.dtype) if bias is None else bias
        return simple_rnn(H, activation), RNNParams(*map(jnp.asarray, (kernel, recurrent, b)))

    recurrent_activation = _activation_name(rnn_cell.recurrent_activation)
    if activation != "tanh":
        raise ValueError(f"{label}: activation={activation!r} is not supported; only tanh")
    if recurrent_activation != "sigmoid":
        raise ValueError(
            f"{label}: recurrent_activation={recurrent_activation!r} is not supported; only sigmoid"
        )
    if isinstance(rnn_cell, keras.layers.LSTMCell):
        b = np.zeros((4 * H,), kernel.dtype) if bias is None else bias
        cell = lstm(H, unit_forget_bias=bool(rnn_cell.unit_forget_bias))
        return cell, LSTMParams(*map(jnp.asarray, (kernel, recurrent, b)))

    reset_after = bool(rnn_cell.reset_after)
    zeros = np.zeros((3 * H,), kernel.dtype)
    if reset_after:
        b, b_h = (zeros, zeros) if bias is None else (bias[0], bias[1])
        b_h = jnp.asarray(_swap_zr(b_h, H))
    else:
        b, b_h = (zeros if bias is None else bias), None
    params = GRUParams(
        jnp.asarray(_swap_zr(kernel, H)),
        jnp.asarray(_swap_zr(recurrent, H)),
        jnp.asarray(_swap_zr(b, H)),
        b_h,
    )
    return gru(H, reset_after=reset_after), params


def from_keras(layer) -> Converted:
    """Convert a built Keras 3 ``SimpleRNN``, ``LSTM``, ``GRU`` or ``Bidirectional`` layer.

    Training-only settings (dropout, recurrent dropout) are not converted; neither is a
    ``Bidirectional`` layer's ``merge_mode`` (pass it to :func:`seqjax.bidirectional` as
    ``merge``).

    Example:
      >>> import os  # doctest: +SKIP
      >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")  # doctest: +SKIP
      >>> import keras, jax.numpy as jnp, seqjax as sj  # doctest: +SKIP
      >>> layer = keras.layers.GRU(8, return_sequences=True)  # doctest: +SKIP
      >>> layer.build((None, None, 4))  # doctest: +SKIP
      >>> cell, params = sj.interop.from_keras(layer)  # doctest: +SKIP
      >>> carry, ys = sj.rnn(cell, params, jnp.ones((2, 5, 4)))  # doctest: +SKIP
      >>> ys.shape  # doctest: +SKIP
      (2, 5, 8)

    Args:
      layer: a built ``keras.layers.SimpleRNN`` (activation tanh or relu), ``LSTM`` or ``GRU``
        (activation tanh, recurrent_activation sigmoid; either ``reset_after``), a
        ``keras.layers.RNN`` of one such cell, a ``Bidirectional`` wrapping one of them, or a
        list of such layers.

    Returns:
      ``(cell, params)``; ``((cell_f, params_f), (cell_b, params_b))`` for ``Bidirectional``; a
      list of those for a list of layers. ``use_bias=False`` gives zero biases.

    Raises:
      ValueError: ``layer`` is not a supported layer, is not built, or uses an activation,
        recurrent activation or ``go_backwards`` setting that seqjax does not have.
    """
    if isinstance(layer, (list, tuple)):
        if not layer:
            raise ValueError("layer: an empty list of layers")
        return [from_keras(item) for item in layer]
    keras = _keras_or_none()
    if keras is None or not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            "layer must be a keras.layers.SimpleRNN, LSTM, GRU or Bidirectional layer; "
            f"got {type(layer).__module__}.{type(layer).__name__}"
        )
    if isinstance(layer, keras.layers.Bidirectional):
        forward = _keras_direction(keras, layer.forward_layer, "layer.forward_layer")
        backward = _keras_direction(
            keras, layer.backward_layer, "layer.backward_layer", allow_backwards=True
        )
        return forward, backward
    return _keras_direction(keras, layer, "layer")


def _keras_layer(
    keras, cell: Cell, params, *, go_backwards, return_sequences, return_state, use_bias, name
):
    spec = cell.spec
    if not use_bias and not all(_all_zero(b) for b in params[2:]):
        raise ValueError(
            "use_bias=False but the params have non-zero biases; pass use_bias=True to keep them"
        )
    common = dict(
        units=spec.hidden_size,
        use_bias=bool(use_bias),
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        dtype=str(jnp.asarray(params.w_x).dtype),
        name=name,
        # The weights are overwritten at once; Keras' default orthogonal initialiser would only
        # cost a QR decomposition (and, on jax, its compilation) per layer.
        kernel_initializer="zeros",
        recurrent_initializer="zeros",
        bias_initializer="zeros",
    )
    H = spec.hidden_size
    kernel, recurrent, b = (_to_numpy32(p) for p in params[:3])
    if spec.kind == "simple_rnn":
        layer = keras.layers.SimpleRNN(activation=spec.activation, **common)
    elif spec.kind == "lstm":
        layer = keras.layers.LSTM(unit_forget_bias=spec.unit_forget_bias, **common)
    else:
        layer = keras.layers.GRU(reset_after=spec.reset_after, **common)
        kernel, recurrent, b = (_swap_zr(x, H) for x in (kernel, recurrent, b))
        if spec.reset_after:
            b = np.stack([b, _swap_zr(_to_numpy32(params.b_h), H)])
    # seqjax emits zeros at masked steps; Keras repeats the previous output unless told not to.
    layer.zero_output_for_mask = bool(return_sequences)
    values = [kernel, recurrent] + ([b] if use_bias else [])
    return layer, values


def _assign_keras(rnn_layer, values) -> None:
    rnn_cell = rnn_layer.cell
    targets = [rnn_cell.kernel, rnn_cell.recurrent_kernel] + (
        [rnn_cell.bias] if rnn_cell.use_bias else []
    )
    for variable, value in zip(targets, values, strict=True):
        variable.assign(np.asarray(value).reshape(variable.shape))


def to_keras(
    converted: Converted,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    merge_mode: str | None = "concat",
    use_bias: bool = True,
):
    """Build a Keras 3 layer holding the given weights (the inverse of :func:`from_keras`).

    Args:
      converted: ``(cell, params)`` gives a ``SimpleRNN``, ``LSTM`` or ``GRU``; a tuple
        ``((cell_f, params_f), (cell_b, params_b))`` gives a ``Bidirectional`` layer; a list of
        those gives a list of layers (every one but the last returns sequences, so they can be
        chained).
      return_sequences: the (last) layer's ``return_sequences``; False by default, as in Keras.
        Layers returning sequences emit zeros at masked steps (``zero_output_for_mask``), as
        seqjax does.
      return_state: the (last) layer's ``return_state``.
      merge_mode: ``merge_mode`` of ``Bidirectional`` layers.
      use_bias: build the layers with biases; with ``use_bias=False`` every bias must be zero.

    Returns:
      A built Keras layer (or a list of them) in the params' dtype.

    Raises:
      ValueError: ``converted`` is malformed or has non-zero biases with ``use_bias=False``.
    """
    layers, form = _layers(converted, "converted")
    import keras  # lazily: seqjax itself never needs keras

    built = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        options = dict(
            return_sequences=bool(return_sequences) if last else True,
            return_state=bool(return_state) if last else False,
            use_bias=use_bias,
        )
        input_size = int(layer[0][1].w_x.shape[0])
        if len(layer) == 1:
            rnn_layer, values = _keras_layer(
                keras, *layer[0], go_backwards=False, name=None, **options
            )
            rnn_layer.build((None, None, input_size))
            _assign_keras(rnn_layer, values)
            built.append(rnn_layer)
            continue
        (cell_f, params_f), (cell_b, params_b) = layer
        if int(params_b.w_x.shape[0]) != input_size:
            raise ValueError(
                f"converted: forward and backward input sizes differ "
                f"({input_size} and {params_b.w_x.shape[0]})"
            )
        forward, values_f = _keras_layer(
            keras, cell_f, params_f, go_backwards=False, name=None, **options
        )
        backward, values_b = _keras_layer(
            keras, cell_b, params_b, go_backwards=True, name=f"backward_{forward.name}", **options
        )
        wrapper = keras.layers.Bidirectional(
            forward, backward_layer=backward, merge_mode=merge_mode
        )
        wrapper.build((None, None, input_size))
        # Bidirectional rebuilds its forward layer from the config: assign to the layers it holds.
        _assign_keras(wrapper.forward_layer, values_f)
        _assign_keras(wrapper.backward_layer, values_b)
        built.append(wrapper)
    return built if form == "list" else built[0]
