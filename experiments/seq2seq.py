"""Encoder-decoders that translate: dates, 3-digit addition, and Spanish to English.

1. The course's date translation: human-readable dates ("saturday 9 may 2018", "3/25/71") to ISO
   ("2018-05-09"), character by character. An encoder-decoder whose decoder starts from the
   encoder's final carry alone (the context vector) against one with Bahdanau attention;
   exact match on 2,000 held-out dates, and the attention map.
2. The Keras example's 3-digit addition: 50,000 distinct questions such as "123+45", the input
   reversed, the answer "168" generated character by character; exact match on the held-out 10%.
3. Tatoeba Spanish -> English, word level: BLEU (sacrebleu) on 2,000 held-out pairs, greedy and
   beam search, without and with (Luong) attention, and sample translations.

Run:       make seq2seq           (or: .venv/bin/python experiments/seq2seq.py [--smoke])
Expected:  see experiments/configs/seq2seq.py; results in experiments/results/seq2seq/.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import sacrebleu
from flax import nnx

import seqjax as sj
from common import adam, goal, markdown_table, run_experiment

NAME = "seq2seq"


class Pairs:
    """Source and target id sequences, with the decoder's inputs (<START> + y) and outputs."""

    def __init__(self, src: list, tgt: list, start_id: int, eos_id: int):
        self.src = [np.asarray(s, np.int32) for s in src]
        self.dec_in = [np.asarray([start_id, *t], np.int32) for t in tgt]
        self.dec_out = [np.asarray([*t, eos_id], np.int32) for t in tgt]

    def batches(self, batch_size, seed, shuffle=True):
        return sj.data.BatchIterator(self.src, (self.dec_in, self.dec_out),
                                     batch_size=batch_size, seed=seed, shuffle=shuffle,
                                     bucket_by_length=shuffle, pad_to_multiple=4)


def seq2seq_loss(model, batch, key):
    tgt_in, tgt_out, tgt_mask = batch.targets
    return model.loss(batch.inputs, batch.mask, tgt_in, tgt_out, tgt_mask)


def train(model, train_pairs, val_pairs, c, seed, desc):
    print(f"  {desc}", flush=True)
    start = time.perf_counter()
    history = sj.train.fit(
        model, seq2seq_loss,
        adam(c, c["epochs"] * -(-len(train_pairs.src) // c["batch"])),
        train_pairs.batches(c["batch"], seed), epochs=c["epochs"],
        validation_data=val_pairs.batches(512, seed, shuffle=False), seed=seed)
    return history.history, time.perf_counter() - start


@nnx.jit(static_argnames=("bos_id", "eos_id", "max_len", "beam_size", "length_penalty"))
def _generate(model, src, mask, bos_id, eos_id, max_len, beam_size, length_penalty):
    return model.generate(src, mask, bos_id=bos_id, eos_id=eos_id, max_len=max_len,
                          beam_size=beam_size, length_penalty=length_penalty)


def generate(model, sources, tgt_tok, max_len, beam_size=1, length_penalty=0.0, batch=500):
    """Decoded target ids (up to <EOS>) for every source, and the attention weights."""
    model.eval()
    outputs, attention = [], []
    for i in range(0, len(sources), batch):
        src = sj.data.pad_sequences(sources[i:i + batch], padding="post")
        out = _generate(model, src, src != 0, tgt_tok.start_id, tgt_tok.eos_id, max_len,
                        beam_size, float(length_penalty))
        for row in np.asarray(out.tokens):
            end = np.flatnonzero(row == tgt_tok.eos_id)
            outputs.append(row[: end[0] if end.size else len(row)].tolist())
        if out.attention is not None:
            attention.append(np.asarray(out.attention))
    return outputs, attention


def char_tokenizer(texts):
    return sj.data.CharTokenizer(pad_token="<PAD>", start_token="<START>", unk_token="<UNK>",
                                 eos_token="<EOS>").fit(texts)


def exact(predicted: list[str], expected: list[str]) -> float:
    return float(np.mean([p == e for p, e in zip(predicted, expected, strict=True)]))


def run_dates(cfg, run):
    c = cfg["dates"]
    train_set = sj.data.date_translation(c["train_examples"], seed=cfg["seed"])
    test_set = sj.data.date_translation(c["test_examples"], seed=cfg["seed"] + 1)
    src_tok, tgt_tok = char_tokenizer(train_set.human), char_tokenizer(train_set.iso)
    seen = set(train_set.human)
    pairs = {name: Pairs(src_tok.texts_to_sequences(d.human), tgt_tok.texts_to_sequences(d.iso),
                         tgt_tok.start_id, tgt_tok.eos_id)
             for name, d in (("train", train_set), ("test", test_set))}
    results = {}
    for label, arch in c["models"].items():
        model = sj.models.Seq2Seq(src_tok.vocab_size, tgt_tok.vocab_size,
                                  rngs=nnx.Rngs(cfg["seed"]), **arch)
        history, seconds = train(model, pairs["train"], pairs["test"], c, cfg["seed"],
                                 f"dates, {label}")
        ids, attention = generate(model, pairs["test"].src, tgt_tok, max_len=11)
        predicted = tgt_tok.sequences_to_texts(ids)
        results[label] = {
            "architecture": arch, "params": sj.models.count_params(model),
            "seconds": round(seconds, 1), "history": history,
            "exact_match": exact(predicted, test_set.iso),
            "examples": [[h, p, e] for h, p, e in zip(test_set.human[:8], predicted[:8],
                                                      test_set.iso[:8], strict=True)]}
        if attention:
            plot_attention(run, test_set.human[: c["attention_examples"]],
                           predicted[: c["attention_examples"]], attention[0])
        sj.train.plot_history(history, run.path(f"dates_{label.split()[0].lower()}.png"),
                              title_prefix=f"dates, {label}:")
    run.results["dates"] = {"models": results, "test_seen_in_train": float(np.mean(
        [h in seen for h in test_set.human]))}


def plot_attention(run, sources, predictions, weights):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(sources), 4))
    FigureCanvasAgg(fig)
    for i, (src, out) in enumerate(zip(sources, predictions, strict=True)):
        ax = fig.add_subplot(1, len(sources), i + 1)
        w = weights[i, : len(out) + 1, : len(src)]
        ax.imshow(w, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(src)), list(src), fontsize=7)
        ax.set_yticks(range(len(out) + 1), list(out) + ["<EOS>"], fontsize=7)
        ax.set_title(f"{src!r} -> {out!r}", fontsize=8)
    fig.tight_layout()
    fig.savefig(run.path("dates_attention.png"), dpi=100)


