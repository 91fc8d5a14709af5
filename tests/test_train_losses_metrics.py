"""Losses and metrics of seqjax.train against hand-worked values, masks and seqeval's examples."""

import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.train import (
    Ratio,
    accuracy,
    binary_accuracy,
    bits_per_character,
    bits_per_character_from_loss,
    exact_match_accuracy,
    example_mask,
    get_entities,
    masked_mean,
    perplexity,
    perplexity_from_loss,
    sequence_loss,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
    span_counts,
    span_f1,
    span_scores,
)


def close(a, b, tol=1e-5):
    return abs(float(a) - float(b)) < tol


# ----------------------------------------------------------------------------- losses


def test_softmax_cross_entropy_hand_worked_and_masked():
    logits = jnp.array([[[2.0, 0.0], [0.0, 0.0], [9.0, -9.0]]])  # [1, 3, 2]
    labels = jnp.array([[0, 1, 1]])
    mask = jnp.array([[True, True, False]])
    # -log softmax: log(1 + e^-2) and log 2; the third (masked, huge) term is ignored.
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert close(softmax_cross_entropy(logits, labels, mask), expected)
    unmasked = (math.log(1 + math.exp(-2)) + math.log(2) + math.log(1 + math.exp(18))) / 3
    assert close(softmax_cross_entropy(logits, labels), unmasked, 1e-4)
    # Padded positions can hold anything: changing them changes nothing.
    logits2 = logits.at[0, 2].set(jnp.array([-100.0, 100.0]))
    labels2 = labels.at[0, 2].set(0)
    assert close(softmax_cross_entropy(logits2, labels2, mask), expected)


def test_softmax_cross_entropy_all_masked_is_zero_not_nan():
    mask = jnp.zeros((2, 3), bool)
    loss = softmax_cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), int), mask)
    assert float(loss) == 0.0


def test_classification_loss_with_sequence_mask_ignores_padding_rows():
    logits = jnp.array([[3.0, 0.0], [0.0, 0.0], [50.0, -50.0]])  # third row is a padding example
    labels = jnp.array([0, 1, 1])
    mask = jnp.array([[True, True], [True, False], [False, False]])  # [B, T]
    expected = (math.log(1 + math.exp(-3)) + math.log(2)) / 2
    assert close(softmax_cross_entropy(logits, labels, mask), expected)
    np.testing.assert_array_equal(example_mask(mask), [True, True, False])


def test_label_smoothing():
    logits = jnp.array([[1.0, 0.0, -1.0]])
    labels = jnp.array([0])
    logp = jax.nn.log_softmax(logits[0])
    target = jnp.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    assert close(softmax_cross_entropy(logits, labels, label_smoothing=0.1), -(target * logp).sum())


def test_sigmoid_binary_cross_entropy():
    logits = jnp.array([[0.0], [2.0], [-100.0]])  # [B, 1]
    labels = jnp.array([1, 0, 0])
    mask = jnp.array([True, True, False])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert close(sigmoid_binary_cross_entropy(logits, labels, mask), expected)
    # Numerically stable for huge logits.
    huge = sigmoid_binary_cross_entropy(jnp.array([1e4, -1e4]), jnp.array([0, 1]))
    assert math.isfinite(float(huge))


def test_sequence_loss_token_and_sequence_average():
    logits = jnp.zeros((2, 3, 4))  # uniform: every token costs log 4
    targets = jnp.zeros((2, 3), int)
    mask = jnp.array([[True, True, True], [True, False, False]])
    assert close(sequence_loss(logits, targets, mask), math.log(4))
    # per-sequence sums 3 log4 and 1 log4, averaged over 2 sequences
    assert close(sequence_loss(logits, targets, mask, average="sequence"), 2 * math.log(4))
    with pytest.raises(ValueError, match="average"):
        sequence_loss(logits, targets, mask, average="batch")
    with pytest.raises(ValueError, match="logits"):
        sequence_loss(jnp.zeros((2, 3)), targets, mask)


