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

An experiment is made of parts (``charlm``: ``shakespeare``, ``dinos``, ``words``). Each part's
results are saved to ``metrics.json`` as soon as it ends, so an interrupted run keeps what it
finished; ``--only PART[,PART]`` runs some parts and keeps the others' results already in the
folder, so parts can run on different machines (each part records its own date, machine and
wall time). The README and the goals are written once every part has results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


def override(config: dict[str, Any], assignment: str) -> None:
    """Applies one ``--set KEY=VALUE``: ``KEY`` is a dotted path to an existing entry of the
    config, ``VALUE`` is JSON (``4``, ``[0, 1]``, ``"max"``) or, failing that, a string."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set takes KEY=VALUE, got {assignment!r}")
    *path, last = key.split(".")
    node = config
    for i, name in enumerate(path):
        node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: the config has no section {'.'.join(path[:i + 1])}")
    if last not in node:
        raise ValueError(f"--set {key}: the config has no entry {key}; its entries there are "
                         f"{', '.join(sorted(node))}")
    try:
        node[last] = json.loads(text)
    except json.JSONDecodeError:
        node[last] = text


def parse_args(description: str, argv: Sequence[str] | None = None,
               parts: Sequence[str] = (), tfds: bool = False) -> argparse.Namespace:
    """``--smoke`` (default: the ``SMOKE`` environment variable), ``--out``, ``--set``; for an
    experiment of several ``parts``, ``--only`` and ``--report``; where its datasets have a
    tensorflow-datasets path (``tfds``), ``--source``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true",
                        default=os.environ.get("SMOKE", "") not in ("", "0"),
                        help="tiny data and a few steps, same code path (what make test runs)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results folder (default: experiments/results/<name>/, or "
                             "experiments/results/smoke/<name>/ with --smoke)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one config entry (dotted KEY, JSON VALUE), e.g. --set "
                             "epochs=2 --set model.units=64; repeatable; the results record "
                             "the changed config")
    if tfds:
        parser.add_argument("--source", choices=("files", "tfds"), default="files",
                            help="files: the datasets in $SEQJAX_DATA_DIR; tfds: through "
                                 "tensorflow-datasets (downloads them: needs the internet)")
    if parts:
        parser.add_argument("--only", default=None, metavar="PART[,PART]",
                            help=f"run only these parts of {', '.join(parts)}; the other parts' "
                                 "results already in the results folder are kept")
        parser.add_argument("--report", action="store_true",
                            help="run nothing: write the goals, plots and README.md again from "
                                 "the results folder's metrics.json")
    args = parser.parse_args(argv)
    if getattr(args, "report", False):
        if args.only is not None:
            parser.error("--report runs no part: leave out --only")
        args.only = []
    elif getattr(args, "only", None) is not None:
        chosen = [p.strip() for p in args.only.split(",") if p.strip()]
        unknown = [p for p in chosen if p not in parts]
        if unknown or not chosen:
            parser.error(f"--only: {', '.join(unknown) or 'no part named'}; the parts are "
                         f"{', '.join(parts)}")
        args.only = chosen
    return args


def run_experiment(name: str, description: str, argv: Sequence[str] | None,
                   parts: dict[str, Callable[[dict, Run], Any]],
                   set_goals: Callable[[dict, Run], Any], readme: Callable[[dict, Run], str], *,
                   plots: Callable[[dict, Run], Any] | None = None, tfds: bool = False) -> Run:
    """An experiment's whole run: its arguments, config and parts, then once every part has
    results its goals, plots and README. Each ``part(cfg, run)`` sets ``run.results[name]``."""
    args = parse_args(description.split("\n")[0], argv, tuple(parts), tfds)
    cfg = load_config(name, args.smoke)
    for assignment in args.set:
        override(cfg, assignment)
    run = Run(name, args, cfg)
    print(f"{name}: results in {run.dir}")
    run.run_parts({part: functools.partial(function, cfg, run)
                   for part, function in parts.items()})

    def report() -> str:
        set_goals(cfg, run)
        if plots is not None:
            plots(cfg, run)
        return readme(cfg, run)

    run.finish(report)
    return run


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


