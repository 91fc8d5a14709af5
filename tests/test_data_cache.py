"""The on-disk cache of encoded splits: hits equal fresh loads, changes miss, damage rebuilds."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import seqjax.data as sd
from seqjax.data import cache as cache_mod
from seqjax.data import text_classification, translation

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SARCASM = [
    {"article_link": "https://example.org/a", "headline": "man wins argument", "is_sarcastic": 1},
    {"article_link": "https://example.org/b", "headline": "rain due today", "is_sarcastic": 0},
    {"article_link": "https://example.org/c", "headline": "toaster for mayor", "is_sarcastic": 1},
]


def _place(root: Path, relative: str, data: bytes) -> Path:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(data, mtime=0) if target.suffix == ".gz" else data)
    return target


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A data directory of tiny datasets, and an empty cache folder of this test's own."""
    root = tmp_path / "data"
    imdb = (FIXTURES / "imdb_small.jsonl").read_bytes()
    for split in ("train", "test"):
        _place(root, f"imdb/{split}.jsonl.gz", imdb)
    _place(root, "mr/rt-polarity.pos", b"good film\nfine acting\nnice\n")
    _place(root, "mr/rt-polarity.neg", b"bad film\ndull acting\nawful\n")
    lines = "".join(json.dumps(r) + "\n" for r in SARCASM).encode()
    _place(root, "sarcasm/sarcasm_headlines_v1.jsonl.gz", lines)
    _place(root, "pairs/fra.tsv.gz", (FIXTURES / "pairs_small.tsv").read_bytes())
    monkeypatch.setenv(sd.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return root


def _entries() -> list[Path]:
    root = sd.cache_dir()
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def _assert_same_values(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_values(x, y)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    else:
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _assert_same(a: sd.LoadedDataset, b: sd.LoadedDataset) -> None:
    assert list(a.splits) == list(b.splits)
    for name in a.splits:
        _assert_same_values(a[name].inputs, b[name].inputs)
        _assert_same_values(a[name].targets, b[name].targets)
    toks_a = a.tokenizer if isinstance(a.tokenizer, tuple) else (a.tokenizer,)
    toks_b = b.tokenizer if isinstance(b.tokenizer, tuple) else (b.tokenizer,)
    assert [type(t) for t in toks_a] == [type(t) for t in toks_b]
    assert [t.to_dict() for t in toks_a] == [t.to_dict() for t in toks_b]
    assert a.info == b.info


def _no_building(monkeypatch):
    """Makes any read of the raw data fail, so that only a cache hit can succeed."""

    def fail(*args, **kwargs):
        raise AssertionError("the loader read the raw data: the cache missed")

    monkeypatch.setattr(text_classification, "read_lines", fail)
    monkeypatch.setattr(translation, "read_lines", fail)


LOADS = {
    "imdb": lambda root: sd.load_imdb(data_dir=root, progress=False),
    "imdb_padded": lambda root: sd.load_imdb(data_dir=root, maxlen=3, progress=False),
    "imdb_keras": lambda root: sd.load_imdb_keras(data_dir=root, num_words=6, progress=False),
    "mr": lambda root: sd.load_mr(data_dir=root, num_folds=2, progress=False),
    "sarcasm": lambda root: sd.load_sarcasm(data_dir=root, train_size=2, progress=False),
    "tatoeba": lambda root: sd.load_tatoeba("fra", data_dir=root, val_fraction=0.4),
    "tatoeba_char": lambda root: sd.load_tatoeba("fra", data_dir=root, level="char"),
}


@pytest.mark.parametrize("load", LOADS.values(), ids=LOADS.keys())
def test_a_second_load_equals_the_first_and_reads_no_raw_data(data, load, monkeypatch):
    first = load(data)
    assert len(_entries()) == 1
    with monkeypatch.context() as patch:
        _no_building(patch)
        second = load(data)
    _assert_same(first, second)
    with monkeypatch.context() as patch:
        patch.setenv(sd.CACHE_DIR_ENV, str(data.parent / "other-cache"))
        fresh = load(data)  # built from scratch in an empty cache
    _assert_same(first, fresh)
    entry = _entries()[0]
    assert {p.name for p in entry.iterdir()} >= {"arrays.npz", "info.json", "meta.json"}
    with np.load(entry / "arrays.npz", allow_pickle=False) as npz:  # no pickle anywhere
        assert all(npz[k].dtype != object for k in npz.files)


def test_a_changed_data_file_misses(data):
    first = sd.load_mr(data_dir=data, num_folds=2, progress=False)
    path = data / "mr" / "rt-polarity.pos"
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b"good film", b"good show"))
    # Same size and modification time: only the content hash tells the files apart.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    second = sd.load_mr(data_dir=data, num_folds=2, progress=False)
    assert len(_entries()) == 2
    assert "show" in second.tokenizer.token_index and "show" not in first.tokenizer.token_index
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    _assert_same(second, sd.load_mr(data_dir=data, num_folds=2, progress=False))
    assert len(_entries()) == 2  # a hit: the content decides, not the time


