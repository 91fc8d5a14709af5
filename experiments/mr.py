"""MR sentence polarity: BiLSTM, BiGRU and Kim's CNN under 10-fold cross-validation.

MR (Pang & Lee 2005) has 10,662 movie-review snippets, half positive, and no official split: the
usual protocol is 10-fold cross-validation. For each fold of ``sj.data.load_mr`` (seeded), each
model trains on the other nine folds (10% of them held out to pick the epoch that is tested),
with random word embeddings, and is tested on the fold. The table gives the mean test accuracy
over the folds and its standard deviation.

Run:      make mr                    (SMOKE=1 make mr: two folds of tiny data, same code path)
Config:   experiments/configs/mr.py (its docstring gives the expected result)
Results:  experiments/results/mr/
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import seqjax as sj
from common import binary_loss_fn, goal, markdown_table, plot_runs, run_experiment

NAME = "mr"
LABELS = {"bilstm": "BiLSTM", "bigru": "BiGRU", "kim_cnn": "Kim CNN-rand"}
PUBLISHED = {"bilstm": 79.3, "bigru": None, "kim_cnn": 76.1}
POOLINGS = ("last", "max", "mean_max")  # of a recurrent encoder's outputs


class SentenceClassifier(nnx.Module):
    """Embedding -> dropout -> encoder -> dropout -> Dense(1).

    The encoder is a bidirectional LSTM/GRU (``pooling``: the last valid output of each
    direction, the max over the valid steps, or their mean and max) or Kim's
    CNN (a convolution per width, ReLU, max over the windows inside the sentence, concatenated).
    """

    def __init__(self, vocab_size: int, m: dict, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab_size, m["embed_dim"], rngs=rngs)
        self.dropout = nnx.Dropout(m["dropout"], rngs=rngs)
        self.kernel_sizes = tuple(m.get("kernel_sizes", ()))
        if m["encoder"] == "cnn":
            self.convs = nnx.List([nnx.Conv(m["embed_dim"], m["filters"], kernel_size=(k,),
                                            padding="VALID", rngs=rngs)
                                   for k in self.kernel_sizes])
            self.rnn = None
            width = m["filters"] * len(self.kernel_sizes)
        else:
            layer = {"lstm": sj.nn.LSTM, "gru": sj.nn.GRU}[m["encoder"]]
            self.pooling = m["pooling"]
            if self.pooling not in POOLINGS:
                raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
            self.mean = sj.models.GlobalAveragePooling1D()
            self.max = sj.models.GlobalMaxPooling1D()
            self.rnn = sj.nn.Bidirectional(
                layer(m["embed_dim"], m["units"], rngs=rngs,
                      return_sequences=self.pooling != "last"), rngs=rngs)
            width = (4 if self.pooling == "mean_max" else 2) * m["units"]
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, tokens, mask):
        x = self.dropout(self.embed(tokens))
        if self.rnn is not None:
            features = self.rnn(x, mask=mask)
            if self.pooling == "max":
                features = self.max(features, mask)
            elif self.pooling == "mean_max":
                features = jnp.concatenate([self.mean(features, mask), self.max(features, mask)],
                                           axis=-1)
        else:
            pooled = []
            for conv, k in zip(self.convs, self.kernel_sizes, strict=True):
                windows = nnx.relu(conv(x))  # [B, T - k + 1, F]
                inside = mask[:, k - 1:, None]  # the window's last token is a real one
                best = jnp.max(jnp.where(inside, windows, -jnp.inf), axis=1)
                pooled.append(jnp.where(jnp.isfinite(best), best, 0.0))  # shorter than k
            features = jnp.concatenate(pooled, axis=-1)
        return self.out(self.dropout(features))[:, 0]


def padded(split, maxlen: int, count: int | None):
    inputs, labels = split.inputs[:count], split.targets[:count]
    ids = sj.data.pad_sequences(inputs, maxlen=maxlen, padding="post", truncating="post")
    lengths = np.minimum([len(x) for x in inputs], maxlen)
    cut = int(sum(len(x) > maxlen for x in inputs))
    return ids.astype(np.int32), lengths, np.asarray(labels, np.int32), cut


def run_fold(key, fold, cfg):
    m = cfg["models"][key]
    # Keras' filters drop punctuation; MR's text is tokenized already, so "" keeps ! ? , .
    filters = "" if cfg["keep_punctuation"] else sj.data.KERAS_TOKENIZER_FILTERS
    tokenizer = sj.data.WordTokenizer(cfg["num_words"], filters=filters)
    ds = sj.data.load_mr(fold=fold, num_folds=cfg["num_folds"], seed=cfg["seed"],
                         tokenizer=tokenizer)
    count = cfg.get("max_examples")
    ids, lengths, labels, cut = padded(ds.splits["train"], cfg["maxlen"], count)
    test_ids, test_lengths, test_labels, test_cut = padded(ds.splits["test"], cfg["maxlen"], count)
    order = np.random.default_rng(cfg["seed"] + fold).permutation(len(ids))
    held = order[: int(len(ids) * cfg["validation_fraction"])]
    kept = order[len(held):]
    batches = sj.data.BatchIterator(ids[kept], labels[kept], lengths=lengths[kept],
                                    batch_size=cfg["batch"], seed=cfg["seed"] + fold)
    validation = sj.data.BatchIterator(ids[held], labels[held], lengths=lengths[held],
                                       batch_size=500, shuffle=False)
    test = sj.data.BatchIterator(test_ids, test_labels, lengths=test_lengths, batch_size=500,
                                 shuffle=False)
    model = SentenceClassifier(ds.tokenizer.vocab_size, m, nnx.Rngs(cfg["seed"] + fold))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        history = sj.train.fit(model, binary_loss_fn, optax.adam(cfg["lr"]), batches,
                               epochs=cfg["epochs"], validation_data=validation,
                               checkpoint_dir=checkpoints, monitor="val_accuracy", mode="max",
                               seed=cfg["seed"], verbose=0).history
        sj.train.restore_model(model, checkpoints, which="best")
    seconds = time.perf_counter() - start
    model.eval()
    scores = sj.train.evaluate(model, binary_loss_fn, test)
    best = int(np.argmax(history["val_accuracy"]))
    return {"fold": fold, "test_accuracy": scores["accuracy"], "best_epoch": best + 1,
            "val_accuracy": history["val_accuracy"][best], "seconds": round(seconds, 1),
            "vocab_size": ds.tokenizer.vocab_size, "truncated": cut + test_cut,
            "params": sj.models.count_params(model), "history": history}


def run_model(key, cfg, run):
    folds = []
    for fold in cfg["folds"]:
        folds.append(run_fold(key, fold, cfg))
        print(f"  {LABELS[key]}, fold {fold}: test accuracy {folds[-1]['test_accuracy']:.4f} "
              f"(epoch {folds[-1]['best_epoch']}, {folds[-1]['seconds']:.0f} s)", flush=True)
    accuracies = np.asarray([f["test_accuracy"] for f in folds])
    run.results[key] = {"folds": folds, "mean_accuracy": float(accuracies.mean()),
                        "std_accuracy": float(accuracies.std(ddof=1)) if len(folds) > 1 else 0.0,
                        "seconds": round(sum(f["seconds"] for f in folds), 1)}


def plots(cfg, run):
    for key in PARTS:
        plot_runs([f["history"] for f in run.results[key]["folds"]],
                  run.path(f"curves_{key}.png"), f"MR, {LABELS[key]} (each fold)")


def set_goals(cfg, run):
    r = run.results["bilstm"]
    m, n = cfg["models"]["bilstm"], len(r["folds"])
    tried = (f" (tried: random {m['embed_dim']}-dim embeddings, {m['units']} units each way, "
             f"dropout {m['dropout']} on the embeddings and features, Adam {cfg['lr']}, the best "
             f"of {cfg['epochs']} epochs on held-out training sentences; on folds 0-2, max or "
             "mean+max pooling, 64 dims, 8,000 words, punctuation kept or Adam 5e-4 moved "
             "nothing beyond noise: experiments/configs/mr.py)")
    ok = r["mean_accuracy"] >= 0.795
    run.goals.append(goal(
        f"BiLSTM, MR {n}-fold cross-validation: mean test accuracy", ">= 79.5% (published 79.3)",
        f"{100 * r['mean_accuracy']:.2f}% ± {100 * r['std_accuracy']:.2f}" + ("" if ok else tried),
        ok, part="bilstm"))
    for key in ("bigru", "kim_cnn"):
        s = run.results[key]
        published = f" (published {PUBLISHED[key]})" if PUBLISHED[key] else ""
        run.goals.append(goal(f"{LABELS[key]}, MR: mean test accuracy", f"reported{published}",
                              f"{100 * s['mean_accuracy']:.2f}% ± {100 * s['std_accuracy']:.2f}",
                              True, part=key))


def readme(cfg, run) -> str:
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    rows, fold_rows = [], []
    for key in PARTS:
        r = run.results[key]
        rows.append([LABELS[key], r["folds"][0]["params"],
                     f"{100 * r['mean_accuracy']:.2f} ± {100 * r['std_accuracy']:.2f}",
                     PUBLISHED[key] or "", f"{r['seconds'] / 60:.1f} min"])
        fold_rows.append([LABELS[key]] + [f"{100 * f['test_accuracy']:.1f} ({f['best_epoch']})"
                                          for f in r["folds"]])
    truncated = sum(f["truncated"] for key in PARTS for f in run.results[key]["folds"])
    return (
        run.header("MR sentence polarity, 10-fold cross-validation", "make mr")
        + "\n## Goals\n\n| goal | target | reached | met |\n|---|---|---|---|\n" + goals
        + f"\nRandom word embeddings; each fold's model is the epoch (of {cfg['epochs']}, batch "
        f"{cfg['batch']}, Adam {cfg['lr']}) with the best accuracy on "
        f"{cfg['validation_fraction']:.0%} of its training sentences held out. Sentences are "
        f"padded to {cfg['maxlen']} tokens ({truncated} cut over all runs).\n\n"
        + markdown_table(["model", "params (fold 0)", "test accuracy, mean ± std over folds (%)",
                          "published", "fit time, all folds"], rows)
        + "\nPer fold: test accuracy (%) and the epoch tested.\n\n"
        + markdown_table(["model"] + [f"fold {f}" for f in cfg["folds"]], fold_rows)
        + "\n" + "\n".join(f"![{key}](curves_{key}.png)" for key in PARTS) + "\n"
    )


PARTS = {key: functools.partial(run_model, key) for key in ("bilstm", "bigru", "kim_cnn")}


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme, plots=plots)


if __name__ == "__main__":
    main(sys.argv[1:])
