"""Every experiment runs end to end in smoke mode, and README.md's results table is current."""

import importlib.util
import json
import pathlib
import sys

import pytest

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "experiments"
EXPERIMENTS = ["imdb_course", "longrange", "charlm", "seq2seq", "ner", "mr", "imdb_best"]


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


def _fake_experiment(tmp_path, argv, fail_in=None):
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import common

    args = common.parse_args("fake", ["--out", str(tmp_path), *argv], parts=("a", "b"))
    run = common.Run("fake", args, {"size": 1})

    def part(name):
        if name == fail_in:
            raise KeyboardInterrupt  # as a run killed in its second part
        run.results[name] = {"value": ord(name)}

    try:
        run.run_parts({"a": lambda: part("a"), "b": lambda: part("b")})
    except KeyboardInterrupt:
        return json.loads((tmp_path / "metrics.json").read_text())
    run.finish(lambda: (run.goals.append(common.goal("g", "t", "r", True, part="b"))
                        or run.header("Fake", "make fake")))
    return json.loads((tmp_path / "metrics.json").read_text())


def test_an_interrupted_run_keeps_its_finished_parts_and_only_reruns_the_rest(tmp_path):
    record = _fake_experiment(tmp_path, [], fail_in="b")
    assert list(record["results"]) == ["a"] and list(record["parts"]) == ["a"]
    assert not record["goals"] and not (tmp_path / "README.md").exists()

    record = _fake_experiment(tmp_path, ["--only", "b"])
    assert record["results"] == {"a": {"value": 97}, "b": {"value": 98}}
    assert set(record["parts"]) == {"a", "b"} and record["goals"][0]["part"] == "b"
    assert (tmp_path / "README.md").read_text().startswith("# Fake")


def test_only_names_the_parts_and_keeps_runs_of_the_same_config(tmp_path):
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import common

    with pytest.raises(SystemExit):
        common.parse_args("fake", ["--only", "c"], parts=("a", "b"))
    _fake_experiment(tmp_path, ["--only", "a"])
    assert "incomplete" in (tmp_path / "README.md").read_text()
    args = common.parse_args("fake", ["--out", str(tmp_path), "--only", "b"], parts=("a", "b"))
    with pytest.raises(ValueError, match="another config"):
        common.Run("fake", args, {"size": 2})
    common.Run("fake", args, {"size": 1, "b": {"epochs": 3}})  # a re-run part's own section

    made = _fake_experiment(tmp_path, ["--only", "b"])
    made.update(date="2026-01-02", started_utc="2026-01-02T03:04:05+00:00")  # an older run
    (tmp_path / "metrics.json").write_text(json.dumps(made))
    (tmp_path / "README.md").unlink()
    record = _fake_experiment(tmp_path, ["--report"])  # runs nothing, writes the README again
    assert record["results"] == {"a": {"value": 97}, "b": {"value": 98}}
    assert {k: record[k] for k in ("date", "started_utc", "command")} == {
        k: made[k] for k in ("date", "started_utc", "command")}
    assert (tmp_path / "README.md").read_text().startswith("# Fake")


def test_results_table_names_the_machine_of_the_part_that_reached_a_goal():
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import results_table

    gpu = {"cpu": "cpu G", "platform": "gpu", "devices": ["NVIDIA H200"]}
    record = {"date": "2026-12-04", "wall_time_s": 900, "machine": {"cpu": "cpu X"},
              "parts": {"p": {"date": "2026-12-05", "wall_time_s": 120, "machine": gpu}}}
    assert results_table.where(record, "p") == "2026-12-05, cpu G + NVIDIA H200, 2 min"
    assert results_table.where(record) == "2026-12-04, cpu X, 15 min"


@pytest.mark.slow
def test_demo_runs_on_built_in_data(tmp_path, capsys):
    demo = _load("demo")
    demo.main(["--lengths", "8", "12", "--epochs", "1", "--dates", "256", "--date-epochs", "1",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| SimpleRNN |" in out and "| GRU       |" in out and "Exact match on 1,000" in out
    assert (tmp_path / "long_range.png").stat().st_size > 1000
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_set_changes_existing_config_entries_and_names_unknown_ones():
    sys.path.insert(0, str(EXPERIMENTS_DIR))
    import common

    config = {"epochs": 4, "pooling": "last", "model": {"units": 128, "folds": [0]}}
    for assignment in ("epochs=2", "pooling=max", "model.units=64", "model.folds=[0, 1]"):
        common.override(config, assignment)
    assert config == {"epochs": 2, "pooling": "max", "model": {"units": 64, "folds": [0, 1]}}
    with pytest.raises(ValueError, match="no entry model.unit; its entries there are folds"):
        common.override(config, "model.unit=3")
    with pytest.raises(ValueError, match="no section optimizer"):
        common.override(config, "optimizer.lr=3")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        common.override(config, "epochs")
