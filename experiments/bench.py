"""Training-step benchmark: every seqjax backend against the established RNN implementations.

One training step = forward over the whole sequence + gradients w.r.t. all params and the inputs
(loss ``mean(ys**2)``), float32, jit-compiled (torch: eager, its fused oneDNN/cuDNN RNN). Contenders
are timed interleaved, round-robin, in one process, so machine noise hits all of them alike; every
ratio printed is between numbers measured in this run. In its turn each contender runs twice and
the second step is timed, so that it follows its own step (see ``sample_interleaved``).
Contenders whose package is not installed are left out and say so.

Sections:
  1. training-step time, LSTM and GRU at S1-S4 (ms; ratios to torch and flax.nnx; % of the
     machine's float32 matmul peak, measured here, for standard RNN matmul FLOPs);
  2. minGRU / minLSTM against seqjax's own LSTM at S1;
  3. compile time of a 2-layer BiLSTM training step at T = 32 ... 8192;
  4. peak memory of an LSTM training step at T = 8192 with and without remat (XLA's buffer
     assignment: arguments + outputs + temporaries of the compiled step).
Writes ``bench.md`` (tables), ``bench.json`` (every round's time, versions, machine) and, with
matplotlib, ``bench.png`` (each measurement against its goal line) to
``experiments/results/bench/``.

Run:
  make bench                                          # everything, 7-12 minutes on 2 cores
  .venv/bin/python experiments/bench.py --shapes S1 --cells lstm --rounds 5 --skip compile memory
  .venv/bin/python experiments/bench.py --summarize experiments/results/bench/bench.json
                                                      # the results README's opening, from a run

Expected: see experiments/results/bench/README.md for the measured table and the goals.
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
from typing import NamedTuple

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
CELLS = {"lstm": sj.lstm, "gru": sj.gru, "min_gru": sj.min_gru, "min_lstm": sj.min_lstm}
GATES = {"lstm": 4, "gru": 3}
RESULTS = pathlib.Path(__file__).parent / "results" / "bench"
Step = Callable[[], object]


# ----------------------------------------------------------------------------- contenders


def _inputs(shape):
    batch, time_, inp, _ = shape
    return jax.random.normal(jax.random.key(1), (batch, time_, inp))


def _jax_grad_step(loss, params, xs) -> Step:
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda: jax.block_until_ready(grad(params, xs))


def seqjax_step(kind: str, shape, backend: str, remat: bool = False) -> Step:
    cell = CELLS[kind](shape[3])
    params = cell.init(jax.random.key(0), shape[2])

    def loss(params, xs):
        _, ys = sj.rnn(cell, params, xs, backend=backend, remat=remat)
        return jnp.mean(ys**2)

    return _jax_grad_step(loss, params, _inputs(shape))


def flax_step(kind: str, shape) -> Step:
    batch, _, inp, hidden = shape
    rngs = nnx.Rngs(0)
    flax_cell = (nnx.OptimizedLSTMCell if kind == "lstm" else nnx.GRUCell)(inp, hidden, rngs=rngs)
    carry0 = flax_cell.initialize_carry((batch, inp), rngs)  # zeros, made outside the trace
    graphdef, params, rest = nnx.split(nnx.RNN(flax_cell), nnx.Param, ...)

    def loss(params, xs):
        return jnp.mean(nnx.merge(graphdef, params, rest)(xs, initial_carry=carry0) ** 2)

    return _jax_grad_step(loss, params, _inputs(shape))


def haiku_step(kind: str, shape) -> Step | None:
    try:
        import haiku as hk
    except ImportError:
        return None
    batch, _, _, hidden = shape

    def forward(xs):
        core = hk.LSTM(hidden) if kind == "lstm" else hk.GRU(hidden)
        ys, _ = hk.dynamic_unroll(core, jnp.swapaxes(xs, 0, 1), core.initial_state(batch))
        return ys

    model = hk.without_apply_rng(hk.transform(forward))
    xs = _inputs(shape)
    params = model.init(jax.random.key(0), xs)
    return _jax_grad_step(lambda p, x: jnp.mean(model.apply(p, x) ** 2), params, xs)


def equinox_step(kind: str, shape) -> Step | None:
    try:
        import equinox as eqx
    except ImportError:
        return None
    batch, _, inp, hidden = shape
    make = eqx.nn.LSTMCell if kind == "lstm" else eqx.nn.GRUCell
    cell = make(inp, hidden, key=jax.random.key(0))
    zeros = jnp.zeros((batch, hidden))

    def loss(cell, xs):
        step = jax.vmap(cell)

        def body(carry, x_t):
            carry = step(x_t, carry)
            return carry, carry[0] if kind == "lstm" else carry

        carry0 = (zeros, zeros) if kind == "lstm" else zeros
        _, ys = jax.lax.scan(body, carry0, jnp.swapaxes(xs, 0, 1))
        return jnp.mean(ys**2)

    return _jax_grad_step(loss, cell, _inputs(shape))


def keras_step(kind: str, shape) -> Step | None:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    if keras.backend.backend() != "jax":
        return None
    batch, time_, inp, hidden = shape
    layer = (keras.layers.LSTM if kind == "lstm" else keras.layers.GRU)(
        hidden, return_sequences=True
    )
    layer.build((batch, time_, inp))
    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, xs):
        ys, _ = layer.stateless_call(trainable, frozen, xs)
        return jnp.mean(ys**2)

    return _jax_grad_step(loss, trainable, _inputs(shape))


def torch_step(kind: str, shape) -> Step | None:
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


OTHERS = {
    "flax.nnx.RNN": flax_step,
    "haiku": haiku_step,
    "equinox": equinox_step,
    "keras3/jax": keras_step,
    "torch.nn": torch_step,
}


def cpu_capable_backends(kind: str) -> list[str]:
    """Registered backends that support the cell and run natively here (Pallas on GPU/TPU,
    native on CPU where a C++ compiler builds it)."""
    spec = CELLS[kind](8).spec
    names = [n for n, b in sorted(sj.kernels.BACKENDS.items()) if b.supports(spec)]
    if jax.default_backend() == "cpu":
        names = [n for n in names if n != "pallas"]  # interpret mode is a test aid, not a kernel
    if jax.default_backend() != "cpu" or not sj.kernels.native.available():
        names = [n for n in names if n != "native"]
    return names


def contenders(kind: str, shape) -> tuple[dict[str, Step], list[str]]:
    out = {f"seqjax/{name}": seqjax_step(kind, shape, name) for name in cpu_capable_backends(kind)}
    out["seqjax/auto"] = seqjax_step(kind, shape, "auto")
    missing = []
    for name, make in OTHERS.items():
        step = make(kind, shape)
        if step is None:
            missing.append(name)
        else:
            out[name] = step
    return out, missing


# ----------------------------------------------------------------------------- measuring


class Samples(NamedTuple):
    """ms of every round per contender, for two calls in a row."""

    steady: dict[str, list[float]]  # the second call: after the contender's own step (the result)
    after_other: dict[str, list[float]]  # the first call: right after another contender's step


def sample_interleaved(fns: dict[str, Step], rounds: int) -> Samples:
    """Every round runs each contender twice in a row, in turn, and times both calls.

    The second call is the measurement: it follows the contender's own step, as steps do in a
    training loop. The first absorbs what the contender before it left running: after a large
    XLA:CPU step returns, its threads stay busy for 5-10 ms, which slowed a minGRU step that
    followed an LSTM step by 4-10 ms (experiments/results/bench/README.md, 2026-12-04).
    """
    for fn in fns.values():  # compile and warm up
        fn()
        fn()
    samples = Samples({name: [] for name in fns}, {name: [] for name in fns})
    for _ in range(rounds):
        for name, fn in fns.items():
            for kept in (samples.after_other, samples.steady):
                start = time.perf_counter()
                fn()
                kept[name].append((time.perf_counter() - start) * 1e3)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def matmul_peak_gflops(size: int = 2048, rounds: int = 10) -> float:
    """The machine's float32 large-matmul throughput, measured now (best of ``rounds``)."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    best = min(_timed(lambda: jax.block_until_ready(matmul(a))) for _ in range(rounds))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_step_gflop(kind: str, shape) -> float:
    """Standard RNN matmul FLOPs of a training step: forward 2*B*T*(I+H)*G*H, backward twice that
    (gradients w.r.t. activations and weights)."""
    batch, time_, inp, hidden = shape
    return 3 * 2 * batch * time_ * (inp + hidden) * GATES[kind] * hidden / 1e9


