"""Language models that write: Tiny Shakespeare by character, dinosaur names, and words.

1. A character-level 2-layer LSTM on Tiny Shakespeare (the last 10% of the text held out), trained
   by truncated backpropagation through time: the training text is cut into 64 contiguous
   streams, one per batch row, and each chunk of 128 characters starts from the carry the
   previous chunk ended with (gradients stop at the chunk boundary). Samples at temperatures
   0.5, 0.8 and 1.0.
2. The course's dinosaur names: a character-level SimpleRNN of 50 units, each name between
   newlines; ten sampled names per temperature and the loss curve.
3. The course's word-level model on the same text: 10,000 words, <UNK> for the rest, <START> and
   <EOS> around every line; validation perplexity and sampled lines that never contain <UNK>.

Run:       make charlm            (or: .venv/bin/python experiments/charlm.py [--smoke])
Expected:  see experiments/configs/charlm.py; results in experiments/results/charlm/.
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import seqjax as sj
from common import adam, goal, markdown_table, run_experiment

NAME = "charlm"


class CarryStream(nnx.Variable):
    """The carry a streaming model hands from one training chunk to the next (not a param)."""


class StreamingLM(nnx.Module):
    """A language model whose carry persists across training steps (truncated BPTT).

    Row ``b`` of every batch continues stream ``b`` of the text; ``reset`` (bool ``[B]``) starts
    a row's stream again from zeros, as at the start of an epoch.
    """

    def __init__(self, lm: sj.models.LanguageModel, streams: int):
        self.lm = lm
        self.carry = CarryStream(lm.rnn.initial_carry(streams))

    @staticmethod
    def loss_fn(model, batch, key):
        inputs, _, (targets, reset) = batch
        carry = jax.tree.map(lambda c: jnp.where(reset[:, None], jnp.zeros_like(c), c),
                             model.carry.get_value())
        loss, carry = model.lm.loss(inputs, targets=targets, carry=carry, return_carry=True)
        model.carry.set_value(jax.lax.stop_gradient(carry))
        return loss, {"bits_per_character": sj.train.bits_per_character_from_loss(loss)}

    @staticmethod
    def eval_loss_fn(model, batch, key):
        inputs, mask, targets = batch
        loss = model.lm.loss(inputs, mask, targets=targets)
        return loss, {"bits_per_character": sj.train.bits_per_character_from_loss(loss)}


def stream_batches(ids: np.ndarray, streams: int, seq_len: int):
    """``make_batches(epoch)``: consecutive [B, T] chunks of B contiguous streams of ``ids``."""
    n = (len(ids) - 1) // streams
    starts = np.arange(streams)[:, None] * n
    chunks = n // seq_len

    def make_batches(epoch):
        for k in range(chunks):
            cols = starts + k * seq_len + np.arange(seq_len)[None, :]
            reset = np.full((streams,), k == 0)
            yield sj.data.Batch(ids[cols].astype(np.int32), np.ones((streams, seq_len), bool),
                                (ids[cols + 1].astype(np.int32), reset))

    return make_batches, chunks


def streamed_loss(lm, ids: np.ndarray, streams: int = 16, chunk: int = 512) -> float:
    """Loss of ``ids`` read as ``streams`` contiguous streams, the carry kept across chunks."""
    lm.eval()
    graphdef, state = nnx.split(lm)

    @jax.jit
    def chunk_loss(state, carry, x, y):
        model = nnx.merge(graphdef, state)
        logits, carry = model(x, carry=carry)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], -1)[..., 0]
        return jnp.sum(nll), carry

    n = (len(ids) - 1) // streams
    starts = np.arange(streams)[:, None] * n
    carry, total, count = lm.rnn.initial_carry(streams), 0.0, 0
    for k in range(0, n, chunk):
        width = min(chunk, n - k)
        cols = starts + k + np.arange(width)[None, :]
        nll, carry = chunk_loss(state, carry, ids[cols], ids[cols + 1])
        total, count = total + float(nll), count + cols.size
    return total / count


def run_shakespeare(cfg, run):
    c = cfg["shakespeare"]
    ds = sj.data.load_tiny_shakespeare(val_fraction=c["val_fraction"], source=run.source)
    tok = ds.tokenizer
    train_ids = np.asarray(ds.splits["train"].inputs)
    val_ids = np.asarray(ds.splits["validation"].inputs)
    if c.get("max_chars"):
        train_ids, val_ids = train_ids[: c["max_chars"]], val_ids[: c["max_chars"] // 4]
    make_batches, chunks = stream_batches(train_ids, c["streams"], c["seq_len"])
    windows = sj.data.lm_windows(val_ids, c["val_window"])
    val_batches = sj.data.BatchIterator(windows.inputs, windows.targets, batch_size=128,
                                        shuffle=False)
    lm = sj.models.LanguageModel(tok.vocab_size, c["embed_dim"], c["units"], c["cell"],
                                 c["num_layers"], c["dropout"], rngs=nnx.Rngs(cfg["seed"]))
    model = StreamingLM(lm, c["streams"])
    print(f"  Tiny Shakespeare: {len(train_ids):,} / {len(val_ids):,} characters, "
          f"V = {tok.vocab_size}, {sj.models.count_params(lm):,} params", flush=True)
    start = time.perf_counter()
    history = sj.train.fit(model, StreamingLM.loss_fn, adam(c, c["epochs"] * chunks),
                           make_batches, epochs=c["epochs"], validation_data=val_batches,
                           eval_loss_fn=StreamingLM.eval_loss_fn, seed=cfg["seed"]).history
    seconds = time.perf_counter() - start
    streamed = streamed_loss(lm, val_ids)
    prompt = np.asarray([tok.encode(c["prompt"])], np.int32)
    samples = {}
    for i, temperature in enumerate(c["temperatures"]):
        out = lm.sample(jax.random.key(cfg["seed"] + i), prompt, max_len=c["sample_len"],
                        temperature=temperature)
        samples[str(temperature)] = c["prompt"] + tok.decode(np.asarray(out[0]).tolist())
    sj.train.plot_history(history, run.path("shakespeare_curves.png"),
                          title_prefix="Tiny Shakespeare, char LSTM:")
    run.results["shakespeare"] = {
        "vocab_size": tok.vocab_size, "params": sj.models.count_params(lm),
        "train_chars": len(train_ids), "val_chars": len(val_ids), "steps": c["epochs"] * chunks,
        "seconds": round(seconds, 1), "history": history,
        "best_val_loss": min(history["val_loss"]), "final_val_loss": history["val_loss"][-1],
        "streamed_val_loss": streamed, "samples": samples}


def run_dinos(cfg, run):
    c = cfg["dinos"]
    ds = sj.data.load_dinos(seed=cfg["seed"])
    tok = ds.tokenizer
    count = c.get("max_names")
    splits = {name: (s.inputs[:count], s.targets[:count]) for name, s in ds.splits.items()}
    train = sj.data.BatchIterator(*splits["train"], batch_size=c["batch"], seed=cfg["seed"])
    val = sj.data.BatchIterator(*splits["validation"], batch_size=256, shuffle=False)
    lm = sj.models.LanguageModel(tok.vocab_size, c["embed_dim"], c["units"], c["cell"], 1,
                                 rngs=nnx.Rngs(cfg["seed"]))

    def loss_fn(model, batch, key):
        return model.loss(batch.inputs, batch.mask, targets=batch.targets)

    start = time.perf_counter()
    history = sj.train.fit(lm, loss_fn, adam(c, 0), train, epochs=c["epochs"],
                           validation_data=val, seed=cfg["seed"]).history
    seconds = time.perf_counter() - start
    newline = tok.encode("\n")[0]
    prompt = np.full((c["samples"], 1), newline, np.int32)
    known = {tok.decode(np.asarray(x)[1:].tolist()) for x in ds.splits["train"].inputs}
    names = {}
    for i, temperature in enumerate(c["temperatures"]):
        out = np.asarray(lm.sample(jax.random.key(cfg["seed"] + i), prompt, max_len=30,
                                   temperature=temperature, eos_id=newline))
        names[str(temperature)] = [tok.decode(row[: _first(row, newline)].tolist())
                                   for row in out]
    sj.train.plot_history(history, run.path("dinos_curves.png"), title_prefix="Dinosaur names:")
    novel = [n for ns in names.values() for n in ns if n and n not in known]
    run.results["dinos"] = {"names": len(ds.splits["train"].inputs), "seconds": round(seconds, 1),
                            "history": history, "samples": names,
                            "novel_fraction": len(novel) / max(1, sum(map(len, names.values())))}


def _first(row: np.ndarray, value: int) -> int:
    hits = np.flatnonzero(row == value)
    return int(hits[0]) if hits.size else len(row)


def run_words(cfg, run):
    c = cfg["words"]
    ds = sj.data.load_tiny_shakespeare(val_fraction=cfg["shakespeare"]["val_fraction"],
                                      source=run.source)
    lines = {name: [line for line in ds.tokenizer.decode(np.asarray(s.inputs).tolist())
                    .split("\n") if line.strip()] for name, s in ds.splits.items()}
    if c.get("max_lines"):
        lines = {name: ls[: c["max_lines"]] for name, ls in lines.items()}
    tok = sj.data.WordTokenizer(num_words=c["num_words"]).fit(lines["train"], progress=False)
    seqs = {name: [np.asarray(s, np.int32) for s in tok.texts_to_sequences(
        ls, add_start=True, add_eos=True, progress=False)] for name, ls in lines.items()}
    train = sj.data.BatchIterator(seqs["train"], batch_size=c["batch"], seed=cfg["seed"],
                                  bucket_by_length=True, pad_to_multiple=8)
    val = sj.data.BatchIterator(seqs["validation"], batch_size=512, shuffle=False,
                                pad_to_multiple=8)
    lm = sj.models.LanguageModel(tok.vocab_size, c["embed_dim"], c["units"], c["cell"],
                                 c["num_layers"], c["dropout"], rngs=nnx.Rngs(cfg["seed"]))

    def loss_fn(model, batch, key):
        return model.loss(batch.inputs, batch.mask)

    start = time.perf_counter()
    history = sj.train.fit(lm, loss_fn, adam(c, 0), train, epochs=c["epochs"],
                           validation_data=val, seed=cfg["seed"]).history
    seconds = time.perf_counter() - start
    prompt = np.full((c["samples"], 1), tok.start_id, np.int32)
    banned = tuple(i for i in (tok.unk_id, tok.pad_id, tok.start_id) if i is not None)
    out = np.asarray(lm.sample(jax.random.key(cfg["seed"]), prompt, max_len=c["max_len"],
                               temperature=c["temperature"], eos_id=tok.eos_id,
                               banned_ids=banned))
    sampled = [row[: _first(row, tok.eos_id)].tolist() for row in out]
    unk_count = sum(row.count(tok.unk_id) for row in sampled)
    text = [tok.decode(row) for row in sampled]
    sj.train.plot_history(history, run.path("words_curves.png"), title_prefix="Word-level LM:")
    unk_rate = float(np.mean(np.concatenate(seqs["validation"]) == tok.unk_id))
    run.results["words"] = {
        "vocab_size": tok.vocab_size, "lines": {k: len(v) for k, v in lines.items()},
        "val_unk_rate": unk_rate, "seconds": round(seconds, 1), "history": history,
        "best_val_perplexity": math.exp(min(history["val_loss"])),
        "final_val_perplexity": math.exp(history["val_loss"][-1]),
        "samples": text, "unk_in_samples": unk_count}


def set_goals(cfg, run):
    s = run.results["shakespeare"]
    run.goals.append(goal(
        "char LSTM, Tiny Shakespeare: validation loss", "<= 1.50 nats per character",
        f"{s['best_val_loss']:.3f} (windows of {cfg['shakespeare']['val_window']}; streamed "
        f"{s['streamed_val_loss']:.3f}), {s['seconds'] / 60:.1f} min",
        s["best_val_loss"] <= 1.50, part="shakespeare"))
    w = run.results["words"]
    run.goals.append(goal("word-level LM: sampled lines", "never contain <UNK>",
                          f"{w['unk_in_samples']} <UNK> in {len(w['samples'])} lines "
                          f"(validation perplexity {w['best_val_perplexity']:.0f})",
                          w["unk_in_samples"] == 0, part="words"))


def readme(cfg, run) -> str:
    s, d, w = (run.results[k] for k in ("shakespeare", "dinos", "words"))
    c = cfg["shakespeare"]
    goals = "".join(f"| {g['goal']} | {g['target']} | {g['reached']} | "
                    f"{'yes' if g['ok'] else 'no'} |\n" for g in run.goals)
    samples = "".join(f"\n### Temperature {t}\n\n```text\n{text}\n```\n"
                      for t, text in s["samples"].items())
    dino_rows = [[t, ", ".join(n or "(empty)" for n in names)] for t, names in d["samples"].items()]
    return (
        run.header("Character- and word-level language models", "make charlm")
        + "\n## Goals\n\n| goal | target | reached | met |\n|---|---|---|---|\n" + goals
        + f"\n## Tiny Shakespeare, character level\n\n{c['num_layers']}-layer {c['cell'].upper()} "
        f"of {c['units']} units ({s['params']:,} params), embedding {c['embed_dim']}, dropout "
        f"{c['dropout']} between the layers; {c['streams']} streams of the training text, "
        f"chunks of {c['seq_len']} characters with the carry streamed (truncated BPTT); Adam "
        f"{c['lr']} with cosine decay to {c.get('final_lr', c['lr'])}, clipping at "
        f"{c['clip_norm']}; {s['steps']:,} steps in {s['seconds'] / 60:.1f} min.\n\n"
        + markdown_table(["", "nats per character", "bits per character"], [
            ["best validation loss (windows of {}, zero carry)".format(c["val_window"]),
             f"{s['best_val_loss']:.3f}", f"{s['best_val_loss'] / math.log(2):.3f}"],
            ["final validation loss, streamed (carry kept across the whole text)",
             f"{s['streamed_val_loss']:.3f}", f"{s['streamed_val_loss'] / math.log(2):.3f}"],
            ["final training loss", f"{s['history']['loss'][-1]:.3f}",
             f"{s['history']['loss'][-1] / math.log(2):.3f}"]])
        + "\n![curves](shakespeare_curves.png)\n\n## Samples (prompt "
        f"`{c['prompt']}`)\n" + samples
        + f"\n## Dinosaur names\n\nA SimpleRNN of {cfg['dinos']['units']} units on "
        f"{d['names']:,} names ({d['seconds']:.0f} s); "
        f"{d['novel_fraction']:.0%} of the sampled names are not in the training list.\n\n"
        + markdown_table(["temperature", "sampled names"], dino_rows)
        + "\n![curves](dinos_curves.png)\n"
        + f"\n## Word level\n\n{w['vocab_size']:,} words (the rest <UNK>: "
        f"{w['val_unk_rate']:.1%} of the validation tokens), <START>/<EOS> around each of "
        f"{w['lines']['train']:,} training lines; best validation perplexity "
        f"{w['best_val_perplexity']:.1f} ({w['seconds'] / 60:.1f} min). Sampled lines "
        f"(temperature {cfg['words']['temperature']}, <UNK> banned):\n\n```text\n"
        + "\n".join(w["samples"]) + "\n```\n\n![curves](words_curves.png)\n"
    )


PARTS = {"shakespeare": run_shakespeare, "dinos": run_dinos, "words": run_words}


def main(argv=None):
    return run_experiment(NAME, __doc__, argv, PARTS, set_goals, readme, tfds=True)


if __name__ == "__main__":
    main(sys.argv[1:])
