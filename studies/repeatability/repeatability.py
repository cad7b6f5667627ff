"""How far apart are back-to-back capacity searches of one stack? (issue 15, a benchmark)

    flock /tmp/harness-heavy.lock python studies/repeatability/repeatability.py --layer inmemory
    python studies/repeatability/repeatability.py --summary OLD/summary.json   # no new search

Runs ``python -m load capacity --layers LAYER --repeat N`` (N searches of the same stack,
one after another, default shape; anything after ``--`` goes to that command, e.g.
``-- --asgi uvicorn``), or reads the ``capacity_repeats`` of an earlier capacity summary.
Prints each search's capacity (deliveries/s), what limited it and the steps it measured
(value: pass or the limit broken), then the median and the spread: the largest deviation
of a search from the median, as a share of the median. The issue asks for at most 10 % on
a quiet machine; ``/proc/loadavg`` before and after says how quiet it was. Exit status 0,
or 1 when a search held nothing (no figure to compare), 2 for bad arguments (one line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from load.core.plan import positive_int  # noqa: E402

PROG = "repeatability"


def spread(figures: Sequence[float]) -> tuple[float, float]:
    """(median, largest deviation from it as a share of it) of the searches' capacities."""
    if not figures:
        raise ValueError("no figures")
    median = statistics.median(figures)
    if median <= 0:
        raise ValueError(f"the median capacity is {median}: nothing to compare against")
    return median, max(abs(figure - median) for figure in figures) / median


def steps_text(runs: Sequence[Mapping[str, Any]], search: str) -> str:
    """A search's steps in order, e.g. ``0.5 pass, 1 pass, 2 latency, 2 latency, 1.41 pass``."""
    parts = []
    for run in runs:
        if run.get("search") != search:
            continue
        value = run["rate_per_user"] if run.get("varied", "rate") == "rate" else run["rooms"]
        verdict = "pass" if run["passed"] else "/".join(run["broke"])
        parts.append(f"{value:g} {verdict}")
    return ", ".join(parts)


def report(summary: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The benchmark's lines for a capacity summary, and whether every search held something."""
    entries = summary.get("capacity_repeats") or summary.get("capacity") or []
    lines = []
    figures = []
    for entry in entries:
        figure = entry["deliveries_per_s"]
        shown = "held nothing" if figure is None else f"{figure:,.0f} deliveries/s"
        lines.append(
            f"{entry['search']}: {shown}, limited by {entry['limited_by']}, "
            f"{entry['steps']} steps in {entry.get('search_s', '?')} s: "
            + steps_text(summary.get("runs", []), entry["search"])
        )
        if figure is not None:
            figures.append(figure)
    complete = bool(entries) and len(figures) == len(entries)
    if figures:
        median, deviation = spread(figures)
        within = "within" if deviation <= 0.10 else "NOT within"
        lines.append(
            f"median {median:,.0f} deliveries/s of {len(figures)} searches "
            f"({' / '.join(f'{f:,.0f}' for f in figures)}); spread ±{deviation:.1%} "
            f"({within} ±10 %)"
        )
    return lines, complete


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_searches(layer: str, searches: int, out: Path, extra: Sequence[str]) -> int:
    command = [sys.executable, "-m", "load", "capacity", "--layers", layer,
               "--repeat", str(searches), "--out", str(out), *extra]  # fmt: skip
    print(f"loadavg before: {loadavg()}", flush=True)
    print("running: " + " ".join(command[1:]), flush=True)
    finished = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), check=False)
    print(f"loadavg after: {loadavg()}", flush=True)
    return finished.returncode


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="inmemory", help="the stack's layer (default inmemory)")
    parser.add_argument("--searches", type=positive_int, default=3, help="searches (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the capacity run")
    parser.add_argument(
        "--summary", type=Path, default=None, help="report an earlier capacity summary instead"
    )
    parser.add_argument("capacity_args", nargs="*", help="after --: flags for capacity")
    args = parser.parse_args(argv)
    if args.summary is not None:
        path = args.summary
    else:
        out = args.out or Path(f"/tmp/repeatability-{args.layer}-{os.getpid()}")
        status = run_searches(args.layer, args.searches, out, args.capacity_args)
        if status == 2:
            return 2  # capacity has said in one line what is wrong with its flags
        path = out / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        parser.exit(2, f"{PROG}: error: cannot read {path} as JSON ({error}): give a capacity "
                       "summary.json\n")  # fmt: skip
    if not isinstance(summary, dict) or not summary.get("capacity"):
        parser.exit(2, f"{PROG}: error: {path} has no capacity entries: give the summary.json "
                       "of `python -m load capacity`\n")  # fmt: skip
    lines, complete = report(summary)
    print("\n".join(lines))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
