"""The course's IMDB experiments: SimpleRNN vs LSTM vs GRU, then the subword models, overfitting.

1. The course's comparison, as the course sets it: the top 10,000 words, reviews padded and
   truncated to 32 ids at the front (`pre`), Embedding(10000, 16) -> SimpleRNN / LSTM / GRU(32)
   -> Dense(1), Adam, batch 32, 10 epochs, validating on the 25,000 test reviews. Each cell runs
   as the course's Keras code does (no `mask_zero`: the RNN reads the padding) and with the
   padding masked.
2. The other course models on an 8k subword vocabulary (TFDS `imdb_reviews/subwords8k`'s size,
   here a byte-level BPE trained on the training reviews): Embedding(64) -> BiLSTM(64) ->
   Dense(64, relu) -> Dense(1); the stacked BiLSTM(64) -> BiLSTM(32); Conv1D(128, 5) +
   GlobalAveragePooling1D; GlobalAveragePooling1D alone; 50 epochs, reported at 10 and 50.

Every model gets a loss/val_loss and accuracy/val_accuracy plot: the course's overfitting story.

Run:       make imdb-course        (or: .venv/bin/python experiments/imdb_course.py [--smoke])
Expected:  see experiments/configs/imdb_course.py; results in experiments/results/imdb_course/.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import optax
from flax import nnx

import seqjax as sj
from common import goal, markdown_table, run_experiment

NAME = "imdb_course"
LABELS = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def mask_zero_loss(model, batch, key):
    """The classifier's loss with the mask taken from the ids, as Keras' ``mask_zero`` does."""
    tokens, _, labels = batch
    return sj.models.Classifier.loss_fn(model, (tokens, tokens != 0, labels), key)


def summarize(history: dict, epochs: list[int] | None = None) -> dict:
    val = history["val_accuracy"]
    best = int(np.argmax(val))
    out = {
        "best_val_accuracy": val[best], "best_epoch": best + 1, "final_val_accuracy": val[-1],
        "final_accuracy": history["accuracy"][-1],
        "final_gap": history["accuracy"][-1] - val[-1],  # train minus validation accuracy
        "min_val_loss_epoch": int(np.argmin(history["val_loss"])) + 1,
    }
    for e in epochs or []:
        if e <= len(val):
            out[f"val_accuracy_at_{e}"] = val[e - 1]
            out[f"accuracy_at_{e}"] = history["accuracy"][e - 1]
    return out


def train(model, loss_fn, train_batches, test_batches, epochs, lr, seed, desc):
    print(f"  {desc}", flush=True)
    start = time.perf_counter()
    history = sj.train.fit(model, loss_fn, optax.adam(lr), train_batches, epochs=epochs,
                           validation_data=test_batches, seed=seed)
    return history.history, time.perf_counter() - start


def take(split, count):
    inputs, targets = split.inputs, split.targets
    return (inputs, targets) if count is None else (inputs[:count], targets[:count])


def run_rnn_comparison(cfg, run):
    c = cfg["rnn_comparison"]
    ds = sj.data.load_imdb_keras(num_words=c["num_words"], source=run.source)
    splits = {}
    for name in ("train", "test"):
        inputs, targets = take(ds.splits[name], c.get("max_examples"))
        ids = sj.data.pad_sequences(inputs, maxlen=c["maxlen"], padding="pre", truncating="pre")
        splits[name] = (ids.astype(np.int32), np.asarray(targets, np.int32))
    results = {}
    for use_mask in c["use_mask"]:
        for cell in c["cells"]:
            key = f"{cell}{'' if not use_mask else '_masked'}"
            model = sj.models.Classifier(
                vocab_size=c["num_words"], embed_dim=c["embed_dim"], encoder=cell,
                units=c["units"], use_mask=use_mask, rngs=nnx.Rngs(cfg["seed"]))
            train_batches = sj.data.BatchIterator(*splits["train"], batch_size=c["batch"],
                                                  seed=cfg["seed"])
            test_batches = sj.data.BatchIterator(*splits["test"], batch_size=1000,
                                                 shuffle=False)
            history, seconds = train(
                model, mask_zero_loss, train_batches, test_batches, c["epochs"], c["lr"],
                cfg["seed"], f"{LABELS[cell]}(32){' masked' if use_mask else ''}")
            results[key] = {"cell": cell, "use_mask": use_mask, "seconds": round(seconds, 1),
                            "params": sj.models.count_params(model), "history": history,
                            **summarize(history)}
            sj.train.plot_history(history, run.path(f"curves_{key}.png"),
                                  title_prefix=f"{LABELS[cell]}(32)"
                                  f"{', masked' if use_mask else ''}:")
    run.results["rnn_comparison"] = results


def run_subword_models(cfg, run):
    c = cfg["subword_models"]
    ds = sj.data.load_imdb(
        tokenizer=sj.data.SubwordTokenizer(target_vocab_size=c["vocab_size"]), source=run.source)
    vocab_size = ds.tokenizer.vocab_size
    splits = {}
    for name in ("train", "test"):
        inputs, targets = take(ds.splits[name], c.get("max_examples"))
        inputs = [np.asarray(x[: c["maxlen"]], np.int32) for x in inputs]  # first maxlen ids
        splits[name] = (inputs, np.asarray(targets, np.int32))
    lengths = np.array([len(x) for x in splits["train"][0]])
    results = {"vocab_size": vocab_size, "train_length_mean": float(lengths.mean()),
               "models": {}}
    for key, arch in c["models"].items():
        arch = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()}
        model = sj.models.Classifier(vocab_size=vocab_size, rngs=nnx.Rngs(cfg["seed"]), **arch)
        train_batches = sj.data.BatchIterator(
            *splits["train"], batch_size=c["batch"], seed=cfg["seed"], bucket_by_length=True,
            pad_to_multiple=32)
        test_batches = sj.data.BatchIterator(*splits["test"], batch_size=500, shuffle=False,
                                             pad_to=c["maxlen"])
        history, seconds = train(model, sj.models.Classifier.loss_fn, train_batches,
                                 test_batches, c["epochs"], c["lr"], cfg["seed"], key)
        results["models"][key] = {"architecture": arch, "seconds": round(seconds, 1),
                                  "params": sj.models.count_params(model), "history": history,
                                  **summarize(history, c["report_epochs"])}
        sj.train.plot_history(history, run.path(f"curves_{key}.png"), title_prefix=f"{key}:")
    run.results["subword_models"] = results


def plot_comparison(cfg, run):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(("val_accuracy", "val_loss")):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in run.results["rnn_comparison"].values():
            values = r["history"][metric]
            style = "-" if not r["use_mask"] else "--"
            ax.plot(range(1, len(values) + 1), values, "o" + style,
                    label=LABELS[r["cell"]] + (" masked" if r["use_mask"] else ""))
        ax.set(xlabel="epoch", ylabel=metric, title=f"IMDB, top 10k words, maxlen 32: {metric}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.path("rnn_comparison.png"), dpi=100)


def set_goals(cfg, run):
    anchor = cfg["keras_anchor"]
    for cell in cfg["rnn_comparison"]["cells"]:
        r = run.results["rnn_comparison"].get(cell)
        if r is None or cell not in anchor:
            continue
        want = anchor[cell]["best_val_accuracy"]
        run.goals.append(goal(
            f"{LABELS[cell]}(32), course setting: best validation accuracy",
            f"within 1 point of Keras 3's {want:.3f}",
            f"{r['best_val_accuracy']:.3f} (epoch {r['best_epoch']}; "
            f"Keras: epoch {anchor[cell]['best_epoch']})",
            abs(r["best_val_accuracy"] - want) <= 0.01, part="rnn_comparison"))


def readme(cfg, run) -> str:
    c, s = cfg["rnn_comparison"], cfg["subword_models"]
    anchor = cfg["keras_anchor"]
    rows = []
    for r in run.results["rnn_comparison"].values():
        a = anchor.get(r["cell"], {}) if not r["use_mask"] else {}
        rows.append([
            LABELS[r["cell"]] + (" (padding masked)" if r["use_mask"] else ""),
            r["params"], f"{r['best_val_accuracy']:.3f}", r["best_epoch"],
            f"{r['final_val_accuracy']:.3f}", f"{r['final_gap']:+.3f}",
            f"{a['best_val_accuracy']:.3f} / {a['final_val_accuracy']:.3f}" if a else "",
            f"{r['seconds']:.0f} s"])
    sub = run.results["subword_models"]
    e1, e2 = s["report_epochs"]
    sub_rows = [[key, m["params"], f"{m[f'val_accuracy_at_{e1}']:.3f}",
                 f"{m[f'val_accuracy_at_{e2}']:.3f}", f"{m['best_val_accuracy']:.3f}",
                 m["best_epoch"], m["min_val_loss_epoch"], f"{m['final_gap']:+.3f}",
                 f"{m['seconds'] / 60:.1f} min"] for key, m in sub["models"].items()]
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    curves = "\n".join(f"![{key}](curves_{key}.png)" for key in run.results["rnn_comparison"])
    sub_curves = "\n".join(f"![{key}](curves_{key}.png)" for key in sub["models"])
    return (
        run.header("IMDB, the course's experiments", "make imdb-course")
        + "\n## Goals\n\n| goal | target | reached | met |\n|---|---|---|---|\n" + goals
        + f"\n## SimpleRNN vs LSTM vs GRU (top {c['num_words']:,} words, `pre` padding and "
        f"truncation to {c['maxlen']}, Embedding({c['num_words']}, {c['embed_dim']}) -> "
        f"RNN({c['units']}) -> Dense(1), Adam {c['lr']}, batch {c['batch']}, {c['epochs']} "
        "epochs, validation on the 25k test reviews)\n\n"
        "The gap is the last epoch's training minus validation accuracy.\n\n"
        + markdown_table(["model", "params", "best val acc", "epoch of best", "final val acc",
                          "train - val (final)", "Keras 3: best / final", "fit time"], rows)
        + "\n![comparison](rnn_comparison.png)\n\n" + curves + "\n"
        + f"\n## Subword models ({sub['vocab_size']:,} byte-level BPE subwords trained on the "
        f"training reviews, first {s['maxlen']} subwords of each review (mean length "
        f"{sub['train_length_mean']:.0f}), batch {s['batch']}, Adam {s['lr']}, {s['epochs']} "
        "epochs)\n\n"
        + markdown_table(["model", "params", f"val acc @ {e1}", f"val acc @ {e2}", "best",
                          "epoch of best", "epoch of min val loss", "train - val (final)",
                          "fit time"], sub_rows)
        + "\n" + sub_curves + "\n"
    )


PARTS = {"rnn_comparison": run_rnn_comparison, "subword_models": run_subword_models}


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme, plots=plot_comparison,
                          tfds=True)


if __name__ == "__main__":
    main(sys.argv[1:])
