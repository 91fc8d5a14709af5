"""Training benchmark: the course's IMDB models trained with seqjax ``fit`` and with Keras 3.

The setting of the course's IMDB notebooks (config: ``experiments/configs/bench_train.py``): the
top 10,000 words (``load_imdb_keras``), reviews padded and truncated ``pre`` to ``maxlen``,
Embedding(10000, 16), Adam 1e-3, binary cross-entropy, batch 32, 10 epochs, validation on the
25,000 test reviews after every epoch. Six models, each written once as a small ``nnx.Module``
from the public API (``sj.nn``, ``nnx``) and once with the same Keras layers:

  simple_rnn, lstm, gru   maxlen 32: Embedding -> SimpleRNN/LSTM/GRU(32) -> Dense(1)
  average                 maxlen 120: Embedding -> GlobalAveragePooling1D -> Dense(24, relu)
                          -> Dense(1)
  bilstm                  maxlen 120: Embedding -> Bidirectional(LSTM(32)) -> Dense(1)
  conv1d                  maxlen 120: Embedding -> Conv1D(128, 5, relu) -> GlobalAveragePooling1D
                          -> Dense(1)

Keras runs on its JAX backend without masking (Embedding without ``mask_zero``), so the padding
zeros are read as tokens; seqjax's models see the same: a dense ``BatchIterator`` gives an
all-True mask. seqjax uses defaults everywhere (``fit``'s automatic ``steps_per_execution``, the
kernels' ``backend="auto"``). The runs alternate in one process (seqjax model A, Keras model A,
Keras model B, seqjax model B, ...), each timed around the ``fit`` call alone (the models are
built before; both ``fit`` calls include their XLA compilations), and every compilation during a
``fit`` is counted (JAX's backend-compile events, Keras' included). Beside them, Adam's update of
each model's parameters is timed alone, as a floor both frameworks share.

Writes ``metrics.json`` (every run, config, versions, machine, date, goals) and ``README.md``
(the tables) to ``experiments/results/bench_train/`` (``--smoke``: ``results/smoke/``).

Run:
  make bench-train                  # 2 rounds of the 6 models, 15-25 minutes on 2 cores
  make bench-train SMOKE=1          # synthetic data, 2 epochs: checks that it runs
  .venv/bin/python experiments/bench_train.py --models lstm gru --rounds 1 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import seqjax as sj  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from common import Run, goal, load_config, markdown_table  # noqa: E402

NAME = "bench_train"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


# ----------------------------------------------------------------------------- seqjax models


class Recurrent(nnx.Module):
    """Embedding -> one recurrent layer (its last output) -> logit."""

    def __init__(self, kind: str, cfg: dict, rngs: nnx.Rngs):
        embed, units = cfg["embed"], cfg["units"]
        self.embed = nnx.Embed(cfg["vocab"], embed, rngs=rngs)
        layers = {"simple_rnn": sj.nn.SimpleRNN, "lstm": sj.nn.LSTM, "gru": sj.nn.GRU,
                  "bilstm": sj.nn.LSTM}
        self.rnn = layers[kind](embed, units, rngs=rngs)
        if kind == "bilstm":
            self.rnn = sj.nn.Bidirectional(self.rnn, rngs=rngs)
            units *= 2
        self.out = nnx.Linear(units, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        return self.out(self.rnn(self.embed(tokens), mask=mask))[:, 0]


def _average(h, mask):
    """GlobalAveragePooling1D over the valid steps ([B, T, F] -> [B, F])."""
    m = mask[..., None].astype(h.dtype)
    return (h * m).sum(1) / jnp.maximum(m.sum(1), 1.0)  # fully masked rows give 0, not NaN


class Average(nnx.Module):
    """Embedding -> GlobalAveragePooling1D -> Dense(24, relu) -> logit."""

    def __init__(self, cfg: dict, rngs: nnx.Rngs):
        self.embed = nnx.Embed(cfg["vocab"], cfg["embed"], rngs=rngs)
        self.hidden = nnx.Linear(cfg["embed"], 24, rngs=rngs)
        self.out = nnx.Linear(24, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        return self.out(jax.nn.relu(self.hidden(_average(self.embed(tokens), mask))))[:, 0]


class Conv(nnx.Module):
    """Embedding -> Conv1D(128, 5, relu, valid) -> GlobalAveragePooling1D -> logit."""

    def __init__(self, cfg: dict, rngs: nnx.Rngs):
        self.embed = nnx.Embed(cfg["vocab"], cfg["embed"], rngs=rngs)
        self.conv = nnx.Conv(cfg["embed"], 128, kernel_size=(5,), padding="VALID", rngs=rngs)
        self.out = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        h = jax.nn.relu(self.conv(self.embed(tokens)))
        valid = jnp.cumsum(mask.astype(jnp.int32), axis=1)  # a window is valid where its 5 are
        valid = (valid[:, 4:] - jnp.pad(valid, ((0, 0), (1, 0)))[:, :-5]) == 5
        return self.out(_average(h, valid))[:, 0]


def seqjax_model(name: str, cfg: dict, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if name == "average":
        return Average(cfg, rngs)
    if name == "conv1d":
        return Conv(cfg, rngs)
    return Recurrent(name, cfg, rngs)


def loss_fn(model, batch, key):
    logits = model(batch.inputs, batch.mask)
    return (sj.train.sigmoid_binary_cross_entropy(logits, batch.targets, batch.mask),
            {"accuracy": sj.train.binary_accuracy(logits, batch.targets, batch.mask)})


# ----------------------------------------------------------------------------- Keras models


def keras_model(name: str, cfg: dict, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    layers, units = keras.layers, cfg["units"]
    body = {
        "simple_rnn": [layers.SimpleRNN(units)],
        "lstm": [layers.LSTM(units)],
        "gru": [layers.GRU(units)],
        "average": [layers.GlobalAveragePooling1D(), layers.Dense(24, activation="relu")],
        "bilstm": [layers.Bidirectional(layers.LSTM(units))],
        "conv1d": [layers.Conv1D(128, 5, activation="relu"), layers.GlobalAveragePooling1D()],
    }[name]
    model = keras.Sequential([keras.Input((cfg["maxlen"][name],)),
                              layers.Embedding(cfg["vocab"], cfg["embed"]), *body,
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


# ----------------------------------------------------------------------------- runs


class CompileCounter:
    """Counts XLA compilations while registered (all of JAX's, Keras' included)."""

    def __init__(self):
        self.count = 0

    def __call__(self, name, duration, **kwargs):
        if name == COMPILE_EVENT:
            self.count += 1


def run_seqjax(name, cfg, data, seed, counter) -> dict:
    x_train, y_train, x_test, y_test = data[cfg["maxlen"][name]]
    model = seqjax_model(name, cfg, seed)
    train = sj.data.BatchIterator(x_train, y_train, batch_size=cfg["batch"], seed=seed)
    test = sj.data.BatchIterator(x_test, y_test, batch_size=cfg["batch"], shuffle=False)
    compiles, ends = [], []

    def epoch_end(epoch, logs):
        compiles.append(counter.count)
        ends.append(time.perf_counter())

    before = counter.count
    start = time.perf_counter()
    history = sj.train.fit(model, loss_fn, optax.adam(cfg["learning_rate"]), train,
                           epochs=cfg["epochs"], validation_data=test, verbose=0,
                           callbacks=[sj.train.LambdaCallback(on_epoch_end=epoch_end)])
    seconds = time.perf_counter() - start
    result = _record(seconds, history.history["val_accuracy"], counter.count - before,
                     np.diff([start, *ends]).tolist())
    result["compiles_by_epoch"] = [c - before for c in compiles]
    result["adam_seconds_per_epoch"] = adam_alone(history.train_state.params, cfg,
                                                  len(train))
    return result


def run_keras(name, cfg, data, seed, counter) -> dict:
    import keras

    x_train, y_train, x_test, y_test = data[cfg["maxlen"][name]]
    model = keras_model(name, cfg, seed)
    ends = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    before = counter.count
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=cfg["epochs"], batch_size=cfg["batch"],
                        validation_data=(x_test, y_test), verbose=0, callbacks=[record])
    seconds = time.perf_counter() - start
    return _record(seconds, history.history["val_accuracy"], counter.count - before,
                   np.diff([start, *ends]).tolist())


def _record(seconds, val_accuracy, compiles, epoch_seconds) -> dict:
    val_accuracy = [float(v) for v in val_accuracy]
    best = int(np.argmax(val_accuracy))
    return {"seconds": seconds, "val_accuracy": val_accuracy, "best": val_accuracy[best],
            "best_epoch": best + 1, "final": val_accuracy[-1], "compiles": compiles,
            "epoch_seconds": epoch_seconds}


def adam_alone(params, cfg, steps: int) -> float:
    """Seconds for ``steps`` Adam updates of ``params`` in one jitted scan: the optimizer's
    share of an epoch, the same in both frameworks (Keras' Adam updates the same parameters,
    the 10000 x 16 embedding's dense gradient included)."""
    tx = optax.adam(cfg["learning_rate"])

    @jax.jit
    def updates(params, opt_state, grads):
        def one(carry, _):
            params, opt_state = carry
            delta, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, delta), opt_state), None

        return jax.lax.scan(one, (params, opt_state), None, length=steps)[0]

    params = jax.tree.map(jnp.array, params)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    opt_state = tx.init(params)
    jax.block_until_ready(updates(params, opt_state, grads))
    start = time.perf_counter()
    jax.block_until_ready(updates(params, opt_state, grads))
    return time.perf_counter() - start


