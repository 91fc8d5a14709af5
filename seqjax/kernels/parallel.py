"""minGRU/minLSTM as a linear recurrence: a parallel (associative) scan, or its sequential form.

Both cells are ``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` from the projected inputs alone:

* minGRU: ``a = 1 - z``, ``b = z * g(h~)``;
* minLSTM: ``a = f / (f + i)``, ``b = i / (f + i) * g(h~)``.

Masks, resets and the initial carry are folded in without ever taking the log of ``h``. A masked
step is the identity (``a = 1, b = 0``). With ``rho_t`` the effective reset (``reset & mask``), the
state splits into a part proportional to ``h0`` and a part independent of it::

    h_t     = alpha_t * h0 + beta_t
    alpha_t = a_t (1 - rho_t) alpha_{t-1} + a_t rho_t        alpha_{-1} = 1
    beta_t  = a_t (1 - rho_t) beta_{t-1}  + b_t              beta_{-1}  = 0

Both are linear recurrences with non-negative coefficients, so :func:`run` evaluates them with
``lax.associative_scan`` in log space (combine ``(a_i, b_i) o (a_j, b_j) = (a_j a_i, a_j b_i +
b_j)``: a sum and a ``logaddexp``), which stays finite for any T (products of gates underflow to
``log 0 = -inf``, not to NaN). ``h0`` enters only in the final ``alpha * h0 + beta``, in linear
space, so a negative user-supplied initial carry is exact too (the paper's log-space form, which
takes ``log h0``, would need ``h0 > 0``). :func:`run_sequential` is the same recurrence as a
``lax.scan`` over precomputed ``(a, b)``. ``reverse`` flips time; ``unroll`` applies to the
sequential form only; ``remat`` checkpoints the whole scan.

The sequential form is :func:`linear_recurrence`, a ``lax.scan`` of ``h = a h + b`` over ``a, b``
computed for all steps at once, with a custom VJP whose backward pass is the same recurrence run in
reverse. It is registered as the ``sequential`` backend.

Measured: training step ``jit(grad)``, fp32, ms (median, interleaved); ``hoisted``/``reference``
run the cell's own ``step``::

                                   parallel  sequential  hoisted  reference
    2-core CPU (JAX 0.10.2)
      S1 B64 T128 I128 H256 min_gru     229        74         86       89
                            min_lstm      -       117        125      116
      S4 B16 T1024 I32 H64  min_gru       -        30         42       43
                            min_lstm      -        47         53       60
    H100 (JAX 0.11.2)
      S1                    min_gru     0.42      5.3        3.1      4.1
                            min_lstm    0.46      4.0        3.7      4.1
      S4                    min_gru     0.41     31.1       18.1     26.2
                            min_lstm    0.34     44.1       23.6     30.0

(The H100 ``sequential`` column predates its custom VJP.) So ``backend="auto"`` uses ``parallel``
on GPU and ``sequential`` on CPU, where the log-space scan's transcendentals (an ``exp``/``log1p``
pair per combine, ~log2(T) levels) lose to the sequential form. On this CPU the whole step is bound
by memory traffic over ``[T, B, G*H]`` intermediates, not by the scan (the recurrence itself,
forward and backward, takes 8 of the 74 ms at S1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import RNNCarry, positive_g

_KINDS = ("min_gru", "min_lstm")


def supports(spec) -> bool:
    return spec.kind in _KINDS


def _log_g(v):
    # log of minGRU's g(v) = v + 0.5 (v >= 0) or sigmoid(v); the maximum keeps the unselected
    # branch finite so that its (discarded) gradient is not NaN.
    return jnp.where(v >= 0, jnp.log(jnp.maximum(v, 0) + 0.5), jax.nn.log_sigmoid(v))


def _log_coefficients(kind: str, xw):
    """``log a, log b`` of ``h_t = a_t h_{t-1} + b_t`` from the projected inputs ``[T,B,G*H]``."""
    if kind == "min_gru":
        k_z, v = jnp.split(xw, 2, axis=-1)
        return -jax.nn.softplus(k_z), jax.nn.log_sigmoid(k_z) + _log_g(v)
    k_f, k_i, v = jnp.split(xw, 3, axis=-1)
    log_f, log_i = jax.nn.log_sigmoid(k_f), jax.nn.log_sigmoid(k_i)
    log_norm = jnp.logaddexp(log_f, log_i)
    return log_f - log_norm, log_i - log_norm + _log_g(v)


def _expand(flags, like):
    return flags.reshape(flags.shape + (1,) * (like.ndim - flags.ndim))


@jax.custom_jvp
def _logaddexp(x1, x2):
    """``log(exp(x1) + exp(x2))`` whose derivative is exactly 0 for an input at ``-inf``.

    ``jnp.logaddexp`` replaces infinities by 0 in its derivative, which gives a ``-inf`` input
    (an empty product after a reset, a masked step's ``b``) a weight of ``exp(-out)``: a spurious
    gradient into the finite terms summed into it, and NaN where ``out`` is ``-inf`` too.
    """
    return jnp.logaddexp(x1, x2)


@_logaddexp.defjvp
def _logaddexp_jvp(primals, tangents):
    x1, x2 = primals
    t1, t2 = tangents
    out = _logaddexp(x1, x2)

    def weight(x):
        # exp(x - out) is the softmax weight of x; an input at -inf has none (also when out is).
        safe = jnp.where(jnp.isneginf(x), jnp.zeros_like(x), x - out)
        return jnp.where(jnp.isneginf(x), jnp.zeros_like(x), jnp.exp(safe))

    return out, t1 * weight(x1) + t2 * weight(x2)


def _log_affine_combine(earlier, later):
    """Compose the affine maps ``h -> a h + b`` (earlier first), all terms in log space."""
    log_a1, *log_bs1 = earlier
    log_a2, *log_bs2 = later
    return (log_a1 + log_a2, *(_logaddexp(log_a2 + b1, b2) for b1, b2 in zip(log_bs1, log_bs2)))


def _log_space_states(log_a, log_b, valid, reset, h0):
    """``h_t`` for all t by the associative scan; see the module docstring."""
    neg_inf = jnp.full_like(log_a, -jnp.inf)
    if valid is not None:
        log_a = jnp.where(valid, log_a, jnp.zeros_like(log_a))
        log_b = jnp.where(valid, log_b, neg_inf)
    if reset is None:
        log_alpha, log_beta = lax.associative_scan(_log_affine_combine, (log_a, log_b), axis=0)
    else:
        log_a_kept = jnp.where(reset, neg_inf, log_a)
        log_rho_a = jnp.where(reset, log_a, neg_inf)
        log_prod, log_beta, log_c = lax.associative_scan(
            _log_affine_combine, (log_a_kept, log_b, log_rho_a), axis=0
        )
        # alpha_{-1} = 1 contributes the running product of kept gates.
        log_alpha = _logaddexp(log_prod, log_c)
    return jnp.exp(log_alpha) * h0[None] + jnp.exp(log_beta)


def _linear_coefficients(kind: str, xw):
    """``a, b`` of ``h_t = a_t h_{t-1} + b_t`` in linear space (no transcendentals to undo)."""
    if kind == "min_gru":
        k_z, v = jnp.split(xw, 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        return 1 - z, z * positive_g(v)
    k_f, k_i, v = jnp.split(xw, 3, axis=-1)
    f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
    return f / (f + i), i / (f + i) * positive_g(v)


def _scan_affine(a, b, h0, reverse: bool, unroll: int):
    def body(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return lax.scan(body, h0, (a, b), reverse=reverse, unroll=unroll)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def linear_recurrence(a, b, h0, unroll: int = 1):
    """``h_t = a_t * h_{t-1} + b_t`` for t = 0..T-1 from ``h_{-1} = h0``; returns ``h [T, ...]``.

    The backward pass is the same recurrence run in reverse (the adjoint of a linear map):
    ``g_t = dh_t + a_{t+1} g_{t+1}``, then ``da_t = g_t h_{t-1}``, ``db_t = g_t`` and
    ``dh0 = a_0 g_0``: two elementwise scans, where autodiff through ``lax.scan`` would stack and
    slice per-step residuals.
    """
    return _scan_affine(a, b, h0, False, unroll)


def _linear_recurrence_fwd(a, b, h0, unroll):
    hs = _scan_affine(a, b, h0, False, unroll)
    return hs, (a, hs, h0)


def _linear_recurrence_bwd(unroll, residuals, dhs):
    a, hs, h0 = residuals
    a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
    g = _scan_affine(a_next, dhs, jnp.zeros_like(h0), True, unroll)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    return g * h_prev, g, a[0] * g[0]


linear_recurrence.defvjp(_linear_recurrence_fwd, _linear_recurrence_bwd)


def _sequential_states(xw, kind, valid, reset, h0, unroll):
    a, b = _linear_coefficients(kind, xw)
    if valid is not None:
        # A masked step is the identity map.
        a = jnp.where(valid, a, jnp.ones_like(a))
        b = jnp.where(valid, b, jnp.zeros_like(b))
    if reset is not None:
        # h_t = a_t h0 + b_t after a reset: the carried term moves into b.
        b = b + jnp.where(reset, a * h0[None], jnp.zeros_like(a))
        a = jnp.where(reset, jnp.zeros_like(a), a)
    return linear_recurrence(a, b, h0, unroll)


def _run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat, parallel):
    if not supports(cell.spec):
        raise ValueError(f"the parallel backend supports {_KINDS}; got {cell.spec.kind!r}")
    h0 = carry0.h
    time = xs.shape[0]
    if time == 0:
        return carry0, jnp.zeros((0, *h0.shape), xs.dtype)

    def states(params, xs, mask, resets, h0):
        xw = cell.project(params, xs).astype(h0.dtype)
        valid = None if mask is None else _expand(mask, xw[..., :1])
        reset = None
        if resets is not None:
            reset = _expand(resets if mask is None else resets & mask, xw[..., :1])
        if reverse:
            xw = xw[::-1]
            valid = None if valid is None else valid[::-1]
            reset = None if reset is None else reset[::-1]
        if parallel:
            log_a, log_b = _log_coefficients(cell.spec.kind, xw)
            hs = _log_space_states(log_a, log_b, valid, reset, h0)
        else:
            hs = _sequential_states(xw, cell.spec.kind, valid, reset, h0, unroll)
        carry_T = hs[-1]
        ys = hs if valid is None else jnp.where(valid, hs, jnp.zeros_like(hs))
        if reverse:
            ys = ys[::-1]
        return carry_T, ys

    if remat:
        states = jax.checkpoint(states)
    carry_T, ys = states(params, xs, mask, resets, h0)
    return RNNCarry(carry_T), ys.astype(xs.dtype)


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Associative scan in log space; the time-major kernel signature of :func:`seqjax.rnn`."""
    return _run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=unroll,
                remat=remat, parallel=True)


def run_sequential(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """The same recurrence as a ``lax.scan`` of ``h = a h + b`` over precomputed ``a, b``, with
    the custom VJP of :func:`linear_recurrence`; the ``sequential`` backend."""
    return _run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=unroll,
                remat=remat, parallel=False)