def test_masked_mean_shapes_checked():
    assert close(masked_mean(jnp.array([1.0, 2.0, 30.0]), jnp.array([True, True, False])), 1.5)
    with pytest.raises(ValueError, match="mask"):
        masked_mean(jnp.ones((2, 3)), jnp.ones((3,), bool))


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="labels"):
        softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((3,), int))
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2,), int), label_smoothing=1.0)


# ----------------------------------------------------------------------------- metrics


def test_accuracy_masked_and_ratio_sums_exactly():
    logits = jnp.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])
    labels = jnp.array([[0, 0, 1]])
    mask = jnp.array([[True, True, False]])
    acc = accuracy(logits, labels, mask)
    assert isinstance(acc, Ratio)
    assert (float(acc.numerator), float(acc.denominator)) == (1.0, 2.0)
    total = acc + accuracy(logits[:, :1], labels[:, :1], mask[:, :1])  # 1/2 + 1/1
    assert close(total.value(), 2 / 3)
    assert float(Ratio(jnp.array(0.0), jnp.array(0.0)).value()) == 0.0
    # jittable, Ratio is a pytree
    assert close(jax.jit(accuracy)(logits, labels, mask).value(), 0.5)


def test_binary_accuracy():
    logits = jnp.array([[0.3], [-0.2], [2.0], [9.0]])
    labels = jnp.array([1, 1, 0, 0])
    mask = jnp.array([True, True, True, False])
    assert close(binary_accuracy(logits, labels, mask).value(), 1 / 3)


def test_perplexity_and_bits_per_character():
    logits = jnp.zeros((1, 4, 8))  # uniform over 8 symbols
    targets = jnp.zeros((1, 4), int)
    mask = jnp.array([[True, True, True, False]])
    assert close(perplexity(logits, targets, mask).value(), 8.0, 1e-4)
    assert close(bits_per_character(logits, targets, mask).value(), 3.0, 1e-5)
    assert close(perplexity_from_loss(math.log(8)), 8.0, 1e-4)
    assert close(bits_per_character_from_loss(math.log(8)), 3.0)
    # perplexity over two batches is exp of the pooled NLL, not a mean of perplexities
    a = perplexity(jnp.log(jnp.array([[[0.5, 0.5]]])), jnp.array([[0]]))
    b = perplexity(jnp.log(jnp.array([[[0.25, 0.75]], [[0.25, 0.75]]])), jnp.array([[0], [0]]))
    assert close((a + b).value(), math.exp((math.log(2) + 2 * math.log(4)) / 3), 1e-4)


def test_exact_match_accuracy():
    targets = jnp.array([[1, 2, 3, 0], [1, 2, 3, 0], [4, 4, 0, 0], [0, 0, 0, 0]])
    preds = jnp.array([[1, 2, 3, 9], [1, 2, 4, 0], [4, 4, 7, 7], [5, 5, 5, 5]])
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    em = exact_match_accuracy(preds, targets, mask)  # row 4 is padding: not counted
    assert (float(em.numerator), float(em.denominator)) == (2.0, 3.0)
    logits = jax.nn.one_hot(preds, 10)
    assert close(exact_match_accuracy(logits, targets, mask).value(), 2 / 3)


# ----------------------------------------------------------------------------- span F1

SEQEVAL_F1_TRUE = [["O", "O", "B-MISC", "I-MISC", "B-MISC", "O", "O"], ["B-PER", "I-PER", "O"]]
SEQEVAL_F1_PRED = [["O", "O", "B-MISC", "I-MISC", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
SEQEVAL_PRF_TRUE = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
SEQEVAL_PRF_PRED = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
                    ["B-PER", "I-PER", "O"]]


def test_get_entities_seqeval_docstring_example():
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]


