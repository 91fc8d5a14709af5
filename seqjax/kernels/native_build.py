"""Builds ``native.cc`` into the ``native`` backend's kernels, once per machine, and registers them.

The C++ source is compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``
or ``g++``) for this machine (``-march=native``; ``native.cc``'s header says what it needs) and
cached under ``$SEQJAX_CACHE_DIR`` (default ``~/.cache/seqjax``), keyed by the source, compiler,
flags, jaxlib and CPU. Where no compiler works, :func:`available` is False, ``backend="auto"``
keeps ``fused`` (``sequential`` for the min cells), and ``backend="native"`` raises with the
compiler's message.
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

import jax

SOURCE = Path(__file__).with_name("native.cc")
FLAGS = ("-O3", "-march=native", "-std=gnu++17", "-shared", "-fPIC", "-pthread")
# XLA FFI target name -> the handler symbol native.cc defines.
TARGETS = {
    "seqjax_lstm_forward": "SeqjaxLstmForward",
    "seqjax_lstm_backward": "SeqjaxLstmBackward",
    "seqjax_gru_forward": "SeqjaxGruForward",
    "seqjax_gru_backward": "SeqjaxGruBackward",
    "seqjax_min_forward": "SeqjaxMinForward",
    "seqjax_min_backward": "SeqjaxMinBackward",
}
_log = logging.getLogger("seqjax")


def compiler() -> str | None:
    """``$CXX``, else ``c++`` or ``g++`` on the PATH, else None."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _cpu_signature() -> str:
    """The CPU's model and flags: a library built with ``-march=native`` runs only there."""
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


def compile_library(cxx: str) -> Path:
    """The shared library built from :data:`SOURCE` by ``cxx``, from the cache where it is
    there; raises ``RuntimeError`` with the compiler's message where the build fails."""
    include = jax.ffi.include_dir()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), cxx, version, " ".join(FLAGS), jax.__version__,
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
        cmd = [cxx, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
            )
        os.replace(out, target)
    return target


@functools.cache
def load() -> None:
    """Compile (or find in the cache) and register the kernels; raises RuntimeError on failure."""
    import ctypes

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("backend 'native' needs a C++ compiler: set $CXX or install g++")
    lib = ctypes.cdll.LoadLibrary(str(compile_library(cxx)))
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")


@functools.cache
def available() -> bool:
    """Whether the kernels compile and load on this machine (compiles them once if needed)."""
    try:
        load()
    except (RuntimeError, OSError) as err:
        _log.warning("seqjax: backend 'native' unavailable: %s", err)
        return False
    return True
