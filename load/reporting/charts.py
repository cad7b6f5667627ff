"""The report's charts, drawn with matplotlib as inline SVG (text kept as text, no scripts).

Each function takes run records or capacity entries (summary.json's own data) and returns
one ``<svg>`` element as a string, or "" when there is nothing to draw.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to SVG only

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

plt.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: searchable, small
        "svg.hashsalt": "chat-load",  # stable ids, so the same data gives the same file
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f", "#edc948")
Record = Mapping[str, Any]


def _svg(figure: plt.Figure, title: str) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: it is inline
    # Several charts share one page: keep each one's element ids its own.
    prefix = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:24]
    svg = re.sub(r'id="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{prefix}-\1"', svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{title}" ', 1)


def _series(runs: Sequence[Record]) -> dict[str, list[Record]]:
    """The step records of each search, one per offered load (the last measured there: a
    confirmation replaces the step it confirms), in order of offered load."""
    by_search: dict[str, dict[float, Record]] = {}
    for run in runs:
        steps = by_search.setdefault(run.get("search") or _stack_name(run), {})
        steps[run["offered_deliveries_per_s"]] = run
    return {name: [steps[x] for x in sorted(steps)] for name, steps in by_search.items()}


def _stack_name(run: Record) -> str:
    parts = [str(run.get("layer") or "target")]
    if run.get("servers", 1) != 1:
        parts.append(f"x{run['servers']}")
    if run.get("asgi") not in (None, "daphne"):
        parts.append(str(run["asgi"]))
    return "-".join(parts)


def _styled(names: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Each series' colour and legend label: one colour per stack, so the repeats of one
    stack (searches "redis-1", "redis-2", ...) share a colour and a single legend entry."""
    stacks: dict[str, str] = {}
    styled = {}
    for name in names:
        stack = re.sub(r"-\d+$", "", name)
        first = stack not in stacks
        color = stacks.setdefault(stack, COLORS[len(stacks) % len(COLORS)])
        styled[name] = (color, stack if first else None)
    return styled


def _legend(axes: plt.Axes) -> None:
    """Outside the plot, on the right: the lines stay visible however many stacks."""
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


_THOUSANDS = FuncFormatter(lambda value, _pos: f"{value:,.0f}")
_PLAIN = FuncFormatter(lambda value, _pos: f"{value:,.4g}")


def _log_y(axes: plt.Axes) -> None:
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(_PLAIN)
    axes.yaxis.set_minor_formatter(FuncFormatter(lambda value, _pos: ""))


def latency_against_load(runs: Sequence[Record], slo_ms: float | None) -> str:
    """p50 (dashed) and p99 (solid) against offered deliveries/s, one colour per stack."""
    series = _series(runs)
    if not series:
        return ""
    figure, axes = plt.subplots(figsize=(7.5, 4))
    styled = _styled(list(series))
    for name, steps in series.items():
        color, label = styled[name]
        x = [r["offered_deliveries_per_s"] for r in steps]
        for name_p, style in (("p99", "-"), ("p50", "--")):
            y = [r["latency_ms"][name_p] for r in steps]
            axes.plot(x, y, style, marker="o", markersize=3, color=color,
                      label=f"{label} {name_p}" if label else None)  # fmt: skip
    if slo_ms:
        axes.axhline(slo_ms, color="#b00", linewidth=0.8, linestyle=":")
        axes.annotate(
            f"objective p99 {slo_ms:g} ms",
            (0.01, slo_ms),
            xycoords=("axes fraction", "data"),
            color="#b00",
            fontsize=8,
            va="bottom",
        )
    _log_y(axes)
    axes.set_xlabel("offered deliveries per second")
    axes.set_ylabel("delivery latency, ms (log)")
    axes.xaxis.set_major_formatter(_THOUSANDS)
    axes.set_title("Latency against offered load (p99 solid, p50 dashed)")
    _legend(axes)
    return _svg(figure, "Latency against offered load")


def _plot_against_offered(
    axes: plt.Axes, series: Mapping[str, Sequence[Record]], y_of: Callable[[Record], float]
) -> float:
    """One line per search, ``y_of(step)`` against offered deliveries/s, coloured per
    stack; returns the largest x or y drawn."""
    top = 0.0
    styled = _styled(list(series))
    for name, steps in series.items():
        color, label = styled[name]
        x = [r["offered_deliveries_per_s"] for r in steps]
        y = [y_of(r) for r in steps]
        top = max(top, *x, *y)
        axes.plot(x, y, marker="o", markersize=3, color=color, label=label)
    return top