def describe(machine_: dict[str, Any]) -> str:
    """``"<cpu>, <n> cores"``, with the accelerator where JAX ran on one."""
    text = f"{machine_.get('cpu', '?')}, {machine_.get('cpu_count', '?')} cores"
    if machine_.get("platform") not in (None, "cpu"):
        text += f", {machine_['devices'][0]}"
    return text


def adam(c: dict[str, Any], steps: int):
    """Adam at ``c["lr"]`` with gradients clipped at ``c.get("clip_norm", 1.0)``; with
    ``c["final_lr"]``, the rate decays along a cosine to it over ``steps``."""
    import optax

    lr = c["lr"]
    if "final_lr" in c:
        lr = optax.cosine_decay_schedule(c["lr"], max(steps, 1), c["final_lr"] / c["lr"])
    return optax.chain(optax.clip_by_global_norm(c.get("clip_norm", 1.0)), optax.adam(lr))


def binary_loss_fn(model, batch, key):
    """``fit``'s loss for ``model(tokens, mask) -> [B]`` logits against 0/1 labels, with
    accuracy; rows that are all padding do not count."""
    import seqjax as sj

    tokens, mask, labels = batch
    logits = model(tokens, mask)
    rows = sj.train.example_mask(mask)
    return (sj.train.sigmoid_binary_cross_entropy(logits, labels, rows),
            {"accuracy": sj.train.binary_accuracy(logits, labels, rows)})