def test_changed_settings_miss(data):
    base = sd.load_imdb(data_dir=data, progress=False)
    variants = [
        sd.load_imdb(data_dir=data, num_words=5, progress=False),
        sd.load_imdb(data_dir=data, strip_html=False, progress=False),
        sd.load_imdb(data_dir=data, maxlen=3, padding="post", progress=False),
        sd.load_imdb(data_dir=data, tokenizer=sd.WordTokenizer(lower=False), progress=False),
        sd.load_imdb(data_dir=data, tokenizer="subword", num_words=300, progress=False),
        sd.load_imdb(data_dir=data, tokenizer="subword", num_words=290, progress=False),
    ]
    assert len(_entries()) == 1 + len(variants)
    assert [v.tokenizer.vocab_size for v in variants[:2]] != [base.tokenizer.vocab_size] * 2
    keras = [sd.load_imdb_keras(data_dir=data, seed=s, progress=False) for s in (0, 1, 0)]
    assert len(_entries()) == 1 + len(variants) + 2
    _assert_same(keras[0], keras[2])


def test_cache_false_bypasses_reads_and_writes(data, monkeypatch):
    sd.load_imdb(data_dir=data, cache=False, progress=False)
    assert not sd.cache_dir().exists()
    cached = sd.load_imdb(data_dir=data, progress=False)

    def no_cache(*args, **kwargs):
        raise AssertionError("cache=False touched the cache")

    monkeypatch.setattr(cache_mod, "_try_read", no_cache)
    monkeypatch.setattr(cache_mod, "_try_write", no_cache)
    _assert_same(cached, sd.load_imdb(data_dir=data, cache=False, progress=False))
    with pytest.raises(ValueError, match="cache must be True or False"):
        sd.load_imdb(data_dir=data, cache="yes")
    with pytest.raises(ValueError, match="cache must be True or False"):
        sd.load_tatoeba("fra", data_dir=data, cache=1)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated arrays": lambda e: (e / "arrays.npz").write_bytes(
        (e / "arrays.npz").read_bytes()[:100]
    ),
    "flipped byte in arrays": lambda e: _flip_byte(e / "arrays.npz"),
    "flipped byte in tokenizer": lambda e: _flip_byte(e / "tokenizer.json"),
    "edited info": lambda e: (e / "info.json").write_text('{"counts": {"train": 5}}'),
    "garbage meta": lambda e: (e / "meta.json").write_text("{not json"),
    "empty meta": lambda e: (e / "meta.json").write_text("{}"),
    "missing info": lambda e: (e / "info.json").unlink(),
    "empty folder": lambda e: [p.unlink() for p in e.iterdir()],
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_entry_is_rebuilt_never_returned(data, damage, monkeypatch):
    first = sd.load_imdb(data_dir=data, progress=False)
    (entry,) = _entries()
    damage(entry)
    _assert_same(first, sd.load_imdb(data_dir=data, progress=False))
    (rebuilt,) = _entries()
    assert rebuilt == entry
    _no_building(monkeypatch)
    _assert_same(first, sd.load_imdb(data_dir=data, progress=False))  # a hit again