def delivered_against_offered(runs: Sequence[Record]) -> str:
    """Delivered against offered deliveries/s, with the y = x line of a perfect server."""
    series = _series(runs)
    if not series:
        return ""
    figure, axes = plt.subplots(figsize=(7.5, 4))
    top = _plot_against_offered(axes, series, lambda r: r["delivered_per_s"])
    axes.plot([0, top], [0, top], color="#888", linewidth=0.8, linestyle=":", label="y = x")
    axes.set_xlabel("offered deliveries per second")
    axes.set_ylabel("delivered per second")
    axes.xaxis.set_major_formatter(_THOUSANDS)
    axes.yaxis.set_major_formatter(_THOUSANDS)
    axes.set_title("Delivered against offered")
    _legend(axes)
    return _svg(figure, "Delivered against offered")


def loss_against_offered(runs: Sequence[Record]) -> str:
    """Share of expected deliveries lost against offered deliveries/s."""
    series = _series(runs)
    if not series:
        return ""
    figure, axes = plt.subplots(figsize=(7.5, 3.2))
    _plot_against_offered(
        axes, series, lambda r: 100 * r["lost"] / r["expected"] if r["expected"] else 0.0
    )
    axes.set_xlabel("offered deliveries per second")
    axes.set_ylabel("lost, % of expected")
    axes.xaxis.set_major_formatter(_THOUSANDS)
    axes.set_title("Messages lost against offered load")
    _legend(axes)
    return _svg(figure, "Messages lost against offered load")


def latency_cdf(runs_by_name: Mapping[str, Record], title: str) -> str:
    """The distribution of delivery latency of one run per stack (all at one load)."""
    if not runs_by_name:
        return ""
    figure, axes = plt.subplots(figsize=(7.5, 3.6))
    styled = _styled(list(runs_by_name))
    for name, run in runs_by_name.items():
        points = run.get("latency_cdf") or []
        if not points:
            continue
        color, label = styled[name]
        x = [point[0] for point in points]
        y = [point[1] for point in points]
        axes.step(x, y, where="post", color=color, label=label)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(_PLAIN)
    axes.set_xlabel("delivery latency, ms (log)")
    axes.set_ylabel("share of deliveries at or below")
    axes.set_ylim(0, 1.01)
    axes.set_title(title)
    _legend(axes)
    return _svg(figure, title)


def bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
         title: str, unit: str, value_format: str = "{:,.3g}") -> str:  # fmt: skip
    """Grouped horizontal bars: one group per run, one bar per series."""
    if not labels:
        return ""
    height = 0.8 / max(1, len(series))
    figure, axes = plt.subplots(figsize=(7.5, 0.35 * len(labels) * len(series) + 1.2))
    for number, (name, values) in enumerate(series):
        positions = [index + number * height for index in range(len(labels))]
        clean = [v if v is not None else 0.0 for v in values]
        drawn = axes.barh(
            positions, clean, height=height * 0.9, color=COLORS[number % len(COLORS)], label=name
        )
        axes.bar_label(
            drawn,
            labels=[f"{value_format.format(v)} {unit}" if v is not None else "-" for v in values],
            fontsize=7,
            padding=2,
        )
    axes.set_yticks([index + height * (len(series) - 1) / 2 for index in range(len(labels))])
    axes.set_yticklabels(labels)
    axes.invert_yaxis()
    axes.set_title(title)
    if len(series) > 1:
        axes.legend(fontsize=7)
    return _svg(figure, title)


def run_timeline(run: Record, title: str, fault: Mapping[str, Any] | None = None) -> str:
    """One run, second by second: deliveries received, p99 of that second's messages,
    errors and lost; the measured window (and a fault's window) shaded."""
    rows = run.get("timeline") or []
    if not rows:
        return ""
    t = [row["t_s"] for row in rows]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 3.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.plot(t, [row["received"] for row in rows], color=COLORS[0], label="received/s")
    top.plot(
        t,
        [row["delivered"] for row in rows],
        color=COLORS[2],
        linestyle="--",
        label="delivered (by send second)",
    )
    top.set_ylabel("deliveries")
    top.yaxis.set_major_formatter(_THOUSANDS)
    right = top.twinx()
    right.plot(t, [row["p99_ms"] for row in rows], color=COLORS[1], label="p99 ms")
    _log_y(right)
    right.set_ylabel("p99 ms (log)")
    right.grid(False)
    bottom.bar(t, [row["lost"] for row in rows], color=COLORS[3], label="lost", width=0.8)
    bottom.plot(t, [row["errors"] for row in rows], color="#000", marker=".", label="errors")
    bottom.set_ylabel("lost / errors")
    bottom.set_xlabel("seconds from the start of sending")
    settle = run.get("settle_s") or 0.0
    for axes in (top, bottom):
        axes.axvspan(settle, settle + run["duration_s"], color="#59a14f", alpha=0.07)
        if fault:
            axes.axvspan(fault["at_s"], fault["at_s"] + fault["for_s"], color="#e15759", alpha=0.15)
    handles = top.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    top.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
    bottom.legend(fontsize=7, loc="upper left")
    top.set_title(title)
    return _svg(figure, title)
