"""experiments/colab.ipynb runs end to end: its cells in smoke mode on the offline data folder."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "experiments" / "colab.ipynb"


def code_cells():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [(i, "".join(c["source"]), c["metadata"].get("tags", []))
            for i, c in enumerate(cells) if c["cell_type"] == "code"]


def test_only_the_tagged_install_cell_uses_shell_or_magics():
    for i, source, tags in code_cells():
        shell = any(line.lstrip().startswith(("!", "%")) for line in source.splitlines())
        assert shell == ("install" in tags), f"cell {i}"
    assert sum("install" in tags for _, _, tags in code_cells()) == 1


@pytest.mark.slow
def test_notebook_runs_in_smoke_mode_without_its_install_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.setenv("SEQJAX_NOTEBOOK_SOURCE", "files")
    monkeypatch.setenv("SEQJAX_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # the notebook prepends to it
    namespace = {}
    for i, source, tags in code_cells():
        if "install" not in tags:
            exec(compile(source, f"{NOTEBOOK.name}, cell {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "smoke mode" in out and "device(s)" in out
    for name in ("imdb_course", "charlm"):
        record = json.loads((tmp_path / name / "metrics.json").read_text())
        assert record["smoke"] is True and record["goals"]
    assert "--- temperature 0.5 ---" in out and "word level:" in out
