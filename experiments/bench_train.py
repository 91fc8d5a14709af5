"""Training benchmark: the course's IMDB models trained with seqjax ``fit`` and with Keras 3.

The setting of the course's IMDB notebooks: the top 10,000 words (``load_imdb_keras``), reviews
padded and truncated ``pre`` to ``maxlen``, Embedding(10000, 16), Adam 1e-3, binary
cross-entropy, batch 32, 10 epochs, validation on the 25,000 test reviews after every epoch. Six
models, each written once as a small ``nnx.Module`` from the public API (``sj.nn``, ``nnx``) and
once with the same Keras layers:

  simple_rnn, lstm, gru   maxlen 32: Embedding -> SimpleRNN/LSTM/GRU(32) -> Dense(1)
  average                 maxlen 120: Embedding -> GlobalAveragePooling1D -> Dense(24, relu)
                          -> Dense(1)
  bilstm                  maxlen 120: Embedding -> Bidirectional(LSTM(32)) -> Dense(1)
  conv1d                  maxlen 120: Embedding -> Conv1D(128, 5, relu) -> GlobalAveragePooling1D
                          -> Dense(1)

Keras runs on its JAX backend without masking (Embedding without ``mask_zero``), so the padding
zeros are read as tokens; seqjax's models see the same: a dense ``BatchIterator`` gives an
all-True mask. seqjax uses defaults everywhere (``fit``'s automatic ``steps_per_execution``,
the kernels' ``backend="auto"``). The runs alternate in one process (seqjax model A, Keras model
A, Keras model B, seqjax model B, ...), each timed around the ``fit`` call alone (the models are
built before; both ``fit`` calls include their XLA compilation), and every compilation during
a ``fit`` is counted (JAX's backend-compile events).

Writes ``bench_train.md`` (the table) and ``bench_train.json`` (every run, versions, machine,
date) to ``experiments/results/bench_train/``; its ``README.md`` discusses them.

Run:
  make bench-train                      # 2 rounds of the 6 models, ~15 minutes on 2 cores
  make bench-train SMOKE=1              # synthetic data, 1 epoch: checks that it runs (~1 min)
  .venv/bin/python experiments/bench_train.py --models lstm gru --rounds 1 --epochs 3

Expected: see experiments/results/bench_train/README.md for the measured table and the goals
(seqjax's ``fit`` at most 0.5x Keras' wall time for every model with the best validation
accuracy within 1 point; at most 4 compilations per ``fit``, none after the first epoch).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import seqjax as sj  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench import machine  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "bench_train"
VOCAB, EMBED, UNITS, BATCH, LEARNING_RATE = 10_000, 16, 32, 32, 1e-3
MAXLEN = {"simple_rnn": 32, "lstm": 32, "gru": 32, "average": 120, "bilstm": 120, "conv1d": 120}
MODELS = tuple(MAXLEN)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
RATIO_GOAL, STRETCH_GOAL, ACCURACY_GOAL, COMPILE_GOAL = 0.5, 0.25, 0.01, 4


# ----------------------------------------------------------------------------- seqjax models


class Recurrent(nnx.Module):
    """Embedding -> one recurrent layer (last output) -> logit."""

    def __init__(self, kind: str, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        layers = {"simple_rnn": sj.nn.SimpleRNN, "lstm": sj.nn.LSTM, "gru": sj.nn.GRU,
                  "bilstm": sj.nn.LSTM}
        self.rnn = layers[kind](EMBED, UNITS, rngs=rngs)
        width = UNITS
        if kind == "bilstm":
            self.rnn = sj.nn.Bidirectional(self.rnn, rngs=rngs)
            width = 2 * UNITS
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        return self.out(self.rnn(self.embed(tokens), mask=mask))[:, 0]


def _average(h, mask):
    """GlobalAveragePooling1D over the valid steps ([B, T, F] -> [B, F])."""
    m = mask[..., None].astype(h.dtype)
    return (h * m).sum(1) / jnp.maximum(m.sum(1), 1.0)  # fully masked rows give 0, not NaN


class Average(nnx.Module):
    """Embedding -> GlobalAveragePooling1D -> Dense(24, relu) -> logit."""

    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        self.hidden = nnx.Linear(EMBED, 24, rngs=rngs)
        self.out = nnx.Linear(24, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        return self.out(jax.nn.relu(self.hidden(_average(self.embed(tokens), mask))))[:, 0]


class Conv(nnx.Module):
    """Embedding -> Conv1D(128, 5, relu, valid) -> GlobalAveragePooling1D -> logit."""

    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        self.conv = nnx.Conv(EMBED, 128, kernel_size=(5,), padding="VALID", rngs=rngs)
        self.out = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        h = jax.nn.relu(self.conv(self.embed(tokens)))
        # a window is valid where all its 5 steps are
        window = jnp.cumsum(mask.astype(jnp.int32), axis=1)
        window = (window[:, 4:] - jnp.pad(window, ((0, 0), (1, 0)))[:, :-5]) == 5
        return self.out(_average(h, window))[:, 0]


def seqjax_model(name: str, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if name == "average":
        return Average(rngs)
    if name == "conv1d":
        return Conv(rngs)
    return Recurrent(name, rngs)


def loss_fn(model, batch, key):
    logits = model(batch.inputs, batch.mask)
    return (sj.train.sigmoid_binary_cross_entropy(logits, batch.targets, batch.mask),
            {"accuracy": sj.train.binary_accuracy(logits, batch.targets, batch.mask)})


# ----------------------------------------------------------------------------- Keras models


def keras_model(name: str, maxlen: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    body = {
        "simple_rnn": [layers.SimpleRNN(UNITS)],
        "lstm": [layers.LSTM(UNITS)],
        "gru": [layers.GRU(UNITS)],
        "average": [layers.GlobalAveragePooling1D(), layers.Dense(24, activation="relu")],
        "bilstm": [layers.Bidirectional(layers.LSTM(UNITS))],
        "conv1d": [layers.Conv1D(128, 5, activation="relu"), layers.GlobalAveragePooling1D()],
    }[name]
    model = keras.Sequential([keras.Input((maxlen,)), layers.Embedding(VOCAB, EMBED), *body,
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


# ----------------------------------------------------------------------------- runs


class CompileCounter:
    """Counts XLA compilations while registered (all of JAX's, Keras' included)."""

    def __init__(self):
        self.count = 0

    def __call__(self, name, duration, **kwargs):
        if name == COMPILE_EVENT:
            self.count += 1


def run_seqjax(name: str, data: dict, epochs: int, seed: int, counter: CompileCounter) -> dict:
    x_train, y_train, x_test, y_test = data[MAXLEN[name]]
    model = seqjax_model(name, seed)
    train = sj.data.BatchIterator(x_train, y_train, batch_size=BATCH, seed=seed)
    test = sj.data.BatchIterator(x_test, y_test, batch_size=BATCH, shuffle=False)
    per_epoch, ends = [], []

    def epoch_end(epoch, logs):
        per_epoch.append(counter.count)
        ends.append(time.perf_counter())

    record = sj.train.LambdaCallback(on_epoch_end=epoch_end)
    before = counter.count
    start = time.perf_counter()
    history = sj.train.fit(model, loss_fn, optax.adam(LEARNING_RATE), train, epochs=epochs,
                           validation_data=test, verbose=0, callbacks=[record])
    seconds = time.perf_counter() - start
    return _record(seconds, history.history["val_accuracy"], counter.count - before,
                   [c - before for c in per_epoch], np.diff([start, *ends]).tolist())


def run_keras(name: str, data: dict, epochs: int, seed: int, counter: CompileCounter) -> dict:
    x_train, y_train, x_test, y_test = data[MAXLEN[name]]
    import keras

    model = keras_model(name, MAXLEN[name], seed)
    ends = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    before = counter.count
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH,
                        validation_data=(x_test, y_test), verbose=0, callbacks=[record])
    seconds = time.perf_counter() - start
    return _record(seconds, history.history["val_accuracy"], counter.count - before, None,
                   np.diff([start, *ends]).tolist())


def _record(seconds, val_accuracy, compiles, compiles_by_epoch, epoch_seconds) -> dict:
    val_accuracy = [float(v) for v in val_accuracy]
    best = int(np.argmax(val_accuracy))
    return {"seconds": seconds, "val_accuracy": val_accuracy, "best": val_accuracy[best],
            "best_epoch": best + 1, "final": val_accuracy[-1], "compiles": compiles,
            "compiles_after_epoch": compiles_by_epoch, "epoch_seconds": epoch_seconds}


def load_data(smoke: bool, maxlens) -> dict:
    """``{maxlen: (x_train, y_train, x_test, y_test)}``, padded and truncated ``pre``."""
    if smoke:
        rng = np.random.default_rng(0)
        raw = {split: [rng.integers(1, VOCAB, rng.integers(5, 150)) for _ in range(n)]
               for split, n in (("train", 200), ("test", 100))}
        labels = {split: rng.integers(0, 2, len(seqs)).astype(np.int32)
                  for split, seqs in raw.items()}
    else:
        ds = sj.data.load_imdb_keras(num_words=VOCAB, progress=False)
        raw = {split: ds[split].inputs for split in ("train", "test")}
        labels = {split: np.asarray(ds[split].targets, np.int32) for split in ("train", "test")}
    out = {}
    for maxlen in sorted(set(maxlens)):
        pad = [sj.data.pad_sequences(raw[split], maxlen=maxlen, padding="pre",
                                     truncating="pre") for split in ("train", "test")]
        out[maxlen] = (pad[0], labels["train"], pad[1], labels["test"])
    return out


def bench(models, rounds: int, epochs: int, smoke: bool, seed: int = 0) -> dict:
    data = load_data(smoke, [MAXLEN[m] for m in models])
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    runs = {m: {"seqjax": [], "keras": []} for m in models}
    for round_ in range(rounds):
        for i, name in enumerate(models):
            # Alternate which framework goes first, so that neither always follows the other.
            order = ("seqjax", "keras") if (i + round_) % 2 == 0 else ("keras", "seqjax")
            for framework in order:
                run = run_seqjax if framework == "seqjax" else run_keras
                result = run(name, data, epochs, seed + round_, counter)
                runs[name][framework].append(result)
                print(f"round {round_ + 1}/{rounds} {name:10s} {framework:6s} "
                      f"{result['seconds']:7.1f} s  best val acc {result['best']:.4f} "
                      f"(epoch {result['best_epoch']})  compiles {result['compiles']}",
                      flush=True)
    jax.monitoring.unregister_event_duration_listener(counter)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": {"vocab": VOCAB, "embed": EMBED, "units": UNITS, "batch": BATCH,
                     "learning_rate": LEARNING_RATE, "epochs": epochs, "rounds": rounds,
                     "maxlen": {m: MAXLEN[m] for m in models}, "smoke": smoke,
                     "data": "synthetic" if smoke else "load_imdb_keras(num_words=10_000)"},
        "runs": runs,
        "summary": summarize(runs),
    }


def versions() -> dict[str, str]:
    import importlib.metadata
    import platform

    out = {"python": platform.python_version()}
    for name in ("seqjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "keras",
                 "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def summarize(runs: dict) -> dict:
    """Per model: the fastest round of each (the least disturbed by the machine's other load),
    the median, and the accuracy columns of the rounds' means."""
    out = {}
    for name, by in runs.items():
        row = {}
        for framework, results in by.items():
            seconds = [r["seconds"] for r in results]
            row[framework] = {
                "seconds_min": min(seconds), "seconds_median": statistics.median(seconds),
                "best": statistics.mean(r["best"] for r in results),
                "best_epoch": [r["best_epoch"] for r in results],
                "final": statistics.mean(r["final"] for r in results),
                "compiles": max(r["compiles"] for r in results),
                # the first epoch holds the compilations; the others are the steady state
                "first_epoch_seconds": min(r["epoch_seconds"][0] for r in results),
                "later_epoch_seconds": min(statistics.median(r["epoch_seconds"][1:])
                                           for r in results) if epochs_of(results) > 1 else None,
            }
        sj_row, keras_row = row["seqjax"], row["keras"]
        later = [r["compiles_after_epoch"] for r in by["seqjax"]]
        row["ratio"] = sj_row["seconds_min"] / keras_row["seconds_min"]
        row["ratio_median"] = sj_row["seconds_median"] / keras_row["seconds_median"]
        row["accuracy_gap"] = keras_row["best"] - sj_row["best"]
        row["compiles_after_first_epoch"] = max(c[-1] - c[0] for c in later)
        row["goal_reached"] = bool(row["ratio"] <= RATIO_GOAL
                                   and row["accuracy_gap"] <= ACCURACY_GOAL)
        out[name] = row
    return out


def epochs_of(results) -> int:
    return min(len(r["epoch_seconds"]) for r in results)


def table(report: dict) -> str:
    lines = [
        "| model | maxlen | Keras 3 `fit` (s) | seqjax `fit` (s) | ratio (median) | "
        "best val acc Keras / seqjax (epoch) | final val acc Keras / seqjax | "
        "compiles per `fit` seqjax / Keras (after epoch 1) | epoch 1, later epochs (s) Keras / "
        "seqjax | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["summary"].items():
        s, k = row["seqjax"], row["keras"]
        lines.append(
            f"| {name} | {report['settings']['maxlen'][name]} | {k['seconds_min']:.1f} | "
            f"{s['seconds_min']:.1f} | {row['ratio']:.2f}x ({row['ratio_median']:.2f}x) | "
            f"{k['best']:.4f} ({_epochs(k)}) / {s['best']:.4f} ({_epochs(s)}) | "
            f"{k['final']:.4f} / {s['final']:.4f} | {s['compiles']} / {k['compiles']} "
            f"({row['compiles_after_first_epoch']}) | {_epoch_times(k)} / {_epoch_times(s)} | "
            f"{'reached' if row['goal_reached'] else 'not reached'} |")
    return "\n".join(lines)


def _epoch_times(row) -> str:
    later = row["later_epoch_seconds"]
    return f"{row['first_epoch_seconds']:.2f}, " + ("-" if later is None else f"{later:.2f}")


def _epochs(row) -> str:
    return ", ".join(str(e) for e in row["best_epoch"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("SMOKE") == "1",
                        help="synthetic data, 1 epoch, 1 round (also SMOKE=1)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: experiments/results/bench_train, "
                             "a temporary folder with --smoke)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.smoke else 10)
    rounds = args.rounds or (1 if args.smoke else 2)
    out = args.out or (pathlib.Path(tempfile.mkdtemp(prefix="bench_train_smoke_"))
                       if args.smoke else RESULTS)
    report = bench(args.models, rounds, epochs, args.smoke)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_train.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "bench_train.md").write_text(table(report) + "\n")
    print(table(report))
    print(f"wrote {out / 'bench_train.json'} and {out / 'bench_train.md'}")
    return report


if __name__ == "__main__":
    main()