def load_data(cfg: dict, models) -> dict:
    """``{maxlen: (x_train, y_train, x_test, y_test)}``, padded and truncated ``pre``."""
    if cfg["data"] == "synthetic":
        rng = np.random.default_rng(0)
        sizes = (("train", cfg["train_examples"]), ("test", cfg["test_examples"]))
        raw = {split: [rng.integers(1, cfg["vocab"], rng.integers(5, 150)) for _ in range(n)]
               for split, n in sizes}
        labels = {split: rng.integers(0, 2, len(seqs)).astype(np.int32)
                  for split, seqs in raw.items()}
    else:
        ds = sj.data.load_imdb_keras(num_words=cfg["vocab"], progress=False)
        raw = {split: ds[split].inputs for split in ("train", "test")}
        labels = {split: np.asarray(ds[split].targets, np.int32) for split in ("train", "test")}
    out = {}
    for maxlen in sorted({cfg["maxlen"][m] for m in models}):
        pad = [sj.data.pad_sequences(raw[split], maxlen=maxlen, padding="pre",
                                     truncating="pre") for split in ("train", "test")]
        out[maxlen] = (pad[0], labels["train"], pad[1], labels["test"])
    return out


def bench(cfg: dict) -> dict:
    models = cfg["models"]
    data = load_data(cfg, models)
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    runs = {m: {"seqjax": [], "keras": []} for m in models}
    try:
        for round_ in range(cfg["rounds"]):
            for i, name in enumerate(models):
                # Alternate which framework goes first, so that neither always follows the other.
                order = ("seqjax", "keras") if (i + round_) % 2 == 0 else ("keras", "seqjax")
                for framework in order:
                    run = run_seqjax if framework == "seqjax" else run_keras
                    result = run(name, cfg, data, cfg["seed"] + round_, counter)
                    runs[name][framework].append(result)
                    print(f"round {round_ + 1}/{cfg['rounds']} {name:10s} {framework:6s} "
                          f"{result['seconds']:7.1f} s  best val acc {result['best']:.4f} "
                          f"(epoch {result['best_epoch']})  compiles {result['compiles']}",
                          flush=True)
    finally:
        jax.monitoring.unregister_event_duration_listener(counter)
    return {"runs": runs, "summary": summarize(runs, cfg)}


