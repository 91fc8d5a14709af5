"""The linear-chain CRF against brute force: every tag path enumerated on tiny inputs."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import seqjax as sj
from seqjax.models.crf import CRF, bio_constraints

K, T = 3, 4
# Valid prefixes of every length 0..T, pre-padding, and a gap: masked steps are skipped anywhere.
MASKS = np.array([
    [0, 0, 0, 0],
    [1, 0, 0, 0],
    [1, 1, 0, 0],
    [1, 1, 1, 0],
    [1, 1, 1, 1],
    [0, 0, 0, 1],
    [0, 0, 1, 1],
    [0, 1, 1, 1],
    [1, 0, 1, 1],
], bool)
B = len(MASKS)


def random_crf(seed, num_tags=K, **kwargs):
    crf = CRF(num_tags=num_tags, rngs=nnx.Rngs(seed), **kwargs)
    rng = np.random.default_rng(seed)
    # Scores well beyond the init range, so transitions matter as much as emissions.
    crf.transitions[...] = jnp.asarray(rng.normal(size=(num_tags, num_tags)), jnp.float32)
    crf.start_transitions[...] = jnp.asarray(rng.normal(size=num_tags), jnp.float32)
    crf.end_transitions[...] = jnp.asarray(rng.normal(size=num_tags), jnp.float32)
    return crf


def brute_force(crf, emissions, mask):
    """log Z, the best path and its score, and the score function, by enumerating paths."""
    trans = np.asarray(crf.transitions[...], np.float64)
    start = np.asarray(crf.start_transitions[...], np.float64)
    end = np.asarray(crf.end_transitions[...], np.float64)
    steps = np.flatnonzero(mask)
    e = np.asarray(emissions, np.float64)[steps]

    def score(path):
        if not len(path):
            return 0.0
        s = start[path[0]] + end[path[-1]] + sum(e[k, y] for k, y in enumerate(path))
        return s + sum(trans[a, b] for a, b in itertools.pairwise(path))

    paths = list(itertools.product(range(crf.num_tags), repeat=len(steps)))
    scores = np.array([score(p) for p in paths])
    if not len(steps):
        return 0.0, np.zeros(len(mask), int), 0.0, score
    best = paths[int(np.argmax(scores))]
    best_full = np.zeros(len(mask), int)
    best_full[steps] = best
    log_z = float(np.log(np.sum(np.exp(scores - scores.max()))) + scores.max())
    return log_z, best_full, float(scores.max()), score


@nnx.jit
def crf_outputs(crf, emissions, tags, mask):
    best, best_score = crf.decode(emissions, mask)
    return crf.log_partition(emissions, mask), crf.log_likelihood(emissions, tags, mask), \
        best, best_score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_enumeration_of_all_paths(seed):
    crf = random_crf(seed)
    rng = np.random.default_rng(100 + seed)
    emissions = rng.normal(size=(B, T, K)) * 2.0
    emissions[~MASKS] = rng.normal(size=(~MASKS).sum()[()] * K).reshape(-1, K) * 50.0  # ignored
    tags = rng.integers(0, K, size=(B, T))
    log_z, ll, best, best_score = crf_outputs(
        crf, jnp.asarray(emissions, jnp.float32), jnp.asarray(tags), jnp.asarray(MASKS))
    for b in range(B):
        want_z, want_best, want_score, score = brute_force(crf, emissions[b], MASKS[b])
        want_ll = score(tags[b][MASKS[b]]) - want_z
        np.testing.assert_allclose(log_z[b], want_z, rtol=1e-5, atol=1e-5, err_msg=f"row {b}")
        np.testing.assert_allclose(ll[b], want_ll, rtol=1e-5, atol=1e-5, err_msg=f"row {b}")
        np.testing.assert_array_equal(best[b], want_best, err_msg=f"row {b}")
        np.testing.assert_allclose(best_score[b], want_score, rtol=1e-5, atol=1e-5)
    # A row without valid steps: log-likelihood 0, a path of zeros, score 0.
    assert float(ll[0]) == 0.0 and float(best_score[0]) == 0.0 and not best[0].any()
    # Probabilities of all paths of a row sum to 1 (the forward algorithm normalises).
    assert float(jnp.max(ll)) <= 0.0


def test_jit_and_eager_agree():
    crf = random_crf(3)
    rng = np.random.default_rng(3)
    emissions = jnp.asarray(rng.normal(size=(B, T, K)), jnp.float32)
    tags = jnp.asarray(rng.integers(0, K, size=(B, T)))
    mask = jnp.asarray(MASKS)
    eager = (crf.log_partition(emissions, mask), crf.log_likelihood(emissions, tags, mask),
             *crf.decode(emissions, mask))
    jitted = crf_outputs(crf, emissions, tags, mask)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert eager[2].dtype == jnp.int32
    # mask=None means every step is real.
    np.testing.assert_allclose(crf.log_likelihood(emissions, tags),
                               crf.log_likelihood(emissions, tags, jnp.ones((B, T), bool)))


def test_gradients_against_finite_differences():
    crf = random_crf(4)
    rng = np.random.default_rng(4)
    graphdef, state = nnx.split(crf)
    tags = jnp.asarray(rng.integers(0, K, size=(B, T)))
    with jax.enable_x64(True):
        state64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), state)
        emissions = jnp.asarray(rng.normal(size=(B, T, K)), jnp.float64)
        mask = jnp.asarray(MASKS)

        @jax.jit
        def total(state, emissions):
            model = nnx.merge(graphdef, state)
            weights = jnp.arange(1, B + 1, dtype=jnp.float64)  # rows apart, not just their sum
            return jnp.sum(weights * model.log_likelihood(emissions, tags, mask))

        assert total(state64, emissions).dtype == jnp.float64
        check_grads(total, (state64, emissions), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
        # The gradient of log Z in the emissions is the tag marginals: each valid step sums to 1.
        grad_z = jax.grad(lambda e: jnp.sum(nnx.merge(graphdef, state64).log_partition(e, mask)))
        marginals = grad_z(emissions).sum(-1)
        np.testing.assert_allclose(marginals, MASKS.astype(float), atol=1e-10)


TAG_NAMES = sj.data.bio_tag_set(["LOC", "PER"])  # O B-LOC I-LOC B-PER I-PER


def bio_violations(path_names):
    """Positions where an I-X follows neither B-X nor I-X (the start included)."""
    bad, prev = [], "O"
    for k, tag in enumerate(path_names):
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            bad.append(k)
        prev = tag
    return bad


def test_bio_constraints_table():
    allowed, start, end = bio_constraints(TAG_NAMES)
    assert start.tolist() == [True, True, False, True, False] and end.all()
    for i, a in enumerate(TAG_NAMES):
        for j, b in enumerate(TAG_NAMES):
            want = not b.startswith("I-") or (a != "O" and a[2:] == b[2:])
            assert allowed[i, j] == want, (a, b)


def test_bio_constraints_never_decode_an_invalid_span():
    num_tags, rows, time = len(TAG_NAMES), 256, 10
    rng = np.random.default_rng(5)
    # I- tags favoured and huge scores, so an unconstrained CRF breaks BIO often.
    emissions = rng.normal(size=(rows, time, num_tags)) * 20.0
    emissions[..., [2, 4]] += 10.0
    lengths = rng.integers(0, time + 1, size=rows)
    mask = np.arange(time)[None] < lengths[:, None]
    mask[::2] = mask[::2, ::-1]  # half the rows pre-padded
    constrained = random_crf(6, num_tags, constraints="bio", tag_names=TAG_NAMES)
    free = random_crf(6, num_tags)
    args = (jnp.asarray(emissions, jnp.float32), jnp.asarray(mask))
    decode = nnx.jit(lambda crf, e, m: crf.decode(e, m))
    best, score = (np.asarray(a) for a in decode(constrained, *args))
    free_best, _ = (np.asarray(a) for a in decode(free, *args))
    free_bad = 0
    for b in range(rows):
        names = [TAG_NAMES[t] for t in best[b][mask[b]]]
        assert bio_violations(names) == [], (b, names)
        # Every entity seqeval finds starts at a B- tag of its own type.
        for typ, begin, _ in sj.train.get_entities(names or ["O"]):
            assert names[begin] == f"B-{typ}"
        free_bad += bool(bio_violations([TAG_NAMES[t] for t in free_best[b][mask[b]]]))
    assert free_bad > rows // 4  # the constraint is what kept the spans well-formed
    assert np.isfinite(score).all()
    # The decoded path's score is its likelihood's numerator.
    np.testing.assert_allclose(constrained.score(*args[:1], jnp.asarray(best), args[1]), score,
                               rtol=1e-5)


def test_constrained_likelihood_is_finite_for_an_ill_formed_gold_path():
    crf = random_crf(7, len(TAG_NAMES), constraints="bio", tag_names=TAG_NAMES)
    emissions = jnp.zeros((2, 3, len(TAG_NAMES)))
    # Row 0 starts inside an entity (I-LOC), as a sentence cut by truncation may; row 1 is fine.
    tags = jnp.array([[2, 2, 0], [1, 2, 0]])

    @nnx.jit
    def ll_and_grads(crf, emissions):
        def total(e):
            ll = crf.log_likelihood(e, tags)
            return ll.sum(), ll
        return jax.grad(total, has_aux=True)(emissions)

    grads, ll = ll_and_grads(crf, emissions)
    assert np.isfinite(ll).all() and float(ll[0]) < -1000.0 < float(ll[1])
    assert np.isfinite(grads).all()


def test_config_round_trip():
    crf = CRF(num_tags=len(TAG_NAMES), constraints="bio", tag_names=TAG_NAMES, rngs=nnx.Rngs(0))
    rebuilt = sj.models.config_from_json(sj.models.config_to_json(crf))
    assert isinstance(rebuilt, CRF) and rebuilt.config == crf.config
    assert json.loads(sj.models.config_to_json(crf))["config"]["tag_names"] == TAG_NAMES
    emissions = jnp.asarray(np.random.default_rng(8).normal(size=(4, 5, 5)) * 9, jnp.float32)
    rebuilt.transitions[...] = crf.transitions[...]
    rebuilt.start_transitions[...] = crf.start_transitions[...]
    rebuilt.end_transitions[...] = crf.end_transitions[...]
    np.testing.assert_array_equal(rebuilt.decode(emissions)[0], crf.decode(emissions)[0])


def test_errors_name_the_argument():
    crf = CRF(num_tags=K, rngs=nnx.Rngs(0))
    e, mask = jnp.zeros((2, 3, K)), jnp.ones((2, 3), bool)
    with pytest.raises(ValueError, match=r"tags must lie in \[0, 3\)"):
        crf.log_likelihood(e, jnp.array([[0, 1, 3], [0, 0, 0]]), mask)
    with pytest.raises(ValueError, match="tags must lie"):
        crf.log_likelihood(e, jnp.array([[0, -1, 0], [0, 0, 0]]), mask)
    with pytest.raises(ValueError, match="tags must be"):
        crf.log_likelihood(e, jnp.zeros((2, 4), int), mask)
    with pytest.raises(ValueError, match="tags must hold integer"):
        crf.log_likelihood(e, jnp.zeros((2, 3)), mask)
    with pytest.raises(ValueError, match=r"emissions must be \[B, T, K\]"):
        crf.decode(jnp.zeros((2, 3, K + 1)), mask)
    with pytest.raises(ValueError, match="emissions must be"):
        crf.log_likelihood(jnp.zeros((3, K)), jnp.zeros((3,), int))
    with pytest.raises(ValueError, match=r"mask must be \[B, T\]"):
        crf.decode(e, jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        crf.decode(e, jnp.ones((2, 3), int))
    with pytest.raises(ValueError, match="num_tags"):
        CRF(num_tags=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="constraints must be"):
        CRF(num_tags=3, constraints="iobes", tag_names=["O", "B-X", "I-X"], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs tag_names"):
        CRF(num_tags=3, constraints="bio", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="tag_names must name num_tags=4"):
        CRF(num_tags=4, tag_names=["O", "B-X", "I-X"], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"tag_names\[1\]"):
        bio_constraints(["O", "X-LOC"])
    with pytest.raises(ValueError, match="'I-LOC' but no 'B-LOC'"):
        bio_constraints(["O", "I-LOC"])