def run_addition(cfg, run):
    c = cfg["addition"]
    data = sj.data.digit_addition(c["num_examples"], c["num_digits"], seed=cfg["seed"],
                                  unique=True)
    questions = [q[::-1] if c["reverse_input"] else q for q in data.questions]
    src_tok, tgt_tok = char_tokenizer(questions), char_tokenizer(data.answers)
    cut = int(len(questions) * (1 - c["test_fraction"]))
    src = src_tok.texts_to_sequences(questions)
    tgt = tgt_tok.texts_to_sequences(data.answers)
    train_pairs = Pairs(src[:cut], tgt[:cut], tgt_tok.start_id, tgt_tok.eos_id)
    test_pairs = Pairs(src[cut:], tgt[cut:], tgt_tok.start_id, tgt_tok.eos_id)
    model = sj.models.Seq2Seq(src_tok.vocab_size, tgt_tok.vocab_size,
                              rngs=nnx.Rngs(cfg["seed"]), **c["model"])
    history, seconds = train(model, train_pairs, test_pairs, c, cfg["seed"], "addition")
    ids, _ = generate(model, test_pairs.src, tgt_tok, max_len=c["num_digits"] + 2)
    predicted = tgt_tok.sequences_to_texts(ids)
    sj.train.plot_history(history, run.path("addition.png"), title_prefix="3-digit addition:")
    run.results["addition"] = {
        "params": sj.models.count_params(model), "seconds": round(seconds, 1),
        "history": history, "test_questions": len(questions) - cut,
        "exact_match": exact(predicted, data.answers[cut:]),
        "examples": [[q, p, a] for q, p, a in zip(data.questions[cut:cut + 8], predicted[:8],
                                                  data.answers[cut:cut + 8], strict=True)]}


def run_tatoeba(cfg, run):
    c = cfg["tatoeba"]
    ds = sj.data.load_tatoeba(c["lang"], reverse=True, num_examples=c["num_examples"],
                              num_words=c["num_words"], seed=cfg["seed"])
    src_tok, tgt_tok = ds.tokenizer
    val = ds.splits["validation"]
    n = c["test_examples"]

    def pairs(inputs, dec_in):
        return Pairs(inputs, [np.asarray(t)[1:] for t in dec_in], tgt_tok.start_id,
                     tgt_tok.eos_id)

    train_pairs = pairs(ds.splits["train"].inputs, ds.splits["train"].targets[0])
    test_pairs = pairs(val.inputs[:n], val.targets[0][:n])
    dev_pairs = pairs(val.inputs[n:], val.targets[0][n:]) if len(val.inputs) > n else test_pairs
    sources = src_tok.sequences_to_texts([np.asarray(s).tolist() for s in test_pairs.src])
    refs = tgt_tok.sequences_to_texts([o[:-1].tolist() for o in test_pairs.dec_out])
    results = {}
    for label, arch in c["models"].items():
        model = sj.models.Seq2Seq(src_tok.vocab_size, tgt_tok.vocab_size,
                                  rngs=nnx.Rngs(cfg["seed"]), **arch)
        history, seconds = train(model, train_pairs, dev_pairs, c, cfg["seed"],
                                 f"tatoeba {c['lang']}->eng, {label}")
        entry = {"architecture": arch, "params": sj.models.count_params(model),
                 "seconds": round(seconds, 1), "history": history}
        for mode, beam in (("greedy", 1), (f"beam {c['beam_size']}", c["beam_size"])):
            ids, _ = generate(model, test_pairs.src, tgt_tok, c["max_len"], beam,
                              c["length_penalty"] if beam > 1 else 0.0)
            hyps = tgt_tok.sequences_to_texts(ids)
            entry[mode] = {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
                           "samples": hyps[: c["show"]]}
        results[label] = entry
        sj.train.plot_history(history, run.path(f"tatoeba_{label.split()[0].lower()}.png"),
                              title_prefix=f"{c['lang']}->eng, {label}:")
    run.results["tatoeba"] = {
        "train_pairs": len(train_pairs.src), "test_pairs": len(test_pairs.src),
        "src_vocab": src_tok.vocab_size, "tgt_vocab": tgt_tok.vocab_size, "models": results,
        "sources": sources[: c["show"]], "references": refs[: c["show"]],
        "sacrebleu": sacrebleu.__version__}