def summarize(runs: dict, cfg: dict) -> dict:
    """Per model and framework: the fastest round (the least disturbed by the machine's other
    load) and the median, the first epoch (with the compilations) and the later ones."""
    out = {}
    for name, by in runs.items():
        row = {}
        for framework, results in by.items():
            seconds = [r["seconds"] for r in results]
            later = [statistics.median(r["epoch_seconds"][1:]) for r in results
                     if len(r["epoch_seconds"]) > 1]
            row[framework] = {
                "seconds_min": min(seconds), "seconds_median": statistics.median(seconds),
                "best": statistics.mean(r["best"] for r in results),
                "best_epochs": [r["best_epoch"] for r in results],
                "final": statistics.mean(r["final"] for r in results),
                "compiles": max(r["compiles"] for r in results),
                "first_epoch_seconds": min(r["epoch_seconds"][0] for r in results),
                "later_epoch_seconds": min(later) if later else None,
            }
        sj_row = row["seqjax"]
        sj_row["compiles_after_first_epoch"] = max(
            r["compiles_by_epoch"][-1] - r["compiles_by_epoch"][0] for r in by["seqjax"])
        sj_row["adam_seconds_per_epoch"] = min(r["adam_seconds_per_epoch"] for r in by["seqjax"])
        row["ratio"] = sj_row["seconds_min"] / row["keras"]["seconds_min"]
        row["ratio_median"] = sj_row["seconds_median"] / row["keras"]["seconds_median"]
        keras_later = row["keras"]["later_epoch_seconds"]
        row["later_epoch_ratio"] = (sj_row["later_epoch_seconds"] / keras_later
                                    if keras_later else None)
        row["accuracy_gap_points"] = 100 * (row["keras"]["best"] - sj_row["best"])
        goals = cfg["goals"]
        row["reached"] = bool(row["ratio"] <= goals["ratio"]
                              and row["accuracy_gap_points"] <= goals["accuracy_points"])
        out[name] = row
    return out


