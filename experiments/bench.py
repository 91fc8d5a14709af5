"""Training-step benchmark: seqjax backends against flax.nnx.RNN and torch.nn (when installed).

One training step = forward over the whole sequence + gradients w.r.t. all params and the inputs
(loss ``mean(ys**2)``), float32. Contenders are timed interleaved, round-robin, in one process, so
machine noise hits all of them alike; the table reports the median and ratios measured in this run.

Run:
  make bench                                      # LSTM and GRU at S1 (64, 128, 128, 256)
  .venv/bin/python experiments/bench.py --shapes S1 S2 S3 S4 --rounds 15

Expected (2-core CPU): ``hoisted`` and ``reference`` within about +-30% of flax.nnx.RNN; the numbers
and ratios are written to experiments/results/bench/ (markdown + JSON with versions and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

import seqjax as sj

SHAPES = {  # (batch, time, input, hidden)
    "S1": (64, 128, 128, 256),
    "S2": (32, 512, 64, 128),
    "S3": (128, 32, 64, 512),
    "S4": (16, 1024, 32, 64),
}
CELLS = {"lstm": sj.lstm, "gru": sj.gru}
RESULTS = pathlib.Path(__file__).parent / "results" / "bench"


def seqjax_step(kind: str, shape, backend: str) -> Callable[[], object]:
    batch, time_, inp, hidden = shape
    cell = CELLS[kind](hidden)
    params = cell.init(jax.random.key(0), inp)
    xs = jax.random.normal(jax.random.key(1), (batch, time_, inp))

    def loss(params, xs):
        _, ys = sj.rnn(cell, params, xs, backend=backend)
        return jnp.mean(ys**2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda: jax.block_until_ready(grad(params, xs))


def flax_step(kind: str, shape) -> Callable[[], object]:
    batch, time_, inp, hidden = shape
    rngs = nnx.Rngs(0)
    flax_cell = (nnx.OptimizedLSTMCell if kind == "lstm" else nnx.GRUCell)(inp, hidden, rngs=rngs)
    carry0 = flax_cell.initialize_carry((batch, inp), rngs)  # zeros, made outside the trace
    graphdef, params, rest = nnx.split(nnx.RNN(flax_cell), nnx.Param, ...)
    xs = jax.random.normal(jax.random.key(1), (batch, time_, inp))

    def loss(params, xs):
        return jnp.mean(nnx.merge(graphdef, params, rest)(xs, initial_carry=carry0) ** 2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda: jax.block_until_ready(grad(params, xs))


def torch_step(kind: str, shape) -> Callable[[], object] | None:
    try:
        import torch
    except ImportError:
        return None
    batch, time_, inp, hidden = shape
    torch.manual_seed(0)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(inp, hidden, batch_first=True)
    xs = torch.randn(batch, time_, inp, requires_grad=True)

    def step():
        module.zero_grad(set_to_none=True)
        xs.grad = None
        ys, _ = module(xs)
        (ys**2).mean().backward()

    return step


def contenders(kind: str, shape) -> dict[str, Callable[[], object]]:
    out = {f"seqjax/{name}": seqjax_step(kind, shape, name) for name in sorted(sj.kernels.BACKENDS)}
    out["seqjax/auto"] = seqjax_step(kind, shape, "auto")
    out["flax.nnx.RNN"] = flax_step(kind, shape)
    torch_fn = torch_step(kind, shape)
    if torch_fn is not None:
        out["torch.nn"] = torch_fn
    return out


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms per contender; every round runs each contender once, in turn."""
    for fn in fns.values():  # compile and warm up
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def versions() -> dict[str, str]:
    out = {"jax": jax.__version__, "python": platform.python_version()}
    for module in ("flax", "optax", "torch", "numpy"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            pass
    return out


def machine() -> dict[str, object]:
    return {
        "platform": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "| cell | shape (B,T,I,H) | contender | ms | vs flax.nnx | vs torch |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        for name, ms in row["ms"].items():
            flax_ratio = ms / row["ms"]["flax.nnx.RNN"]
            torch_ms = row["ms"].get("torch.nn")
            torch_ratio = f"{ms / torch_ms:.2f}x" if torch_ms else "n/a"
            lines.append(
                f"| {row['cell']} | {row['shape_name']} {tuple(row['shape'])} | {name} | "
                f"{ms:.1f} | {flax_ratio:.2f}x | {torch_ratio} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["S1"], choices=sorted(SHAPES))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=sorted(CELLS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1; got {args.rounds}")

    results = []
    for shape_name in args.shapes:
        for kind in args.cells:
            shape = SHAPES[shape_name]
            print(f"[bench] {kind} {shape_name} {shape}: compiling and timing ...", flush=True)
            ms = time_interleaved(contenders(kind, shape), args.rounds)
            results.append({"cell": kind, "shape_name": shape_name, "shape": shape, "ms": ms})
            for name, value in ms.items():
                print(f"  {name:18s} {value:8.1f} ms  ({value / ms['flax.nnx.RNN']:.2f}x flax)")

    table = markdown(results)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_step.md").write_text(
        f"# Training-step time (median of {args.rounds} interleaved rounds)\n\n"
        f"Machine: {machine()}\n\nVersions: {versions()}\n\n{table}\n"
    )
    (args.out / "training_step.json").write_text(json.dumps(
        {"rounds": args.rounds, "machine": machine(), "versions": versions(), "results": results},
        indent=2,
    ) + "\n")
    print(f"\nwrote {args.out / 'training_step.md'} and training_step.json")


if __name__ == "__main__":
    main()
