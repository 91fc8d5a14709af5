"""The README's Python examples run as written."""

import pathlib
import re

import pytest

import seqjax as sj

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def block(marker):
    """The README block whose first line is the comment ``# <marker>``."""
    found = [b for b in BLOCKS if b.splitlines()[0].strip() == f"# {marker}"]
    assert len(found) == 1, f"expected one README block starting with '# {marker}'"
    return found[0]


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


def test_quick_start_runs():
    exec(compile(BLOCKS[0], "README quick start", "exec"), {})


@pytest.mark.slow
def test_data_and_fit_example_runs(tmp_path, monkeypatch):
    try:
        root = sj.data.data_dir().resolve()
    except FileNotFoundError as error:
        pytest.skip(f"no data directory: {error}")
    if not (root / "mr").exists():
        pytest.skip(f"the MR dataset is not in the data directory {root}")
    monkeypatch.setenv("SEQJAX_DATA_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(BLOCKS[1], "README data and training example", "exec"), namespace)
    history = namespace["history"].history
    assert history["val_accuracy"][-1] > 0.65  # chance is 0.5
    assert (tmp_path / "mr_history.json").exists()


@pytest.mark.slow
def test_models_classifier_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example saves a model in the working directory
    namespace = {}
    exec(compile(block("models: classifier"), "README models: classifier", "exec"), namespace)
    assert namespace["logits"].shape == (2,)
    assert "Total params: 635,329" in capsys.readouterr().out  # the Keras count of that model
    history = namespace["history"].history
    assert history["loss"][-1] < history["loss"][0]
    restored, lstm = namespace["restored"], namespace["lstm"]
    tokens, mask = namespace["tokens"], namespace["mask"]
    assert restored.config == lstm.config
    assert (restored(tokens, mask) == lstm(tokens, mask)).all()


@pytest.mark.slow
def test_models_language_model_example_runs(capsys):
    namespace = {}
    exec(compile(block("models: language model"), "README models: language model", "exec"),
         namespace)
    out, tok = namespace["out"], namespace["tok"]
    assert out.shape == (1, 20) and tok.unk_id not in set(out[0].tolist())
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("he") and len(printed) > 2


@pytest.mark.slow
def test_models_seq2seq_example_runs():
    namespace = {}
    exec(compile(block("models: seq2seq"), "README models: seq2seq", "exec"), namespace)
    src, out = namespace["src"], namespace["out"]
    assert out.tokens.shape == (3, 7) and out.attention.shape == (3, 7, 6)
    assert (out.tokens[:, :6] == src[:3, ::-1]).all() and (out.tokens[:, 6] == 2).all()