def set_goals(cfg, run):
    dates = run.results["dates"]["models"]
    for label, r in dates.items():
        attention = r["architecture"]["attention"] is not None
        run.goals.append(goal(
            f"dates, {label}: exact match on 2,000 held-out dates",
            ">= 99.5%" if attention else "reported", f"{r['exact_match']:.2%}",
            r["exact_match"] >= 0.995 if attention else True, part="dates"))
    a = run.results["addition"]
    run.goals.append(goal("3-digit addition, reversed input: exact match", ">= 99%",
                          f"{a['exact_match']:.2%}", a["exact_match"] >= 0.99,
                          part="addition"))
    t = run.results["tatoeba"]["models"]
    beam = f"beam {cfg['tatoeba']['beam_size']}"
    run.goals.append(goal(
        "Tatoeba spa->eng: BLEU (sacrebleu)", "reported; beam >= greedy",
        "; ".join(f"{label}: greedy {r['greedy']['bleu']:.1f}, {beam} {r[beam]['bleu']:.1f}"
                  for label, r in t.items()),
        all(r[beam]["bleu"] >= r["greedy"]["bleu"] for r in t.values()), part="tatoeba"))


def readme(cfg, run) -> str:
    d, a, t = run.results["dates"], run.results["addition"], run.results["tatoeba"]
    c = cfg["tatoeba"]
    beam = f"beam {c['beam_size']}"
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    date_rows = [[label, r["params"], f"{r['exact_match']:.2%}", f"{r['seconds'] / 60:.1f} min"]
                 for label, r in d["models"].items()]
    first = next(iter(d["models"].values()))
    examples = [[h, *(r["examples"][i][1] for r in d["models"].values()), e]
                for i, (h, _, e) in enumerate(first["examples"])]
    bleu_rows = [[label, r["params"], f"{r['greedy']['bleu']:.1f}", f"{r[beam]['bleu']:.1f}",
                  f"{r['seconds'] / 60:.1f} min"] for label, r in t["models"].items()]
    samples = [[s, ref, *(r[beam]["samples"][i] for r in t["models"].values())]
               for i, (s, ref) in enumerate(zip(t["sources"], t["references"], strict=True))]
    return (
        run.header("Encoder-decoders: dates, addition, translation", "make seq2seq")
        + "\n## Goals\n\n| goal | target | reached | met |\n|---|---|---|---|\n" + goals
        + f"\n## Dates to ISO ({cfg['dates']['train_examples']:,} training pairs, "
        f"{cfg['dates']['test_examples']:,} held out; {d['test_seen_in_train']:.1%} of the "
        "held-out human-readable strings also occur in training)\n\n"
        + markdown_table(["model", "params", "exact match", "fit time"], date_rows)
        + "\n" + markdown_table(["input", *d["models"], "expected"], examples)
        + "\n![attention](dates_attention.png)\n"
        + f"\n## 3-digit addition ({cfg['addition']['num_examples']:,} distinct questions, "
        f"input reversed, {a['test_questions']:,} held out)\n\nExact match "
        f"{a['exact_match']:.2%} ({a['params']:,} params, {a['seconds'] / 60:.1f} min).\n\n"
        + markdown_table(["question", "predicted", "answer"], a["examples"])
        + f"\n## Tatoeba {c['lang']} -> eng ({t['train_pairs']:,} training pairs of the "
        f"{c['num_examples']:,} shortest, {t['test_pairs']:,} held out; vocabularies "
        f"{t['src_vocab']:,} / {t['tgt_vocab']:,} words)\n\n"
        f"Corpus BLEU from sacrebleu {t['sacrebleu']} against one reference, on lower-cased "
        "text with punctuation split off (the loader's tokenisation).\n\n"
        + markdown_table(["model", "params", "BLEU greedy", f"BLEU {beam}", "fit time"],
                         bleu_rows)
        + "\n" + markdown_table(["source", "reference", *(f"{m} ({beam})" for m in t["models"])],
                                samples)
    )


PARTS = {"dates": run_dates, "addition": run_addition, "tatoeba": run_tatoeba}


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme)


if __name__ == "__main__":
    main(sys.argv[1:])
