"""seqjax.train.fit: training, history/plots, early stopping, checkpoints and exact resume."""

import json
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqjax.train import (
    Callback,
    Checkpointer,
    EarlyStopping,
    History,
    LambdaCallback,
    accuracy,
    evaluate,
    fit,
    restore_model,
    softmax_cross_entropy,
)


class Batch(NamedTuple):
    inputs: jax.Array
    mask: jax.Array
    targets: jax.Array


class Bag(nnx.Module):
    def __init__(self, rngs, vocab=20, dim=8, dropout=0.0):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = nnx.Linear(dim, 2, rngs=rngs)

    def __call__(self, x, mask):
        h = self.embed(x)
        if self.drop is not None:
            h = self.drop(h)
        m = mask.astype(h.dtype)[..., None]
        return self.out((h * m).sum(1) / jnp.maximum(m.sum(1), 1.0))


def loss_fn(model, batch, key):
    logits = model(batch.inputs, batch.mask)
    return softmax_cross_entropy(logits, batch.targets, batch.mask), {
        "accuracy": accuracy(logits, batch.targets, batch.mask)
    }


def batches(seed, n=4, B=8, T=6, flip=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.integers(0, 20, (B, T)).astype(np.int32)
        mask = np.arange(T)[None, :] < rng.integers(2, T + 1, (B, 1))
        y = (x[:, 0] < 10).astype(np.int32)
        out.append(Batch(x, mask, 1 - y if flip else y))
    return out


def make_batches(epoch):
    """Resumable data: the order is a function of the epoch."""
    return batches(1000 + epoch)


def host(tree):
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [leaf(x) for x in jax.tree.leaves(tree)]


def assert_trees_equal(a, b):
    la, lb = host(a), host(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def test_fit_reduces_loss_writes_history_json_and_png(tmp_path):
    model = Bag(nnx.Rngs(0))
    traces = []

    def counting_loss(model, batch, key):
        traces.append(1)
        return loss_fn(model, batch, key)

    history = fit(
        model, counting_loss, optax.adam(3e-2), make_batches, epochs=4,
        validation_data=batches(7), verbose=0, eval_loss_fn=loss_fn,
        history_path=tmp_path / "h" / "history.json", plot_path=tmp_path / "curves.png",
    )
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1, 2, 3]
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert len(traces) == 1  # the train step was traced once for 16 steps
    # the model holds the trained weights
    assert_trees_equal(nnx.state(model, nnx.Param), history.train_state.params)
    ev = evaluate(model, loss_fn, batches(7))
    assert math.isclose(ev["loss"], history["val_loss"][-1], rel_tol=1e-5)
    data = json.loads((tmp_path / "h" / "history.json").read_text())
    assert data["history"]["val_accuracy"] == history["val_accuracy"]
    assert History.load(tmp_path / "h" / "history.json").history == history.history
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_progress_bar_shows_loss(capsys):
    fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), make_batches, epochs=1, verbose=1,
        log_every=2)
    err = capsys.readouterr().err
    assert "Epoch 1/1" in err and "loss=" in err and "accuracy=" in err


