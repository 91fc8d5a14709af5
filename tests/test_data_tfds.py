"""The tensorflow-datasets path, offline, with ``tfds.testing.mock_data``.

tensorflow-datasets (4.9+) serves ``tfds.data_source(...)`` from mock data without
TensorFlow; these tests also check that TensorFlow is never imported on the way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import seqjax.data as sd
from seqjax.data.tfds_source import tfds_feature_names

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _temp_files_under_tmp_path(tmp_path, monkeypatch):
    # mock_data makes its own temporary folders and leaves them behind; keep them in pytest's
    # tmp_path (pruned automatically) instead of the system temp directory.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_imdb_reviews_through_mock_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        ds = sd.load_imdb(source="tfds", tfds_data_dir=str(tmp_path), progress=False)
    assert ds.info["source"] == "tfds"
    assert ds.info["counts"] == {"train": 6, "test": 6}
    train = ds["train"]
    assert len(train.inputs) == 6 and set(train.targets.tolist()) <= {0, 1}
    assert all(x.dtype == np.int32 for x in train.inputs)


def test_imdb_keras_form_through_mock_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        ds = sd.load_imdb_keras(source="tfds", tfds_data_dir=str(tmp_path), progress=False)
    assert all(x[0] == 1 for x in ds["train"].inputs)


def test_tiny_shakespeare_through_mock_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=1):
        ds = sd.load_tiny_shakespeare(source="tfds", tfds_data_dir=str(tmp_path))
    assert set(ds.splits) == {"train", "validation", "test"}
    text = ds.tokenizer.decode(ds["train"].inputs)
    assert len(text) == ds.info["counts"]["train"] > 0


def test_conll2003_through_mock_tfds_with_iob1_records(tmp_path):
    names = tfds_feature_names("conll2003", "ner", data_dir=str(tmp_path))
    ids = {name: i for i, name in enumerate(names)}

    # Hand-made records in TFDS' layout, with IOB1 tags as in the original files.
    def record(tokens, tags):
        n = len(tokens)
        return {
            "tokens": np.array(tokens),
            "pos": np.zeros(n, int),
            "chunks": np.zeros(n, int),
            "ner": np.array([ids[t] for t in tags]),
        }

    records = [
        record(["Alice", "met", "Bob", "Smith"], ["I-PER", "O", "I-PER", "I-PER"]),
        record(["Acme", "IBM"], ["I-ORG", "B-ORG"]),
    ]

    def as_data_source(self, split, **kwargs):
        return records

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        ds = sd.load_conll2003(source="tfds", tfds_data_dir=str(tmp_path))
    assert ds.info["counts"] == {"train": 2, "validation": 2, "test": 2}
    tags = ds.info["tags"]
    first, second = ([tags[i] for i in y] for y in ds["train"].targets)
    assert first == ["B-PER", "O", "B-PER", "I-PER"]
    assert second == ["B-ORG", "B-ORG"]
    assert ds.info["entities"]["train"] == {"ORG": 2, "PER": 2}

    bad = [{**records[0], "ner": np.array([0])}]
    with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: bad):
        with pytest.raises(sd.DataFormatError, match=r"conll2003/train\[0\]: 4 tokens but 1 tags"):
            sd.load_conll2003(source="tfds", tfds_data_dir=str(tmp_path))


def test_tfds_path_never_imports_tensorflow(tmp_path):
    # A fresh interpreter: other tests in this process may have imported anything.
    code = textwrap.dedent(
        f"""
        import sys
        import tensorflow_datasets as tfds
        import seqjax.data as sd
        with tfds.testing.mock_data(num_examples=2):
            sd.load_imdb(source="tfds", tfds_data_dir={str(tmp_path)!r}, progress=False)
            sd.load_tiny_shakespeare(source="tfds", tfds_data_dir={str(tmp_path)!r})
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("no-tensorflow-ok")
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no-tensorflow-ok" in result.stdout
