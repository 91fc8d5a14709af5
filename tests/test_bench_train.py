"""`make bench-train SMOKE=1` keeps working: both frameworks train, the record is written.

Synthetic data and two of the six models keep this fast; it checks structure and compile
counts, never times.
"""

import importlib.util
import json
import pathlib
import sys

import pytest

pytest.importorskip("keras")

_DIR = pathlib.Path(__file__).parent.parent / "experiments"
sys.path.insert(0, str(_DIR))  # bench_train imports common.py beside it
_SPEC = importlib.util.spec_from_file_location("bench_train", _DIR / "bench_train.py")
bench_train = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_train)


def test_smoke_run_writes_its_record_and_tables(tmp_path):
    run = bench_train.main(["--smoke", "--models", "average", "lstm", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"] == "bench_train" and record["smoke"] is True
    assert record["machine"]["cpu"] and {"jax", "keras", "seqjax"} <= set(record["versions"])
    summary = record["results"]["summary"]
    for name in ("average", "lstm"):
        seqjax = summary[name]["seqjax"]
        assert seqjax["compiles"] <= 4 and seqjax["compiles_after_first_epoch"] == 0
        for framework in ("seqjax", "keras"):
            (result,) = record["results"]["runs"][name][framework]
            assert len(result["val_accuracy"]) == 2 and 0 <= result["best"] <= 1
    assert len(run.goals) == 3 and run.goals[-1]["ok"]
    readme = (tmp_path / "README.md").read_text()
    assert "smoke mode" in readme and "| average | 120 |" in readme and "| lstm | 32 |" in readme
