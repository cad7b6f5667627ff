"""The comparison table (terminal) and report.html (inline SVG, no scripts, no network)."""

from __future__ import annotations

import html
import statistics
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    # (heading, how to get it from a run)
    ("layer", lambda r: r["layer"]),
    ("consumer", lambda r: r["consumer"]),
    ("srv", lambda r: r["servers"]),
    ("scenario", lambda r: r["scenario"]),
    ("users", lambda r: r["users"]),
    ("rooms", lambda r: r["rooms"]),
    ("sent", lambda r: r["sent"]),
    ("expected", lambda r: r["expected"]),
    ("delivered", lambda r: r["delivered"]),
    ("lost", lambda r: r["lost"]),
    ("dup", lambda r: r["duplicated"]),
    ("leaked", lambda r: r["leaked"]),
    ("errors", lambda r: r["errors"]),
    ("ratio", lambda r: f"{r['delivery_ratio']:.4f}"),
    ("deliv/s", lambda r: f"{r['delivered_per_s']:.0f}"),
    ("p50 ms", lambda r: _ms(r["latency_ms"]["p50"])),
    ("p99 ms", lambda r: _ms(r["latency_ms"]["p99"])),
    ("max ms", lambda r: _ms(r["latency_ms"]["max"])),
    ("conn p95", lambda r: _ms(r["connect_ms"]["p95"])),
    ("cli µs/d", lambda r: _num(r.get("client_cpu_us_per_delivery"))),
    ("srv cpu s", lambda r: _num(r.get("server_cpu_s"))),
    ("saturated", lambda r: "CLIENT" if r["client_saturated"] else "no"),
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(runs: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table, one row per run; problems are spelled out below it."""
    rows = [[str(get(run)) for _, get in COLUMNS] for run in runs]
    headings = [heading for heading, _ in COLUMNS]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headings)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headings, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for run in runs:
        for problem in problems(run):
            lines.append(f"! {run['layer']} {run['scenario']}: {problem}")
    return "\n".join(lines)


def problems(run: dict[str, Any]) -> list[str]:
    """Every way a run fell short, in words (never averaged away)."""
    found = []
    if run["lost"]:
        found.append(f"{run['lost']} of {run['expected']} expected deliveries lost")
    if run["leaked"]:
        found.append(f"{run['leaked']} deliveries LEAKED into the wrong room")
    if run["duplicated"]:
        found.append(f"{run['duplicated']} duplicate deliveries")
    if run["errors"]:
        kinds = ", ".join(f"{k}={v}" for k, v in run.get("errors_by_kind", {}).items())
        found.append(f"{run['errors']} errors ({kinds})")
    if run["client_saturated"]:
        found.append(
            "load generator saturated: "
            + "; ".join(run["client_saturated_reasons"])
            + " (numbers show the client's limit, not the server's)"
        )
    if not run.get("accounting_consistent", True):
        found.append("accounting inconsistent: a delivery matched no recorded send")
    return found


def medians(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (layer, consumer, servers, scenario): medians of repeated runs."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(
            (run["layer"], run["consumer"], run["servers"], run["scenario"]), []
        ).append(run)
    rows = []
    for (layer, consumer, servers, scenario), group in groups.items():

        def med(get, group=group):
            values = [get(r) for r in group if get(r) is not None]
            return statistics.median(values) if values else None

        rows.append(
            {
                "layer": layer,
                "consumer": consumer,
                "servers": servers,
                "scenario": scenario,
                "runs": len(group),
                "delivered_per_s": med(lambda r: r["delivered_per_s"]),
                "delivery_ratio": med(lambda r: r["delivery_ratio"]),
                "p50_ms": med(lambda r: r["latency_ms"]["p50"]),
                "p99_ms": med(lambda r: r["latency_ms"]["p99"]),
                "client_cpu_us_per_delivery": med(lambda r: r.get("client_cpu_us_per_delivery")),
                "server_cpu_s": med(lambda r: r.get("server_cpu_s")),
                "lost": sum(r["lost"] for r in group),
                "leaked": sum(r["leaked"] for r in group),
                "errors": sum(r["errors"] for r in group),
            }
        )
    return rows


# ---------------------------------------------------------------- report.html

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2")


def _bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    unit: str,
    *,
    fixed_max: float | None = None,
) -> str:
    """Grouped horizontal bars as inline SVG."""
    bar_h, gap, left, width = 14, 10, 190, 460
    per_group = bar_h * len(series) + gap
    height = 40 + per_group * len(labels) + 24
    top = max([v for _, values in series for v in values if v is not None] + [0])
    scale_max = fixed_max or (top * 1.15 if top > 0 else 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" '
        f'height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="4" y="16" font-weight="bold">{html.escape(title)}</text>',
    ]
    for s, (name, _) in enumerate(series):
        parts.append(
            f'<rect x="{left + s * 110}" y="24" width="10" height="10" '
            f'fill="{PALETTE[s % len(PALETTE)]}"/><text x="{left + s * 110 + 14}" '
            f'y="33" font-size="11">{html.escape(name)}</text>'
        )
    for g, label in enumerate(labels):
        y0 = 40 + g * per_group
        parts.append(
            f'<text x="{left - 6}" y="{y0 + per_group / 2}" font-size="12" '
            f'text-anchor="end">{html.escape(label)}</text>'
        )
        for s, (_, values) in enumerate(series):
            value = values[g]
            y = y0 + s * bar_h
            if value is None:
                continue
            w = max(1.0, width * min(value, scale_max) / scale_max)
            parts.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"/>'
            )
            parts.append(
                f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 4}" font-size="11">'
                f"{value:,.3g} {unit}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _label(run: dict[str, Any]) -> str:
    servers = f" x{run['servers']}" if run["servers"] != 1 else ""
    return f"{run['layer']}{servers} {run['consumer']} {run['scenario']}"


def html_report(summary: dict[str, Any]) -> str:
    """report.html: charts of latency percentiles, delivered/s and delivery ratio, the
    full table with problems in red, and the machine."""
    runs = summary["runs"]
    labels = [_label(r) + (f" #{i + 1}" if len(runs) > 1 else "") for i, r in enumerate(runs)]
    latency = _bar_chart(
        "Delivery latency (send → receipt, every member)",
        labels,
        [(p, [r["latency_ms"][p] for r in runs]) for p in ("p50", "p90", "p99")],
        "ms",
    )
    rate = _bar_chart(
        "Delivered messages per second",
        labels,
        [("delivered/s", [r["delivered_per_s"] for r in runs])],
        "/s",
    )
    ratio = _bar_chart(
        "Delivery ratio (delivered ÷ expected)",
        labels,
        [("ratio", [r["delivery_ratio"] for r in runs])],
        "",
        fixed_max=1.0,
    )
    head = [h for h, _ in COLUMNS]
    body = []
    for run in runs:
        cells = "".join(f"<td>{html.escape(str(get(run)))}</td>" for _, get in COLUMNS)
        bad = problems(run)
        body.append(f'<tr class="{"bad" if bad else ""}">{cells}</tr>')
        for problem in bad:
            body.append(
                f'<tr class="problem"><td colspan="{len(COLUMNS)}">⚠ '
                f"{html.escape(problem)}</td></tr>"
            )
    harness = summary["harness"]
    packages = ", ".join(f"{k} {v}" for k, v in harness["packages"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat load report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
tr.bad td {{ background: #fde8e8; }}
tr.problem td {{ text-align: left; color: #b00; font-weight: bold; }}
.charts svg {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>Chat load report</h1>
<p>Started {html.escape(harness["started_at"])} on {harness["cpus"]} CPUs
({html.escape(harness.get("cpu_model", ""))}); {html.escape(packages)}.
Lost = expected - delivered after the drain; leaked = arrived in a room other than the
sender's; rows with any loss, leak, duplicate, error or a saturated client are red.</p>
<div class="charts">{latency}{rate}{ratio}</div>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr>
{"".join(body)}</table>
</body></html>
"""


def live_page(result: dict[str, Any] | None) -> str:
    """The Locust web UI's /chat-load page: the last merged result."""
    if result is None:
        return (
            "<p>No result yet: the chat load result appears when every user has "
            "finished (sending, drain, close).</p>"
        )
    summary = result["summary"]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    return f"<h1>Chat load result</h1><table>{rows}</table>"
