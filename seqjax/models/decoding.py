"""Generic autoregressive decoding: sampling (greedy at temperature 0) and beam search.

Both work over any step function

    ``step(tokens [N], state) -> (logits [N, V], state)``

whose ``state`` is a pytree (tuples, NamedTuples, dicts of arrays) with leading axis N on every
leaf: a language model's carries, or a seq2seq decoder's carries beside the encoder outputs it
attends over. Each runs as one ``lax.while_loop`` (never a Python loop per token), so it jits;
``max_len``, ``beam_size``, ``top_k``, ``eos_id`` and ``banned_ids`` are static (Python values).
The loop stops early once every row has finished; shapes stay ``[N, max_len]`` either way.

Scores are the model's own log-probabilities: ``sum_t log softmax(logits_t)[y_t]`` over the emitted
tokens, ``eos_id`` included, before temperature, top-k, banned ids and any length penalty.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import seqjax as sj
  >>> table = jax.random.normal(jax.random.key(0), (5, 5))   # a Markov chain over 5 tokens
  >>> def step(tokens, state):
  ...     return table[tokens], state
  >>> start, state = jnp.array([1, 3]), jnp.zeros(2)
  >>> greedy = sj.models.sample(step, state, start, key=jax.random.key(1), max_len=6,
  ...                           temperature=0.0, eos_id=4)
  >>> beam = sj.models.beam_search(step, state, start, beam_size=1, max_len=6, eos_id=4)
  >>> bool((greedy.tokens == beam.tokens).all()), greedy.tokens.shape
  (True, (2, 6))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.types import Array, PRNGKey

__all__ = ["Decoded", "StepFn", "sample", "beam_search"]

StepFn = Callable[[Array, Any], tuple[Array, Any]]


class Decoded(NamedTuple):
    """A decoding result.

    Attributes:
      tokens: int32 ``[N, max_len]``: the generated ids (the best beam for beam search); 0 after
        ``eos_id``.
      scores: float32 ``[N]``: the sum of the model's log-probabilities of ``tokens`` up to and
        including ``eos_id``, before any length penalty.
      attention: float32 ``[N, max_len, S]`` attention weights of a seq2seq decoder with
        attention (0 after ``eos_id``), else None.
    """

    tokens: Array
    scores: Array
    attention: Array | None = None


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def _check_start_state(step: StepFn, state: Any, start: Any) -> tuple[Array, int, int]:
    """Validates ``start`` and ``state`` and returns ``(start, N, V)`` (V from tracing ``step``)."""
    if not callable(step):
        raise ValueError("step must be callable: step(tokens [N], state) -> (logits [N, V], state)")
    start = jnp.asarray(start)
    if start.ndim != 1 or not jnp.issubdtype(start.dtype, jnp.integer):
        raise ValueError(f"start must be int token ids [N]; got {start.dtype} {start.shape}")
    n = start.shape[0]
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        shape = jnp.shape(leaf)
        if not shape or shape[0] != n:
            raise ValueError(
                f"state leaves must have leading axis N = {n} (start's length); "
                f"state{jax.tree_util.keystr(path)} has shape {shape}"
            )
    logits = jax.eval_shape(step, start, state)[0]
    if len(logits.shape) != 2 or logits.shape[0] != n:
        raise ValueError(f"step must return logits [N={n}, V]; got shape {logits.shape}")
    return start.astype(jnp.int32), n, logits.shape[1]


def _check_id(value: Any, name: str, vocab_size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int token id; got {value!r}")
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size}) (the step's V); got {value}")
    return int(value)


def sample(
    step: StepFn,
    state: Any,
    start: Array,
    *,
    key: PRNGKey,
    max_len: int,
    temperature: float | Array = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    banned_ids: Sequence[int] = (),
) -> Decoded:
    """Samples ``max_len`` tokens per row, feeding each one back into ``step``.

    At step t the logits are masked (``banned_ids`` get ``-inf``; with ``top_k``, everything below
    the k-th largest logit too) and then

    .. math::

        y_t \\sim \\mathrm{softmax}(\\ell_t / \\tau) \\quad (\\tau > 0), \\qquad
        y_t = \\arg\\max \\ell_t \\quad (\\tau = 0).

    Args:
      step: ``step(tokens [N], state) -> (logits [N, V], state)``.
      state: pytree, every leaf ``[N, ...]``; the state before ``start`` is fed.
      start: int ``[N]``: the first input (e.g. ``<BOS>``, or a prompt's last token).
      key: PRNG key; step t uses ``fold_in(key, t)``, so the same key gives the same sample.
      max_len: number of tokens generated (static).
      temperature: tau >= 0 (may be traced); 0 is greedy.
      top_k: sample among the k most likely tokens only (static; None: all; k > V acts as V).
      eos_id: a row stops at this id (it is emitted) and emits 0 afterwards; None: never stops.
      banned_ids: ids never emitted (e.g. ``(tokenizer.unk_id,)``); a tuple, static.

    Returns:
      :class:`Decoded` ``(tokens [N, max_len], scores [N])``.

    Raises:
      ValueError: ``max_len < 1``, ``temperature < 0``, ``top_k < 1``, ids outside ``[0, V)``,
        every id banned, or ``start``/``state`` of inconsistent shapes.
    """
    max_len = _check_int(max_len, "max_len")
    if top_k is not None:
        top_k = _check_int(top_k, "top_k")
    if not isinstance(temperature, jax.core.Tracer):
        if float(temperature) < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy); got {float(temperature)}")
    temperature = jnp.asarray(temperature, jnp.float32)
    start, n, vocab_size = _check_start_state(step, state, start)
    banned = tuple(sorted({_check_id(i, "banned_ids", vocab_size) for i in banned_ids}))
    if len(banned) == vocab_size:
        raise ValueError(f"banned_ids bans all {vocab_size} ids; nothing is left to sample")
    if eos_id is not None:
        eos_id = _check_id(eos_id, "eos_id", vocab_size)
    if top_k is not None:
        top_k = min(top_k, vocab_size)
    # A traced temperature of 0 must not divide by 0 in the (then unused) sampling branch.
    safe_temperature = jnp.where(temperature > 0, temperature, 1.0)

    def body(loop):
        t, tokens, previous, done, scores, state = loop
        logits, state = step(previous, state)
        logits = logits.astype(jnp.float32)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        if banned:
            logits = logits.at[:, jnp.asarray(banned)].set(-jnp.inf)
        if top_k is not None:
            kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
            logits = jnp.where(logits >= kth, logits, -jnp.inf)
        sampled = jax.random.categorical(jax.random.fold_in(key, t), logits / safe_temperature)
        y_t = jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
        y_t = jnp.where(done, 0, y_t)
        picked = jnp.take_along_axis(log_probs, y_t[:, None], axis=-1)[:, 0]
        scores = scores + jnp.where(done, 0.0, picked)
        tokens = tokens.at[:, t].set(y_t)
        if eos_id is not None:
            done = done | (y_t == eos_id)
        return t + 1, tokens, y_t, done, scores, state

    def cond(loop):
        t, done = loop[0], loop[3]
        return (t < max_len) & ~jnp.all(done)

    init = (jnp.asarray(0, jnp.int32), jnp.zeros((n, max_len), jnp.int32), start,
            jnp.zeros((n,), bool), jnp.zeros((n,), jnp.float32), state)
    _, tokens, _, _, scores, _ = jax.lax.while_loop(cond, body, init)
    return Decoded(tokens, scores)


def _gnmt_penalty(length: Array, alpha: Array) -> Array:
    """GNMT's length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    step: StepFn,
    state: Any,
    start: Array,
    *,
    beam_size: int,
    max_len: int,
    eos_id: int | None = None,
    length_penalty: float | Array = 0.0,
) -> Decoded:
    """Beam search, per row: the ``beam_size`` best prefixes advance, finished hypotheses are kept.

    Each row keeps ``beam_size`` live prefixes ranked by their score (the sum of log-probs) and the
    ``beam_size`` best finished hypotheses (ended by ``eos_id`` among the step's ``beam_size`` best
    extensions, or reaching ``max_len``) ranked by

    .. math::

        \\frac{\\log P(Y \\mid X)}{lp(Y)}, \\qquad lp(Y) = \\left(\\frac{5 + |Y|}{6}\\right)^\\alpha

    (GNMT, Wu et al. 2016; |Y| counts the generated tokens, ``eos_id`` included; alpha =
    ``length_penalty``, 0 disables it). At every step the 2 * ``beam_size`` best extensions are
    taken, so ``beam_size`` live ones remain even when some of them end in ``eos_id``. The state is
    gathered by each surviving beam's parent. A row stops once no live prefix can still beat its
    best finished hypothesis (log-probs only fall as a prefix grows). ``beam_size=1`` with
    ``length_penalty=0`` is greedy decoding.

    Args:
      step: ``step(tokens [N], state) -> (logits [N, V], state)``; it is called on ``N *
        beam_size`` rows (each row's beams adjacent).
      state: pytree, every leaf ``[N, ...]``; each row's state is copied to its beams.
      start: int ``[N]``: the first input.
      beam_size: K >= 1 (static).
      max_len: number of tokens generated (static).
      eos_id: the id that ends a hypothesis (static); None: every hypothesis has ``max_len``.
      length_penalty: alpha (may be traced); 0 ranks by the plain sum of log-probs.

    Returns:
      :class:`Decoded` ``(tokens [N, max_len], scores [N])``: the best hypothesis of each row (0
      after ``eos_id``) and its sum of log-probs before the length penalty.

    Raises:
      ValueError: ``beam_size < 1``, ``max_len < 1``, ``eos_id`` outside ``[0, V)``, or
        ``start``/``state`` of inconsistent shapes.
    """
    beam_size = _check_int(beam_size, "beam_size")
    max_len = _check_int(max_len, "max_len")
    start, n, vocab_size = _check_start_state(step, state, start)
    if eos_id is not None:
        eos_id = _check_id(eos_id, "eos_id", vocab_size)
    alpha = jnp.asarray(length_penalty, jnp.float32)
    k = beam_size
    width = min(2 * k, k * vocab_size)
    neg_inf = jnp.float32(-jnp.inf)
    rows = jnp.arange(n)[:, None]

    def take(x, index):  # x [N, M, ...], index [N, C] -> [N, C, ...]
        return x[rows, index]

    def body(loop):
        t, previous, alive_seq, alive_score, fin_seq, fin_raw, fin_pen, state = loop
        logits, state = step(previous, state)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        candidates = (alive_score[:, :, None] + log_probs.reshape(n, k, vocab_size))
        top_score, top_index = jax.lax.top_k(candidates.reshape(n, k * vocab_size), width)
        parent, y_t = top_index // vocab_size, (top_index % vocab_size).astype(jnp.int32)
        seqs = take(alive_seq, parent).at[:, :, t].set(y_t)
        ends = t == max_len - 1
        if eos_id is not None:
            ends = ends | (y_t == eos_id)
        ends = jnp.broadcast_to(ends, y_t.shape)
        # Finished: the best k of the kept ones and of the candidates that end here among the
        # top k (as in Hugging Face's beam search: an ending ranked below k would not have been
        # in a beam of width k, and so beam_size=1 stays greedy).
        admitted = ends & (jnp.arange(width) < k)
        pen = jnp.concatenate([fin_pen, jnp.where(admitted, top_score / _gnmt_penalty(
            (t + 1).astype(jnp.float32), alpha), neg_inf)], axis=1)
        raw = jnp.concatenate([fin_raw, jnp.where(admitted, top_score, neg_inf)], axis=1)
        fin_pen, best = jax.lax.top_k(pen, k)
        fin_raw = take(raw, best)
        fin_seq = take(jnp.concatenate([fin_seq, seqs], axis=1), best)
        # Alive: the best k candidates that did not end.
        alive_score, best = jax.lax.top_k(jnp.where(ends, neg_inf, top_score), k)
        alive_seq = take(seqs, best)
        source = (rows * k + take(parent, best)).reshape(-1)
        state = jax.tree.map(lambda x: x[source], state)
        return t + 1, take(y_t, best).reshape(-1), alive_seq, alive_score, fin_seq, fin_raw, \
            fin_pen, state

    def cond(loop):
        t, alive_score, fin_pen = loop[0], loop[3], loop[6]
        best_alive = alive_score[:, 0]
        # Best penalised score any live prefix could still reach: its log-prob only falls, and lp
        # is monotone in the length, so the bound sits at the shortest or the longest length.
        lengths = jnp.stack([t + 1, jnp.asarray(max_len)]).astype(jnp.float32)
        bound = jnp.max(best_alive[:, None] / _gnmt_penalty(lengths, alpha)[None, :], axis=1)
        settled = fin_pen[:, 0] >= bound
        return (t < max_len) & ~jnp.all(settled)

    state = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), state)
    alive_score = jnp.where(jnp.arange(k) == 0, 0.0, neg_inf)  # one live beam to start with
    init = (
        jnp.asarray(0, jnp.int32),
        jnp.repeat(start, k),
        jnp.zeros((n, k, max_len), jnp.int32),
        jnp.broadcast_to(alive_score, (n, k)).astype(jnp.float32),
        jnp.zeros((n, k, max_len), jnp.int32),
        jnp.full((n, k), neg_inf, jnp.float32),
        jnp.full((n, k), neg_inf, jnp.float32),
        state,
    )
    out = jax.lax.while_loop(cond, body, init)
    return Decoded(out[4][:, 0], out[5][:, 0])
