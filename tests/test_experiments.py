"""Every experiment runs end to end in smoke mode, and README.md's results table is current."""

import importlib.util
import json
import pathlib
import sys

import pytest

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments"
EXPERIMENTS = ["imdb_course", "longrange", "charlm", "seq2seq", "ner"]


def _load(name):
    if str(EXPERIMENTS_DIR) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS_DIR))  # the scripts import common.py beside them
    path = EXPERIMENTS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_smoke_run_writes_its_record(name, tmp_path):
    _load(name).main(["--smoke", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"] == name and record["smoke"] is True
    assert record["goals"] and all({"goal", "target", "reached", "ok"} <= set(g)
                                   for g in record["goals"])
    assert record["machine"]["cpu"] and record["versions"]["jax"]
    assert record["config"] and record["results"]
    assert "smoke mode" in (tmp_path / "README.md").read_text()
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)


def test_results_table_is_generated_from_the_committed_records():
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import results_table

    readme = (EXPERIMENTS_DIR.parent / "README.md").read_text()
    assert results_table.render(readme, results_table.table(results_table.records())) == readme


def test_results_table_lists_every_goal(tmp_path):
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import results_table

    for name, smoke in (("done", False), ("smoky", True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "experiment": name, "smoke": smoke, "date": "2026-12-04", "wall_time_s": 600,
            "machine": {"cpu": "cpu X", "platform": "cpu", "devices": ["cpu"]},
            "goals": [{"goal": "g1", "target": "< 1", "reached": "0.5", "ok": True},
                      {"goal": "g2", "target": "> 2", "reached": "1.0", "ok": False}]}))
    body = results_table.table(results_table.records(tmp_path))
    assert "| g1 | < 1 | 0.5 | yes |" in body and "| g2 | > 2 | 1.0 | **no** |" in body
    assert "smoky" not in body and "2026-12-04, cpu X, 10 min" in body
    with pytest.raises(ValueError, match="markers"):
        results_table.render("no markers here", body)
