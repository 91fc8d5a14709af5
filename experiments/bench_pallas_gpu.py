"""GPU benchmark of the ``pallas`` backend: correctness on GPU, then training-step times.

Needs a CUDA GPU (the kernels lower through Triton there). It first checks the GPU kernels against
``reference`` (values and gradients, masks, resets, both directions, split and unsplit), then
times one training step (forward over the whole sequence + gradients w.r.t. params and inputs,
loss ``mean(ys**2)``, float32 with TF32 dots) of the pallas kernel in several tile
configurations, the other seqjax backends and, when installed, torch's cuDNN LSTM/GRU (TF32
allowed), interleaved round-robin in one process.

Run (on a GPU machine):
  python experiments/bench_pallas_gpu.py                      # S1-S4 and two small-H shapes
  python experiments/bench_pallas_gpu.py --shapes S1 --cells lstm

Expected: see experiments/results/bench/README.md, section "Pallas on GPU".
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import seqjax as sj
from seqjax.kernels import BACKENDS, pallas

SHAPES = {  # (batch, time, input, hidden)
    "S1": (64, 128, 128, 256),
    "S2": (32, 512, 64, 128),
    "S3": (128, 32, 64, 512),
    "S4": (16, 1024, 32, 64),
    "H32": (64, 128, 128, 32),
    "H64": (64, 128, 128, 64),
}
CELLS = {"lstm": sj.lstm, "gru": sj.gru}
# (block_b, block_h, split, num_warps, k_chunk) for --sweep; None = the kernel's own choice.
KNOBS = ("block_b", "block_h", "split", "num_warps", "k_chunk")
CONFIGS = [None, (16, 16, 16, (4, 8)), (16, 16, 16, (4, 32)), (16, 16, 16, (4, 16), 128),
           (32, 16, 16, (4, 16)), (16, 16, 16, 8), (16, 32, 1, 4), (16, 32, 1, (4, 8))]


def log(*args):
    print(*args, flush=True)


def time_major_step(kind, shape, run, forward_only=False):
    batch, time_, inp, hidden = shape
    cell = CELLS[kind](hidden)
    params = cell.init(jax.random.key(0), inp)
    xs = jax.random.normal(jax.random.key(1), (time_, batch, inp))
    carry0 = cell.initial_carry((batch,))

    def loss(params, xs):
        _, ys = run(cell, params, xs, None, None, carry0, reverse=False, unroll=1, remat=False)
        return jnp.mean(ys**2)

    grad = jax.jit(loss if forward_only else jax.grad(loss, argnums=(0, 1)))
    return lambda: jax.block_until_ready(grad(params, xs))


def torch_step(kind, shape):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    batch, time_, inp, hidden = shape
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(inp, hidden).cuda()
    xs = torch.randn(time_, batch, inp, device="cuda", requires_grad=True)

    def step():
        module.zero_grad(set_to_none=True)
        xs.grad = None
        ys, _ = module(xs)
        (ys**2).mean().backward()
        torch.cuda.synchronize()

    return step


def check(kind, time_, batch, hidden, config, reverse, flags):
    """Values and gradients of the GPU kernel against ``reference`` (TF32-level tolerance)."""
    cell = CELLS[kind](hidden)
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (time_, batch, 8))
    carry0 = jax.tree.map(lambda c: 0.5 * jax.random.normal(jax.random.key(2), c.shape),
                          cell.initial_carry((batch,)))
    mask = resets = None
    if flags:
        mask = jax.random.bernoulli(jax.random.key(3), 0.7, (time_, batch)).at[:, 0].set(False)
        resets = jax.random.bernoulli(jax.random.key(4), 0.3, (time_, batch))
    w_y = jax.random.normal(jax.random.key(5), (time_, batch, hidden))

    def loss(run, params, xs, carry0):
        carry, ys = run(cell, params, xs, mask, resets, carry0, reverse=reverse, unroll=1,
                        remat=False)
        return jnp.sum(ys * w_y) + sum(jnp.sum(jnp.sin(leaf)) for leaf in carry)

    kw = {} if config is None else dict(zip(KNOBS, config))
    got = jax.jit(jax.value_and_grad(functools.partial(loss, functools.partial(pallas.run, **kw)),
                                     argnums=(0, 1, 2)))(params, xs, carry0)
    want = jax.jit(jax.value_and_grad(functools.partial(loss, BACKENDS["reference"].run),
                                      argnums=(0, 1, 2)))(params, xs, carry0)
    worst = 0.0
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        worst = max(worst, float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) + 1e-12)))
    return worst


def run_checks(cells) -> int:
    """Every check against ``reference``; returns how many failed."""
    cases = [(9, 37, 64, config) for config in (None, (16, 16, 4, 4), (16, 16, 2, 4))]
    cases += [(16, 64, 256, config) for config in (None, (64, 16, 16, 4), (16, 16, 16, 4, 64),
                                                   (32, 16, 16, 4, 32))]
    failed = 0
    for kind in cells:
        for time_, batch, hidden, config in cases:
            for reverse, flags in ((False, False), (True, True)):
                err = check(kind, time_, batch, hidden, config, reverse, flags)
                ok = err < 5e-3
                failed += not ok
                log(f"check {kind} T{time_} B{batch} H{hidden} {config} reverse={reverse} "
                    f"masks={flags}: max rel err {err:.1e}{'' if ok else '  FAILED'}")
    return failed


def contenders(kind, shape, configs, forward):
    steps = {backend: time_major_step(kind, shape, BACKENDS[backend].run)
             for backend in ("reference", "hoisted", "fused")}
    for config in configs:
        run = functools.partial(pallas.run, **({} if config is None else dict(zip(KNOBS, config))))
        label = "pallas" if config is None else f"pallas{config}"
        steps[label] = time_major_step(kind, shape, run)
        if config is None or forward:
            steps[label + " forward only"] = time_major_step(kind, shape, run, forward_only=True)
    torch = torch_step(kind, shape)
    if torch is not None:
        steps["torch cuDNN"] = torch
    return steps


def time_interleaved(name, shape, kind, steps, rounds):
    for label, step in list(steps.items()):
        t0 = time.perf_counter()
        try:
            step()
        except ValueError as err:  # a tiling this shape does not allow
            log(f"  {label}: skipped: {err}")
            del steps[label]
            continue
        log(f"  {name} {kind} {label}: first call {time.perf_counter() - t0:.1f} s")
    times = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            step()
            t0 = time.perf_counter()
            for _ in range(5):
                step()
            times[label].append((time.perf_counter() - t0) / 5 * 1e3)
    ref = statistics.median(times["reference"])
    cudnn = statistics.median(times["torch cuDNN"]) if "torch cuDNN" in times else None
    for label, ts in times.items():
        ms = statistics.median(ts)
        extra = f"  {ref / ms:5.2f}x faster than reference"
        if cudnn:
            extra += f"  {ms / cudnn:5.2f}x cuDNN's time"
        log(f"{name} {shape} {kind:4s} {label:28s} {ms:8.3f} ms{extra}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="time every tile configuration")
    parser.add_argument("--sweep-forward", action="store_true",
                        help="with --sweep: also time each configuration's forward alone")
    args = parser.parse_args(argv)
    if jax.default_backend() != "gpu":
        sys.exit("bench_pallas_gpu needs a GPU (jax.default_backend() is "
                 f"{jax.default_backend()!r})")
    device = jax.devices()[0]
    log(f"jax {jax.__version__}, {device.device_kind}, {getattr(device, 'core_count', '?')} SMs")
    failed = 0 if args.skip_check else run_checks(args.cells)
    for name in args.shapes:
        for kind in args.cells:
            steps = contenders(kind, SHAPES[name], CONFIGS if args.sweep else [None],
                               args.sweep_forward)
            time_interleaved(name, SHAPES[name], kind, steps, args.rounds)
    if failed:
        sys.exit(f"{failed} checks against reference failed")


if __name__ == "__main__":
    main()
