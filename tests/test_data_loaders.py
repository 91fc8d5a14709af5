"""Loaders on hand-written fixtures (formats, malformed files) and on the real data.

Real-data tests read the shared data directory in place (``$SEQJAX_DATA_DIR``) and skip
when it is absent; the expected counts are those of its MANIFEST.md. CoNLL-2003 is only
ever read where it lies.
"""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import seqjax.data as sd
from seqjax.data import DataFormatError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


# -- helpers ---------------------------------------------------------------------------
def _place(root: Path, relative: str, fixture: str) -> Path:
    """Puts one of our own fixture files at ``root/relative`` (gzipped for ``*.gz``)."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    data = (FIXTURES / fixture).read_bytes()
    if target.suffix == ".gz":
        target.write_bytes(gzip.compress(data, mtime=0))
    else:
        shutil.copyfile(FIXTURES / fixture, target)
    return target


def _real_dir() -> Path:
    try:
        return sd.data_dir()
    except FileNotFoundError as err:
        pytest.skip(f"real datasets not available: {err}")


def _needs(*relative: str) -> Path:
    root = _real_dir()
    for rel in relative:
        if not (root / rel).is_file():
            pytest.skip(f"real dataset file {root / rel} is absent")
    return root


# -- data directory --------------------------------------------------------------------
def test_data_dir_resolution(tmp_path, monkeypatch):
    assert sd.data_dir(tmp_path) == tmp_path
    monkeypatch.setenv(sd.DATA_DIR_ENV, str(tmp_path))
    assert sd.data_dir() == tmp_path
    monkeypatch.setenv(sd.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="SEQJAX_DATA_DIR"):
        sd.data_dir()
    with pytest.raises(FileNotFoundError, match="nope"):
        sd.data_dir(tmp_path / "nope")


def test_missing_file_names_the_file_and_the_expected_content(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"imdb/train\.jsonl\.gz.*expected gzip JSON"):
        sd.load_imdb(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ner/conll2003/train\.txt\.gz.*CoNLL"):
        sd.load_conll2003(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pairs/spa\.tsv\.gz"):
        sd.load_tatoeba("spa", data_dir=tmp_path)
    for call, name in [
        (sd.load_mr, "mr/rt-polarity.pos"),
        (sd.load_sarcasm, "sarcasm/sarcasm_headlines_v1.jsonl.gz"),
        (sd.load_tiny_shakespeare, "tinyshakespeare/input.txt"),
        (sd.load_dinos, "dinos/dinos.txt"),
        (sd.load_wnut17, "ner/wnut17/train.conll"),
    ]:
        with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
            call(data_dir=tmp_path)


# -- IMDB on fixtures --------------------------------------------------------------------
def test_imdb_on_a_small_fixture(tmp_path):
    for split in ("train", "test"):
        _place(tmp_path, f"imdb/{split}.jsonl.gz", "imdb_small.jsonl")
    ds = sd.load_imdb(data_dir=tmp_path, progress=False)
    assert ds.info["counts"] == {"train": 4, "test": 4} and ds.info["skipped"] == {}
    train = ds["train"]
    np.testing.assert_array_equal(train.targets, [1, 0, 1, 0])
    assert ds.tokenizer.decode(train.inputs[2]) == "good fun really"  # <br /> removed
    padded = sd.load_imdb(data_dir=tmp_path, maxlen=3, progress=False)
    assert padded["test"].inputs.shape == (4, 3)
    assert padded.info["truncated_to_maxlen"] == {"train": 1, "test": 1}

    keras_form = sd.load_imdb_keras(data_dir=tmp_path, progress=False, seed=0)
    tok = keras_form.tokenizer
    for x in keras_form["train"].inputs:
        assert x[0] == 1  # start_char
        words = tok.decode(x)  # default ids coincide with the tokenizer's
        assert words in {"a fine film", "dull and long", "good fun really", "not good at all"}
    index = sd.keras_word_index(tok)
    assert index["good"] == 1  # the only word seen twice: rank 1, keras id 1 + 3
    small = sd.load_imdb_keras(data_dir=tmp_path, num_words=5, progress=False)
    assert all(set(x.tolist()) <= {1, 2, 4} for x in small["train"].inputs)
    with pytest.warns(UserWarning, match="maxlen=5"):
        short = sd.load_imdb_keras(data_dir=tmp_path, maxlen=5, progress=False)
    assert short.info["counts"] == {"train": 3, "test": 3}  # Keras keeps len < maxlen
    assert sum(short.info["skipped"].values()) == 2
    with pytest.raises(ValueError, match="maxlen=4 leaves no train review"):
        sd.load_imdb_keras(data_dir=tmp_path, maxlen=4, progress=False)


@pytest.mark.parametrize(
    ("fixture", "match"),
    [
        ("imdb_bad_json.jsonl", r"train\.jsonl\.gz:3: not valid JSON"),
        ("imdb_bad_label.jsonl", r"train\.jsonl\.gz:2: label 7; expected 0 or 1"),
    ],
)
def test_imdb_malformed_raises_naming_file_and_line(tmp_path, fixture, match):
    for split in ("train", "test"):
        _place(tmp_path, f"imdb/{split}.jsonl.gz", fixture)
    with pytest.raises(DataFormatError, match=match):
        sd.load_imdb(data_dir=tmp_path, progress=False)


def test_imdb_skip_mode_reports_what_it_skipped(tmp_path):
    for split in ("train", "test"):
        _place(tmp_path, f"imdb/{split}.jsonl.gz", "imdb_bad_json.jsonl")
    with pytest.warns(UserWarning, match=r"skipped 2 record\(s\).*not valid JSON"):
        ds = sd.load_imdb(data_dir=tmp_path, on_error="skip", progress=False)
    assert ds.info["skipped"] == {"lines that are not valid JSON": 2}
    assert ds.info["counts"] == {"train": 2, "test": 2}
    with pytest.raises(ValueError, match="on_error"):
        sd.load_imdb(data_dir=tmp_path, on_error="ignore")
    with pytest.raises(ValueError, match="source"):
        sd.load_imdb(data_dir=tmp_path, source="web")


def test_sarcasm_and_mr_fixtures(tmp_path):
    _place(tmp_path, "sarcasm/sarcasm_headlines_v1.jsonl.gz", "sarcasm_missing_key.jsonl")
    with pytest.raises(DataFormatError, match=r"v1\.jsonl\.gz:2: missing key 'headline'"):
        sd.load_sarcasm(data_dir=tmp_path)
    _place(tmp_path, "mr/rt-polarity.pos", "mr_pos_with_blank.txt")
    _place(tmp_path, "mr/rt-polarity.neg", "mr_pos_with_blank.txt")
    with pytest.warns(UserWarning, match=r"2 empty lines.*rt-polarity\.pos:3"):
        ds = sd.load_mr(data_dir=tmp_path, num_folds=2, progress=False)
    assert ds.info["skipped"] == {"empty lines": 2} and ds.info["total"] == 6


# -- NER on fixtures ---------------------------------------------------------------------
def test_conll_iob1_is_converted_to_bio(tmp_path):
    path = FIXTURES / "conll_iob1_small.txt"
    sentences, facts = sd.read_conll(path)
    assert facts["documents"] == 2 and facts["sentences"] == 3 and facts["columns"] == 4
    assert sentences[0].tags == ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert sentences[1].tags == ["B-ORG", "I-ORG", "B-ORG", "O", "B-PER", "B-PER", "O"]
    assert sentences[2].tags == ["O", "O", "O", "B-LOC", "O"]
    assert sd.count_entities(sentences) == Counter({"PER": 4, "ORG": 2, "LOC": 2})
    assert sd.iob1_to_bio(sentences[1].tags) == sentences[1].tags  # idempotent on BIO

    for stem in ("train", "dev", "test"):
        _place(tmp_path, f"ner/conll2003/{stem}.txt.gz", "conll_iob1_small.txt")
    ds = sd.load_conll2003(data_dir=tmp_path)
    assert ds.info["tags"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    train = ds["train"]
    assert [ds.info["tags"][i] for i in train.targets[0]] == sentences[0].tags
    assert ds.tokenizer.decode(train.inputs[2]) == "Rain fell on Paris ."
    assert ds.tokenizer.pad_id == 0 and ds.tokenizer.unk_id == 1


def test_wnut_whitespace_only_line_separates_sentences(tmp_path):
    for stem in ("train", "dev", "test"):
        _place(tmp_path, f"ner/wnut17/{stem}.conll", "wnut_small.conll")
    ds = sd.load_wnut17(data_dir=tmp_path)
    assert ds.info["counts"]["train"] == 3
    assert ds.info["entities"]["train"] == {"corporation": 1, "location": 1}
    assert [len(x) for x in ds["train"].inputs] == [3, 2, 4]


@pytest.mark.parametrize(
    ("fixture", "match"),
    [
        ("conll_bad_tag.txt", r"conll_bad_tag\.txt:3: malformed line .*tag 'PERSON'"),
        ("conll_one_column.txt", r"conll_one_column\.txt:2: malformed line 'met' \(1 column"),
    ],
)
def test_conll_malformed_raises_naming_file_and_line(fixture, match):
    with pytest.raises(DataFormatError, match=match):
        sd.read_conll(FIXTURES / fixture)


def test_conll_skip_mode_drops_the_sentence_and_says_so():
    log = sd.records.SkipLog("test")
    sentences, _ = sd.read_conll(FIXTURES / "conll_bad_tag.txt", on_error="skip", skips=log)
    assert sentences == [] and log.as_dict() == {"sentences with a malformed line": 1}


# -- translation pairs on fixtures ---------------------------------------------------------
def test_tatoeba_fixture_and_malformed_line(tmp_path):
    _place(tmp_path, "pairs/fra.tsv.gz", "pairs_small.tsv")
    ds = sd.load_tatoeba("fra", data_dir=tmp_path, val_fraction=0.4, seed=0)
    src_tok, tgt_tok = ds.tokenizer
    assert ds.info["counts"] == {"train": 3, "validation": 2}
    dec_in, dec_out = ds["train"].targets
    for x, a, b in zip(ds["train"].inputs, dec_in, dec_out, strict=True):
        assert a[0] == tgt_tok.start_id and b[-1] == tgt_tok.eos_id
        np.testing.assert_array_equal(a[1:], b[:-1])
        assert src_tok.decode(x).split()[-1] in {".", "!", "?"}  # punctuation kept
    batch = next(ds.batches("train", batch_size=3, shuffle=False))
    assert len(batch.targets) == 3 and batch.targets[2].dtype == bool
    chars = sd.load_tatoeba("fra", level="char", reverse=True, data_dir=tmp_path, val_fraction=0)
    assert chars.info["direction"] == "fra->eng" and "train" in chars.splits

    _place(tmp_path, "pairs/deu.tsv.gz", "pairs_missing_column.tsv")
    with pytest.raises(DataFormatError, match=r"deu\.tsv\.gz:3: malformed line 'Help me'"):
        sd.load_tatoeba("deu", data_dir=tmp_path)
    with pytest.warns(UserWarning, match="1 malformed lines"):
        skipped = sd.load_tatoeba("deu", data_dir=tmp_path, on_error="skip", val_fraction=0)
    assert skipped.info["skipped"] == {"malformed lines": 1}
    with pytest.raises(ValueError, match="lang"):
        sd.load_tatoeba("xx", data_dir=tmp_path)


def test_lm_windows_and_kfold():
    ex = sd.lm_windows(np.arange(11), seq_len=3)
    np.testing.assert_array_equal(ex.inputs, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(ex.targets, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert sd.lm_windows(np.arange(11), 3, stride=1).inputs.shape == (8, 3)
    with pytest.raises(ValueError, match="seq_len"):
        sd.lm_windows(np.arange(3), 3)
    folds = sd.kfold_indices(103, 10, seed=4)
    assert sorted(np.concatenate(folds).tolist()) == list(range(103))
    assert {len(f) for f in folds} == {10, 11}
    assert all(
        np.array_equal(a, b) for a, b in zip(folds, sd.kfold_indices(103, 10, seed=4), strict=True)
    )
    with pytest.raises(ValueError, match="num_folds"):
        sd.kfold_indices(10, 1)


# -- real data ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imdb_both():
    _needs("imdb/train.jsonl.gz", "imdb/test.jsonl.gz")
    return sd.load_imdb(progress=False), sd.load_imdb_keras(num_words=10000, progress=False)


@pytest.mark.slow
def test_real_imdb(imdb_both):
    ds, keras_form = imdb_both
    assert ds.info["counts"] == {"train": 25000, "test": 25000}
    assert ds.info["label_counts"] == {"train": [12500, 12500], "test": [12500, 12500]}
    assert ds.info["skipped"] == {}
    assert keras_form.info["counts"] == {"train": 25000, "test": 25000}
    x_train = keras_form["train"].inputs
    assert all(x[0] == 1 for x in x_train)
    assert max(int(x.max()) for x in x_train) == 9999
    assert any((x == 2).any() for x in x_train[:50])  # oov_char for rarer words
    # Same reviews, shuffled, one start_char longer each.
    lengths = sorted(len(x) for x in ds["train"].inputs)
    assert sorted(len(x) - 1 for x in x_train) == lengths
    assert sd.keras_word_index(keras_form.tokenizer)["the"] == 1


def test_real_mr():
    _needs("mr/rt-polarity.pos", "mr/rt-polarity.neg")
    ds = sd.load_mr(fold=3, progress=False)
    assert ds.info["total"] == 10662 and ds.info["label_counts"] == [5331, 5331]
    assert ds["train"].num_examples + ds["test"].num_examples == 10662
    assert ds["test"].num_examples in (1066, 1067)


def test_real_sarcasm():
    _needs("sarcasm/sarcasm_headlines_v1.jsonl.gz")
    ds = sd.load_sarcasm(progress=False)
    assert ds.info["total"] == 26709 and ds.info["label_counts"] == [14985, 11724]
    assert ds.info["counts"] == {"train": 20000, "test": 6709}


def test_real_tiny_shakespeare():
    _needs("tinyshakespeare/input.txt")
    ds = sd.load_tiny_shakespeare()
    assert sum(ds.info["counts"].values()) == 1115394
    assert ds.tokenizer.vocab_size == 65
    train = ds["train"].inputs
    assert ds.tokenizer.decode(train[:14]) == "First Citizen:"
    windows = sd.load_tiny_shakespeare(seq_len=128, val_fraction=0.05)
    assert windows["validation"].inputs.shape[1] == 128


def test_real_dinos():
    _needs("dinos/dinos.txt")
    ds = sd.load_dinos()
    assert ds.info["total"] == 1536 and ds.tokenizer.vocab_size == 27
    assert ds.tokenizer.vocabulary[0] == "\n" and ds.tokenizer.vocabulary[1] == "a"
    targets = ds["train"].targets + ds["validation"].targets
    assert sum(len(t) for t in targets) == 19909 + 1  # every name ends with "\n"
    for x, y in zip(ds["train"].inputs, ds["train"].targets, strict=True):
        assert x[0] == 0 and y[-1] == 0
        np.testing.assert_array_equal(x[1:], y[:-1])


def test_real_wnut17():
    _needs("ner/wnut17/train.conll", "ner/wnut17/dev.conll", "ner/wnut17/test.conll")
    ds = sd.load_wnut17()
    facts = ds.info["facts"]
    assert [facts[s]["sentences"] for s in ("train", "validation", "test")] == [3394, 1009, 1287]
    assert [facts[s]["tokens"] for s in ("train", "validation", "test")] == [62730, 15733, 23394]
    entities = ds.info["entities"]
    assert [sum(entities[s].values()) for s in ("train", "validation", "test")] == [1975, 836, 1079]
    assert entities["train"] == {
        "corporation": 221, "creative-work": 140, "group": 264,
        "location": 548, "person": 660, "product": 142,
    }  # fmt: skip
    assert len(ds.info["tags"]) == 13 and ds.info["skipped"] == {}


def test_real_conll2003_read_in_place():
    files = [f"ner/conll2003/{s}.txt.gz" for s in ("train", "dev", "test")]
    _needs(*files)
    ds = sd.load_conll2003()
    facts, entities = ds.info["facts"], ds.info["entities"]
    splits = ("train", "validation", "test")
    assert [facts[s]["documents"] for s in splits] == [946, 216, 231]
    assert [facts[s]["sentences"] for s in splits] == [14041, 3250, 3453]
    assert [facts[s]["tokens"] for s in splits] == [203621, 51362, 46435]
    # Entity counts are only right if IOB1 was converted to BIO correctly.
    assert entities["train"] == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
    assert entities["validation"] == {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}
    assert entities["test"] == {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
    assert all(Path(ds.info["files"][s]).is_relative_to(_real_dir()) for s in splits)


def test_real_tatoeba_small():
    _needs("pairs/vie.tsv.gz", "pairs/fra.tsv.gz")
    vie = sd.load_tatoeba("vie")
    assert sum(vie.info["counts"].values()) == 8050
    fra = sd.load_tatoeba("fra", num_examples=3000, val_fraction=0.1)
    assert fra.info["counts"] == {"train": 2700, "validation": 300}


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "count"), [("fra", 142787), ("spa", 118964), ("deu", 169813)])
def test_real_tatoeba_counts(lang, count):
    _needs(f"pairs/{lang}.tsv.gz")
    ds = sd.load_tatoeba(lang, level="char")
    assert sum(ds.info["counts"].values()) == count and ds.info["skipped"] == {}
