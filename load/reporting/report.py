"""What people read: the terminal tables, report.html (one self-contained file: inline SVG
charts from charts.py, no scripts, no network) and the Locust web UI's result page."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from load.core.faultkinds import KINDS
from load.core.faults import failure as fault_failure
from load.core.search import planned_connects
from load.core.stats import RESULT_COUNTS, median_of_known

Record = Mapping[str, Any]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _stack(run: Record) -> str:
    parts = [str(run.get("layer"))]
    if run.get("servers", 1) != 1:
        parts.append(f"x{run['servers']}")
    if run.get("asgi") not in (None, "daphne"):
        parts.append(str(run["asgi"]))
    return " ".join(parts)


RUN_COLUMNS: tuple[tuple[str, Callable[[Record], Any]], ...] = (
    ("layer", lambda r: r["layer"]),
    ("consumer", lambda r: r["consumer"]),
    ("srv", lambda r: r["servers"]),
    ("asgi", lambda r: r.get("asgi")),
    ("scenario", lambda r: r["scenario"]),
    ("users", lambda r: r["users"]),
    ("rooms", lambda r: r["rooms"]),
    ("rate", lambda r: f"{r['rate_per_user']:g}"),
    ("sent", lambda r: r["sent"]),
    ("expected", lambda r: r["expected"]),
    ("delivered", lambda r: r["delivered"]),
    ("lost", lambda r: r["lost"]),
    ("unconf", lambda r: r.get("unconfirmed", 0)),
    ("dup", lambda r: r["duplicated"]),
    ("leaked", lambda r: r["leaked"]),
    ("misattr", lambda r: r.get("misattributed", 0)),
    ("errors", lambda r: r["errors"]),
    ("ratio", lambda r: f"{r['delivery_ratio']:.4f}"),
    ("deliv/s", lambda r: f"{r['delivered_per_s']:.0f}"),
    ("p50 ms", lambda r: _ms(r["latency_ms"]["p50"])),
    ("p99 ms", lambda r: _ms(r["latency_ms"]["p99"])),
    ("max ms", lambda r: _ms(r["latency_ms"]["max"])),
    ("conn p95", lambda r: _ms(r["connect_ms"]["p95"])),
    ("cli µs/d", lambda r: _num(r.get("client_cpu_us_per_delivery"))),
    ("srv µs/d", lambda r: _num(r.get("server_cpu_us_per_delivery"))),
    ("saturated", lambda r: "CLIENT" if r["client_saturated"] else "no"),
)


def _fixed_width(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headings)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headings, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return lines


def table(runs: Sequence[Record]) -> str:
    """A fixed-width table, one row per run; problems are spelled out below it."""
    rows = [[str(get(run)) for _, get in RUN_COLUMNS] for run in runs]
    lines = _fixed_width([heading for heading, _ in RUN_COLUMNS], rows)
    for run in runs:
        for problem in problems(run):
            lines.append(f"! {run['layer']} {run['scenario']}: {problem}")
    for run in runs:
        if run.get("fault"):
            lines.append(f"fault {_stack(run)}: {fault_line(run['fault'])}")
    return "\n".join(lines)


def _steady_part(fault: Mapping[str, Any]) -> list[str]:
    """When the chat was whole and prompt for good, if that differs from the recovery."""
    steady = fault.get("time_to_steady_s")
    if fault["time_to_recover_s"] is None or steady == fault["time_to_recover_s"]:
        return []
    return ["never steady again" if steady is None else f"steady {steady:g} s after"]


def _unconfirmed_part(fault: Mapping[str, Any]) -> list[str]:
    inside = fault.get("unconfirmed_in_window", 0)
    outside = fault.get("unconfirmed_outside_window", 0)
    if not inside and not outside:
        return []
    return [f"unconfirmed {inside} in the window, {outside} outside"]


def fault_line(fault: Mapping[str, Any]) -> str:
    """What a fault did, in one line."""
    recover = fault["time_to_recover_s"]
    rss = fault["server_rss_mb"]
    parts = [
        f"{fault['kind']} at {fault['at_s']:g} s for {fault['for_s']:g} s",
        f"dropped {fault['sockets_dropped']}, reconnects {fault['reconnects']} "
        f"(failed {fault['reconnect_failures']})",
        f"lost {fault['lost_in_window']} in the window, {fault['lost_outside_window']} outside",
        *_unconfirmed_part(fault),
        "never recovered" if recover is None else f"recovered {recover:g} s after",
        *_steady_part(fault),
        f"server RSS {rss['before']} / {rss['peak']} / {rss['after']} MiB",
        f"{fault['server_tracebacks']} tracebacks",
    ]
    kind = KINDS.get(fault["kind"])
    if kind is not None:  # what the kind alone records (failover, mend, slow readers)
        parts.extend(kind.report_parts(fault))
    if fault.get("injector_error"):
        parts.append(f"INJECTOR: {fault['injector_error']}")
    return "; ".join(parts)


def problems(run: Record) -> list[str]:
    """Every way a run fell short, in words (never averaged away)."""
    found = []
    failed_fault = fault_failure(run.get("fault"))
    if failed_fault:
        found.append(f"{failed_fault} (not a fault's result: left out of every median)")
    # (The live page's partial result has no plan to compare with: scenario None.)
    if run.get("scenario") and "connects" in run and run["connects"] < planned_connects(run):
        found.append(
            f"only {run['connects']} of {run['users']} users connected: the shape asked for "
            "was not offered"
        )
    if run["lost"]:
        found.append(f"{run['lost']} of {run['expected']} expected deliveries lost")
    if run.get("unconfirmed"):
        found.append(
            f"{run['unconfirmed']} of {run['expected']} expected deliveries unconfirmed: "
            "expected at sockets that closed before they arrived, maybe lost (they count "
            "against the delivery ratio)"
        )
    if run["leaked"]:
        found.append(f"{run['leaked']} deliveries LEAKED into the wrong room")
    if run.get("misattributed"):
        found.append(f"{run['misattributed']} deliveries MISATTRIBUTED: they named another sender")
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
        found.append(
            "accounting inconsistent: expected is not delivered + lost + unconfirmed "
            "(a delivery matched no recorded send)"
        )
    if run.get("latency_trust"):
        found.append(run["latency_trust"])
    return found


def medians(runs: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (layer, consumer, servers, asgi, scenario): medians of repeated runs.
    A run whose fault never fired (or whose injector failed) is not a fault's result, so
    it is left out; ``excluded`` counts those."""
    groups: dict[tuple, list[Record]] = {}
    excluded: dict[tuple, int] = {}
    for run in runs:
        key = (run["layer"], run["consumer"], run["servers"], run.get("asgi"), run["scenario"])
        groups.setdefault(key, [])
        if fault_failure(run.get("fault")):
            excluded[key] = excluded.get(key, 0) + 1
        else:
            groups[key].append(run)
    rows = []
    for key, group in groups.items():
        layer, consumer, servers, asgi, scenario = key

        def med(get: Callable[[Record], Any], group: list[Record] = group) -> Any:
            return median_of_known(get(r) for r in group)

        rows.append(
            {
                "layer": layer,
                "consumer": consumer,
                "servers": servers,
                "asgi": asgi,
                "scenario": scenario,
                "runs": len(group),
                "excluded": excluded.get(key, 0),
                "delivered_per_s": med(lambda r: r["delivered_per_s"]),
                "delivery_ratio": med(lambda r: r["delivery_ratio"]),
                "p50_ms": med(lambda r: r["latency_ms"]["p50"]),
                "p99_ms": med(lambda r: r["latency_ms"]["p99"]),
                "client_cpu_us_per_delivery": med(lambda r: r.get("client_cpu_us_per_delivery")),
                "server_cpu_us_per_delivery": med(lambda r: r.get("server_cpu_us_per_delivery")),
                "lost": sum(r["lost"] for r in group),
                "unconfirmed": sum(r.get("unconfirmed", 0) for r in group),
                "leaked": sum(r["leaked"] for r in group),
                "misattributed": sum(r.get("misattributed", 0) for r in group),
                "errors": sum(r["errors"] for r in group),
            }
        )
    return rows


