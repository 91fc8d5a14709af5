"""Why gates matter, measured: long-range tasks, vanishing and exploding gradients.

1. The adding problem (Hochreiter & Schmidhuber 1997): two marked numbers among T, predict their
   sum. Predicting the mean gives MSE 1/6 = 0.167. SimpleRNN, LSTM, GRU and minGRU at
   T = 50, 100, 200, 400, each with the same hidden size, optimiser and step budget.
2. The copy task: remember S symbols over a delay of T blanks and reproduce them after a
   delimiter. Ignoring the symbols scores S log(alphabet) / (T + 2S) nats per step.
3. Vanishing gradients: the norm of dL/dx_t against the distance from the end of the sequence,
   per cell, for untrained models and for the models trained on the adding problem.
4. Exploding gradients: a ReLU SimpleRNN whose recurrent matrix is 1.05 I (an IRNN scaled past
   1), trained by SGD on the adding problem with and without gradient clipping (Pascanu et al.
   2013).

Run:       make longrange          (or: .venv/bin/python experiments/longrange.py [--smoke])
Expected:  LSTM and GRU MSE < 0.01 on adding at T = 400; SimpleRNN near 0.167 from T >= 150; the
           unclipped exploding run diverges (NaN) while the clipped one trains. Config and goals in
           experiments/configs/longrange.py; results in experiments/results/longrange/.
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import seqjax as sj
from common import goal, markdown_table, run_experiment

NAME = "longrange"
BASELINE_MSE = 1.0 / 6.0
CELLS = {"simple_rnn": sj.simple_rnn, "lstm": sj.lstm, "gru": sj.gru, "min_gru": sj.min_gru}
LABELS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU", "min_gru": "minGRU"}


class Regressor(nnx.Module):
    """Many-to-one: a recurrent layer's last output -> one number."""

    def __init__(self, cell: sj.Cell, input_size: int, rngs: nnx.Rngs):
        self.rnn = sj.nn.RNN(cell, input_size, rngs=rngs)
        self.out = nnx.Linear(cell.spec.hidden_size, 1, rngs=rngs)

    def __call__(self, xs, mask=None):
        return self.out(self.rnn(xs, mask=mask))[:, 0]


class Copier(nnx.Module):
    """Many-to-many aligned: embedding -> recurrent layer -> a symbol per step."""

    def __init__(self, cell: sj.Cell, vocab_size: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab_size, 16, rngs=rngs)
        self.rnn = sj.nn.RNN(cell, 16, rngs=rngs, return_sequences=True)
        self.out = nnx.Linear(cell.spec.hidden_size, vocab_size, rngs=rngs)

    def __call__(self, tokens, mask=None):
        return self.out(self.rnn(self.embed(tokens), mask=mask))


def mse_loss(model, batch, key):
    prediction = model(batch.inputs, batch.mask)
    return sj.train.masked_mean((prediction - batch.targets) ** 2,
                                sj.train.example_mask(batch.mask))


def make_copy_loss(num_symbols: int):
    def copy_loss(model, batch, key):
        logits = model(batch.inputs, batch.mask)
        recall = logits[:, -num_symbols:]
        return sj.train.sequence_loss(logits, batch.targets, batch.mask), {
            "symbol_accuracy": sj.train.accuracy(recall, batch.targets[:, -num_symbols:])}

    return copy_loss


def optimizer(lr: float, clip_norm: float | None, sgd: bool = False):
    base = optax.sgd(lr) if sgd else optax.adam(lr)
    return base if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), base)


def train(model, loss_fn, data, test, task_cfg, seed, desc, callbacks=(), sgd=False,
          clip_norm="config"):
    clip = task_cfg["clip_norm"] if clip_norm == "config" else clip_norm
    inputs, targets = data
    batches = sj.data.BatchIterator(inputs, targets, batch_size=task_cfg["batch"], seed=seed)
    test_batches = sj.data.BatchIterator(*test, batch_size=500, shuffle=False)
    print(f"  {desc}", flush=True)
    start = time.perf_counter()
    history = sj.train.fit(model, loss_fn, optimizer(task_cfg["lr"], clip, sgd), batches,
                           epochs=task_cfg["epochs"],
                           validation_data=test_batches, callbacks=list(callbacks), seed=seed)
    return history.history, time.perf_counter() - start