def test_span_scores_seqeval_documented_examples():
    # seqeval.metrics.f1_score docstring: micro 0.6666666666666666, macro 0.75,
    # per type (MISC, PER) [0.5, 1.0]; precision_score/recall_score give the same numbers.
    s = span_scores(SEQEVAL_F1_TRUE, SEQEVAL_F1_PRED)
    assert close(s["f1"], 0.6666666666666666, 1e-12)
    assert close(s["precision"], 0.6666666666666666, 1e-12)
    assert close(s["recall"], 0.6666666666666666, 1e-12)
    assert close(s["macro_f1"], 0.75, 1e-12)
    assert [s["per_type"][t]["f1"] for t in ("MISC", "PER")] == [0.5, 1.0]
    # precision_recall_fscore_support(average='micro') docstring: (0.5, 0.5, 0.5, 2)
    s = span_scores(SEQEVAL_PRF_TRUE, SEQEVAL_PRF_PRED)
    assert (s["precision"], s["recall"], s["f1"], s["support"]) == (0.5, 0.5, 0.5, 2)
    assert [s["per_type"][t]["f1"] for t in ("MISC", "PER")] == [0.0, 1.0]


def test_span_scores_hand_worked_cases():
    # I- after O starts an entity (conlleval); a type change inside splits entities.
    assert get_entities(["O", "I-PER", "I-PER", "B-LOC", "I-ORG"]) == [
        ("PER", 1, 2), ("LOC", 3, 3), ("ORG", 4, 4)]
    # wrong boundary = wrong entity, even with the right type
    s = span_scores([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    # no entities anywhere: zero division gives 0
    assert span_scores([["O", "O"]], [["O", "O"]])["f1"] == 0.0
    # two of three right, one spurious
    true = [["B-LOC", "O", "B-PER", "I-PER", "O", "B-ORG"]]
    pred = [["B-LOC", "O", "B-PER", "I-PER", "B-MISC", "O"]]
    s = span_scores(true, pred)
    assert close(s["precision"], 2 / 3) and close(s["recall"], 2 / 3)
    with pytest.raises(ValueError, match="sentence 0"):
        span_scores([["O"]], [["O", "O"]])


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _encode(sentences, T):
    ids = np.zeros((len(sentences), T), np.int32)
    mask = np.zeros((len(sentences), T), bool)
    for b, s in enumerate(sentences):
        ids[b, : len(s)] = [TAGS.index(t) for t in s]
        mask[b, : len(s)] = True
    return ids, mask


def test_span_f1_arrays_match_seqeval_examples():
    for true, pred, f1 in ((SEQEVAL_F1_TRUE, SEQEVAL_F1_PRED, 2 / 3),
                           (SEQEVAL_PRF_TRUE, SEQEVAL_PRF_PRED, 0.5)):
        t, mask = _encode(true, 8)
        p, _ = _encode(pred, 8)
        # garbage in padded positions must not matter
        p = np.where(mask, p, 1)
        m = jax.jit(span_f1, static_argnums=3)(p, t, mask, tuple(TAGS))
        assert close(m["span_f1"].value(), f1)


def test_span_counts_agree_with_span_scores_on_random_tags():
    rng = random.Random(0)
    for _ in range(40):
        lens = [rng.randint(0, 9) for _ in range(5)]
        true = [[rng.choice(TAGS) for _ in range(n)] for n in lens]
        pred = [[rng.choice(TAGS) for _ in range(n)] for n in lens]
        t, mask = _encode(true, 9)
        p, _ = _encode(pred, 9)
        correct, n_pred, n_true = span_counts(p, t, mask, TAGS)
        ref_true = set(get_entities(true))
        ref_pred = set(get_entities(pred))
        assert (int(correct), int(n_pred), int(n_true)) == (
            len(ref_true & ref_pred), len(ref_pred), len(ref_true))


def test_span_tag_names_validated():
    with pytest.raises(ValueError, match="tag_names"):
        span_counts(jnp.zeros((1, 2), int), jnp.zeros((1, 2), int), None, ["O", "PAD"])


def test_against_seqeval_if_installed():
    metrics = pytest.importorskip("seqeval.metrics")
    rng = random.Random(1)
    for _ in range(30):
        lens = [rng.randint(1, 8) for _ in range(4)]
        true = [[rng.choice(TAGS) for _ in range(n)] for n in lens]
        pred = [[rng.choice(TAGS) for _ in range(n)] for n in lens]
        ref = metrics.f1_score(true, pred, zero_division=0)
        assert close(span_scores(true, pred)["f1"], ref, 1e-9)