def medians_table(rows: Sequence[Record]) -> str:
    headings = [
        "layer",
        "srv",
        "asgi",
        "runs",
        "deliv/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "srv µs/d",
        "cli µs/d",
        "lost",
        "unconf",
        "leaked",
        "misattr",
        "errors",
    ]
    cells = [
        [
            str(r["layer"]),
            str(r["servers"]),
            str(r["asgi"]),
            str(r["runs"]) + (f" ({r['excluded']} left out)" if r.get("excluded") else ""),
            _num(r["delivered_per_s"], 0),
            _num(r["delivery_ratio"], 4),
            _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
            _num(r["server_cpu_us_per_delivery"]),
            _num(r["client_cpu_us_per_delivery"]),
            str(r["lost"]),
            str(r.get("unconfirmed", 0)),
            str(r["leaked"]),
            str(r.get("misattributed", 0)),
            str(r["errors"]),
        ]
        for r in rows
    ]
    return "\n".join(_fixed_width(headings, cells))


# ---------------------------------------------------------------- capacity


def capacity_line(entry: Record) -> str:
    """One stack's capacity in a sentence."""
    name = _stack(entry)
    if entry.get("scenario") == "idle":
        held = _sockets_held(entry)
    elif entry["deliveries_per_s"] is None:
        held = "held no step within the objective"
    else:
        held = (
            f"{entry['deliveries_per_s']:,.0f} deliveries/s ({entry['users']} users in "
            f"{entry['rooms']} rooms at {entry['rate_per_user']:g} msg/s each)"
        )
    past = entry.get("past_capacity")
    offered = (
        f"{past['users']:,} sockets"
        if entry.get("scenario") == "idle" and past
        else f"{past['offered_deliveries_per_s']:,.0f} offered"
        if past
        else ""
    )
    after = f"; one step past it ({offered}): {past['behaviour']}" if past else ""
    limit = {
        "client": "the load generator (a lower bound: the server may hold more)",
        "max": "nothing: the highest step asked for passed",
    }.get(entry["limited_by"], entry["limited_by"])
    return f"{name}: {held}, limited by {limit}{after}{busy_note(entry)}"


