"""What every experiment script shares: its config, the smoke switch, and the record it leaves.

An experiment is ``experiments/<name>.py`` plus ``experiments/configs/<name>.py`` (a
``get_config(smoke=False) -> dict``). Its run writes ``experiments/results/<name>/``:

* ``metrics.json``: the config, seed, versions, machine, date, wall time, every per-epoch figure
  and the goals with what was reached (``make results-table`` reads those into README.md);
* the training-curve PNGs and any other figures;
* ``README.md``: the experiment's tables, written by the script from the same numbers.

``--smoke`` (or ``SMOKE=1``) runs the same code on tiny data for a few steps and writes to
``experiments/results/smoke/<name>/`` (ignored by git) unless ``--out`` says otherwise, so
``make test`` can run every experiment without touching the committed results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = EXPERIMENTS_DIR / "results"


def load_config(name: str, smoke: bool) -> dict[str, Any]:
    """``experiments/configs/<name>.py``'s ``get_config(smoke)``."""
    path = EXPERIMENTS_DIR / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"seqjax_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(smoke=smoke)


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--smoke`` (default: the ``SMOKE`` environment variable) and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("SMOKE", "") not in ("", "0"),
                        help="tiny data and a few steps, same code path (what make test runs)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: experiments/results/<name>/, or "
                             "experiments/results/smoke/<name>/ with --smoke)")
    return parser.parse_args(argv)


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The host and the JAX devices a result was measured on."""
    import jax

    devices = jax.devices()
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": devices[0].platform,
        "devices": [d.device_kind for d in devices],
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("seqjax", "jax", "jaxlib", "flax", "optax", "numpy", "keras", "sacrebleu",
                    "tokenizers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    try:
        out["seqjax_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=EXPERIMENTS_DIR, capture_output=True,
            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def goal(name: str, target: str, reached: str, ok: bool | None) -> dict[str, Any]:
    """One goal of an experiment, as ``make results-table`` shows it (``ok=None``: not run)."""
    return {"goal": name, "target": target, "reached": reached, "ok": ok}


class Run:
    """One run of an experiment: its results folder, clock and record.

    Args:
      name: the experiment's name (``experiments/<name>.py``).
      args: :func:`parse_args`'s result.
      config: the config dict (recorded in ``metrics.json``).
    """

    def __init__(self, name: str, args: argparse.Namespace, config: dict[str, Any]):
        self.name = name
        self.smoke = bool(args.smoke)
        default = RESULTS_DIR / "smoke" / name if self.smoke else RESULTS_DIR / name
        self.dir = pathlib.Path(args.out or default)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.started = dt.datetime.now(dt.timezone.utc)
        self._clock = time.perf_counter()
        self.results: dict[str, Any] = {}
        self.goals: list[dict[str, Any]] = []

    def path(self, filename: str) -> pathlib.Path:
        return self.dir / filename

    def elapsed(self) -> float:
        return time.perf_counter() - self._clock

    def write(self, readme: str) -> pathlib.Path:
        """Writes ``metrics.json`` and ``README.md``; returns the folder."""
        record = {
            "experiment": self.name,
            "command": " ".join(["python", *sys.argv]) if sys.argv else "",
            "smoke": self.smoke,
            "date": self.started.strftime("%Y-%m-%d"),
            "started_utc": self.started.isoformat(timespec="seconds"),
            "wall_time_s": round(self.elapsed(), 1),
            "machine": machine(),
            "versions": versions(),
            "config": self.config,
            "goals": self.goals,
            "results": self.results,
        }
        self.path("metrics.json").write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
        self.path("README.md").write_text(readme.rstrip() + "\n")
        return self.dir

    def header(self, title: str, command: str) -> str:
        """The first lines of the results README: what, how it was made, where, how long."""
        m = machine()
        return (
            f"# {title}\n\n"
            f"Made by `{command}` on {self.started:%Y-%m-%d} ({m['cpu']}, {m['cpu_count']} cores, "
            f"JAX on {m['platform']}); wall time {self.elapsed() / 60:.1f} min"
            f"{' (smoke mode: tiny data, numbers mean nothing)' if self.smoke else ''}. "
            "Every figure here is read from `metrics.json` beside this file.\n"
        )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")
