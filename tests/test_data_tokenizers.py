"""Word and character tokenizers: Keras compatibility, reserved ids, JSON round trips.

Keras 3 has no public ``keras.preprocessing.text.Tokenizer``, but still ships the legacy
class as ``keras.src.legacy.preprocessing.text.Tokenizer``; the word tokenizer is checked
against it on random texts. ``TextVectorization`` needs TensorFlow (not installed here),
so its default standardisation is checked against the punctuation regex read from
Keras' own source, and its vocabulary order on hand-worked cases.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqjax.data import (
    KERAS_TOKENIZER_FILTERS,
    TEXT_VECTORIZATION_PUNCTUATION,
    CharTokenizer,
    WordTokenizer,
    load_tokenizer,
)

os.environ.setdefault("KERAS_BACKEND", "jax")


def _legacy_keras():
    pytest.importorskip("keras")
    try:
        from keras.src.legacy.preprocessing.text import Tokenizer, text_to_word_sequence
    except ImportError:  # pragma: no cover - depends on the Keras version
        pytest.skip("this Keras no longer ships keras.src.legacy.preprocessing.text")
    return Tokenizer, text_to_word_sequence


def _text_vectorization_regex() -> str:
    keras = pytest.importorskip("keras")
    source = Path(keras.__file__).parent / "src/layers/preprocessing/text_vectorization.py"
    if not source.exists():  # pragma: no cover
        pytest.skip(f"Keras source {source} not found")
    match = re.search(
        r"regex_replace\(\s*inputs,\s*r'([^'\\]*(?:\\.[^'\\]*)*)'", source.read_text()
    )
    if match is None:  # pragma: no cover
        pytest.skip("could not find TextVectorization's punctuation regex in the Keras source")
    return match.group(1)


# Words drawn from a small pool so that counts tie and repeat; glued with punctuation,
# tabs, newlines, apostrophes and mixed case to exercise the standardisation.
_WORDS = ["the", "The", "film", "Film!", "don't", "a,b", "x-y", "café", "CAFÉ", "ok?", "42", "é"]
_GLUE = [" ", "  ", "\t", "\n", ", ", ". ", "!", "'", "--", "(", ")", ' "', "#", "\r", "\xa0"]
text_strategy = st.lists(
    st.tuples(st.sampled_from(_WORDS), st.sampled_from(_GLUE)), max_size=12
).map(lambda parts: "".join(w + g for w, g in parts))


@settings(max_examples=80, deadline=None)
@given(text=st.one_of(text_strategy, st.text(max_size=40)))
def test_tokenize_matches_keras_text_to_word_sequence(text):
    _, text_to_word_sequence = _legacy_keras()
    assert WordTokenizer().tokenize(text) == text_to_word_sequence(text)


@settings(max_examples=80, deadline=None)
@given(
    fit_texts=st.lists(text_strategy, min_size=1, max_size=6),
    new_texts=st.lists(text_strategy, max_size=3),
    num_words=st.one_of(st.none(), st.integers(2, 12)),
    with_oov=st.booleans(),
)
def test_word_ids_match_keras_legacy_tokenizer(fit_texts, new_texts, num_words, with_oov):
    Tokenizer, _ = _legacy_keras()
    oov = "<OOV>" if with_oov else None
    keras_tok = Tokenizer(num_words=num_words, oov_token=oov)
    keras_tok.fit_on_texts(fit_texts)
    # Keras reserves id 0 without naming it, then the OOV word (if any), then the words.
    ours = WordTokenizer(num_words=num_words, start_token=None, eos_token=None, unk_token=oov)
    ours.fit(fit_texts, progress=False)
    texts = fit_texts + new_texts
    assert ours.texts_to_sequences(texts, progress=False) == keras_tok.texts_to_sequences(texts)
    limit = num_words or float("inf")
    keras_kept = {w: i for w, i in keras_tok.word_index.items() if i < limit}
    ours_words = {w: i for w, i in ours.token_index.items() if i > 0}
    assert ours_words == keras_kept


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_strip_style_matches_text_vectorization_standardisation(text):
    # ASCII only: TextVectorization lower-cases with tf.strings.lower (ASCII) and splits on
    # ASCII whitespace; on ASCII text the two agree exactly.
    regex = _text_vectorization_regex()
    expected = re.sub(regex, "", text.lower()).split()
    assert WordTokenizer(style="text_vectorization").tokenize(text) == expected
    assert set(TEXT_VECTORIZATION_PUNCTUATION) == {
        c for c in map(chr, range(128)) if re.fullmatch(regex, c)
    }


def test_hand_worked_standardisation_both_styles():
    text = "Don't STOP, believing!\tHello,world (x-y)"
    assert WordTokenizer().tokenize(text) == [
        "don't", "stop", "believing", "hello", "world", "x", "y"
    ]  # fmt: skip
    assert WordTokenizer(style="text_vectorization").tokenize(text) == [
        "dont", "stop", "believing", "helloworld", "xy"
    ]  # fmt: skip
    assert "'" not in KERAS_TOKENIZER_FILTERS and "\t" in KERAS_TOKENIZER_FILTERS
    iso = WordTokenizer(filters="", isolate="?!.", split=None)
    assert iso.tokenize("¿Qué? No!") == ["¿qué", "?", "no", "!"]


def test_hand_worked_vocabulary_order_and_text_vectorization_ids():
    texts = ["a b c", "c"]
    # Legacy Tokenizer: by count, ties in order of first appearance.
    keras_like = WordTokenizer(start_token=None, eos_token=None, unk_token="<OOV>").fit(texts)
    assert keras_like.vocabulary == ["<PAD>", "<OOV>", "c", "a", "b"]
    # TextVectorization: "" (mask) = 0, "[UNK]" = 1, then by count with ties in reverse
    # code-point order (np.lexsort((tokens, counts))[::-1] in Keras' IndexLookup).
    tv = WordTokenizer(
        style="text_vectorization",
        pad_token="",
        unk_token="[UNK]",
        start_token=None,
        eos_token=None,
    ).fit(texts)
    assert tv.vocabulary == ["", "[UNK]", "c", "b", "a"]
    assert tv.texts_to_sequences(["A, c z"]) == [[4, 2, 1]]
    tv3 = WordTokenizer(
        num_words=3, style="text_vectorization", pad_token="", unk_token="[UNK]",
        start_token=None, eos_token=None,
    ).fit(texts)  # fmt: skip
    assert tv3.vocabulary == ["", "[UNK]", "c"]  # max_tokens=3 keeps one learned token


def test_reserved_ids_and_round_trip():
    tok = WordTokenizer(num_words=6).fit(["the cat sat", "the cat", "the dog"])
    assert (tok.pad_id, tok.start_id, tok.unk_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocabulary == ["<PAD>", "<START>", "<UNK>", "<EOS>", "the", "cat"]
    ids = tok.encode("The cat ate", add_start=True, add_eos=True)
    assert ids == [1, 4, 5, 2, 3]
    assert tok.decode(ids) == "the cat <UNK>"
    assert tok.decode(ids, skip_special=False) == "<START> the cat <UNK> <EOS>"
    assert tok.sequences_to_texts([[0, 0, 4, 5]]) == ["the cat"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([99])
    # A word spelled like a reserved token maps to it instead of joining the vocabulary.
    raw = WordTokenizer(filters="", lower=False).fit(["<UNK> x"])
    assert raw.vocabulary[4:] == ["x"]


def test_imdb_keras_id_layout():
    # Default reserved ids reproduce keras.datasets.imdb: 0 pad, 1 start, 2 oov, words
    # from index_from + 1 = 4 in frequency order.
    tok = WordTokenizer().fit(["b a a"])
    assert tok.encode("a b", add_start=True) == [1, 4, 5]


def test_no_unk_drops_unknown_words_like_keras():
    tok = WordTokenizer(unk_token=None).fit(["a b"])
    assert tok.encode("a zzz b") == [3, 4]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_words": 0}, "num_words"),
        ({"num_words": 3}, "num_words"),
        ({"style": "spacy"}, "style"),
        ({"split": ""}, "split"),
        ({"tie_break": "random"}, "tie_break"),
        ({"filters": ".", "strip": "."}, "share"),
        ({"pad_token": "x", "unk_token": "x"}, "distinct"),
    ],
)
def test_word_tokenizer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WordTokenizer(**kwargs)


def test_add_start_needs_start_token():
    tok = WordTokenizer(start_token=None).fit(["a"])
    with pytest.raises(ValueError, match="start_token"):
        tok.encode("a", add_start=True)


def test_word_tokenizer_json_round_trip(tmp_path):
    tok = WordTokenizer(num_words=50, style="text_vectorization", isolate="?").fit(
        ["Is it? It is.", "what is it"]
    )
    text = tok.to_json()
    json.loads(text)
    again = WordTokenizer.from_json(text)
    assert again.to_dict() == tok.to_dict()
    sample = ["is IT? new words"]
    assert again.texts_to_sequences(sample) == tok.texts_to_sequences(sample)
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, WordTokenizer) and loaded.to_dict() == tok.to_dict()


def test_char_tokenizer():
    tok = CharTokenizer().fit(["hello\n", "world"])
    assert tok.vocabulary == sorted(set("hello\nworld"))
    assert tok.decode(tok.encode("lower")) == "lower"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")
    special = CharTokenizer(
        lower=True, pad_token="<PAD>", start_token="<S>", unk_token="<UNK>", eos_token="</S>"
    )
    special.fit("AbC")
    assert special.vocabulary == ["<PAD>", "<S>", "<UNK>", "</S>", "a", "b", "c"]
    ids = special.encode("Cab!", add_start=True, add_eos=True)
    assert ids == [1, 6, 4, 5, 2, 3]
    assert special.decode(ids) == "cab<UNK>"
    again = CharTokenizer.from_json(special.to_json())
    assert again.to_dict() == special.to_dict()
    with pytest.raises(ValueError, match="reserved tokens"):
        CharTokenizer.from_dict({**special.to_dict(), "vocabulary": ["a", "b"]})


def test_load_tokenizer_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="other.json"):
        load_tokenizer(path)
