"""Named-entity tagging: BiLSTM-CRF with character features (Lample et al. 2016).

Each word is its (lower-cased) word embedding, randomly initialised, beside the final states of a
character BiLSTM over its letters (case kept: capitals matter for names). A BiLSTM reads the
sentence, a Dense layer scores every tag at every word, and a linear-chain CRF with BIO
constraints picks the best tag path; the softmax variant picks each word's tag on its own.
Words seen once in training become <UNK> half the time during training, so the <UNK> embedding
learns what an unseen word looks like. The epoch with the best validation F1 is kept and scored on
the test split with entity-level F1 (an entity counts when its type, start and end all match).

Datasets: CoNLL-2003 English (read in place from the data folder; its licence allows evaluation
only, nothing is copied) and WNUT-17 (emerging entities in social media, far harder).

Run:       make ner               (or: .venv/bin/python experiments/ner.py [--smoke])
Expected:  see experiments/configs/ner.py; results in experiments/results/ner/.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import seqjax as sj
from common import goal, markdown_table, run_experiment

NAME = "ner"
LOADERS = {"conll2003": sj.data.load_conll2003, "wnut17": sj.data.load_wnut17}
TITLES = {"conll2003": "CoNLL-2003 English", "wnut17": "WNUT-17"}


def load(name, cfg):
    """Word ids, character ids and tag ids per split, and what the model needs to know."""
    ds = LOADERS[name](lower=True)
    count = cfg.get("smoke_sentences")
    words = {split: [s.tokens for s in sj.data.read_conll(path)[0]][:count]
             for split, path in ds.info["files"].items()}
    chars = sj.data.CharTokenizer(pad_token="<PAD>", unk_token="<UNK>").fit(
        [w for sentence in words["train"] for w in sentence])
    splits = {}
    for split, data in ds.splits.items():
        inputs, tags = data.inputs[:count], data.targets[:count]
        char_ids = [sj.models.word_chars([sentence], chars, word_len=cfg["word_len"])[0]
                    for sentence in words[split]]
        splits[split] = (list(inputs), list(tags), char_ids)
    counts = Counter(int(i) for sentence in splits["train"][0] for i in sentence)
    singletons = np.zeros(ds.tokenizer.vocab_size, bool)
    singletons[[i for i, n in counts.items() if n == 1]] = True
    return ds, chars, splits, singletons


def make_loss_fn(singletons: np.ndarray, unk_id: int, rate: float):
    singletons = jnp.asarray(singletons)

    def loss_fn(model, batch, key):
        tags, chars, _ = batch.targets
        tokens = batch.inputs
        drop = singletons[tokens] & jax.random.bernoulli(key, rate, tokens.shape)
        return model.loss(jnp.where(drop, unk_id, tokens), batch.mask, tags, chars=chars)

    return loss_fn


def make_eval_fn(tag_names):
    def eval_fn(model, batch, key):
        tags, chars, _ = batch.targets
        predicted = model.predict(batch.inputs, batch.mask, chars=chars)
        return (model.loss(batch.inputs, batch.mask, tags, chars=chars),
                sj.train.span_f1(predicted, tags, batch.mask, tuple(tag_names)))

    return eval_fn


def batches(split, batch_size, seed, shuffle=True):
    inputs, tags, chars = split
    return sj.data.BatchIterator(inputs, (tags, chars), batch_size=batch_size, seed=seed,
                                 shuffle=shuffle, bucket_by_length=shuffle, pad_to_multiple=8)


def test_scores(model, split, tag_names):
    @nnx.jit
    def predict(model, tokens, mask, chars):
        return model.predict(tokens, mask, chars=chars)

    model.eval()
    y_true, y_pred = [], []
    for batch in batches(split, 256, 0, shuffle=False).iter_epoch():
        tags, chars, _ = batch.targets
        out = np.asarray(predict(model, batch.inputs, batch.mask, chars))
        for row, gold, valid in zip(out, tags, batch.mask, strict=True):
            y_pred.append([tag_names[i] for i in row[valid]])
            y_true.append([tag_names[i] for i in gold[valid]])
    return sj.train.span_scores(y_true, y_pred)


def run_dataset(name, cfg, run):
    d = cfg["datasets"][name]
    ds, chars, splits, singletons = load(name, cfg)
    tag_names = ds.info["tags"]
    out = {"sentences": {k: len(v[0]) for k, v in splits.items()},
           "vocab_size": ds.tokenizer.vocab_size, "chars": chars.vocab_size,
           "tags": list(tag_names), "variants": {}}
    for variant, arch in cfg["variants"].items():
        model = sj.models.Tagger(
            ds.tokenizer.vocab_size, len(tag_names), char_vocab_size=chars.vocab_size,
            tag_names=tuple(tag_names), constraints="bio" if arch["crf"] else None,
            rngs=nnx.Rngs(cfg["seed"]), **arch)
        print(f"  {TITLES[name]}, {variant}", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as checkpoints:
            history = sj.train.fit(
                model, make_loss_fn(singletons, ds.tokenizer.unk_id, cfg["singleton_unk"]),
                optax.chain(optax.clip_by_global_norm(d["clip_norm"]), optax.adam(d["lr"])),
                batches(splits["train"], d["batch"], cfg["seed"]), epochs=d["epochs"],
                validation_data=batches(splits["validation"], 256, 0, shuffle=False),
                eval_loss_fn=make_eval_fn(tag_names), checkpoint_dir=checkpoints,
                monitor="val_span_f1", mode="max", seed=cfg["seed"]).history
            sj.train.restore_model(model, checkpoints, which="best")
        seconds = time.perf_counter() - start
        scores = test_scores(model, splits["test"], tag_names)
        best = int(np.argmax(history["val_span_f1"]))
        out["variants"][variant] = {
            "params": sj.models.count_params(model), "seconds": round(seconds, 1),
            "history": history, "best_epoch": best + 1,
            "val_f1": history["val_span_f1"][best], "test": scores}
        sj.train.plot_history(history, run.path(f"{name}_{variant}.png"),
                              metrics=["loss", "span_f1"],
                              title_prefix=f"{TITLES[name]}, {variant}:")
    run.results[name] = out


def set_goals(cfg, run):
    conll = run.results["conll2003"]["variants"]
    f1 = conll["crf"]["test"]["f1"]
    m, d = cfg["variants"]["crf"], cfg["datasets"]["conll2003"]
    tried = (f" (tried: random {m['embed_dim']}-dim word embeddings beside a character BiLSTM, "
             f"dropout {m['dropout']}, singletons as <UNK>, Adam {d['lr']}, {d['epochs']} epochs, "
             f"the best validation epoch ({conll['crf']['best_epoch']}) tested; Lample et al.'s "
             "90.94 uses pretrained embeddings)")
    run.goals.append(goal("CoNLL-2003 test entity F1, BiLSTM-CRF + chars, random embeddings",
                          ">= 86", f"{100 * f1:.2f}" + ("" if f1 >= 0.86 else tried),
                          f1 >= 0.86, part="conll2003"))
    run.goals.append(goal("CoNLL-2003: CRF against softmax", "CRF higher",
                          f"CRF {100 * f1:.2f}, softmax {100 * conll['softmax']['test']['f1']:.2f}",
                          f1 > conll["softmax"]["test"]["f1"], part="conll2003"))
    wnut = run.results["wnut17"]["variants"]
    run.goals.append(goal("WNUT-17 test entity F1", "reported (shared task best: 41.9)",
                          ", ".join(f"{v} {100 * r['test']['f1']:.2f}" for v, r in wnut.items()),
                          True, part="wnut17"))


def readme(cfg, run) -> str:
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    arch = cfg["variants"]["crf"]
    text = (run.header("Named-entity tagging: BiLSTM-CRF", "make ner")
            + "\n## Goals\n\n| goal | target | reached | met |\n|---|---|---|---|\n" + goals
            + f"\nWords: {arch['embed_dim']}-dim random embeddings (lower-cased) beside a "
            f"character BiLSTM ({arch['char_embed_dim']}-dim characters, {arch['char_units']} "
            f"units each way); a BiLSTM of {arch['units']} units each way; dropout "
            f"{arch['dropout']}; singletons -> <UNK> with p = {cfg['singleton_unk']} in "
            "training; Adam, gradients clipped; the epoch with the best validation F1 is "
            "tested.\n")
    for name in cfg["datasets"]:
        r = run.results[name]
        d = cfg["datasets"][name]
        rows = [[v, x["params"], f"{100 * x['val_f1']:.2f} (epoch {x['best_epoch']})",
                 f"{100 * x['test']['precision']:.2f}", f"{100 * x['test']['recall']:.2f}",
                 f"{100 * x['test']['f1']:.2f}", f"{x['seconds'] / 60:.1f} min"]
                for v, x in r["variants"].items()]
        crf = r["variants"]["crf"]["test"]["per_type"]
        per_type = [[t, s["support"], f"{100 * s['precision']:.2f}", f"{100 * s['recall']:.2f}",
                     f"{100 * s['f1']:.2f}"] for t, s in sorted(crf.items())]
        text += (f"\n## {TITLES[name]} (sentences train / validation / test: "
                 + " / ".join(f"{n:,}" for n in r["sentences"].values())
                 + f"; {r['vocab_size']:,} words; {d['epochs']} epochs of batch {d['batch']})\n\n"
                 + markdown_table(["variant", "params", "validation F1", "test precision",
                                   "test recall", "test F1", "fit time"], rows)
                 + "\nPer entity type, CRF, test split:\n\n"
                 + markdown_table(["type", "entities", "precision", "recall", "F1"], per_type)
                 + "\n" + "\n".join(f"![{name} {v}]({name}_{v}.png)" for v in r["variants"])
                 + "\n")
    return text


PARTS = {name: functools.partial(run_dataset, name) for name in ("conll2003", "wnut17")}


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme)


if __name__ == "__main__":
    main(sys.argv[1:])
