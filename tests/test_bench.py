"""`make bench`'s logic: how it samples, judges the goals and reports them (no timing here: tests
never do), and that the figures the READMEs quote are the committed run's."""

import importlib.util
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent
RESULTS = ROOT / "experiments" / "results" / "bench"
_SPEC = importlib.util.spec_from_file_location("bench", ROOT / "experiments" / "bench.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _report():
    def row(cell, shape_name, ms):
        return {"cell": cell, "shape_name": shape_name, "shape": bench.SHAPES[shape_name],
                "ms": ms, "rounds_ms": {n: [0.9 * v, v, 1.2 * v] for n, v in ms.items()},
                "gflop": bench.train_step_gflop(cell, bench.SHAPES[shape_name])}

    return {
        "machine": {"cpu_count": 2, "cpu_model": "a CPU", "cpu_family_model": "6/1"},
        "versions": {"jax": "0.1", "torch": "2.0"}, "rounds": 3, "matmul_peak_gflops": 150.0,
        "training_step": [
            row("lstm", "S1", {"seqjax/auto": 100.0, "flax.nnx.RNN": 200.0, "torch.nn": 150.0,
                               "haiku": 90.0}),
            row("gru", "S1", {"seqjax/auto": 90.0, "flax.nnx.RNN": 120.0, "torch.nn": 110.0}),
            row("lstm", "S3", {"seqjax/auto": 200.0, "flax.nnx.RNN": 300.0, "torch.nn": 210.0,
                               "haiku": 250.0}),
        ],
        "min_cells": {"lstm (auto)": 100.0, "min_gru (auto)": 20.0, "min_lstm (auto)": 40.0},
        "min_cells_rounds_ms": {"lstm (auto)": [100.0], "min_gru (auto)": [15.0, 20.0, 31.0],
                                "min_lstm (auto)": [40.0]},
        "compile_seconds": {"32": 0.2, "256": 0.25, "8192": 0.4},
        "peak_memory_mib_T8192": {"auto, remat=False": 1000.0, "auto, remat=True": 300.0},
    }


def test_goals_are_judged_on_every_shape_of_the_report():
    judged = {g.goal: (g.measured, g.reached) for g in bench.goals(_report())}
    assert judged == {
        "LSTM `auto` <= 1.0x torch on S1-S3": ("0.67 / 0.95", "yes"),
        "LSTM `auto` <= 0.8x flax.nnx on S1-S3": ("0.50 / 0.67", "yes"),
        "LSTM `auto` no slower than haiku on S1-S3": ("1.11 / 0.80", "no"),
        # 19.33 GFLOP in 0.1 s at S1, 28.99 in 0.2 s at S3, of 150 GFLOP/s.
        "LSTM `auto` >= 60% of the matmul peak on S1 and S3": ("129% / 97% (of 150 GFLOP/s)",
                                                               "yes"),
        "GRU `auto` <= 0.8x torch on S1": ("0.82", "no"),
        "GRU `auto` <= 0.8x flax.nnx on S1": ("0.75", "yes"),
        "minGRU / minLSTM at S1 >= 5x faster than seqjax's LSTM": (
            "5.0x / 2.5x (LSTM 100.0 ms, minGRU 20.0, minLSTM 40.0)", "minGRU yes, minLSTM no"),
        # 0.4 s at T = 8192 is 2x the 0.2 s at T = 32: under 1.5 s, but not flat.
        "compile time of a 2-layer BiLSTM step <= 1.5 s, flat in T": (
            "0.20 / 0.25 / 0.40 s at T = 32 / 256 / 8192", "no"),
        "peak memory at T = 8192 with `remat=True` <= 0.5x without": ("0.30x (1000 -> 300 MiB)",
                                                                       "yes"),
    }


def test_goals_skip_what_the_report_did_not_measure():
    report = _report()
    for row in report["training_step"]:
        row["ms"].pop("haiku", None)
    del report["matmul_peak_gflops"], report["compile_seconds"]
    names = [g.goal for g in bench.goals(report)]
    assert not [n for n in names if "haiku" in n or "matmul peak" in n or "compile" in n]
    assert bench.goals({"machine": {}}) == []


def test_goal_lines_are_the_goal_ratios_times_the_other_contenders():
    lstm, gru = _report()["training_step"][:2]
    assert bench.step_goal_lines(lstm) == [("goal: 1x torch.nn", 150.0),
                                          ("goal: 0.8x flax.nnx.RNN", 160.0)]
    assert bench.step_goal_lines(gru) == [("goal: 0.8x torch.nn", 88.0),
                                         ("goal: 0.8x flax.nnx.RNN", 96.0)]
    del gru["ms"]["torch.nn"]
    assert bench.step_goal_lines(gru) == [("goal: 0.8x flax.nnx.RNN", 96.0)]


def test_whiskers_span_the_fastest_and_slowest_round():
    low, high = bench._whiskers(["a", "b"], [10.0, 5.0], {"a": [8.0, 10.0, 13.0]})
    assert (low, high) == ([2.0, 0.0], [3.0, 0.0])  # "b" has no rounds: no whiskers


def test_the_plot_has_a_panel_per_measurement(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "out" / "bench.png"
    fig = bench.plot_report(_report(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = sorted(ax.get_title().split(" (")[0] for ax in fig.axes)
    assert titles == ["GRU S1", "LSTM S1", "LSTM S3", "compile time, 2-layer BiLSTM step",
                      "minGRU / minLSTM vs LSTM", "remat"]
    bench.plot_report({"min_cells": _report()["min_cells"]})  # a report from before rounds
    with pytest.raises(ValueError, match="report: nothing to plot"):
        bench.plot_report({"machine": {}})


@pytest.mark.skipif(not pathlib.Path("/proc/cpuinfo").exists(), reason="reads Linux's /proc")
def test_machine_names_the_cpu_and_its_caches():
    described = bench.machine()
    assert described["cpu_count"] >= 1
    assert described["cpu_model"] and "/" in described["cpu_family_model"]
    if pathlib.Path("/sys/devices/system/cpu/cpu0/cache").exists():
        assert any(name.startswith("L1") for name in described["caches_per_cpu0"])
        assert all(size for size in described["caches_per_cpu0"].values())


def test_each_turn_runs_a_contender_twice_and_keeps_both_calls():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    samples = bench.sample_interleaved(fns, rounds=3)
    warm_up = ["a", "a", "b", "b", "c", "c"]
    assert calls == warm_up + 3 * ["a", "a", "b", "b", "c", "c"]
    for kept in samples:
        assert list(kept) == ["a", "b", "c"]
        assert all(len(ms) == 3 and min(ms) >= 0 for ms in kept.values())


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_readmes_quote_the_committed_run():
    # The results README opens with the committed run's goals table and README.md quotes its S1
    # figures: both are generated from bench.json (`bench.py --summarize`), so they cannot drift.
    report = json.loads((RESULTS / "bench.json").read_text())
    assert bench.current_results(report) in (RESULTS / "README.md").read_text()
    assert _words(bench.readme_summary(report)) in _words((ROOT / "README.md").read_text())
