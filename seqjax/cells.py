"""Recurrent cells as pure functions.

A cell is a :class:`Cell`: a NamedTuple of pure functions, like optax's ``GradientTransformation``.
Static configuration (sizes, activation, GRU form) lives in the factory's closure and in
``cell.spec``; never in the params pytree.

Weights are stored fused so that the input projection can be hoisted out of the time loop:
``w_x: [I, G*H]``, ``w_h: [H, G*H]``. The gate order follows PyTorch and cuDNN:

* LSTM: ``i, f, g, o`` (input, forget, cell candidate, output)
* GRU: ``r, z, n`` (reset, update, candidate)

Every cell emits its new hidden state as output (``y_t = h_t``).

Precision: ``project`` computes in the input's dtype; ``step`` computes in the carry's dtype
(float32 when inputs are bfloat16; :func:`seqjax.rnn` chooses it) and casts the output back to the
input's dtype.

The cells' math is written here once as the definition, and again, with hand-written gradients,
in the fast backends; a change to a cell changes every one of these (the backend tests compare
each against ``reference``, which runs the ``step`` functions here):

* ``seqjax/kernels/fused.py``: ``_rnn_forward/_backward``, ``_lstm_forward/_backward``,
  ``_gru_forward/_backward/_recurrent_grads`` (SimpleRNN, LSTM, GRU in both forms);
* ``seqjax/kernels/sequential.py``: ``_coefficients``, ``_coefficients_vjp`` (minGRU, minLSTM);
* ``seqjax/kernels/parallel.py``: ``_log_coefficients``, ``_log_g`` (minGRU, minLSTM, log space);
* ``seqjax/kernels/pallas_cells.py``: ``lstm_forward/_backward``, ``gru_forward/_backward``
  (the GPU and TPU kernels' per-gate tiles);
* ``seqjax/kernels/native.cc``: ``LstmCell``, ``GruCell``, ``min_forward_tile``,
  ``min_row_gradients``, ``min_lstm_gates``, ``positive_g`` (the CPU kernels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax.types import Array, PRNGKey, Shape

__all__ = [
    "Cell",
    "CellSpec",
    "RNNParams",
    "RNNCarry",
    "LSTMParams",
    "LSTMCarry",
    "GRUParams",
    "GRUCarry",
    "MinParams",
    "MIN_KINDS",
    "simple_rnn",
    "lstm",
    "gru",
    "simplified_gru",
    "min_gru",
    "min_lstm",
]


# ----------------------------------------------------------------------------- structures


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """Static description of a cell, hashable, used by kernels and interop to dispatch.

    Attributes:
      kind: one of ``"simple_rnn"``, ``"lstm"``, ``"gru"``, ``"simplified_gru"``, ``"min_gru"``,
        ``"min_lstm"``.
      hidden_size: H.
      num_gates: G, so that ``project`` returns ``[..., G*H]``.
      activation: SimpleRNN's activation name.
      reset_after: GRU form (True: cuDNN/PyTorch/Keras default; False: Cho et al. 2014).
      unit_forget_bias: LSTM forget-gate bias initialised to 1 (Keras' default).
    """

    kind: str
    hidden_size: int
    num_gates: int
    activation: str = "tanh"
    reset_after: bool = True
    unit_forget_bias: bool = False


#: The kinds of the cells whose recurrence is linear in ``h`` (``h_t = a_t h_{t-1} + b_t``, with
#: ``a_t, b_t`` from ``x_t`` alone, no recurrent matmul): minGRU and minLSTM. Backends dispatch on
#: it (``parallel``, ``sequential``, ``native``'s min kernels).
MIN_KINDS = ("min_gru", "min_lstm")


class Cell(NamedTuple):
    """A recurrent cell: pure functions plus its static spec.

    Attributes:
      init: ``(key, input_size, dtype=float32) -> params``.
      initial_carry: ``(batch_shape, dtype=float32) -> carry`` of zeros, leaves
        ``[*batch_shape, H]``.
      project: ``(params, x[..., I]) -> xw[..., G*H]``, the input part of every gate, bias
        included.
      step: ``(params, carry, xw_t[..., G*H]) -> (carry, y_t[..., H])``, the recurrent part only.
      apply: ``(params, carry, x_t[..., I]) -> (carry, y_t)``, equal to
        ``step(params, carry, project(params, x_t))``.
      spec: the :class:`CellSpec`.
    """

    init: Callable[..., Any]
    initial_carry: Callable[..., Any]
    project: Callable[..., Array]
    step: Callable[..., tuple[Any, Array]]
    apply: Callable[..., tuple[Any, Array]]
    spec: CellSpec


class RNNParams(NamedTuple):
    """SimpleRNN and simplified-GRU params: ``w_x [I, G*H]``, ``w_h [H, G*H]``, ``b [G*H]``."""

    w_x: Array
    w_h: Array
    b: Array


class RNNCarry(NamedTuple):
    """Carry of cells whose whole state is the hidden state: ``h [..., H]``."""

    h: Array


class LSTMParams(NamedTuple):
    """LSTM params, gates ``i, f, g, o``: ``w_x [I, 4H]``, ``w_h [H, 4H]``, ``b [4H]``."""

    w_x: Array
    w_h: Array
    b: Array


class LSTMCarry(NamedTuple):
    """LSTM carry: hidden state ``h [..., H]`` and cell state ``c [..., H]``."""

    h: Array
    c: Array


class GRUParams(NamedTuple):
    """GRU params, gates ``r, z, n``.

    ``w_x [I, 3H]``, ``w_h [H, 3H]``, input bias ``b [3H]``, and recurrent bias ``b_h [3H]`` in the
    ``reset_after=True`` form (``None`` in the ``reset_after=False`` form, where it would be
    redundant with ``b``).
    """

    w_x: Array
    w_h: Array
    b: Array
    b_h: Array | None


GRUCarry = RNNCarry


class MinParams(NamedTuple):
    """minGRU/minLSTM params (no recurrent weights): ``w_x [I, G*H]``, ``b [G*H]``."""

    w_x: Array
    b: Array


# ----------------------------------------------------------------------------- helpers

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


def _glorot(key: PRNGKey, shape: Shape, dtype) -> Array:
    return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def _orthogonal(key: PRNGKey, shape: Shape, dtype) -> Array:
    return jax.nn.initializers.orthogonal()(key, shape, dtype)


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _zeros_carry(carry_type: type, num_fields: int, hidden_size: int):
    def initial_carry(batch_shape: Shape = (), dtype=jnp.float32):
        batch_shape = tuple(batch_shape)
        zeros = jnp.zeros((*batch_shape, hidden_size), dtype)
        return carry_type(*([zeros] * num_fields))

    return initial_carry


def add_bias(z: Array, b: Array) -> Array:
    """``z + b`` with an explicit broadcast: the library also runs under
    ``jax_numpy_rank_promotion="raise"``."""
    return z + b.astype(z.dtype).reshape((1,) * (z.ndim - 1) + b.shape)


def input_projection(params, x: Array) -> Array:
    """``x W_x + b`` for ``x [..., I]``, in the input's dtype; every cell's ``project``.

    The leading dims are flattened into one matmul row dim: with ``x`` of rank 3, XLA:CPU's
    gradient of the batched dot contracts over two dims and ran 3x slower (figures in
    ``experiments/results/bench/README.md``).
    """
    x2 = x.reshape(-1, x.shape[-1])
    z = add_bias(x2 @ params.w_x.astype(x.dtype), params.b)
    return z.reshape(x.shape[:-1] + z.shape[-1:])


def _recurrent(h: Array, w_h: Array) -> Array:
    return h @ w_h.astype(h.dtype)


def _make_cell(init, initial_carry, project, step, spec: CellSpec) -> Cell:
    def apply(params, carry, x_t):
        return step(params, carry, project(params, x_t))

    return Cell(init, initial_carry, project, step, apply, spec)


def min_lstm_gates(f_pre: Array, i_pre: Array) -> tuple[Array, Array]:
    """minLSTM's normalised gates ``f / (f + i)`` and ``i / (f + i)`` (``f, i`` the sigmoids).

    The plain ratio is 0 / 0 where both pre-activations are below about -88 and both sigmoids
    underflow. Equal to ``sigmoid(+-(log f - log i))``, it is computed as ``(1 + e^-i_pre) /
    (2 + e^-f_pre + e^-i_pre)`` (and the same with ``f_pre``), every term scaled by ``e^-m``,
    ``m = max(-f_pre, -i_pre, 0)``, so that none overflows: three ``exp`` instead of two
    ``log_sigmoid`` and two ``sigmoid``, which made minLSTM's ``sequential`` training step 13%
    faster (figures in ``experiments/results/bench/README.md``).
    """
    m = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(-f_pre, -i_pre), 0))
    e0, e_f, e_i = jnp.exp(-m), jnp.exp(-f_pre - m), jnp.exp(-i_pre - m)
    inv = 1 / (2 * e0 + e_f + e_i)
    return (e0 + e_i) * inv, (e0 + e_f) * inv


def positive_g(v: Array) -> Array:
    """minGRU's ``g(v) = v + 0.5`` for ``v >= 0`` else ``sigmoid(v)``: positive, continuous."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


# ----------------------------------------------------------------------------- cells


def simple_rnn(hidden_size: int, activation: str = "tanh") -> Cell:
    """Elman RNN (Keras ``SimpleRNN``, PyTorch ``nn.RNN``).

    Equations::

        h_t = act(x_t W_x + h_{t-1} W_h + b)        act = tanh or relu

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.simple_rnn(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> carry, y = cell.apply(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)

    Args:
      hidden_size: H.
      activation: ``"tanh"`` (default) or ``"relu"``.

    Returns:
      A :class:`Cell` with params :class:`RNNParams` (``w_x [I,H]``, ``w_h [H,H]``, ``b [H]``) and
      carry :class:`RNNCarry` (``h [B,H]``).
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
    act = _ACTIVATIONS[activation]
    spec = CellSpec("simple_rnn", hidden_size, 1, activation=activation)

    def init(key: PRNGKey, input_size: int, dtype=jnp.float32) -> RNNParams:
        input_size = _check_size("input_size", input_size)
        kx, kh = jax.random.split(key)
        return RNNParams(
            _glorot(kx, (input_size, hidden_size), dtype),
            _orthogonal(kh, (hidden_size, hidden_size), dtype),
            jnp.zeros((hidden_size,), dtype),
        )

    def step(params: RNNParams, carry: RNNCarry, xw_t: Array):
        h = act(xw_t.astype(carry.h.dtype) + _recurrent(carry.h, params.w_h))
        return RNNCarry(h), h.astype(xw_t.dtype)

    return _make_cell(init, _zeros_carry(RNNCarry, 1, hidden_size), input_projection, step, spec)


def lstm(hidden_size: int, unit_forget_bias: bool = True) -> Cell:
    """Long short-term memory (Hochreiter & Schmidhuber 1997; PyTorch/Keras form).

    Equations (gate order ``i, f, g, o``)::

        i_t = sigmoid(x_t W_xi + h_{t-1} W_hi + b_i)        input gate
        f_t = sigmoid(x_t W_xf + h_{t-1} W_hf + b_f)        forget gate
        g_t = tanh   (x_t W_xg + h_{t-1} W_hg + b_g)        cell candidate
        o_t = sigmoid(x_t W_xo + h_{t-1} W_ho + b_o)        output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> params.w_x.shape, params.w_h.shape, params.b.shape
      ((3, 32), (8, 32), (32,))
      >>> carry, y = cell.apply(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
      >>> carry.c.shape, y.shape
      ((2, 8), (2, 8))

    Args:
      hidden_size: H.
      unit_forget_bias: initialise ``b_f`` to 1 (Keras' default, Jozefowicz et al. 2015); the
        other biases start at 0. It is only an initialiser: ``step`` never adds a constant.

    Returns:
      A :class:`Cell` with params :class:`LSTMParams` and carry :class:`LSTMCarry` ``(h, c)``.
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    H = hidden_size
    spec = CellSpec("lstm", H, 4, unit_forget_bias=bool(unit_forget_bias))

    def init(key: PRNGKey, input_size: int, dtype=jnp.float32) -> LSTMParams:
        input_size = _check_size("input_size", input_size)
        kx, kh = jax.random.split(key)
        b = jnp.zeros((4 * H,), dtype)
        if unit_forget_bias:
            b = b.at[H : 2 * H].set(1)
        return LSTMParams(
            _glorot(kx, (input_size, 4 * H), dtype), _orthogonal(kh, (H, 4 * H), dtype), b
        )

    def step(params: LSTMParams, carry: LSTMCarry, xw_t: Array):
        z = xw_t.astype(carry.h.dtype) + _recurrent(carry.h, params.w_h)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMCarry(h, c), h.astype(xw_t.dtype)

    return _make_cell(init, _zeros_carry(LSTMCarry, 2, H), input_projection, step, spec)


def gru(hidden_size: int, reset_after: bool = True) -> Cell:
    """Gated recurrent unit (Cho et al. 2014), full form with reset and update gates.

    Equations (gate order ``r, z, n``), ``reset_after=True`` (cuDNN, PyTorch, Keras default)::

        r_t = sigmoid(x_t W_xr + b_r + h_{t-1} W_hr + b_hr)          reset gate
        z_t = sigmoid(x_t W_xz + b_z + h_{t-1} W_hz + b_hz)          update gate
        n_t = tanh   (x_t W_xn + b_n + r_t * (h_{t-1} W_hn + b_hn))  candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    ``reset_after=False`` (Cho et al.'s original form; Keras ``reset_after=False``) applies the
    reset gate before the recurrent matmul and has a single bias::

        r_t = sigmoid(x_t W_xr + h_{t-1} W_hr + b_r)
        z_t = sigmoid(x_t W_xz + h_{t-1} W_hz + b_z)
        n_t = tanh   (x_t W_xn + (r_t * h_{t-1}) W_hn + b_n)
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> params.b_h.shape
      (24,)
      >>> carry, y = cell.apply(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)

    Args:
      hidden_size: H.
      reset_after: which form (see above).

    Returns:
      A :class:`Cell` with params :class:`GRUParams` (``b_h`` is ``None`` when
      ``reset_after=False``) and carry :class:`GRUCarry` ``(h,)``.
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    H = hidden_size
    reset_after = bool(reset_after)
    spec = CellSpec("gru", H, 3, reset_after=reset_after)

    def init(key: PRNGKey, input_size: int, dtype=jnp.float32) -> GRUParams:
        input_size = _check_size("input_size", input_size)
        kx, kh = jax.random.split(key)
        return GRUParams(
            _glorot(kx, (input_size, 3 * H), dtype),
            _orthogonal(kh, (H, 3 * H), dtype),
            jnp.zeros((3 * H,), dtype),
            jnp.zeros((3 * H,), dtype) if reset_after else None,
        )

    def step(params: GRUParams, carry: RNNCarry, xw_t: Array):
        h_tm1 = carry.h
        x_r, x_z, x_n = jnp.split(xw_t.astype(h_tm1.dtype), 3, axis=-1)
        if reset_after:
            hw = add_bias(_recurrent(h_tm1, params.w_h), params.b_h)
            h_r, h_z, h_n = jnp.split(hw, 3, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            h_r, h_z = jnp.split(_recurrent(h_tm1, params.w_h[:, : 2 * H]), 2, axis=-1)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + _recurrent(r * h_tm1, params.w_h[:, 2 * H :]))
        h = (1 - z) * n + z * h_tm1
        return RNNCarry(h), h.astype(xw_t.dtype)

    return _make_cell(init, _zeros_carry(RNNCarry, 1, H), input_projection, step, spec)


def simplified_gru(hidden_size: int) -> Cell:
    """The simplified GRU of the deeplearning.ai sequence-models course: an update gate only.

    Equations (gate order ``u, c``; the memory cell is the hidden state, ``c_t = h_t``)::

        u_t  = sigmoid(x_t W_xu + h_{t-1} W_hu + b_u)      update gate (Gamma_u)
        c~_t = tanh   (x_t W_xc + h_{t-1} W_hc + b_c)      candidate
        h_t  = u_t * c~_t + (1 - u_t) * h_{t-1}

    Note the course's convention: ``u_t = 1`` takes the candidate, whereas in :func:`gru` (PyTorch,
    Keras) ``z_t = 1`` keeps the previous state.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.simplified_gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> params.w_h.shape
      (8, 16)

    Args:
      hidden_size: H.

    Returns:
      A :class:`Cell` with params :class:`RNNParams` (``w_x [I,2H]``, ``w_h [H,2H]``, ``b [2H]``)
      and carry :class:`RNNCarry`.
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    H = hidden_size
    spec = CellSpec("simplified_gru", H, 2)

    def init(key: PRNGKey, input_size: int, dtype=jnp.float32) -> RNNParams:
        input_size = _check_size("input_size", input_size)
        kx, kh = jax.random.split(key)
        return RNNParams(
            _glorot(kx, (input_size, 2 * H), dtype),
            _orthogonal(kh, (H, 2 * H), dtype),
            jnp.zeros((2 * H,), dtype),
        )

    def step(params: RNNParams, carry: RNNCarry, xw_t: Array):
        z = xw_t.astype(carry.h.dtype) + _recurrent(carry.h, params.w_h)
        u_pre, c_pre = jnp.split(z, 2, axis=-1)
        u = jax.nn.sigmoid(u_pre)
        h = u * jnp.tanh(c_pre) + (1 - u) * carry.h
        return RNNCarry(h), h.astype(xw_t.dtype)

    return _make_cell(init, _zeros_carry(RNNCarry, 1, H), input_projection, step, spec)


def _init_min(num_gates: int, hidden_size: int):
    def init(key: PRNGKey, input_size: int, dtype=jnp.float32) -> MinParams:
        input_size = _check_size("input_size", input_size)
        return MinParams(
            _glorot(key, (input_size, num_gates * hidden_size), dtype),
            jnp.zeros((num_gates * hidden_size,), dtype),
        )

    return init


def min_gru(hidden_size: int) -> Cell:
    """minGRU (Feng et al. 2024, "Were RNNs all we needed?"), sequential form.

    The gates depend on the input only, so the recurrence is linear in ``h`` and can also run as a
    parallel scan. Equations (gate order ``z, h~``)::

        z_t  = sigmoid(x_t W_xz + b_z)
        h~_t = g(x_t W_xh + b_h)            g(v) = v + 0.5 if v >= 0 else sigmoid(v)
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    ``g`` keeps the state positive, which the log-space parallel scan needs.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.min_gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> params.w_x.shape
      (3, 16)

    Args:
      hidden_size: H.

    Returns:
      A :class:`Cell` with params :class:`MinParams` (``w_x [I,2H]``, ``b [2H]``) and carry
      :class:`RNNCarry`.
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    spec = CellSpec("min_gru", hidden_size, 2)

    def step(params: MinParams, carry: RNNCarry, xw_t: Array):
        z_pre, h_pre = jnp.split(xw_t.astype(carry.h.dtype), 2, axis=-1)
        z = jax.nn.sigmoid(z_pre)
        h = (1 - z) * carry.h + z * positive_g(h_pre)
        return RNNCarry(h), h.astype(xw_t.dtype)

    return _make_cell(
        _init_min(2, hidden_size), _zeros_carry(RNNCarry, 1, hidden_size), input_projection,
        step, spec
    )


def min_lstm(hidden_size: int) -> Cell:
    """minLSTM (Feng et al. 2024), sequential form, with the paper's normalised gates.

    Equations (gate order ``f, i, h~``)::

        f_t  = sigmoid(x_t W_xf + b_f)
        i_t  = sigmoid(x_t W_xi + b_i)
        h~_t = g(x_t W_xh + b_h)            g as in :func:`min_gru`
        f'_t = f_t / (f_t + i_t)            i'_t = i_t / (f_t + i_t)
        h_t  = f'_t * h_{t-1} + i'_t * h~_t

    ``f'`` and ``i'`` are computed as ``sigmoid(+-(log f - log i))`` (:func:`min_lstm_gates`),
    which stays finite where both sigmoids underflow.

    Example:
      >>> import jax, jax.numpy as jnp, seqjax as sj
      >>> cell = sj.min_lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> params.w_x.shape
      (3, 24)

    Args:
      hidden_size: H.

    Returns:
      A :class:`Cell` with params :class:`MinParams` (``w_x [I,3H]``, ``b [3H]``) and carry
      :class:`RNNCarry`.
    """
    hidden_size = _check_size("hidden_size", hidden_size)
    spec = CellSpec("min_lstm", hidden_size, 3)

    def step(params: MinParams, carry: RNNCarry, xw_t: Array):
        f_pre, i_pre, h_pre = jnp.split(xw_t.astype(carry.h.dtype), 3, axis=-1)
        f_norm, i_norm = min_lstm_gates(f_pre, i_pre)
        h = f_norm * carry.h + i_norm * positive_g(h_pre)
        return RNNCarry(h), h.astype(xw_t.dtype)

    return _make_cell(
        _init_min(3, hidden_size), _zeros_carry(RNNCarry, 1, hidden_size), input_projection,
        step, spec
    )