def bilstm_step(time_: int, remat: bool = False, batch: int = 16, inp: int = 32, hidden: int = 64):
    """A 2-layer BiLSTM training step (grads w.r.t. params) and its arguments."""
    cell = sj.lstm(hidden)
    keys = jax.random.split(jax.random.key(0), 4)
    params = [
        (cell.init(keys[0], inp), cell.init(keys[1], inp)),
        (cell.init(keys[2], 2 * hidden), cell.init(keys[3], 2 * hidden)),
    ]
    xs = jnp.zeros((batch, time_, inp))

    def loss(params, xs):
        _, ys = sj.stacked((cell, cell), params, xs, remat=remat)
        return jnp.mean(ys**2)

    return jax.grad(loss), (params, xs)


def compile_seconds(time_: int) -> float:
    fn, args = bilstm_step(time_)
    lowered = jax.jit(fn).lower(*args)
    return _timed(lowered.compile)


def peak_memory_mib(time_: int, remat: bool, backend: str = "auto") -> float:
    cell = sj.lstm(256)
    params = cell.init(jax.random.key(0), 128)
    xs = jnp.zeros((16, time_, 128))

    def loss(params, xs):
        _, ys = sj.rnn(cell, params, xs, remat=remat, backend=backend)
        return jnp.mean(ys**2)

    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    stats = compiled.memory_analysis()
    total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
    return total / 2**20


