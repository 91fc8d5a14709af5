"""`make bench`'s plot puts each goal where the issue puts it (no timing here: tests never do)."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.container import ErrorbarContainer  # noqa: E402

_PATH = pathlib.Path(__file__).parent.parent / "experiments" / "bench.py"
_SPEC = importlib.util.spec_from_file_location("bench", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _report():
    def row(cell, shape_name, ms):
        return {"cell": cell, "shape_name": shape_name, "shape": bench.SHAPES[shape_name],
                "ms": ms, "rounds_ms": {n: [0.9 * v, v, 1.2 * v] for n, v in ms.items()}}

    return {
        "machine": {"cpu_count": 2}, "rounds": 3,
        "training_step": [
            row("lstm", "S1", {"seqjax/auto": 100.0, "flax.nnx.RNN": 200.0, "torch.nn": 150.0}),
            row("gru", "S1", {"seqjax/auto": 90.0, "flax.nnx.RNN": 120.0, "torch.nn": 110.0}),
        ],
        "min_cells": {"lstm (auto)": 100.0, "min_gru (auto)": 30.0, "min_lstm (auto)": 40.0},
        "min_cells_rounds_ms": {"lstm (auto)": [100.0], "min_gru (auto)": [25.0, 30.0, 31.0],
                                "min_lstm (auto)": [40.0]},
        "compile_seconds": {"32": 0.2, "256": 0.2},
        "peak_memory_mib_T8192": {"auto, remat=False": 1000.0, "auto, remat=True": 300.0},
    }


def _goal_lines(ax):
    return sorted(line.get_xdata()[0] for line in ax.get_lines()
                  if line.get_label().startswith("goal"))


def test_goal_lines_sit_at_the_goal_ratios(tmp_path):
    path = tmp_path / "out" / "bench.png"
    fig = bench.plot_report(_report(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_title = {ax.get_title().split(" (")[0]: ax for ax in fig.axes}
    # LSTM: <= 1.0x torch (150 ms), <= 0.8x flax (200 ms); GRU: 0.8x torch (110), 0.8x flax (120).
    np.testing.assert_allclose(_goal_lines(by_title["LSTM S1"]), [150.0, 160.0])
    np.testing.assert_allclose(_goal_lines(by_title["GRU S1"]), [88.0, 96.0])
    np.testing.assert_allclose(_goal_lines(by_title["minGRU / minLSTM vs LSTM"]), [20.0])
    np.testing.assert_allclose(_goal_lines(by_title["remat"]), [500.0])
    compile_ax = by_title["compile time, 2-layer BiLSTM step"]
    goal = [line for line in compile_ax.get_lines() if line.get_label().startswith("goal")]
    assert [line.get_ydata()[0] for line in goal] == [1.5]


def test_whiskers_span_the_fastest_and_slowest_round():
    fig = bench.plot_report({"training_step": _report()["training_step"][:1]})
    (ax,) = fig.axes
    bars = {label.get_text(): patch.get_width()
            for label, patch in zip(ax.get_yticklabels(), ax.patches)}
    assert bars == {"seqjax/auto": 100.0, "flax.nnx.RNN": 200.0, "torch.nn": 150.0}
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 0] for s in segments],
                               [[90.0, 120.0], [180.0, 240.0], [135.0, 180.0]])


def test_min_cells_whiskers_and_runs_without_rounds():
    report = _report()
    fig = bench.plot_report({k: report[k] for k in ("min_cells", "min_cells_rounds_ms")})
    (ax,) = fig.axes
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose([s[:, 0] for s in errorbar.lines[2][0].get_segments()],
                               [[100.0, 100.0], [25.0, 31.0], [40.0, 40.0]])
    bench.plot_report({"min_cells": report["min_cells"]})  # a report from before rounds were kept


def test_an_empty_report_is_refused():
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
