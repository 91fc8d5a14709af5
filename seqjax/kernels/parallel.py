"""minGRU/minLSTM as a linear recurrence evaluated by a parallel (associative) scan in log space.

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
takes ``log h0``, would need ``h0 > 0``). ``reverse`` flips time; ``remat`` checkpoints the whole
scan. The sequential form of the same recurrence is the ``sequential`` backend
(:mod:`seqjax.kernels.sequential`).

Where each wins: on GPU the whole sequence is one launch-free scan (S1 minGRU on an H100: 7x
faster than ``hoisted``), so ``backend="auto"`` uses ``parallel`` there; on CPU the log-space
scan's transcendentals (an ``exp``/``log1p`` pair per combine, ~log2(T) levels over
``[T, B, H]``) cost far more than the recurrence they replace, and ``auto`` uses ``native`` or
``sequential``. Measurements, dated and by machine: ``experiments/results/bench/README.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.cells import MIN_KINDS, RNNCarry


def supports(spec) -> bool:
    """minGRU and minLSTM (:data:`seqjax.cells.MIN_KINDS`)."""
    return spec.kind in MIN_KINDS


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


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Associative scan in log space; the time-major kernel signature of :func:`seqjax.rnn`.

    ``unroll`` does not apply (there is no sequential loop); ``remat`` checkpoints the whole scan.
    """
    del unroll
    if not supports(cell.spec):
        raise ValueError(f"the parallel backend supports {MIN_KINDS}; got {cell.spec.kind!r}")
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
        log_a, log_b = _log_coefficients(cell.spec.kind, xw)
        hs = _log_space_states(log_a, log_b, valid, reset, h0)
        carry_T = hs[-1]
        ys = hs if valid is None else jnp.where(valid, hs, jnp.zeros_like(hs))
        if reverse:
            ys = ys[::-1]
        return carry_T, ys

    if remat:
        states = jax.checkpoint(states)
    carry_T, ys = states(params, xs, mask, resets, h0)
    return RNNCarry(carry_T), ys.astype(xs.dtype)

