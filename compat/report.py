"""Write a matrix run as compat.json (for tools) and compat.md (for people).

compat.md shows a grid first (one row per Django/channels/channels-redis combination, one
column per redis-py series) so a regression in one package reads as one red cell, then one
row per cell with the versions actually installed, the test counts, the delivery ratio of
each load smoke run and the first error line.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from compat.matrix import AXES, PACKAGES
from compat.run import CellResult

MARK = {
    "passed": "✅ pass",
    "failed": "❌ fail",
    "install-failed": "❌ install",
    "timed-out": "❌ timeout",
}


DETAIL_COLUMNS = (
    "cell",
    *PACKAGES,
    "result",
    "tests",
    "delivery ratio",
    "time",
    "first error",
)


CAPACITY_COLUMN = "InMemory capacity (deliveries/s · server µs/delivery)"


def _md(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def wanted_version(result: CellResult, package: str) -> str:
    """What the cell asked for, where nothing was installed: ``~=4.2.0``, or ``?``."""
    name = re.compile(rf"\s*{re.escape(package)}\s*(?=[~=<>!])", re.IGNORECASE)
    for requirement in result.requirements:
        if name.match(requirement):
            return name.sub("", requirement)
    return "?"


def delivery_text(result: CellResult) -> str:
    """``redis 1.000 (200 users) · redis-pubsub 0.998 (200 users)``, or a dash when none."""
    if not result.delivery:
        return "—"
    parts = []
    for run in result.delivery:
        users = f" ({run['users']} users)" if run.get("users") is not None else ""
        parts.append(f"{run['label']} {run['delivery_ratio']:.3f}{users}")
    return " · ".join(parts)


def capacity_text(result: CellResult) -> str:
    """``3,210/s · 182 µs`` (deliveries per second at capacity, server CPU per delivery),
    the reason there is none, or a dash for a cell that ran no search."""
    capacity = result.capacity
    if not capacity:
        return "—"
    if capacity.get("error"):
        return f"none: {capacity['error']}"
    cost = capacity.get("server_cpu_us_per_delivery")
    text = f"{capacity['deliveries_per_s']:,.0f}/s · " + (
        f"{cost:,.0f} µs" if cost is not None else "? µs"
    )
    # A search that never failed, or hit the load generator's limit, gives a lower bound.
    if capacity.get("limited_by") in ("max", "client"):
        text = "≥ " + text + f" ({capacity['limited_by']})"
    return text


def reason_text(result: CellResult) -> str:
    """The first error, and for a red cell the server's most frequent error line."""
    if result.passed or not result.reason:
        return result.reason or ""
    if result.server_errors:
        message, count = result.server_errors[0]
        return f"{result.reason} · server log, {count} times: {message}"
    return result.reason


def tests_text(result: CellResult) -> str:
    counts = result.tests
    if not counts:
        return "—"
    text = f"{counts['passed']}/{counts['tests']}"
    extra = [f"{counts[k]} {k}" for k in ("failures", "errors", "skipped") if counts.get(k)]
    return text + (f" ({', '.join(extra)})" if extra else "")


def grid(results: Sequence[CellResult]) -> list[str]:
    """A row per Django, channels and channels-redis series; a column per redis-py series."""
    by_series = {
        tuple(r.series.get(p) for p in PACKAGES): r
        for r in results
        if len(r.series) == len(PACKAGES)
    }
    if not by_series:
        return []
    fixed, column_axis = PACKAGES[:-1], PACKAGES[-1]
    header = [*fixed, *(f"{column_axis} {series}" for series in AXES[column_axis])]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * (len(fixed) + len(AXES[column_axis])),
    ]
    rows = sorted({key[:-1] for key in by_series})
    for row in rows:
        marks = []
        for series in AXES[column_axis]:
            result = by_series.get((*row, series))
            marks.append("·" if result is None else ("✅" if result.passed else "❌"))
        # Every result kept above names a series for each package.
        names = cast("tuple[str, ...]", row)
        lines.append("| " + " | ".join(names) + " | " + " | ".join(marks) + " |")
    return lines


def markdown(results: Sequence[CellResult], meta: Mapping[str, Any]) -> str:
    failed = [r for r in results if not r.passed]
    lines = [
        "# Compatibility matrix",
        "",
        f"{len(results) - len(failed)} of {len(results)} cells passed"
        + (f" ({meta['cells_planned']} planned)" if meta["cells_planned"] != len(results) else "")
        + f" · started {meta['started_at']} · {meta['wall_s'] / 60:.1f} min"
        + f" · Python {meta['python']} · {meta['platform']}",
        "",
        f"Each cell: a fresh virtualenv with its pins plus pyproject.toml's `test` extra, then "
        f"`pytest {shlex.join(meta['pytest_args'])}`; Redis: {meta['redis']}.",
        "",
    ]
    grid_lines = grid(results)
    lines += [*grid_lines, ""] if grid_lines else []
    with_capacity = meta.get("capacity_args") is not None
    columns = list(DETAIL_COLUMNS)
    if with_capacity:
        columns.insert(columns.index("time"), CAPACITY_COLUMN)
        lines += [
            f"{CAPACITY_COLUMN}: `python -m load capacity {shlex.join(meta['capacity_args'])}` "
            "in the cell's virtualenv after its tests: deliveries/s at the highest load with "
            "p99 ≤ 100 ms, no loss and no errors, and the server's CPU µs per delivery. One "
            "search per cell on a shared machine: compare cells of one run, as ratios.",
            "",
        ]
    lines += [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in results:
        versions = [r.versions.get(p) or wanted_version(r, p) for p in PACKAGES]
        seconds = f"{r.install_s + r.test_s + r.capacity_s:.0f} s"
        texts = [
            r.cell,
            *versions,
            MARK.get(r.outcome, r.outcome),
            tests_text(r),
            delivery_text(r),
            *([capacity_text(r)] if with_capacity else []),
            seconds,
            reason_text(r),
        ]
        lines.append("| " + " | ".join(_md(text) for text in texts) + " |")
    if meta.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {_md(note)}" for note in meta["notes"]]
    lines += [
        "",
        "Logs of each cell (install.log, pytest.log, junit.xml, the load summaries): "
        f"`{meta['log_root']}/<cell>/`. Re-run one cell: `nox -s compat -- --only <cell>`.",
        "",
    ]
    return "\n".join(lines)


def write(results: Sequence[CellResult], meta: Mapping[str, Any], out_dir: Path) -> None:
    """Write compat.json and compat.md into ``out_dir`` (called after every cell)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"meta": dict(meta), "cells": [r.to_json() for r in results]}
    (out_dir / "compat.json").write_text(json.dumps(document, indent=2) + "\n")
    (out_dir / "compat.md").write_text(markdown(results, meta))