def set_goals(cfg: dict, run: Run) -> None:
    goals, summary = cfg["goals"], run.results["summary"]
    for name, row in summary.items():
        run.goals.append(goal(
            f"{name}: seqjax fit time / Keras fit time",
            f"<= {goals['ratio']}x (stretch {goals['stretch_ratio']}x), best val acc within "
            f"{goals['accuracy_points']:g} point",
            f"{row['ratio']:.2f}x, {row['seqjax']['best']:.4f} vs {row['keras']['best']:.4f}",
            row["reached"]))
    compiles = {n: r["seqjax"]["compiles"] for n, r in summary.items()}
    later = {n: r["seqjax"]["compiles_after_first_epoch"] for n, r in summary.items()}
    run.goals.append(goal(
        "compilations per seqjax fit", f"<= {goals['compiles']}, none after the first epoch",
        f"{max(compiles.values())} at most, {max(later.values())} after the first epoch",
        max(compiles.values()) <= goals["compiles"] and max(later.values()) == 0))


def readme(cfg: dict, run: Run) -> str:
    summary = run.results["summary"]
    rounds = cfg["rounds"]

    def epochs(row):
        return ", ".join(str(e) for e in row["best_epochs"])

    rows = [[name, cfg["maxlen"][name], f"{r['keras']['seconds_min']:.1f}",
             f"{r['seqjax']['seconds_min']:.1f}",
             f"**{r['ratio']:.2f}x** ({r['ratio_median']:.2f}x)",
             f"{r['keras']['best']:.4f} ({epochs(r['keras'])}) / "
             f"{r['seqjax']['best']:.4f} ({epochs(r['seqjax'])})",
             f"{r['keras']['final']:.4f} / {r['seqjax']['final']:.4f}",
             f"{r['seqjax']['compiles']} ({r['seqjax']['compiles_after_first_epoch']}) / "
             f"{r['keras']['compiles']}",
             "yes" if r["reached"] else "**no**"] for name, r in summary.items()]
    split = []
    for name, r in summary.items():
        k, s = r["keras"], r["seqjax"]
        later = r["later_epoch_ratio"]
        split.append([
            name, f"{k['first_epoch_seconds']:.2f} / {s['first_epoch_seconds']:.2f}",
            f"{_fmt(k['later_epoch_seconds'])} / {_fmt(s['later_epoch_seconds'])}",
            "-" if later is None else f"{later:.2f}x",
            f"{s['adam_seconds_per_epoch']:.2f}"])
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else '**no**'} |\n" for g in run.goals)
    return (
        run.header("Training at the speed of the hardware: seqjax `fit` against Keras 3",
                   "make bench-train")
        + f"\nThe course's IMDB setting (top {cfg['vocab']:,} words, `pre` padding and "
        f"truncation, Embedding({cfg['vocab']}, {cfg['embed']}), Adam {cfg['learning_rate']}, "
        f"batch {cfg['batch']}, {cfg['epochs']} epochs, validation on the 25,000 test reviews "
        f"after every epoch), {rounds} round(s) per model and framework, alternating. Keras "
        f"{run.results['keras_version']} on JAX; seqjax with defaults (`sj.train.fit`, "
        "`backend=\"auto\"`). Times are of the `fit` call, compilation included: the fastest "
        "round (the median in brackets), since the machine is shared and other load only adds "
        "time. Accuracies are the rounds' means; epochs of the best in brackets.\n"
        "\n## Goals\n\n| goal | target | reached | ok |\n|---|---|---|---|\n" + goals
        + "\n## Wall time of `fit` and validation accuracy\n\n"
        + markdown_table(["model", "maxlen", "Keras 3 (s)", "seqjax (s)", "ratio",
                          "best val acc Keras / seqjax", "final val acc Keras / seqjax",
                          "compilations seqjax (after epoch 1) / Keras", "goal"], rows)
        + "\n## Where the time goes\n\n"
        "The first epoch holds each framework's compilations; the later epochs are the steady "
        "state (median of epochs 2 on, fastest round). Adam alone: one epoch of the optimizer's "
        "update of the model's parameters (the dense gradient of the 10000 x 16 embedding "
        "included), timed on its own in a jitted scan; both frameworks pay it every step.\n\n"
        + markdown_table(["model", "epoch 1 (s) Keras / seqjax", "later epochs (s) Keras / "
                          "seqjax", "later epochs ratio", "Adam alone per epoch (s)"], split)
        + "\n" + bounds(cfg, summary)
    )