def run_adding(cfg, run):
    task = cfg["adding"]
    results, trained = {}, {}
    for length in cfg["lengths"]:
        data = sj.data.adding_problem(task["train_examples"], length, seed=cfg["seed"])
        test = sj.data.adding_problem(task["test_examples"], length, seed=cfg["seed"] + 1)
        for name in cfg["cells"]:
            model = Regressor(CELLS[name](cfg["hidden"]), 2, nnx.Rngs(cfg["seed"]))
            history, seconds = train(model, mse_loss, data, test, task, cfg["seed"],
                                     f"adding T={length} {LABELS[name]}")
            results.setdefault(name, {})[str(length)] = {
                "test_mse": history["val_loss"][-1], "best_test_mse": min(history["val_loss"]),
                "seconds": round(seconds, 1), "history": history}
            if length == cfg["gradients"]["length"]:
                trained[name] = model
    run.results["adding"] = results
    return trained


def run_copy(cfg, run):
    task = cfg["copy"]
    s, alphabet = task["num_symbols"], task["alphabet_size"]
    results = {}
    for length in cfg["lengths"]:
        data = sj.data.copy_task(task["train_examples"], length, seed=cfg["seed"],
                                 num_symbols=s, alphabet_size=alphabet)
        test = sj.data.copy_task(task["test_examples"], length, seed=cfg["seed"] + 1,
                                 num_symbols=s, alphabet_size=alphabet)
        baseline = s * math.log(alphabet) / (length + 2 * s)
        for name in cfg["cells"]:
            model = Copier(CELLS[name](cfg["hidden"]), alphabet + 2, nnx.Rngs(cfg["seed"]))
            history, seconds = train(model, make_copy_loss(s), data, test, task, cfg["seed"],
                                     f"copy T={length} {LABELS[name]}")
            results.setdefault(name, {})[str(length)] = {
                "test_loss": history["val_loss"][-1], "baseline_loss": baseline,
                "symbol_accuracy": history["val_symbol_accuracy"][-1],
                "seconds": round(seconds, 1), "history": history}
    run.results["copy"] = results


def gradient_norms(model, xs, ys):
    """``||dL/dx_t||`` averaged over the batch, for every t: [T]."""
    def loss(inputs):
        return jnp.mean((model(inputs) - ys) ** 2)

    grads = jax.jit(jax.grad(loss))(xs)
    return np.asarray(jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=0))


def run_gradients(cfg, run, trained):
    g = cfg["gradients"]
    xs, ys = sj.data.adding_problem(g["batch"], g["length"], seed=cfg["seed"] + 2)
    out = {}
    for name in cfg["cells"]:
        fresh = Regressor(CELLS[name](cfg["hidden"]), 2, nnx.Rngs(cfg["seed"]))
        out[name] = {"init": gradient_norms(fresh, xs, ys).tolist()}
        if name in trained:
            out[name]["trained"] = gradient_norms(trained[name], xs, ys).tolist()
    run.results["gradients"] = {"length": g["length"], "norms": out}


def run_adding_and_gradients(cfg, run):
    run_gradients(cfg, run, run_adding(cfg, run))


def run_exploding(cfg, run):
    e = cfg["exploding"]
    task = {"batch": cfg["adding"]["batch"], **e}
    data = sj.data.adding_problem(e["train_examples"], e["length"], seed=cfg["seed"])
    test = sj.data.adding_problem(cfg["adding"]["test_examples"], e["length"],
                                  seed=cfg["seed"] + 1)
    out = {}
    for clip in (None, e["clip_norm"]):
        cell = sj.simple_rnn(cfg["hidden"], activation="relu")
        model = Regressor(cell, 2, nnx.Rngs(cfg["seed"]))
        params = model.rnn.params  # IRNN (Le et al. 2015) with the identity scaled past 1
        model.rnn.set_params(params._replace(
            w_h=e["recurrent_scale"] * jnp.eye(cfg["hidden"], dtype=params.w_h.dtype)))
        label = "without clipping" if clip is None else f"clip_by_global_norm({clip})"
        history, seconds = train(model, mse_loss, data, test, task, cfg["seed"],
                                 f"exploding SimpleRNN(relu), {label}", sgd=True,
                                 clip_norm=clip, callbacks=[sj.train.TerminateOnNaN()])
        out["clipped" if clip else "unclipped"] = {
            "label": label, "history": history, "seconds": round(seconds, 1),
            "diverged": any(not math.isfinite(v) for v in history["loss"])}
    run.results["exploding"] = out