def _sockets_held(entry: Record) -> str:
    """The socket search's result in words."""
    if entry.get("sockets") is None:
        return "held no step within the objective"
    connect = (entry.get("connect_ms") or {}).get("p99")
    costs = [
        f"handshake p99 {connect:,.0f} ms" if connect is not None else None,
        _per_socket("server", entry.get("server_kb_per_socket")),
        _per_socket("client", entry.get("client_kb_per_socket")),
    ]
    detail = ", ".join(part for part in costs if part)
    return f"{entry['sockets']:,} open sockets" + (f" ({detail})" if detail else "")


def _per_socket(side: str, kb: float | None) -> str | None:
    return f"{side} {kb:,.1f} KB per socket" if kb is not None else None


def busy_note(entry: Record) -> str:
    """The plain warning of a capacity measured on a busy machine ("" for a quiet one)."""
    if not entry.get("contended"):
        return ""
    steps = ", ".join(str(step) for step in entry.get("contended_step_numbers", []))
    return (
        f". BUSY MACHINE: other work or the hypervisor's steal took CPU from the stack during "
        f"step(s) {steps}, busy again when measured a second time; this figure is from a "
        "busy machine, not a quiet one"
    )


CAPACITY_HEADINGS = (
    "layer",
    "servers",
    "asgi",
    "capacity deliv/s",
    "users",
    "rooms",
    "msg/s each",
    "p99 at cap. ms",
    "limited by",
    "one step past capacity",
    "server µs/delivery",
    "repeats",
)


