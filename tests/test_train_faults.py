"""Interrupted training resumes bit-identically: crashes, damaged checkpoints and SIGKILL.

The SIGKILL test runs ``fit`` in child processes killed at random moments (some while a
checkpoint is being written), resumed each time, against an uninterrupted child.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import seqjax as sj
from seqjax.data import BatchIterator
from seqjax.train import Callback, Checkpointer, fit, sigmoid_binary_cross_entropy

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(40, 8, rngs=rngs)
        self.rnn = sj.nn.GRU(8, 12, rngs=rngs)
        self.out = nnx.Linear(12, 1, rngs=rngs)

    def __call__(self, x, mask):
        return self.out(self.rnn(self.embed(x), mask=mask))[:, 0]


def loss_fn(model, batch, key):
    return sigmoid_binary_cross_entropy(model(batch.inputs, batch.mask), batch.targets,
                                        batch.mask)


def data(n=80, shuffle=True):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (n, 7)).astype(np.int32)
    return BatchIterator(x, (x[:, 0] < 20).astype(np.int32), batch_size=8, seed=1,
                         shuffle=shuffle)


def host(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [leaf(x) for x in jax.tree.leaves(tree)]


def assert_same_run(a, b):
    for x, y in zip(host((a.train_state.params, a.train_state.opt_state, a.train_state.rng)),
                    host((b.train_state.params, b.train_state.opt_state, b.train_state.rng)),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.history == b.history


class CrashAtEpochEnd(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_a_checkpoint_step_on_an_epoch_end_resumes_exactly(tmp_path):
    """10 batches per epoch, a checkpoint every 5 steps: step 20 ends epoch 1. A run that dies
    before its epoch-end checkpoint must not resume from a mid-epoch one holding the data
    position of epoch 2 (the resumed run once trained epoch 2's batches as epoch 1's)."""
    kwargs = dict(epochs=3, verbose=0, save_every_steps=5,
                  validation_data=data(24, shuffle=False))
    ref = fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
              checkpoint_dir=tmp_path / "ref", **kwargs)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
            checkpoint_dir=tmp_path / "run", callbacks=[CrashAtEpochEnd(1)], **kwargs)
    with Checkpointer(tmp_path / "run") as ckpt:
        meta = ckpt.read_meta()
        assert ckpt.latest_step() == 15 and (meta["epoch"], meta["batches_done"]) == (1, 5)
        assert meta["data_state"]["epoch"] == 1 and meta["data_state"]["position"] == 5
    resumed = fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
                  checkpoint_dir=tmp_path / "run", **kwargs)
    assert_same_run(resumed, ref)


def test_a_damaged_newest_checkpoint_is_passed_over(tmp_path):
    kwargs = dict(epochs=2, verbose=0, save_every_steps=3)
    ref = fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
              checkpoint_dir=tmp_path / "ref", **kwargs)
    with pytest.raises(RuntimeError, match="simulated"):
        fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
            checkpoint_dir=tmp_path / "run", callbacks=[CrashAtEpochEnd(1)], **kwargs)
    latest = tmp_path / "run" / "latest"
    newest = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    shutil.rmtree(latest / str(newest) / "train")  # as a kill halfway through a deletion would
    with pytest.warns(UserWarning, match=f"latest/{newest} .* cannot be restored"):
        resumed = fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), data(),
                      checkpoint_dir=tmp_path / "run", **kwargs)
    assert_same_run(resumed, ref)


CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np, optax
    from flax import nnx
    import seqjax as sj

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(40, 8, rngs=rngs)
            self.rnn = sj.nn.GRU(8, 12, rngs=rngs)
            self.out = nnx.Linear(12, 1, rngs=rngs)
        def __call__(self, x, mask):
            return self.out(self.rnn(self.embed(x), mask=mask))[:, 0]

    def loss_fn(model, batch, key):
        logits = model(batch.inputs, batch.mask)
        return sj.train.sigmoid_binary_cross_entropy(logits, batch.targets, batch.mask), {
            "accuracy": sj.train.binary_accuracy(logits, batch.targets, batch.mask)}

    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (100, 7)).astype(np.int32)
    y = (x[:, 0] < 20).astype(np.int32)
    train = sj.data.BatchIterator(x[:84], y[:84], batch_size=8, seed=1)  # 11 batches, last 4
    val = sj.data.BatchIterator(x[84:], y[84:], batch_size=8, shuffle=False)
    history = sj.train.fit(Tiny(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), train, epochs=14,
                           validation_data=val, checkpoint_dir=sys.argv[1], save_every_steps=4,
                           verbose=0)
    state = history.train_state
    np.savez(sys.argv[2] + ".npz", *[np.asarray(a) for a in
             __import__("jax").tree.leaves((state.params, state.opt_state))])
    with open(sys.argv[2] + ".json", "w") as f:
        json.dump(history.history, f)
''')


def _start(checkpoint_dir, out):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(checkpoint_dir), str(out)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _names(checkpoint_dir):
    found = []
    for sub in ("latest", "best"):
        folder = pathlib.Path(checkpoint_dir) / sub
        found += [f"{sub}/{p}" for p in os.listdir(folder)] if folder.exists() else []
    return found


def _kill_when(proc, checkpoint_dir, trigger, rng, timeout=240.0):
    """Waits for ``trigger`` (or the child's exit) and SIGKILLs the child; True if killed."""
    start = time.monotonic()
    seen = set(_names(checkpoint_dir))
    wanted = int(rng.integers(1, 4))
    while proc.poll() is None and time.monotonic() - start < timeout:
        names = _names(checkpoint_dir)
        if trigger == "writing" and any("orbax-checkpoint-tmp" in n for n in names):
            break
        if trigger == "after_saves" and len(set(names) - seen) >= wanted:
            time.sleep(float(rng.uniform(0, 0.05)))
            break
        time.sleep(0.001)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    ref = _start(tmp_path / "ref", tmp_path / "ref")
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err.decode()[-3000:]

    rng = np.random.default_rng(int(os.environ.get("SEQJAX_FAULT_SEED", "0")))
    triggers = ["writing", "after_saves", "writing", "after_saves", "writing"]
    kills, leftovers = 0, []
    for trigger in [*triggers, None]:
        proc = _start(tmp_path / "run", tmp_path / "run")
        if trigger is not None and _kill_when(proc, tmp_path / "run", trigger, rng):
            kills += 1
            leftovers.append(sorted(_names(tmp_path / "run")))
            continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        if trigger is None:
            break
    assert kills >= 3, leftovers
    assert any(any("tmp" in n for n in names) for names in leftovers), leftovers
    want, got = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "run.npz")
    assert len(want.files) == len(got.files)
    for name in want.files:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name}; {leftovers}")
    assert (json.loads((tmp_path / "run.json").read_text())
            == json.loads((tmp_path / "ref.json").read_text()))