def bounds(cfg: dict, summary: dict) -> str:
    """What limits the ratio, from this run's numbers."""
    lines = []
    for name, r in summary.items():
        s, k = r["seqjax"], r["keras"]
        later = s["later_epoch_seconds"]
        if later is None or k["later_epoch_seconds"] is None:
            continue
        compile_s = max(s["first_epoch_seconds"] - later, 0.0)
        floor = later * cfg["epochs"] / k["seconds_min"]
        lines.append(
            f"- {name}: {compile_s:.1f} s of tracing and compiling, then {cfg['epochs']} epochs of "
            f"{later:.2f} s; the epochs alone are {floor:.2f}x Keras' whole `fit`, of which "
            f"Adam's update is {s['adam_seconds_per_epoch'] / later:.0%}.")
    return (
        "Every chunk of `fit` runs its steps in one call, so what is left per epoch is the "
        "steps' arithmetic: the same XLA programs as Keras' for the embedding, the dense layers, "
        "Adam and the convolution, and seqjax's kernels for the recurrent layers (`auto`: the "
        "native C++ kernels for LSTM and GRU, whose two threads meet at a spin barrier every time "
        "step, and so wait whenever another process holds the other core of this shared "
        "machine). With compilation free, `fit` would take the epochs alone:\n\n"
        + "\n".join(lines) + "\n\n"
        "The convolution is a bound outside this code: XLA:CPU turns a convolution's weight "
        "gradient into its fast Eigen call only in a program's top level, so inside a chunk's "
        "loop a Conv1D(128, 5) train step took 200 ms instead of 4; `fit` therefore runs such "
        "steps one per call, and their time is the same convolution arithmetic Keras runs.\n"
    )


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("SMOKE", "") not in ("", "0"),
                        help="synthetic data, 2 epochs, 1 round (also SMOKE=1)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: experiments/results/bench_train/, or "
                             "experiments/results/smoke/bench_train/ with --smoke)")
    parser.add_argument("--models", nargs="+", default=None, help="a subset of the six")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> Run:
    args = parse_args(argv)
    cfg = load_config(NAME, args.smoke)
    for key in ("models", "rounds", "epochs"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    unknown = set(cfg["models"]) - set(cfg["maxlen"])
    if unknown:
        raise ValueError(f"--models: unknown {sorted(unknown)}; known: {sorted(cfg['maxlen'])}")
    run = Run(NAME, args, cfg)
    print(f"bench_train: results in {run.dir}", flush=True)
    import keras

    run.results = {**bench(cfg), "keras_version": keras.__version__}
    set_goals(cfg, run)
    out = run.write(readme(cfg, run))
    print((out / "README.md").read_text())
    return run


if __name__ == "__main__":
    main(sys.argv[1:])
