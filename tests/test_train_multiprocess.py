"""``fit`` across processes (``jax.distributed`` on CPU with gloo collectives, two processes on
this machine): the same loss curve as one process, and an interrupted run resumes exactly.

Each process runs ``tests/multiprocess_worker.py`` and feeds its share of every batch.
"""

import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).resolve().parent / "multiprocess_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: pathlib.Path, processes: int, crash_at: int | None = None):
    """Runs the worker in ``processes`` processes; returns their exit codes."""
    out.mkdir(exist_ok=True)
    port = str(_free_port())
    extra = [] if crash_at is None else [str(crash_at)]
    children = [subprocess.Popen(
        [sys.executable, str(WORKER), str(p), str(processes), port, str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for p in range(processes)]
    codes = []
    for child in children:
        try:
            log, _ = child.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for c in children:
                c.kill()
            raise
        codes.append(child.returncode)
        if child.returncode not in (0, 3):
            raise AssertionError(f"worker exited with {child.returncode}:\n{log[-3000:]}")
    return codes


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _weights(run):
    return [v for k, v in sorted(run.items()) if k.startswith("arr_")]


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_exactly(tmp_path):
    _train(tmp_path / "one", 1)
    _train(tmp_path / "two", 2)
    one = _load(tmp_path / "one" / "process0.npz")
    two = [_load(tmp_path / "two" / f"process{p}.npz") for p in range(2)]
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(two[0][key], one[key], rtol=1e-5)
        np.testing.assert_array_equal(two[1][key], two[0][key])  # global metrics on both
    for a, b in zip(_weights(two[0]), _weights(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # Interrupted after step 7 (checkpoints every 3 steps), then both processes started again.
    assert _train(tmp_path / "run", 2, crash_at=7) == [3, 3]
    assert _train(tmp_path / "run", 2) == [0, 0]
    for p in range(2):
        resumed = _load(tmp_path / "run" / f"process{p}.npz")
        for key in ("loss", "val_loss", "accuracy"):
            np.testing.assert_array_equal(resumed[key], two[p][key])
        for a, b in zip(_weights(resumed), _weights(two[p]), strict=True):
            np.testing.assert_array_equal(a, b)
