"""`make bench-train SMOKE=1` keeps working: both frameworks train, the report is written.

Synthetic data and two of the six models keep this fast; it asserts structure and compile
counts, never times.
"""

import importlib.util
import json
import pathlib

import pytest

pytest.importorskip("keras")

_PATH = pathlib.Path(__file__).parent.parent / "experiments" / "bench_train.py"
_SPEC = importlib.util.spec_from_file_location("bench_train", _PATH)
bench_train = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_train)


def test_smoke_run_writes_the_table_and_the_json(tmp_path):
    report = bench_train.main(["--smoke", "--models", "average", "lstm", "--epochs", "2",
                               "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench_train.json").read_text())
    assert saved["settings"]["smoke"] and saved["machine"]["cpu_count"] >= 1
    assert {"jax", "keras", "seqjax"} <= set(saved["versions"])
    for name in ("average", "lstm"):
        row = report["summary"][name]
        assert row["seqjax"]["compiles"] <= bench_train.COMPILE_GOAL
        assert row["compiles_after_first_epoch"] == 0
        for framework in ("seqjax", "keras"):
            (run,) = saved["runs"][name][framework]
            assert len(run["val_accuracy"]) == 2 and 0 <= run["best"] <= 1
    lines = (tmp_path / "bench_train.md").read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| average | 120 |")