def test_early_stopping_restores_best_weights():
    # validation labels are the opposite of the training labels: val_loss only gets worse,
    # so the best epoch is the first one.
    per_epoch = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(
        host(stopper.loop.state.params)))
    stopper = EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    model = Bag(nnx.Rngs(0))
    history = fit(model, loss_fn, optax.adam(5e-2), make_batches, epochs=10,
                  validation_data=batches(7, flip=True), callbacks=[record, stopper], verbose=0)
    assert len(history) == 2 and stopper.stopped_epoch == 1 and stopper.best_epoch == 0
    assert history["val_loss"][1] > history["val_loss"][0]
    for a, b in zip(per_epoch[0], host(nnx.state(model, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_needs_its_metric():
    with pytest.raises(ValueError, match="monitor"):
        fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(1e-2), make_batches, epochs=1, verbose=0,
            callbacks=[EarlyStopping("val_accuracy")])


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_end(self, step, logs=None):
        if step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("crash_at", [5, 8])
def test_resume_after_crash_is_bit_identical(tmp_path, crash_at):
    """Kill a run mid-epoch (5) or at an epoch boundary (8), resume: same params and opt state."""
    kwargs = dict(epochs=3, validation_data=batches(7), verbose=0, save_every_steps=3, seed=4)
    ref_model = Bag(nnx.Rngs(0), dropout=0.3)
    ref = fit(ref_model, loss_fn, optax.adam(1e-2), make_batches,
              checkpoint_dir=tmp_path / "ref", **kwargs)

    with pytest.raises(RuntimeError, match="simulated"):
        fit(Bag(nnx.Rngs(0), dropout=0.3), loss_fn, optax.adam(1e-2), make_batches,
            checkpoint_dir=tmp_path / "run", callbacks=[Crash(crash_at)], **kwargs)
    model = Bag(nnx.Rngs(0), dropout=0.3)  # a fresh process would rebuild the model like this
    resumed = fit(model, loss_fn, optax.adam(1e-2), make_batches,
                  checkpoint_dir=tmp_path / "run", **kwargs)

    assert int(resumed.train_state.step) == int(ref.train_state.step) == 12
    assert_trees_equal(resumed.train_state.params, ref.train_state.params)
    assert_trees_equal(resumed.train_state.opt_state, ref.train_state.opt_state)
    assert_trees_equal(resumed.train_state.model_state, ref.train_state.model_state)
    assert_trees_equal(nnx.state(model), nnx.state(ref_model))
    assert resumed.history == ref.history


class StatefulBatches:
    """An epoch-aware iterator with state()/load_state(), like seqjax.data.BatchIterator."""

    def __init__(self, seed=0):
        self.seed, self.epoch, self.position = seed, 0, 0

    def __len__(self):
        return 4

    def iter_epoch(self):
        epoch = self.epoch
        data = batches(self.seed * 100 + epoch)
        while self.epoch == epoch:
            batch = data[self.position]
            self.position += 1
            if self.position == len(self):
                self.epoch, self.position = self.epoch + 1, 0
            yield batch

    def state(self):
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state(self, state):
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        return self


def test_resume_with_iterator_state(tmp_path):
    kwargs = dict(epochs=2, verbose=0, save_every_steps=2)
    ref = fit(Bag(nnx.Rngs(0)), loss_fn, optax.sgd(0.1), StatefulBatches(3),
              checkpoint_dir=tmp_path / "ref", **kwargs)
    with pytest.raises(RuntimeError):
        fit(Bag(nnx.Rngs(0)), loss_fn, optax.sgd(0.1), StatefulBatches(3),
            checkpoint_dir=tmp_path / "run", callbacks=[Crash(7)], **kwargs)
    with Checkpointer(tmp_path / "run") as ckpt:
        assert ckpt.latest_step() == 6
        meta = ckpt.read_meta()
    assert meta["data_state"] == {"seed": 3, "epoch": 1, "position": 2}
    assert (meta["epoch"], meta["batches_done"]) == (1, 2)
    fresh = StatefulBatches(3)  # restarted process: the iterator starts at epoch 0
    resumed = fit(Bag(nnx.Rngs(0)), loss_fn, optax.sgd(0.1), fresh,
                  checkpoint_dir=tmp_path / "run", **kwargs)
    assert_trees_equal(resumed.train_state.params, ref.train_state.params)
    assert resumed.history == ref.history


def test_best_checkpoint_and_restore_model(tmp_path):
    snapshots = {}
    record = LambdaCallback(on_epoch_end=lambda e, logs: snapshots.__setitem__(
        e, (logs["val_accuracy"], host(watch.loop.state.params))))
    watch = Callback()
    history = fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(5e-2), make_batches, epochs=3,
                  validation_data=batches(7, flip=True), callbacks=[watch, record], verbose=0,
                  checkpoint_dir=tmp_path, monitor="val_loss")
    best_epoch, _ = history.best("val_loss")
    restored = restore_model(Bag(nnx.Rngs(1)), tmp_path, which="best")
    for a, b in zip(snapshots[best_epoch][1], host(nnx.state(restored, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a, b)
    latest = restore_model(Bag(nnx.Rngs(1)), tmp_path, which="latest")
    assert_trees_equal(nnx.state(latest, nnx.Param), history.train_state.params)
    assert (tmp_path / "history.json").exists()
    # a finished run resumes as finished: no more steps
    again = fit(Bag(nnx.Rngs(0)), loss_fn, optax.adam(5e-2), make_batches, epochs=3,
                validation_data=batches(7, flip=True), verbose=0, checkpoint_dir=tmp_path)
    assert int(again.train_state.step) == 12 and again.history == history.history


def test_fit_argument_errors():
    model = Bag(nnx.Rngs(0))
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, loss_fn, tx, make_batches, epochs=-1)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, loss_fn, "adam", make_batches)
    with pytest.raises(ValueError, match="train_data"):
        fit(model, loss_fn, tx, 42)
    with pytest.raises(ValueError, match="save_every_steps"):
        fit(model, loss_fn, tx, make_batches, save_every_steps=2)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fit(model, loss_fn, tx, make_batches, steps_per_epoch=0)
    one_shot = iter(batches(0))
    with pytest.raises(ValueError, match="no batches in epoch 1"):
        fit(model, loss_fn, tx, one_shot, epochs=2, verbose=0)