# ----------------------------------------------------------------------------- reporting


def versions() -> dict[str, str]:
    out = {"jax": jax.__version__, "python": platform.python_version()}
    for module, name in (("flax", "flax"), ("optax", "optax"), ("torch", "torch"),
                         ("numpy", "numpy"), ("haiku", "dm-haiku"), ("equinox", "equinox"),
                         ("keras", "keras")):
        try:
            out[name] = __import__(module).__version__
        except ImportError:
            pass
    return out


def _cpu_description() -> dict[str, object]:
    """Model and caches from Linux's /proc and /sys (empty elsewhere), so that runs on
    different hosts of "the same" machine can be told apart."""
    out: dict[str, object] = {}
    try:
        fields = dict(line.split(":", 1) for line in
                      pathlib.Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        out["cpu_model"] = fields.get("model name", "")
        out["cpu_family_model"] = f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}"
    except OSError:
        return out
    caches = {}
    for index in sorted(pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        caches[f"L{level} {kind}"] = size
    out["caches_per_cpu0"] = caches
    return out


def machine() -> dict[str, object]:
    return {
        "platform": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        **_cpu_description(),
    }


def step_table(rows: list[dict], peak: float) -> str:
    lines = [
        "| cell | shape (B,T,I,H) | contender | ms | vs torch | vs flax.nnx | % of matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        torch_ms = row["ms"].get("torch.nn")
        for name, ms in row["ms"].items():
            vs_torch = f"{ms / torch_ms:.2f}x" if torch_ms else "n/a"
            pct = 100 * row["gflop"] / (ms / 1e3) / peak
            lines.append(
                f"| {row['cell']} | {row['shape_name']} {tuple(row['shape'])} | {name} | "
                f"{ms:.1f} | {vs_torch} | {ms / row['ms']['flax.nnx.RNN']:.2f}x | {pct:.0f}% |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- goals

# The goals. (contender, ratio): "seqjax/auto <= ratio x that contender's time" at every
# shape (drawn as lines on the plot; haiku's is checked but not drawn); the min cells' goal is 5x
# faster than seqjax's own LSTM at S1; "flat in T": the compile time at the longest T at most
# 1.5x that at the shortest.
STEP_GOALS = {"lstm": (("torch.nn", 1.0), ("flax.nnx.RNN", 0.8)),
              "gru": (("torch.nn", 0.8), ("flax.nnx.RNN", 0.8))}
NO_SLOWER_THAN = {"lstm": ("haiku",)}
MATMUL_PEAK_GOAL = ("lstm", ("S1", "S3"), 60.0)  # cell, shapes, % of the float32 matmul peak
MIN_SPEEDUP_GOAL = 5.0
COMPILE_GOAL_S = 1.5
COMPILE_FLAT_RATIO = 1.5
REMAT_MEMORY_GOAL = 0.5
NAMES = {"lstm": "LSTM", "gru": "GRU", "min_gru": "minGRU", "min_lstm": "minLSTM",
         "torch.nn": "torch", "flax.nnx.RNN": "flax.nnx"}


class Goal(NamedTuple):
    """One goal judged on one report: what it asks, the figures it is judged on, the verdict."""

    goal: str
    measured: str
    reached: str  # "yes", "no", or a verdict per part


def step_goal_lines(row: dict) -> list[tuple[str, float]]:
    """The plot's goal lines of a training-step row: (label, ms that seqjax/auto must beat)."""
    return [(f"goal: {ratio:g}x {other}", ratio * row["ms"][other])
            for other, ratio in STEP_GOALS.get(row["cell"], ()) if other in row["ms"]]


def _rows_by_cell(report: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in sorted(report.get("training_step", []), key=lambda r: r["shape_name"]):
        rows.setdefault(row["cell"], []).append(row)
    return rows


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def percent_of_peak(row: dict, peak: float, contender: str = "seqjax/auto") -> float:
    """The contender's step rate as a percentage of the float32 matmul peak (GFLOP/s)."""
    return 100 * row["gflop"] / (row["ms"][contender] / 1e3) / peak


def goals(report: dict) -> list[Goal]:
    """Every goal the report has the measurements for, judged on them."""
    out = []
    for cell, rows in _rows_by_cell(report).items():
        shapes = "-".join(dict.fromkeys((rows[0]["shape_name"], rows[-1]["shape_name"])))
        bounds = [*STEP_GOALS.get(cell, ()), *((o, 1.0) for o in NO_SLOWER_THAN.get(cell, ()))]
        for other, bound in bounds:
            if not all(other in row["ms"] for row in rows):
                continue
            ratios = [row["ms"]["seqjax/auto"] / row["ms"][other] for row in rows]
            name = (f"{NAMES[cell]} `auto` no slower than {other} on {shapes}"
                    if other in NO_SLOWER_THAN.get(cell, ()) else
                    f"{NAMES[cell]} `auto` <= {bound:.1f}x {NAMES.get(other, other)} on {shapes}")
            out.append(Goal(name, " / ".join(f"{r:.2f}" for r in ratios),
                            _yes(all(r <= bound for r in ratios))))
        peak_cell, peak_shapes, peak_goal = MATMUL_PEAK_GOAL
        peak_rows = [row for row in rows if row["shape_name"] in peak_shapes]
        if cell == peak_cell and peak_rows and "matmul_peak_gflops" in report:
            peak = report["matmul_peak_gflops"]
            pcts = [percent_of_peak(row, peak) for row in peak_rows]
            out.append(Goal(
                f"{NAMES[cell]} `auto` >= {peak_goal:g}% of the matmul peak on "
                f"{' and '.join(peak_shapes)}",
                " / ".join(f"{p:.0f}%" for p in pcts) + f" (of {peak:.0f} GFLOP/s)",
                _yes(all(p >= peak_goal for p in pcts))))
    if "min_cells" in report:
        ms = report["min_cells"]
        lstm = ms["lstm (auto)"]
        cells = [k for k in ("min_gru", "min_lstm") if f"{k} (auto)" in ms]
        speedups = {k: lstm / ms[f"{k} (auto)"] for k in cells}
        out.append(Goal(
            f"{' / '.join(NAMES[k] for k in cells)} at S1 >= {MIN_SPEEDUP_GOAL:g}x faster than "
            "seqjax's LSTM",
            " / ".join(f"{speedups[k]:.1f}x" for k in cells) + f" (LSTM {lstm:.1f} ms, "
            + ", ".join(f"{NAMES[k]} {ms[f'{k} (auto)']:.1f}" for k in cells) + ")",
            ", ".join(f"{NAMES[k]} {_yes(speedups[k] >= MIN_SPEEDUP_GOAL)}" for k in cells)))
    if "compile_seconds" in report:
        seconds = {int(t): s for t, s in report["compile_seconds"].items()}
        lengths = sorted(seconds)
        flat = seconds[lengths[-1]] <= COMPILE_FLAT_RATIO * seconds[lengths[0]]
        out.append(Goal(
            f"compile time of a 2-layer BiLSTM step <= {COMPILE_GOAL_S:g} s, flat in T",
            " / ".join(f"{seconds[t]:.2f}" for t in lengths) + " s at T = "
            + " / ".join(str(t) for t in lengths),
            _yes(max(seconds.values()) <= COMPILE_GOAL_S and flat)))
    if "peak_memory_mib_T8192" in report:
        memory = report["peak_memory_mib_T8192"]
        plain, remat = memory["auto, remat=False"], memory["auto, remat=True"]
        out.append(Goal(
            f"peak memory at T = 8192 with `remat=True` <= {REMAT_MEMORY_GOAL:g}x without",
            f"{remat / plain:.2f}x ({plain:.0f} -> {remat:.0f} MiB)",
            _yes(remat / plain <= REMAT_MEMORY_GOAL)))
    return out


def goals_table(report: dict) -> str:
    """The report's goals as a markdown table."""
    return "\n".join(["| goal | measured (S1 / S2 / S3 / S4 where per shape) | reached |",
                      "|---|---|---|",
                      *(f"| {g.goal} | {g.measured} | {g.reached} |" for g in goals(report))])


def current_results(report: dict) -> str:
    """What experiments/results/bench/README.md opens with: the machine and the goals table."""
    m, v = report.get("machine", {}), report.get("versions", {})
    cpu = f"{m.get('cpu_model', m.get('processor', '?'))} ({m.get('cpu_family_model', '?')})"
    setup = (f"Machine: {cpu}, {m.get('cpu_count', '?')} cores; JAX {v.get('jax', '?')}, "
             f"torch {v.get('torch', '?')}; float32 matmul peak "
             f"{report.get('matmul_peak_gflops', float('nan')):.0f} GFLOP/s; median of "
             f"{report.get('rounds', '?')} interleaved rounds.")
    return setup + "\n\n" + goals_table(report)


def readme_summary(report: dict) -> str:
    """The figures the project's README.md quotes from the last run (S1 training steps)."""
    rows = {row["cell"]: row for row in report["training_step"] if row["shape_name"] == "S1"}
    batch, time_, inp, hidden = rows["lstm"]["shape"]
    lstm, gru, mins = rows["lstm"]["ms"], rows["gru"]["ms"], report["min_cells"]
    return (f"in the last `make bench` run a training step at B{batch} T{time_} I{inp} H{hidden} "
            f"took {lstm['seqjax/auto']:.0f} ms for the LSTM (flax.nnx {lstm['flax.nnx.RNN']:.0f}, "
            f"torch.nn {lstm['torch.nn']:.0f}) and {gru['seqjax/auto']:.0f} ms for the GRU "
            f"({gru['flax.nnx.RNN']:.0f}, {gru['torch.nn']:.0f}), and minGRU and minLSTM took "
            f"{mins['min_gru (auto)']:.0f} and {mins['min_lstm (auto)']:.0f} ms beside the LSTM's "
            f"{mins['lstm (auto)']:.0f}")


def _bar_colour(contender: str) -> str:
    if contender == "seqjax/auto":
        return "tab:blue"
    return "lightsteelblue" if contender.startswith("seqjax/") else "0.6"


def _whiskers(names, medians_ms, rounds_ms) -> list[list[float]]:
    """Error-bar lengths from each median down to the fastest round and up to the slowest (zero
    where the report has no rounds, as in runs before rounds were kept)."""
    low = [m - min(rounds_ms.get(n, [m])) for n, m in zip(names, medians_ms)]
    high = [max(rounds_ms.get(n, [m])) - m for n, m in zip(names, medians_ms)]
    return [low, high]


def plot_report(report: dict, path: pathlib.Path | None = None):
    """The report's measurements against the goals, one panel per measurement (matplotlib).

    Training steps: one panel per cell and shape, a bar per contender (median ms; whiskers from
    the fastest to the slowest round), ``seqjax/auto`` highlighted, each goal a dashed line at its
    ratio times the other contender's median (auto's bar must end left of it). Then minGRU /
    minLSTM against the LSTM (the 5x line), compile time against T (the 1.5 s line) and peak
    memory with and without remat (the 0.5x line). Sections missing from the report are left out.

    Returns:
        The ``matplotlib.figure.Figure``; written as PNG to ``path`` when given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = report.get("training_step", [])
    cells = list(dict.fromkeys(row["cell"] for row in steps))
    shapes = list(dict.fromkeys(row["shape_name"] for row in steps))
    extras = [key for key in ("min_cells", "compile_seconds", "peak_memory_mib_T8192")
              if key in report]
    columns = max(len(shapes), len(extras), 1)
    grid_rows = len(cells) + (1 if extras else 0)
    if grid_rows == 0:
        raise ValueError("report: nothing to plot (no training_step, min_cells, compile_seconds "
                         "or peak_memory_mib_T8192 section)")
    fig = Figure(figsize=(4.2 * columns, 3.6 * grid_rows))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(grid_rows, columns)

    for row in steps:
        ax = fig.add_subplot(grid[cells.index(row["cell"]), shapes.index(row["shape_name"])])
        names = list(row["ms"])
        ms = [row["ms"][n] for n in names]
        ax.barh(names, ms, xerr=_whiskers(names, ms, row.get("rounds_ms", {})), capsize=2,
                color=[_bar_colour(n) for n in names])
        ax.invert_yaxis()
        for (label, ms_goal), style in zip(step_goal_lines(row), ("--", ":")):
            ax.axvline(ms_goal, color="tab:red", linestyle=style, label=label)
        ax.set_title(f"{row['cell'].upper()} {row['shape_name']} {tuple(row['shape'])}",
                     fontsize=9)
        ax.set_xlabel("training step, ms")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best", framealpha=0.9)

    for column, key in enumerate(extras):
        ax = fig.add_subplot(grid[grid_rows - 1, column])
        if key == "min_cells":
            names, ms = list(report[key]), list(report[key].values())
            lstm_ms = report[key]["lstm (auto)"]
            ax.barh(names, ms, xerr=_whiskers(names, ms, report.get("min_cells_rounds_ms", {})),
                    capsize=2, color="tab:blue")
            ax.invert_yaxis()
            ax.axvline(lstm_ms / MIN_SPEEDUP_GOAL, color="tab:red", linestyle="--",
                       label=f"goal: {MIN_SPEEDUP_GOAL:g}x faster than the LSTM")
            ax.set_xlabel("training step at S1, ms")
            ax.set_title("minGRU / minLSTM vs LSTM", fontsize=9)
        elif key == "compile_seconds":
            lengths = [int(t) for t in report[key]]
            ax.plot(lengths, list(report[key].values()), "o-", color="tab:blue")
            ax.axhline(COMPILE_GOAL_S, color="tab:red", linestyle="--",
                       label=f"goal: <= {COMPILE_GOAL_S:g} s")
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths, [str(t) for t in lengths])
            ax.set_ylim(bottom=0)
            ax.set_xlabel("sequence length T")
            ax.set_ylabel("seconds")
            ax.set_title("compile time, 2-layer BiLSTM step", fontsize=9)
        else:
            memory = report[key]
            backends = list(dict.fromkeys(k.split(",")[0] for k in memory))
            plain = [memory[f"{b}, remat=False"] for b in backends]
            remat = [memory[f"{b}, remat=True"] for b in backends]
            ys = range(len(backends))
            ax.barh([y - 0.2 for y in ys], plain, height=0.4, color="0.65", label="remat=False")
            ax.barh([y + 0.2 for y in ys], remat, height=0.4, color="tab:blue", label="remat=True")
            ax.set_yticks(list(ys), backends)
            ax.invert_yaxis()
            ax.axvline(REMAT_MEMORY_GOAL * memory["auto, remat=False"], color="tab:red",
                       linestyle="--", label=f"goal for auto: {REMAT_MEMORY_GOAL:g}x remat=False")
            ax.set_xlabel("peak memory at T = 8192, MiB")
            ax.set_title("remat", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best", framealpha=0.9)

    fig.suptitle(f"seqjax `make bench` ({report.get('machine', {}).get('cpu_count', '?')} cores, "
                 f"{report.get('rounds', '?')} interleaved rounds)", fontsize=11)
    fig.tight_layout()
    if path is not None:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=90)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=sorted(SHAPES), choices=sorted(SHAPES))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=sorted(GATES))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["steps", "min", "compile", "memory"])
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--summarize", type=pathlib.Path, metavar="BENCH_JSON",
                        help="measure nothing: print the opening of the results README (the "
                             "machine and the goals table) from a bench.json")
    args = parser.parse_args()
    if args.summarize:
        print(current_results(json.loads(args.summarize.read_text())))
        return
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1; got {args.rounds}")

    report: dict[str, object] = {"machine": machine(), "versions": versions(),
                                 "rounds": args.rounds}
    sections: list[str] = []
    peak = matmul_peak_gflops()
    report["matmul_peak_gflops"] = peak
    print(f"[bench] float32 matmul peak here: {peak:.0f} GFLOP/s", flush=True)

    if "steps" not in args.skip:
        rows = []
        for shape_name in args.shapes:
            for kind in args.cells:
                shape = SHAPES[shape_name]
                print(f"[bench] {kind} {shape_name} {shape}: compiling and timing ...", flush=True)
                fns, missing = contenders(kind, shape)
                samples = sample_interleaved(fns, args.rounds)
                ms = medians(samples.steady)
                rows.append({"cell": kind, "shape_name": shape_name, "shape": shape, "ms": ms,
                             "rounds_ms": samples.steady,
                             "after_other_rounds_ms": samples.after_other,
                             "gflop": train_step_gflop(kind, shape), "not_installed": missing})
                for name, value in ms.items():
                    print(f"  {name:18s} {value:8.1f} ms", flush=True)
        report["training_step"] = rows
        sections.append("## Training step (median ms, interleaved)\n\n" + step_table(rows, peak))

    if "min" not in args.skip:
        shape = SHAPES["S1"]
        print("[bench] minGRU/minLSTM vs LSTM at S1 ...", flush=True)
        fns = {f"{kind} (auto)": seqjax_step(kind, shape, "auto")
               for kind in ("lstm", "min_gru", "min_lstm")}
        samples = sample_interleaved(fns, args.rounds)
        ms, first = medians(samples.steady), medians(samples.after_other)
        report["min_cells"] = ms
        report["min_cells_rounds_ms"] = samples.steady
        report["min_cells_after_other"] = first
        report["min_cells_after_other_rounds_ms"] = samples.after_other
        sections.append("## minGRU / minLSTM vs LSTM, S1 (64, 128, 128, 256)\n\n"
                        "| cell | ms | speed-up over LSTM | first call of a turn: ms, speed-up |\n"
                        "|---|---|---|---|\n" + "\n".join(
                            f"| {name} | {ms[name]:.1f} | {ms['lstm (auto)'] / ms[name]:.1f}x | "
                            f"{first[name]:.1f}, {first['lstm (auto)'] / first[name]:.1f}x |"
                            for name in ms))

    if "compile" not in args.skip:
        print("[bench] compile time of a 2-layer BiLSTM training step ...", flush=True)
        compile_s = {t: compile_seconds(t) for t in (32, 256, 2048, 8192)}
        report["compile_seconds"] = compile_s
        sections.append("## Compile time, 2-layer BiLSTM training step (B16, I32, H64)\n\n"
                        "| T | seconds |\n|---|---|\n" + "\n".join(
                            f"| {t} | {s:.2f} |" for t, s in compile_s.items()))

    if "memory" not in args.skip:
        print("[bench] peak memory at T = 8192 ...", flush=True)
        memory = {(backend, remat): peak_memory_mib(8192, remat, backend)
                  for backend in ("auto", *cpu_capable_backends("lstm")) for remat in (False, True)}
        report["peak_memory_mib_T8192"] = {f"{b}, remat={r}": v for (b, r), v in memory.items()}
        ratio = memory[("auto", True)] / memory[("auto", False)]
        sections.append("## Peak memory, LSTM training step at T = 8192 (B16, I128, H256)\n\n"
                        "| backend | remat=False MiB | remat=True MiB | ratio |\n"
                        "|---|---|---|---|\n"
                        + "\n".join(
                            f"| {b} | {memory[(b, False)]:.0f} | {memory[(b, True)]:.0f} | "
                            f"{memory[(b, True)] / memory[(b, False)]:.2f} |"
                            for b in dict.fromkeys(b for b, _ in memory))
                        + f"\n\nauto with remat / auto without: {ratio:.2f}")

    sections.insert(0, "## Goals\n\n" + goals_table(report))
    header = (f"# seqjax benchmark\n\nMachine: {machine()}\n\nVersions: {versions()}\n\n"
              f"float32 matmul peak measured in this run: {peak:.0f} GFLOP/s. Median of "
              f"{args.rounds} interleaved rounds; each round runs every contender twice in a "
              "row and times the second call (bench.json keeps the first calls too).\n\n")
    text = header + "\n\n".join(sections) + "\n"
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(text)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    try:
        plot_report(report, args.out / "bench.png")
        print(f"wrote {args.out / 'bench.md'}, bench.json and bench.png")
    except ImportError:
        print(f"wrote {args.out / 'bench.md'} and bench.json (no matplotlib: no bench.png)")


if __name__ == "__main__":
    main()