def goal(name: str, target: str, reached: str, ok: bool | None,
         part: str | None = None) -> dict[str, Any]:
    """One goal of an experiment, as ``make results-table`` shows it (``ok=None``: not run);
    ``part``: the part whose run reached it (its date and machine go in the table)."""
    record = {"goal": name, "target": target, "reached": reached, "ok": ok}
    if part is not None:
        record["part"] = part
    return record


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
        self.only = getattr(args, "only", None)
        self.source = getattr(args, "source", "files")  # where the loaders read the datasets
        self.command = " ".join(["python", *sys.argv]) if sys.argv else ""
        self.written_by: dict[str, Any] = {}
        self.started = dt.datetime.now(dt.timezone.utc)
        self._clock = time.perf_counter()
        self.results: dict[str, Any] = {}
        self.parts: dict[str, dict[str, Any]] = {}
        self.goals: list[dict[str, Any]] = []
        self.missing: list[str] = []
        if self.only is not None:
            self._keep_earlier_parts()

    def _keep_earlier_parts(self) -> None:
        path = self.path("metrics.json")
        if not path.exists():
            if not self.only:
                raise ValueError(f"--report: no {path} to report on")
            return
        earlier = json.loads(path.read_text())
        config = json.loads(json.dumps(self.config, default=_jsonable))
        if (earlier.get("smoke") != self.smoke
                or _without(earlier.get("config", {}), self.only) != _without(config, self.only)):
            raise ValueError(
                f"{path}: written with another config or smoke setting; --only adds parts to a "
                "run whose config differs at most in the re-run parts' own sections (move the "
                "folder away to start afresh)")
        if not self.only:  # --report: the record stays that of the runs that made it
            self.written_by = {key: earlier[key] for key in ("command", "date", "started_utc",
                                                             "machine", "versions",
                                                             "data_source")
                               if key in earlier}
        self.parts = {part: record for part, record in earlier.get("parts", {}).items()
                      if part not in self.only}
        self.results = {key: value for key, value in earlier.get("results", {}).items()
                        if key not in self.only}

    def path(self, filename: str) -> pathlib.Path:
        return self.dir / filename

    def elapsed(self) -> float:
        return time.perf_counter() - self._clock

    def run_parts(self, parts: dict[str, Callable[[], Any]]) -> None:
        """Runs each part (all, or ``--only``'s) in order; each sets ``results[part]``, and
        ``metrics.json`` is saved after each."""
        for part, function in parts.items():
            if self.only is not None and part not in self.only:
                continue
            started = dt.datetime.now(dt.timezone.utc)
            clock = time.perf_counter()
            function()
            if part not in self.results:
                raise RuntimeError(f"part {part!r} of {self.name} left no results[{part!r}]")
            self.parts[part] = {"command": self.command, "date": started.strftime("%Y-%m-%d"),
                                "started_utc": started.isoformat(timespec="seconds"),
                                "wall_time_s": round(time.perf_counter() - clock, 1),
                                "machine": machine()}
            self._save()
        self.missing = [part for part in parts if part not in self.results]

    def finish(self, report: Callable[[], str]) -> pathlib.Path:
        """Once every part has results: ``report()`` (goals, plots; returns the README text)
        and the full record. Otherwise the record so far and a README naming what is missing."""
        missing = self.missing
        if missing:
            self._save(readme=f"# {self.name}: incomplete\n\nNo results yet for "
                              f"{', '.join(missing)}: run `python experiments/{self.name}.py "
                              f"--only {','.join(missing)}`.\n")
        else:
            self._save(readme=report())
        print(self.path("README.md").read_text())
        return self.dir

    def write(self, readme: str) -> pathlib.Path:
        """Writes ``metrics.json`` and ``README.md`` (an experiment without parts); returns the
        folder."""
        self._save(readme=readme)
        return self.dir

    def wall_time(self) -> float:
        """Seconds: the parts' sum where the run has parts, else since the start."""
        if self.parts:
            return sum(p["wall_time_s"] for p in self.parts.values())
        return self.elapsed()

    def _save(self, readme: str | None = None) -> None:
        record = {
            "experiment": self.name,
            "command": self.command,
            "smoke": self.smoke,
            "data_source": self.source,
            "date": self.started.strftime("%Y-%m-%d"),
            "started_utc": self.started.isoformat(timespec="seconds"),
            "wall_time_s": round(self.wall_time(), 1),
            "machine": machine(),
            "versions": versions(),
            **self.written_by,
            "config": self.config,
            "parts": self.parts,
            "goals": self.goals,
            "results": self.results,
        }
        self.path("metrics.json").write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
        if readme is not None:
            self.path("README.md").write_text(readme.rstrip() + "\n")

    def header(self, title: str, command: str) -> str:
        """The first lines of the results README: what, how it was made, where, how long."""
        smoke = " (smoke mode: tiny data, numbers mean nothing)" if self.smoke else ""
        places = {describe(p["machine"]) for p in self.parts.values()}
        if len(places) > 1:
            where = "; ".join(f"`{part}` on {p['date']} ({describe(p['machine'])}, "
                              f"{p['wall_time_s'] / 60:.1f} min)" for part, p in self.parts.items())
            return (f"# {title}\n\nMade by `{command}`{smoke}, its parts on two or more machines: "
                    f"{where}. Every figure here is read from `metrics.json` beside this file.\n")
        first = next(iter(self.parts.values()), None)
        m = first["machine"] if first else machine()
        date = first["date"] if first else f"{self.started:%Y-%m-%d}"
        return (
            f"# {title}\n\nMade by `{command}` on {date} ({describe(m)}, "
            f"JAX on {m['platform']}); wall time {self.wall_time() / 60:.1f} min{smoke}. "
            "Every figure here is read from `metrics.json` beside this file.\n"
        )


def plot_runs(histories: Sequence[dict[str, list[float]]], path: pathlib.Path,
              title: str) -> None:
    """Loss and accuracy per epoch of several runs of one model (folds, seeds) in one figure:
    training as dots, held-out as lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for history in histories:
            epochs = range(1, len(history[metric]) + 1)
            ax.plot(epochs, history[metric], "b.", alpha=0.5)
            ax.plot(epochs, history[f"val_{metric}"], "r-", alpha=0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="epoch", ylabel=metric,
               title=f"{title}: {metric}\n(dots: training, lines: held-out; every run)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _without(config: dict[str, Any], parts: Sequence[str]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in parts}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")