def test_an_interrupted_write_leaves_no_entry(data, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(cache_mod.np, "savez", killed)
        with pytest.raises(KeyboardInterrupt):
            sd.load_imdb(data_dir=data, progress=False)
    assert _entries() == [] and list(sd.cache_dir().iterdir()) == []
    # A process killed outright leaves its scratch folder; it is never read as an entry.
    (sd.cache_dir() / ".tmp-left-over").mkdir()
    (sd.cache_dir() / ".tmp-left-over" / "meta.json").write_text("{}")
    first = sd.load_imdb(data_dir=data, progress=False)
    _assert_same(first, sd.load_imdb(data_dir=data, progress=False))
    assert len(_entries()) == 1


def test_skip_warnings_repeat_on_a_hit(tmp_path, monkeypatch):
    monkeypatch.setenv(sd.CACHE_DIR_ENV, str(tmp_path / "cache"))
    bad = (FIXTURES / "imdb_bad_json.jsonl").read_bytes()
    for split in ("train", "test"):
        _place(tmp_path, f"imdb/{split}.jsonl.gz", bad)
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"skipped 2 record\(s\).*not valid JSON"):
            ds = sd.load_imdb(data_dir=tmp_path, on_error="skip", progress=False)
        assert ds.info["skipped"] == {"lines that are not valid JSON": 2}
    assert len(_entries()) == 1
    with pytest.raises(sd.DataFormatError):  # on_error is part of the key: no stale hit
        sd.load_imdb(data_dir=tmp_path, progress=False)


def test_a_given_tokenizer_is_fitted_in_place_on_a_hit(data):
    first = sd.load_imdb(data_dir=data, tokenizer=sd.WordTokenizer(num_words=7), progress=False)
    given = sd.WordTokenizer(num_words=7)
    second = sd.load_imdb(data_dir=data, tokenizer=given, progress=False)
    assert second.tokenizer is given and given.to_dict() == first.tokenizer.to_dict()
    fitted = sd.WordTokenizer().fit(["film film good"], progress=False)
    before = fitted.to_dict()
    for _ in range(2):
        ds = sd.load_imdb(data_dir=data, tokenizer=fitted, progress=False)
        assert ds.tokenizer is fitted and fitted.to_dict() == before
    assert len(_entries()) == 2


def test_an_unwritable_cache_warns_and_still_loads(data, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(sd.CACHE_DIR_ENV, str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="could not write the cache entry"):
        ds = sd.load_imdb(data_dir=data, progress=False)
    assert ds.info["counts"] == {"train": 4, "test": 4}


def test_cache_dir_resolution_and_clear_cache(data, monkeypatch, tmp_path):
    monkeypatch.delenv(sd.CACHE_DIR_ENV)
    monkeypatch.setenv("SEQJAX_CACHE_DIR", str(tmp_path / "shared"))
    assert sd.cache_dir() == tmp_path / "shared" / "data"
    monkeypatch.delenv("SEQJAX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sd.cache_dir() == tmp_path / "xdg" / "seqjax" / "data"
    monkeypatch.setenv(sd.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert sd.cache_dir() == tmp_path / "mine"

    assert sd.clear_cache() == 0  # no folder yet
    sd.load_imdb(data_dir=data, progress=False)
    sd.load_mr(data_dir=data, num_folds=2, progress=False)
    sd.load_mr(data_dir=data, num_folds=3, progress=False)
    (sd.cache_dir() / "notes.txt").write_text("mine")
    (sd.cache_dir() / "my-folder").mkdir()
    (sd.cache_dir() / ".tmp-left-over").mkdir()
    assert sd.clear_cache("load_mr") == 2
    assert [p.name.split("-")[0] for p in _entries()] == ["load_imdb", "my", "notes.txt"]
    assert sd.clear_cache() == 1
    assert sorted(p.name for p in sd.cache_dir().iterdir()) == ["my-folder", "notes.txt"]
    shutil.rmtree(sd.cache_dir())  # deleting the folder by hand is fine too
    assert sd.load_imdb(data_dir=data, progress=False).info["counts"]["train"] == 4
