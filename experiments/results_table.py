"""Writes README.md's results table from the experiments' committed ``metrics.json`` files.

Run:  make results-table      (--check: exit 1 when README.md's table is not what the files say)

Every experiment's ``metrics.json`` lists its goals (see ``common.goal``); the table shows each
goal beside what was reached, with the date, machine and wall time of the run that reached it.
The table lives in README.md between the two ``results-table`` marker comments, so it is never
typed by hand.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
BEGIN = "<!-- results-table:begin (make results-table writes this table) -->"
END = "<!-- results-table:end -->"


def records(results_dir: pathlib.Path = RESULTS) -> list[dict]:
    """Every committed experiment record with goals, in name order (smoke runs left out)."""
    out = []
    for path in sorted(results_dir.glob("*/metrics.json")):
        record = json.loads(path.read_text())
        if record.get("smoke") or not record.get("goals"):
            continue
        record["_dir"] = path.parent.name
        out.append(record)
    return out


def where(record: dict, part: str | None = None) -> str:
    """The date, machine and wall time of the run (or of the part) that reached a goal."""
    run = record.get("parts", {}).get(part, record) if part else record
    machine = run.get("machine", {})
    gpu = machine["devices"][0] if machine.get("platform") == "gpu" else ""
    return (f"{run.get('date', '?')}, {machine.get('cpu', '?')}{' + ' + gpu if gpu else ''}, "
            f"{run.get('wall_time_s', 0) / 60:.0f} min")


def table(records_: list[dict]) -> str:
    lines = ["| experiment | goal | target | reached | met | run |", "|---|---|---|---|---|---|"]
    for record in records_:
        link = f"[{record['experiment']}](experiments/results/{record['_dir']}/README.md)"
        for g in record["goals"]:
            met = {True: "yes", False: "**no**", None: "not run"}[g.get("ok")]
            lines.append(f"| {link} | {g['goal']} | {g['target']} | {g['reached']} | {met} "
                         f"| {where(record, g.get('part'))} |")
    return "\n".join(lines) + "\n"


def render(readme: str, body: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{body}{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare; exit 1 when README.md's table is out of date")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    new = render(readme, table(records()))
    if args.check:
        if new != readme:
            print("README.md's results table is out of date: run make results-table")
            return 1
        return 0
    readme_path.write_text(new)
    print(f"README.md: results table of {len(records())} experiments written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