def plot(cfg, run):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def figure(width, height):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        return fig

    lengths = cfg["lengths"]
    fig = figure(11, 4)
    ax = fig.add_subplot(1, 2, 1)
    for name, per_t in run.results["adding"].items():
        ax.plot(lengths, [per_t[str(t)]["test_mse"] for t in lengths], "o-", label=LABELS[name])
    ax.axhline(BASELINE_MSE, color="gray", ls="--", label="predict the mean")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="test MSE",
           title="Adding problem")
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    for name, per_t in run.results["copy"].items():
        ax.plot(lengths, [per_t[str(t)]["symbol_accuracy"] for t in lengths], "o-",
                label=LABELS[name])
    ax.axhline(1 / cfg["copy"]["alphabet_size"], color="gray", ls="--", label="chance")
    ax.set(xscale="log", xlabel="delay T", ylabel="accuracy on the recalled symbols",
           title=f"Copy task ({cfg['copy']['num_symbols']} symbols)", ylim=(0, 1.02))
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path("tasks.png"), dpi=100)

    grads = run.results["gradients"]
    fig = figure(11, 4)
    for i, when in enumerate(("init", "trained")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, norms in grads["norms"].items():
            if when in norms:
                values = np.asarray(norms[when])[::-1]  # distance from the end: 0, 1, ...
                ax.plot(np.arange(len(values)), np.maximum(values, 1e-30), label=LABELS[name])
        ax.set(yscale="log", xlabel="distance from the end of the sequence (T - 1 - t)",
               ylabel="mean ||dL/dx_t||",
               title=("untrained" if when == "init" else "trained on adding")
               + f", T = {grads['length']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(run.path("gradients.png"), dpi=100)

    fig = figure(11, 4)
    curves = [("adding", "val_loss", "test MSE", lengths[-1])]
    for i, (task, key, ylabel, length) in enumerate(curves):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, per_t in run.results[task].items():
            ax.plot(per_t[str(length)]["history"][key], "o-", label=LABELS[name])
        ax.axhline(BASELINE_MSE, color="gray", ls="--")
        ax.set(yscale="log", xlabel="epoch", ylabel=ylabel, title=f"Adding, T = {length}")
        ax.legend()
    ax = fig.add_subplot(1, 2, 2)
    for result in run.results["exploding"].values():
        ax.plot(result["history"]["loss"], "o-", label=result["label"])
    ax.set(yscale="log", xlabel="epoch", ylabel="training MSE",
           title="ReLU SimpleRNN, recurrent radius "
           f"{cfg['exploding']['recurrent_scale']}, SGD")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path("curves.png"), dpi=100)


def readme(cfg, run) -> str:
    lengths = cfg["lengths"]
    adding = run.results["adding"]
    copy = run.results["copy"]
    rows = [[LABELS[n]] + [f"{adding[n][str(t)]['test_mse']:.4f}" for t in lengths]
            for n in cfg["cells"]]
    copy_rows = [[LABELS[n]] + [f"{copy[n][str(t)]['symbol_accuracy']:.3f} "
                                f"({copy[n][str(t)]['test_loss']:.3f} / "
                                f"{copy[n][str(t)]['baseline_loss']:.3f})" for t in lengths]
                 for n in cfg["cells"]]
    grads = run.results["gradients"]
    grad_rows = []
    for n in cfg["cells"]:
        norms = np.asarray(grads["norms"][n]["init"])
        trained = np.asarray(grads["norms"][n].get("trained", [np.nan]))
        grad_rows.append([LABELS[n], f"{norms[-1]:.2e}", f"{norms[len(norms) // 2]:.2e}",
                          f"{norms[0]:.2e}", f"{norms[0] / max(norms[-1], 1e-38):.1e}",
                          f"{trained[0] / max(trained[-1], 1e-38):.1e}"])
    exploding = run.results["exploding"]
    exp_rows = [[r["label"], "yes" if r["diverged"] else "no",
                 f"{r['history']['loss'][-1]:.4g}", f"{r['history']['val_loss'][-1]:.4g}"]
                for r in exploding.values()]
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    a, c = cfg["adding"], cfg["copy"]
    return (
        run.header("Long-range dependencies: adding, copy, vanishing and exploding gradients",
                   "make longrange")
        + "\n## Goals\n\n| goal | target | reached | ok |\n|---|---|---|---|\n" + goals
        + f"\n## Adding problem: test MSE after {a['epochs']} epochs of {a['train_examples']} "
        f"sequences in batches of {a['batch']} (baseline {BASELINE_MSE:.3f})\n\n"
        f"{cfg['hidden']} hidden units, Adam {a['lr']}, clip_by_global_norm({a['clip_norm']}).\n\n"
        + markdown_table(["cell"] + [f"T = {t}" for t in lengths], rows)
        + f"\n## Copy task: accuracy on the {c['num_symbols']} recalled symbols (test loss / "
        "loss of ignoring the symbols, nats per step)\n\n"
        + markdown_table(["cell"] + [f"T = {t}" for t in lengths], copy_rows)
        + f"\n![adding and copy](tasks.png)\n\n## Vanishing gradients: mean ||dL/dx_t|| of "
        f"untrained models, T = {grads['length']}\n\n"
        "At initialisation every cell's gradient fades with the distance from the end (the "
        "gated cells' forget and update gates start half-closed). Training on the adding "
        "problem opens the gates: the last column is the same ratio for the models trained "
        f"at T = {grads['length']} above.\n\n"
        + markdown_table(["cell", "last step", "middle", "first step", "first / last",
                          "first / last, trained"], grad_rows)
        + "\n![gradient norms](gradients.png)\n\n## Exploding gradients: ReLU SimpleRNN, "
        f"recurrent spectral radius {cfg['exploding']['recurrent_scale']}, SGD "
        f"{cfg['exploding']['lr']}, T = {cfg['exploding']['length']}\n\n"
        + markdown_table(["gradients", "diverged", "final train MSE", "final test MSE"],
                         exp_rows)
        + "\n![curves](curves.png)\n"
    )


def set_goals(cfg, run):
    adding = run.results["adding"]
    longest = str(cfg["lengths"][-1])
    gated = {n: adding[n][longest]["test_mse"] for n in ("lstm", "gru") if n in adding}
    a = cfg["adding"]
    ok = all(v < 0.01 for v in gated.values())
    tried = (f" (tried: {cfg['hidden']} units, forget-gate bias 1, Adam {a['lr']}, clipping at "
             f"{a['clip_norm']}, {a['epochs']} epochs of {a['train_examples']:,} sequences, as "
             "in experiments/configs/longrange.py)")
    run.goals.append(goal(
        f"LSTM and GRU on adding at T = {longest}", "test MSE < 0.01",
        ", ".join(f"{LABELS[n]} {v:.4f}" for n, v in gated.items()) + ("" if ok else tried),
        ok, part="adding"))
    if "simple_rnn" in adding:
        far = {t: adding["simple_rnn"][str(t)]["test_mse"] for t in cfg["lengths"] if t >= 150}
        run.goals.append(goal(
            "SimpleRNN on adding from T >= 150", "near the 0.167 baseline (MSE > 0.1)",
            ", ".join(f"T={t}: {v:.3f}" for t, v in far.items()) or "no such T in the config",
            bool(far) and all(v > 0.1 for v in far.values()), part="adding"))
    exploding = run.results["exploding"]
    run.goals.append(goal(
        "exploding gradients: clipping", "unclipped diverges (NaN), clipped stays finite",
        f"unclipped diverged: {exploding['unclipped']['diverged']}, "
        f"clipped diverged: {exploding['clipped']['diverged']}",
        exploding["unclipped"]["diverged"] and not exploding["clipped"]["diverged"],
        part="exploding"))


PARTS = {"adding": run_adding_and_gradients, "copy": run_copy,
         "exploding": run_exploding}  # adding also measures the gradients


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme, plots=plot)


if __name__ == "__main__":
    main(sys.argv[1:])
