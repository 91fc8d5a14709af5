"""SubwordTokenizer: reserved ids, exact decoding, JSON round trips, deterministic training."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")

import seqjax.data as sd  # noqa: E402
from seqjax.data import SubwordTokenizer, WordTokenizer, load_tokenizer  # noqa: E402

# Repeated words so that BPE has merges to learn; spacing, punctuation, case and
# non-ASCII text so that decoding has something to get wrong.
CORPUS = [
    "The film was fine, really fine.",
    "A dull film: long, slow and dull!",
    "Good fun -- the best film of the year?",
    "Café crème, naïve acting; 10/10 😀",
    "not good at all\tnot good\nat all",
] * 3
SAMPLES = [
    "The film was fine.",
    "  leading and trailing spaces  ",
    "Tabs\tand\nnewlines, punctuation!?",
    "unseen words: zebra xylophone, Ωμέγα, 東京 🎬",
    "",
]


@pytest.fixture(scope="module")
def fitted():
    return SubwordTokenizer(300).fit(CORPUS, progress=False)


def test_reserved_ids_come_first(fitted):
    assert (fitted.pad_id, fitted.start_id, fitted.unk_id, fitted.eos_id) == (0, 1, 2, 3)
    assert fitted.vocabulary[:4] == ["<PAD>", "<START>", "<UNK>", "<EOS>"]
    ids = fitted.encode("fine film", add_start=True, add_eos=True)
    assert ids[0] == 1 and ids[-1] == 3 and min(ids[1:-1]) >= 4
    assert fitted.decode(ids) == "fine film"
    assert fitted.decode(ids, skip_special=False) == "<START>fine film<EOS>"
    assert fitted.decode([2, *fitted.encode(" x")]) == "<UNK> x"  # unk kept, as words keep it
    # Text that spells a reserved token is ordinary text, never the reserved id.
    spelled = fitted.encode("a <PAD> and <EOS>")
    assert not set(spelled) & {0, 1, 2, 3}
    assert fitted.decode(spelled) == "a <PAD> and <EOS>"

    no_start = SubwordTokenizer(300, start_token=None, unk_token=None).fit(CORPUS, progress=False)
    assert no_start.vocabulary[:2] == ["<PAD>", "<EOS>"] and no_start.eos_id == 1
    assert no_start.start_id is None and no_start.unk_id is None
    with pytest.raises(ValueError, match="add_start needs a start_token"):
        no_start.encode("a", add_start=True)


@pytest.mark.parametrize("text", SAMPLES)
def test_decoding_gives_the_text_back(fitted, text):
    ids = fitted.encode(text)
    assert fitted.decode(ids) == text
    assert [fitted.vocabulary[i] for i in ids] == fitted.tokenize(text)


def test_lower_option_decodes_lower_case():
    tok = SubwordTokenizer(300, lower=True).fit(CORPUS, progress=False)
    for text in SAMPLES:
        assert tok.decode(tok.encode(text)) == text.lower()
    assert tok.encode("FILM") == tok.encode("film")


def test_batch_methods_agree_with_single(fitted):
    seqs = fitted.texts_to_sequences(SAMPLES, add_eos=True, progress=False)
    assert seqs == [fitted.encode(t, add_eos=True) for t in SAMPLES]
    assert fitted.sequences_to_texts(seqs) == SAMPLES


def test_fit_is_deterministic_and_respects_the_vocab_size():
    first = SubwordTokenizer(290).fit(CORPUS, progress=False)
    second = SubwordTokenizer(290).fit(list(CORPUS), progress=False)
    assert first.to_dict() == second.to_dict()
    assert first.vocab_size == 290  # enough merges in CORPUS to reach the target exactly
    tiny = SubwordTokenizer(5000).fit(["ab ab"], progress=False)
    assert 4 + 256 <= tiny.vocab_size < 5000  # a tiny corpus runs out of merges first
    assert tiny.decode(tiny.encode("ba!")) == "ba!"  # every byte is still encodable


def test_refit_replaces_the_vocabulary():
    tok = SubwordTokenizer(300).fit(["aaaa bbbb"] * 5, progress=False)
    tok.fit(CORPUS, progress=False)
    assert tok.to_dict() == SubwordTokenizer(300).fit(CORPUS, progress=False).to_dict()


def test_json_round_trip(fitted, tmp_path):
    text = fitted.to_json()
    config = json.loads(text)
    assert config["type"] == "SubwordTokenizer" and config["target_vocab_size"] == 300
    again = SubwordTokenizer.from_json(text)
    assert again.to_dict() == fitted.to_dict()
    assert again.texts_to_sequences(SAMPLES, progress=False) == fitted.texts_to_sequences(
        SAMPLES, progress=False
    )
    path = tmp_path / "subword.json"
    fitted.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, SubwordTokenizer) and loaded.to_dict() == fitted.to_dict()
    assert SubwordTokenizer.load(path).decode(fitted.encode("fine")) == "fine"

    unfitted = SubwordTokenizer(400, lower=True, eos_token=None)
    back = SubwordTokenizer.from_json(unfitted.to_json())
    assert back.to_dict() == unfitted.to_dict() and not back.fitted
    assert back.vocab_size == 3 and back.lower is True


def test_bad_arguments_raise_value_errors(fitted):
    for bad in (259, 8185.0, True, "8185", None):
        with pytest.raises(ValueError, match="target_vocab_size"):
            SubwordTokenizer(bad)
    SubwordTokenizer(256, pad_token=None, start_token=None, unk_token=None, eos_token=None)
    with pytest.raises(ValueError, match="lower"):
        SubwordTokenizer(lower="yes")
    with pytest.raises(ValueError, match="distinct"):
        SubwordTokenizer(pad_token="<X>", eos_token="<X>")
    tok = SubwordTokenizer(300)
    with pytest.raises(ValueError, match="no vocabulary yet"):
        tok.encode("a")
    with pytest.raises(ValueError, match="no vocabulary yet"):
        tok.decode([0])
    with pytest.raises(ValueError, match="texts must be an iterable of strings"):
        tok.fit("one string")
    with pytest.raises(ValueError, match="at least one string"):
        tok.fit([])
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string"):
        tok.fit(["a", 3])
    with pytest.raises(ValueError, match="text must be a string"):
        fitted.encode(["a"])
    with pytest.raises(ValueError, match="id 300 is outside the vocabulary"):
        fitted.decode([4, 300])
    with pytest.raises(ValueError, match="id -1 is outside"):
        fitted.decode([-1])


def test_from_dict_rejects_inconsistent_configs(fitted):
    config = fitted.to_dict()
    with pytest.raises(ValueError, match="does not match"):
        SubwordTokenizer.from_dict({**config, "vocabulary": config["vocabulary"][:-1]})
    with pytest.raises(ValueError, match="no 'model'"):
        SubwordTokenizer.from_dict({**config, "model": None})
    with pytest.raises(ValueError, match="expected 'SubwordTokenizer'"):
        SubwordTokenizer.from_dict({**config, "type": "WordTokenizer"})
    with pytest.raises(ValueError, match="reserved tokens"):
        SubwordTokenizer.from_dict({**config, "start_token": "<S>"})
    with pytest.raises(ValueError, match="type"):
        sd.tokenizers.tokenizer_from_dict({"type": "BPE"})


# -- load_imdb with subwords ----------------------------------------------------------------
def _imdb_fixture(root):
    data = (Path(__file__).parent / "fixtures" / "data" / "imdb_small.jsonl").read_bytes()
    for split in ("train", "test"):
        target = root / "imdb" / f"{split}.jsonl.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(data, mtime=0))


def test_load_imdb_with_subwords(tmp_path):
    _imdb_fixture(tmp_path)
    ds = sd.load_imdb(data_dir=tmp_path, tokenizer="subword", num_words=300, progress=False)
    tok = ds.tokenizer
    assert isinstance(tok, SubwordTokenizer) and tok.target_vocab_size == 300
    texts = [tok.decode(x) for x in ds["train"].inputs]
    assert texts == ["A fine film.", "Dull and long.", "Good fun, really!", "Not good at all"]
    assert all(x.dtype.name == "int32" for x in ds["test"].inputs)
    padded = sd.load_imdb(
        data_dir=tmp_path, tokenizer="subword", num_words=300, maxlen=4, progress=False
    )
    assert padded["train"].inputs.shape == (4, 4)

    given = SubwordTokenizer(280, lower=True)
    again = sd.load_imdb(data_dir=tmp_path, tokenizer=given, progress=False)
    assert again.tokenizer is given and given.fitted  # fitted in place, as word tokenizers are
    assert given.decode(again["train"].inputs[0]) == "a fine film."
    default = sd.SubwordTokenizer()
    assert default.target_vocab_size == sd.DEFAULT_SUBWORD_VOCAB_SIZE == 8185


def test_load_imdb_tokenizer_argument_errors(tmp_path):
    _imdb_fixture(tmp_path)
    with pytest.raises(ValueError, match="tokenizer must be 'word', 'subword'"):
        sd.load_imdb(data_dir=tmp_path, tokenizer="bpe")
    with pytest.raises(ValueError, match="tokenizer must be"):
        sd.load_imdb(data_dir=tmp_path, tokenizer=sd.CharTokenizer())
    with pytest.raises(ValueError, match="num_words to the tokenizer you give"):
        sd.load_imdb(data_dir=tmp_path, tokenizer=SubwordTokenizer(300), num_words=300)
    with pytest.raises(ValueError, match="num_words.*target_vocab_size must be an int >= 260"):
        sd.load_imdb(data_dir=tmp_path, tokenizer="subword", num_words=10)
    word = sd.load_imdb(data_dir=tmp_path, tokenizer="word", num_words=6, progress=False)
    assert isinstance(word.tokenizer, WordTokenizer) and word.tokenizer.vocab_size == 6