def _capacity_cells(entry: Record) -> list[str]:
    past = entry.get("past_capacity")
    latency = entry.get("latency_ms") or {}
    repeats = entry.get("repeats") or []
    return [
        str(entry["layer"]),
        str(entry["servers"]),
        str(entry["asgi"]),
        _num(entry["deliveries_per_s"], 0),
        str(entry["users"]),
        str(entry["rooms"]),
        "-" if entry["rate_per_user"] is None else f"{entry['rate_per_user']:g}",
        _ms(latency.get("p99")),
        str(entry["limited_by"]),
        past["behaviour"] if past else "-",
        _num(entry.get("server_cpu_us_per_delivery")),
        ", ".join(_num(r, 0) for r in repeats) if len(repeats) > 1 else "-",
    ]


def capacity_table(entries: Sequence[Record]) -> str:
    return "\n".join(_fixed_width(CAPACITY_HEADINGS, [_capacity_cells(e) for e in entries]))


# ---------------------------------------------------------------- report.html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f4f4f4; }
td.text { text-align: left; }
tr.bad td { background: #fde8e8; }
tr.problem td { text-align: left; color: #b00; font-weight: bold; }
.charts svg { display: block; margin: 1em 0; max-width: 100%; height: auto; }
details { margin: 0.4em 0; }
summary { cursor: pointer; }
p.note { color: #555; font-size: 13px; }
p.busy { color: #b00; font-weight: bold; }
"""


def _html_table(headings: Sequence[str], rows: Sequence[Sequence[str]], text_columns=()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{html.escape(c)}</td>'
            if i in text_columns
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _runs_table(runs: Sequence[Record]) -> str:
    head = [h for h, _ in RUN_COLUMNS] + (
        ["step", "verdict"] if any("step" in r for r in runs) else []
    )
    body = []
    for run in runs:
        cells = [str(get(run)) for _, get in RUN_COLUMNS]
        if "step" in run:
            cells += [
                f"{run.get('search')} {run['step']} {run.get('phase')}",
                "pass" if run["passed"] else "fail: " + ", ".join(run["broke"]),
            ]
        bad = problems(run)
        row_class = "bad" if bad else ""
        body.append(
            f'<tr class="{row_class}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
        for problem in bad:
            body.append(
                f'<tr class="problem"><td colspan="{len(head)}">⚠ {html.escape(problem)}</td></tr>'
            )
    heading = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{heading}</tr>{''.join(body)}</table>"


def _capacity_section(summary: Mapping[str, Any]) -> str:
    from load.reporting import charts  # matplotlib is imported only when a report is drawn

    entries = summary["capacity"]
    runs = summary["runs"]
    slo = entries[0]["slo"]["p99_ms"] if entries else None
    common = summary.get("common_load")
    parts = [
        "<h2>Capacity</h2>",
        f"<p>The highest offered load each stack held with p99 ≤ {slo:g} ms, nothing lost or "
        "unconfirmed, no errors; every step's warm-up and measured window are its own. "
        "The shape (users, rooms, messages per user per second) can be replayed by any "
        "client. “One step "
        "past” is what the stack did at the lowest load that broke the objective.</p>",
        _html_table(
            CAPACITY_HEADINGS, [_capacity_cells(e) for e in entries], text_columns=(0, 2, 8, 9)
        ),
    ]
    parts += [
        f'<p class="busy">⚠ {html.escape(_stack(e) + busy_note(e))}.</p>'
        for e in entries
        if e.get("contended")
    ]
    if common:
        parts.append(
            f'<p class="note">Server µs/delivery: the server processes\' CPU time per delivery '
            f"at {common['offered_deliveries_per_s']:,.0f} offered deliveries/s "
            f"({common['users']} users, {common['rooms']} rooms, "
            f"{common['rate_per_user']:g} msg/s each), a load every stack held.</p>"
        )
    cdf_runs: dict[str, Record] = {}
    if common:
        for run in runs:
            if (
                run["passed"]
                and run["rate_per_user"] == common["rate_per_user"]
                and run["users"] == common["users"]
            ):
                cdf_runs.setdefault(run["search"], run)
    parts.append('<div class="charts">')
    parts.append(charts.latency_against_load(runs, slo))
    parts.append(charts.delivered_against_offered(runs))
    parts.append(charts.loss_against_offered(runs))
    if cdf_runs:
        assert common is not None  # cdf_runs is filled only when there is a common load
        parts.append(
            charts.latency_cdf(
                cdf_runs,
                f"Latency distribution at {common['offered_deliveries_per_s']:,.0f} "
                "offered deliveries/s",
            )
        )
    parts.append("</div>")
    return "".join(parts)


def _bench_charts(runs: Sequence[Record]) -> str:
    from load.reporting import charts

    labels = [
        f"{_stack(r)} {r['scenario']}" + (f" #{i + 1}" if len(runs) > 1 else "")
        for i, r in enumerate(runs)
    ]
    return "".join(
        [
            '<div class="charts">',
            charts.bars(
                labels,
                [(p, [r["latency_ms"][p] for r in runs]) for p in ("p50", "p90", "p99")],
                "Delivery latency (send to receipt, every member)",
                "ms",
            ),
            charts.bars(
                labels,
                [("delivered/s", [r["delivered_per_s"] for r in runs])],
                "Delivered messages per second",
                "/s",
            ),
            charts.bars(
                labels,
                [("ratio", [r["delivery_ratio"] for r in runs])],
                "Delivery ratio (delivered ÷ expected)",
                "",
            ),
            "</div>",
        ]
    )


def _timelines(runs: Sequence[Record]) -> str:
    from load.reporting import charts

    parts = [
        "<h2>Every run, second by second</h2>",
        '<p class="note">Deliveries received per second and the p99 of each second\'s '
        "messages; lost and errors below. Green: the measured window (before it, the "
        "settle period). Red: a fault's window.</p>",
    ]
    for number, run in enumerate(runs, start=1):
        name = f"{_stack(run)} {run['scenario']}"
        if "step" in run:
            name = (
                f"{run['search']} step {run['step']} ({run['phase']}, "
                f"{'pass' if run['passed'] else 'fail'})"
            )
        title = f"{name}: {run['offered_deliveries_per_s']:,.0f} offered/s"
        if run.get("fault"):
            title += f"; fault {fault_line(run['fault'])}"
        svg = charts.run_timeline(run, f"Run {number}: {title}", run.get("fault"))
        parts.append(
            f"<details><summary>{html.escape(title)}</summary>"
            f'<div class="charts">{svg}</div></details>'
        )
    return "".join(parts)


def html_report(summary: Mapping[str, Any]) -> str:
    """report.html: the capacity table and curves (for ``capacity``), the per-run charts,
    every run second by second, the full table with problems in red, and the machine."""
    runs = summary["runs"]
    harness = summary["harness"]
    packages = ", ".join(f"{k} {v}" for k, v in harness["packages"].items() if v)
    body = [
        f"<h1>Chat load report</h1><p>Started {html.escape(harness['started_at'])} on "
        f"{harness['cpus']} CPUs ({html.escape(harness.get('cpu_model', ''))}), Python "
        f"{html.escape(str(harness.get('python')))}; {html.escape(packages)}.</p>"
    ]
    if summary.get("capacity"):
        body.append(_capacity_section(summary))
    elif runs:
        body.append(_bench_charts(runs))
    if runs:
        body.append(_timelines(runs))
        body.append(
            '<h2>Every run</h2><p class="note">Lost = expected at a socket that was '
            "still there and never delivered; unconf(irmed) = expected at a socket that "
            "closed before it arrived, in the short time in which the client could not "
            "yet know (maybe lost: it counts against the ratio); leaked = arrived in a "
            "room other than the sender's; rows with any loss, unconfirmed delivery, "
            "leak, duplicate, error or a saturated client are red.</p>"
        )
        body.append(_runs_table(runs))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Chat load report</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


LIVE_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1d2430;
       padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.note { color: #5a6473; margin-top: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(11em, 1fr)); gap: .8em; }
.card { border: 1px solid #d6dbe3; border-radius: 8px; padding: .7em .9em; background: #f8fafc; }
.card b { display: block; font-size: 1.5em; font-variant-numeric: tabular-nums; }
.card span { color: #5a6473; font-size: .85em; }
.card.bad { border-color: #d9534f; background: #fdf1f0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e3e7ee; }
th { color: #5a6473; font-weight: 600; width: 16em; }
td.num { text-align: right; width: 10em; }
"""


def _card(label: str, value: str, *, bad: bool = False) -> str:
    return (
        f'<div class="card{" bad" if bad else ""}"><b>{html.escape(value)}</b>'
        f"<span>{html.escape(label)}</span></div>"
    )


def live_page(
    latest: Mapping[str, Any] | None,
    result: Mapping[str, Any] | None,
    *,
    rows: Sequence[Mapping[str, str]] = (),
) -> str:
    """The Locust web UI's /chat-load page: the live numbers while a test runs, the exact
    result when every load process has reported. Refreshes itself every two seconds."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Chat load</title>",
        '<meta http-equiv="refresh" content="2">',
        f"<style>{LIVE_STYLE}</style></head><body><h1>Chat load</h1>",
    ]
    if latest is None:
        parts.append("<p class='note'>No test running yet: start one from the Locust UI.</p>")
    else:
        parts.append(
            f"<p class='note'>{latest['elapsed_s']:.0f} of {latest['total_s']:.0f} s "
            f"(connect, send, drain); {latest['processes']} load process(es)</p>"
        )
        p99 = latest["p99_ms"]
        parts.append("<div class='cards'>")
        parts.append(_card("delivered/s", f"{latest['delivered_per_s']:,}"))
        parts.append(
            _card("lost so far", f"{latest['lost_so_far']:,}", bad=latest["lost_so_far"] > 0)
        )
        unconfirmed = latest.get("unconfirmed_so_far", 0)
        parts.append(_card("unconfirmed so far", f"{unconfirmed:,}", bad=unconfirmed > 0))
        parts.append(_card("p50 (last seconds)", _ms(latest["p50_ms"]) + " ms"))
        parts.append(_card("p99 (last seconds)", _ms(p99) + " ms"))
        parts.append(_card("errors", f"{latest['errors']:,}", bad=latest["errors"] > 0))
        parts.append(_card("connected sockets", f"{latest['connected']:,}"))
        parts.append("</div>")
        if latest["errors_by_kind"]:
            parts.append("<h2>Errors by kind</h2><table>")
            parts += [
                f"<tr><th>{html.escape(kind)}</th><td class='num'>{count:,}</td></tr>"
                for kind, count in latest["errors_by_kind"].items()
            ]
            parts.append("</table>")
        if rows:
            parts.append("<h2>How each number is counted</h2><table>")
            parts += [
                f"<tr><th>{html.escape(row['measure'])}</th><td class='num'>"
                f"{html.escape(row['value'])}</td><td>{html.escape(row['detail'])}</td></tr>"
                for row in rows
            ]
            parts.append("</table>")
    if result is None:
        parts.append(
            "<h2>Result</h2><p class='note'>The exact result appears when every user has "
            "finished (sending, drain, close).</p>"
        )
    else:
        parts.append("<h2>Result (exact, measured window)</h2><table>")
        for name in RESULT_COUNTS:
            value = result.get(name, 0)
            parts.append(f"<tr><th>{name}</th><td class='num'>{value:,}</td><td></td></tr>")
        parts.append(
            f"<tr><th>delivery ratio</th><td class='num'>{result['delivery_ratio']:.4f}</td>"
            "<td></td></tr>"
        )
        for name, value in result["latency_ms"].items():
            parts.append(
                f"<tr><th>latency {name}</th><td class='num'>{_ms(value)} ms</td><td></td></tr>"
            )
        parts.append("</table>")
        found = problems({**result, "layer": None, "scenario": None})
        if found:
            parts.append("<h2>Problems</h2><ul>")
            parts += [f"<li>{html.escape(problem)}</li>" for problem in found]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
