"""Native backend (CPU): the fused scheme with both scans as persistent multi-threaded C++ kernels.

``backend="native"`` runs the LSTM, the GRU (``reset_after=True``), minGRU and minLSTM on CPU.
For the LSTM and the GRU it is the scheme of
:mod:`seqjax.kernels.fused` (a custom VJP whose weight and input gradients are single big matmuls
over all steps), with the forward scan and the backward's reverse scan each one XLA FFI call into
``native.cc``: threads that each own a slice of the hidden units for the whole sequence, their
columns of ``W_h`` packed once and kept in their core's cache, the gate math on the matmul's
register tiles, and one spin barrier per step. XLA:CPU runs a ``lax.scan`` step as ~15 separate
thunks with a dispatch cost each, and streams every per-step intermediate through memory; the
kernels do neither.

Scheme (``native.cc``; panels of 16 hidden units, 8 without AVX-512)::

    forward   per step, each thread: [x_t, h_{t-1}] times its packed columns of W_x and W_h in
              register tiles of 6 batch rows x (4 gates x 16 units), the gates and the carry
              computed on the tile, h_t published; one barrier. Saves the gates and the carry
              entering each step (GRU: also h W_hn + b_hn).
    backward  per step, each thread: the gate gradients of its units (written over the saved
              gates, which XLA hands over through ``input_output_aliases``), barrier, then
              dh_{t-1}[:, own] = dZ_t W_h[own, :]^T. Bias gradients are summed on the way;
              dW_x, dW_h and dX are single big XLA matmuls afterwards. The GRU's input side
              dZx = [dr, dz, dn] is kept as dZh = [dr, dz, dn r] plus dn (1 - r).
    minGRU/   no recurrent matmul, so no barrier: each thread runs its units' recurrence on the
    minLSTM   tiles of x_t W_x (x batch-major, staged a few steps at a time into a time-major
              chunk), saving the state after each step (the outputs, where nothing is
              masked) and the pre-activations x W + b; up to input size 128 only h~'s, and the
              backward recomputes the gates' from x_t, per step for its own rows. The
              backward returns every gradient itself: threads own batch rows there, and each
              step's rows of d(x W + b) stay in cache for that step's rows of dX = dZ W_x^T
              (written batch-major) and, every block of ~128 rows, for dW_x += X^T dZ
              (per-thread sums, added up at the end). Training step against
              ``sequential`` (20 interleaved rounds): S1 (B64 T128 I128 H256) minGRU 31.6 vs
              31.7 ms, minLSTM 40.1 vs 51.7; S3 (B128 T32 I64 H512) 19.2 vs 34.5, 29.7 vs
              45.5; S4 (B16 T1024 I32 H64) 7.4 vs 12.8, 8.0 vs 20.9. With XLA's matmuls for dX
              and dW_x after a kernel that wrote d(x W + b) out, S1 took 35.7-36.0 / 46.8-48.7
              ms against 32.7-33.8 / 42.1-43.9 then (alternating processes).
              Recomputing the leading gates' pre-activations against saving them all
              (alternating processes, ms, minGRU / minLSTM): S1 36.6, 33.6 -> 27.1, 25.9 /
              53.6, 44.9 -> 41.0, 38.8; S2 28.7, 28.0 -> 19.0, 19.2 / 36.5, 38.6 -> 28.1,
              27.9; S3 25.7, 23.8 -> 17.0, 18.1 / 31.7, 32.8 -> 25.6, 26.8; S4 neutral
              (6-12 ms either way). At S1 it takes XLA's per-call temporaries from 36 / 44 MiB
              to 28 MiB, under glibc's 32 MiB mmap threshold, so they stop arriving as fresh
              pages every step. With larger inputs it costs: (B32 T256 I256 H512; 2026-12-02, a
              slower host) 134.8, 140.3
              saving all against 150.7, 157.5 recomputing / 194.9, 208.6 against 237.9, 240.4;
              (B64 T128 I512 H512) 175.8, 169.6 against 183.4, 203.1 / 258.6, 251.2 against
              278.6, 309.3. Recomputing all gates (saving none) was slower than saving the
              last one at S1 (minGRU 30.7-35.6, minLSTM 45-52 ms), and for minLSTM so was
              saving the last two (47.9, 52.8 against 42.7, 46.9).

The C++ source is compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``
or ``g++``) for this machine (``-march=native``) and cached under ``$SEQJAX_CACHE_DIR`` (default
``~/.cache/seqjax``), keyed by the source, compiler, flags, jaxlib and CPU. Where no compiler
works, :func:`available` is False, ``auto`` keeps ``fused`` (``sequential`` for the min cells),
and ``backend="native"`` raises with the compiler's message.

Computes in float32: bfloat16 inputs are widened, outputs return in the inputs' dtype and
gradients in the params' dtypes; a float64 carry is refused (``ValueError``). ``unroll`` and
``remat`` do not apply (one kernel runs the loop; the backward reads the saved gates). Threads:
one per available core (``os.sched_getaffinity``), at most one per panel;
``SEQJAX_NATIVE_THREADS`` overrides. Second-order gradients raise, as for ``fused``.

Measured on the project's 2-core CPU (AVX-512), each choice against the code before it
(kernel times from a C++ harness on warm memory; training steps interleaved in one process):

* the register tile: ~115 GFLOP/s per core in L1, this core's FMA peak. It must be a local
  array and the broadcast one instruction (``s - vf{}``): with the tile behind a reference and
  the broadcast built lane by lane, GCC kept the tile in memory (S1 forward 36-60 GFLOP/s).
  Without AVX-512, tiles of 3 rows (AVX2 has 16 vector registers): S1 forward 46 vs 53 ms.
* kernels alone at S1 (LSTM, B64 T128 I128 H256): forward 37.5 ms (172 GFLOP/s), backward's
  scan 26 ms; one thread: 72 and 46 ms. At S4 (B16 T1024 I32 H64): 8.6 / 7.5 ms on two threads,
  13.7 / 9.1 on one.
* long-lived worker threads: threads started per call begin beside their creator, and two
  spinning threads on one core serialise until the scheduler moves one (runs varied 2-3x).
* the barrier spins 200 pauses, then yields: XLA's own workers spin for a while after their
  work, and with 20000 pauses the S4 forward took 26.6 instead of 15.4 ms.
* outputs' fresh pages mapped up front, each thread its share (``MADV_POPULATE_WRITE``): XLA's
  temporaries are fresh memory each call, and two threads first-writing the same page both took
  the fault (twice the faults; LSTM S1 step 148 -> 131 ms, 117 -> 65 MB faulted per step).
* the GRU backward writing over its inputs instead of two new [T, B, 3H] buffers: 97 -> 57 MB
  faulted per step at S1 and S3; steps of 110 / 145 / 32 ms at S1 / S3 / S4 in the ``make
  bench`` run before, 106 / 132 / 23 in a shorter run after.
* tried and dropped: accumulating dW_x, dW_h and dX per step inside the backward kernel (S1
  backward 100.7 ms against 40.7 for the scan alone plus ~48 for XLA's matmuls; S4 51.5 against
  17.8 + ~5); non-temporal stores of the saved gates and software prefetch of the next step's
  inputs (no change); ``MADV_HUGEPAGE`` on the outputs (slower; again 2026-12-03: LSTM S1
  step 179.5 -> 182.6 ms, minGRU 40.6 -> 42.3, though the LSTM's faults fell 16390 -> 6419).
* sigmoid's and tanh's divisions as the hardware reciprocal plus one Newton step: S1 training
  step, ms, alternating processes, LSTM 223, 212, 200 -> 219, 200, 188; minGRU 56.2, 49.7, 46.3
  -> 49.6, 47.5, 44.5; minLSTM 77.3, 68.5, 61.1 -> 63.9, 67.2, 61.0.
* minGRU's forward puts two panels (2 gates x 16 units each) through one register tile,
  which halves the broadcasts per multiply-add. Forward kernel, ms, one panel -> two (one
  process, alternating per call, 30-40 rounds): S1 13.65, 14.38 -> 12.56, 12.99; S2 9.24 ->
  8.79; S3 17.18 -> 16.74; S4 4.16 -> 3.98; S1 training step 41.9 -> 40.3.
* the min cells' forward: the gate math of a register tile with the gate count and panels per
  tile as template constants (GCC then keeps the tile in registers and overlaps the vectors'
  exp chains), and the saved pre-activations written with streaming stores, which skip reading
  each line in first. Forward kernel at S1, ms, one process, variants alternating per call
  (2026-12-03): the constants, minGRU 11.80, 11.76 -> 10.93, 10.70 (three more runs: -7%,
  -8%, -8%); the streaming stores, 11.16, 11.15, 13.50 -> 10.02, 10.01, 12.23. S1 training step
  with the streaming stores: minGRU 42.1, 44.5 -> 40.6, 43.3; minLSTM 63.0, 66.2 -> 60.4, 65.5.
* the min cells' backward: dW_x = X^T dZ reads the block's rows of X as they lie (a micro-kernel
  with A transposed) instead of a scalar transpose of X, dZ's block is packed per group of four
  panels (15% faster in isolation than reading it at the 2 KB stride of its rows), and the rows
  of dX are written with streaming stores. All micro-kernel calls are forced inline: the first
  try left the forward's call out of line, and its forward kernel was 10% slower. Kernels at S1,
  ms, the 25th percentile of 40 calls, two builds loaded side by side in one process and
  alternating per call (2026-12-03): minGRU backward 26.5, 25.4 -> 22.4, 22.3, forward 10.8,
  10.6 -> 10.9, 10.8; minLSTM backward 32.0 -> 27.5, forward 11.0 -> 10.9; the LSTM's and GRU's
  kernels unchanged (LSTM forward 59.1, 65.1 -> 58.2, 62.5, backward 37.4, 42.7 -> 37.3, 43.2).
* the min cells read ``xs`` and write its gradient batch-major, so that with ``rnn()``'s default
  layout XLA transposes neither (a transpose of ``xs`` at S1 alone: 1.5 ms). Read in place, one
  step's rows, ``T * I`` apart, alias in the caches (the eleventh session's batch-major kernels
  were 13-67% slower), so the forward's threads each copy 8 steps' rows at a time into a
  time-major chunk first and the backward copies its own rows into its block of X; the rows of
  dX are streamed, which their stride does not slow. With the backward's gate gradients of a row
  compiled for each gate count (2-3% off the backward kernel), S1 training step, ms, 25th
  percentile / median of 60 rounds, old and new kernels loaded side by side in one process
  (2026-12-03): minGRU 38.86 / 42.74 -> 36.80 / 38.20, 40.23 / 43.13 -> 38.55 / 40.93, 37.89 /
  39.18 -> 37.53 / 38.14; minLSTM 61.0 / 61.6 -> 61.2 / 61.6, 55.0 / 59.6 -> 54.8 / 58.1.
* tried and dropped for minGRU/minLSTM (2026-12-03; experiments/results/bench/README.md has
  the numbers): the backward's products reordered so that each packed operand stays in L1 (no
  change: the micro-kernel runs at ~75 GFLOP/s per core there, near XLA's large-matmul rate);
  the gate gradients computed on the register tiles of the recomputed pre-activations instead
  of from a buffer of them (backward kernel 15.1 -> 15.8 ms, minLSTM 34.0 -> 37.4; with the
  tiles' panel groups outside their rows, slower still); the two threads sharing the
  forward's staging of x, half the rows each and a barrier per chunk (forward 11.5 -> 12.6 ms),
  and software prefetch of the next chunk (no change).

Training step (``make bench``; ms, median of 10 interleaved rounds; two runs of the same code,
2026-11-23; ``native`` is what ``auto`` runs, the column is ``auto``'s row)::

                native (auto)    fused         flax.nnx       torch.nn
    LSTM S1     159.7 / 133.5    188.1 / 161.9  245.2 / 175.8  174.3 / 165.1
    LSTM S2      89.1 /  86.5    135.5 / 135.6  158.5 / 159.4  118.8 / 111.2
    LSTM S3     189.0 / 174.6    233.3 / 198.4  261.9 / 214.4  193.1 / 198.8
    LSTM S4      35.6 /  34.7     53.1 /  53.4   70.4 /  71.2   53.9 /  54.2
    GRU  S1     118.9 / 107.2    158.6 / 143.4  152.0 / 148.9  164.5 / 151.8
    GRU  S2      74.0 /  75.8    116.8 / 115.0  145.0 / 142.5  157.8 / 162.7
    GRU  S3     134.8 / 138.9    157.9 / 156.7  163.4 / 159.0  178.0 / 169.8
    GRU  S4      23.1 /  23.7     45.4 /  45.7   54.2 /  54.0  152.9 / 157.2

(The first run had slow phases: flax.nnx's LSTM at S1 took 245 ms there, 176-179 in the others.)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cells import CellSpec
from seqjax.kernels.fused import _first_order_only, _mm_t, _outer_sum

_SOURCE = Path(__file__).with_name("native.cc")
_FLAGS = ("-O3", "-march=native", "-std=gnu++17", "-shared", "-fPIC", "-pthread")
_TARGETS = {
    "seqjax_lstm_forward": "SeqjaxLstmForward",
    "seqjax_lstm_backward": "SeqjaxLstmBackward",
    "seqjax_gru_forward": "SeqjaxGruForward",
    "seqjax_gru_backward": "SeqjaxGruBackward",
    "seqjax_min_forward": "SeqjaxMinForward",
    "seqjax_min_backward": "SeqjaxMinBackward",
}
_MIN_KINDS = ("min_gru", "min_lstm")
# Up to this input size the min cells' backward recomputes x W + b of every gate but the last
# from x instead of saving it; above it the forward saves all (see the module docstring).
_MIN_RECOMPUTE_MAX_INPUT = 128
_log = logging.getLogger("seqjax")


def supports(spec: CellSpec) -> bool:
    """LSTM, GRU with ``reset_after=True``, minGRU and minLSTM."""
    return spec.kind in ("lstm", *_MIN_KINDS) or (spec.kind == "gru" and spec.reset_after)


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.uname().machine
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _cache_dir() -> Path:
    """$SEQJAX_CACHE_DIR, else ~/.cache/seqjax, else (read-only home) a per-user temp folder."""
    root = os.environ.get("SEQJAX_CACHE_DIR")
    if root:
        return Path(root)
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "seqjax"
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir()) / f"seqjax-{os.getuid()}"
    return home


def _compile(cxx: str) -> Path:
    include = jax.ffi.include_dir()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\n".join([_SOURCE.read_text(), cxx, version, " ".join(_FLAGS), jax.__version__,
                   include, _cpu_signature()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"native-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _log.info("seqjax: compiling the native CPU kernels (once per machine): %s", target)
    # Build beside the target and rename: concurrent processes (pytest-xdist) may race here.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [cxx, *_FLAGS, f"-I{include}", str(_SOURCE), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"compiling {_SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
            )
        os.replace(out, target)
    return target


@functools.cache
def _load() -> None:
    """Compile (or find in the cache) and register the kernels; raises RuntimeError on failure."""
    import ctypes

    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("backend 'native' needs a C++ compiler: set $CXX or install g++")
    lib = ctypes.cdll.LoadLibrary(str(_compile(cxx)))
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")


@functools.cache
def available() -> bool:
    """Whether the kernels compile and load on this machine (compiles them once if needed)."""
    try:
        _load()
    except (RuntimeError, OSError) as err:
        _log.warning("seqjax: backend 'native' unavailable: %s", err)
        return False
    return True


def _threads() -> int:
    env = os.environ.get("SEQJAX_NATIVE_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SEQJAX_NATIVE_THREADS must be a positive integer; got {env!r}")
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class _Static(NamedTuple):
    spec: CellSpec
    reverse: bool
    threads: int


def _f32(x):
    return x.astype(jnp.float32)


def _call(name: str, outs, *args, static: _Static, aliases=None):
    out_types = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in outs]
    return jax.ffi.ffi_call(name, out_types, vmap_method="sequential",
                            input_output_aliases=aliases)(
        *args, reverse=np.int32(static.reverse), threads=np.int32(static.threads)
    )


def _forward(static: _Static, params, xs, mask, resets, carry0):
    """Runs the forward kernel; returns the outputs and what the backward reads: the gates, the
    hidden state entering each step, and the LSTM's cell state entering each step or the GRU's
    ``h W_hn + b_hn``."""
    T, B, _ = xs.shape
    H = static.spec.hidden_size
    common = (_f32(xs), _f32(params.w_x), _f32(params.w_h), _f32(params.b))
    if static.spec.kind == "lstm":
        ys, h_T, c_T, acts, h_in, c_in = _call(
            "seqjax_lstm_forward",
            [(T, B, H), (B, H), (B, H), (T, B, 4 * H), (T, B, H), (T, B, H)],
            *common, carry0.h, carry0.c, mask, resets, static=static,
        )
        return (carry0._replace(h=h_T, c=c_T), ys.astype(xs.dtype)), (acts, h_in, c_in)
    ys, h_T, acts, h_n, h_in = _call(
        "seqjax_gru_forward",
        [(T, B, H), (B, H), (T, B, 3 * H), (T, B, H), (T, B, H)],
        *common, _f32(params.b_h), carry0.h, mask, resets, static=static,
    )
    return (carry0._replace(h=h_T), ys.astype(xs.dtype)), (acts, h_in, h_n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _native(static: _Static, params, xs, mask, resets, carry0):
    return _forward(static, params, xs, mask, resets, carry0)[0]


def _native_fwd(static, params, xs, mask, resets, carry0):
    # Differentiating this rule (grad-of-grad, hessian) must raise our error, not the FFI's.
    params, xs, carry0 = _first_order_only((params, xs, carry0))
    out, saved = _forward(static, params, xs, mask, resets, carry0)
    return out, (params, xs, mask, resets, *saved)


def _native_bwd(static: _Static, res, cts):
    res = _first_order_only(res)
    params, xs, mask, resets, acts, h_in, extra = res
    d_carry_T, d_ys = cts
    T, B, _ = xs.shape
    H = static.spec.hidden_size
    x, w_h = _f32(xs), _f32(params.w_h)
    # The gate gradients overwrite the saved gates (aliases): no fresh [T, B, G*H] buffers.
    if static.spec.kind == "lstm":
        dz, dh0, dc0, db = _call(
            "seqjax_lstm_backward", [(T, B, 4 * H), (B, H), (B, H), (4 * H,)],
            w_h, acts, extra, _f32(d_ys), d_carry_T.h, d_carry_T.c, mask, resets,
            static=static, aliases={1: 0},
        )
        d_carry0 = d_carry_T._replace(h=dh0, c=dc0)
        grads = {"b": db, "w_x": _outer_sum(x, dz, jnp.float32)}
        d_xs = _mm_t(dz, params.w_x)
    else:
        # dZh = [dr, dz, dn * r] feeds W_h; the input side's dZx = [dr, dz, dn] is dZh plus
        # dnx = dn * (1 - r) in the n block, so it needs no buffer of its own.
        dz, dnx, dh0, db, db_h = _call(
            "seqjax_gru_backward", [(T, B, 3 * H), (T, B, H), (B, H), (3 * H,), (3 * H,)],
            w_h, acts, extra, h_in, _f32(d_ys), d_carry_T.h, mask, resets, static=static,
            aliases={1: 0, 2: 1},
        )
        d_carry0 = d_carry_T._replace(h=dh0)
        w_x = _outer_sum(x, dz, jnp.float32).at[:, 2 * H:].add(_outer_sum(x, dnx, jnp.float32))
        grads = {"b": db, "b_h": db_h, "w_x": w_x}
        d_xs = _mm_t(dz, params.w_x) + _mm_t(dnx, params.w_x[:, 2 * H:])
    grads["w_h"] = _outer_sum(h_in, dz, jnp.float32)
    d_params = params._replace(
        **{name: g.astype(getattr(params, name).dtype) for name, g in grads.items()}
    )
    return d_params, d_xs.astype(xs.dtype), None, None, d_carry0


_native.defvjp(_native_fwd, _native_bwd)


def _min_forward(static: _Static, params, xs, mask, resets, h0):
    """minGRU/minLSTM, ``xs`` batch-major: the state after each step ``hs`` (time-major) and the
    pre-activations ``x W + b`` of the gates the backward does not recompute."""
    B, T, I = xs.shape
    H = static.spec.hidden_size
    saved = 1 if I <= _MIN_RECOMPUTE_MAX_INPUT else static.spec.num_gates
    return _call("seqjax_min_forward", [(T, B, H), (T, B, saved * H)],
                 _f32(xs), _f32(params.w_x), _f32(params.b), h0, mask, resets, static=static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _native_min(static: _Static, params, xs, mask, resets, h0):
    return _min_forward(static, params, xs, mask, resets, h0)[0]


def _native_min_fwd(static, params, xs, mask, resets, h0):
    params, xs, h0 = _first_order_only((params, xs, h0))
    hs, xw = _min_forward(static, params, xs, mask, resets, h0)
    return hs, (params, xs, mask, resets, h0, hs, xw)


def _native_min_bwd(static: _Static, res, d_hs):
    params, xs, mask, resets, h0, hs, xw = _first_order_only(res)
    d_xs, d_w_x, db, dh0 = _call(
        "seqjax_min_backward", [xs.shape, params.w_x.shape, params.b.shape, h0.shape],
        _f32(xs), _f32(params.w_x), _f32(params.b), xw, hs, h0, _f32(d_hs), mask, resets,
        static=static,
    )
    d_params = params._replace(w_x=d_w_x.astype(params.w_x.dtype), b=db.astype(params.b.dtype))
    return d_params, d_xs.astype(xs.dtype), None, None, dh0


_native_min.defvjp(_native_min_fwd, _native_min_bwd)


def run(cell, params, xs, mask, resets, carry0, *, reverse, unroll, remat):
    """Time-major kernel signature shared by all backends; see :func:`seqjax.rnn`."""
    del unroll, remat
    spec = cell.spec
    if not supports(spec):
        raise ValueError("the native backend supports lstm, gru(reset_after=True), min_gru and "
                         f"min_lstm; got {spec.kind!r} (reset_after={spec.reset_after})")
    if carry0.h.dtype != jnp.float32:
        raise ValueError(f"the native backend computes in float32; got a {carry0.h.dtype} carry "
                         "(use backend='fused' for float64)")
    if jax.default_backend() != "cpu":
        raise ValueError(f"the native backend runs on CPU; the default backend is "
                         f"{jax.default_backend()!r}")
    _load()
    T, B = xs.shape[:2]
    if T == 0 or B == 0:  # nothing to run (and no rows for the kernels' threads to own)
        return carry0, jnp.zeros((T, B, spec.hidden_size), xs.dtype)
    user_mask = mask
    mask = jnp.ones((T, B), bool) if mask is None else mask.astype(bool)
    resets = jnp.zeros((T, B), bool) if resets is None else resets.astype(bool)
    static = _Static(spec, bool(reverse), _threads())
    if spec.kind not in _MIN_KINDS:
        return _native(static, params, xs, mask, resets, carry0)
    # The min kernels read and differentiate batch-major inputs: with rnn()'s default layout XLA
    # folds this swap into rnn()'s own, and no transpose of xs or of its gradient remains. They
    # return the state after every step: the outputs where no step is masked.
    hs = _native_min(static, params, jnp.swapaxes(xs, 0, 1), mask, resets, carry0.h)
    ys = hs if user_mask is None else jnp.where(mask[..., None], hs, jnp.zeros_like(hs))
    return carry0._replace(h=hs[0 if reverse else -1]), ys.astype(xs.dtype)
