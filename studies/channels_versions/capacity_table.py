"""EXPERIMENT: the table of studies/channels_versions/README.md, from the summaries that
studies/channels_versions/capacity_across_versions.sh wrote (one ``python -m load capacity`` per
variant and round).

    python studies/channels_versions/capacity_table.py results/capacity-versions

Per variant (channels version, consumer): the median over rounds of the capacity
(deliveries/s) and of the server's CPU per delivery at one load every search held, each
also as a ratio to the first variant (channels 4.1). CPU per delivery is compared at a
common load because a server's fixed costs (timers, the layer's expiry scans) spread over
more deliveries at a higher load: each search's own figure is taken at its own highest
passing step, which differs between variants.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for load

from load.core.stats import median_of_known


@dataclass(frozen=True)
class Search:
    """One capacity search: its variant, round, entry and step records."""

    channels: str
    consumer: str
    name: str
    entry: Mapping[str, Any]
    runs: Sequence[Mapping[str, Any]]

    @property
    def variant(self) -> tuple[str, str]:
        return (self.channels, self.consumer)


def read_searches(root: Path) -> list[Search]:
    searches = []
    for path in sorted(root.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        if not summary.get("capacity"):
            continue
        entry = summary["capacity"][0]
        searches.append(
            Search(
                channels=summary["harness"]["packages"]["channels"],
                consumer=entry["consumer"],
                name=path.parent.name,
                entry=entry,
                runs=summary["runs"],
            )
        )
    return searches


def common_rates(searches: Sequence[Search]) -> list[float]:
    """The ramp rates every search passed (the ramps start alike and double), lowest first."""
    held = [
        {r["rate_per_user"] for r in s.runs if r["passed"] and r["phase"] in ("ramp", "confirm")}
        for s in searches
    ]
    return sorted(set.intersection(*held)) if held else []


def common_rate(searches: Sequence[Search]) -> float | None:
    """The highest ramp rate every search passed."""
    rates = common_rates(searches)
    return rates[-1] if rates else None


def cost_table(searches: Sequence[Search]) -> str:
    """Median server CPU µs per delivery of each variant at every load all searches held,
    with its ratio to the first variant: fixed costs weigh more at a lower load."""
    rates = common_rates(searches)
    variants: dict[tuple[str, str], list[Search]] = {}
    for search in searches:
        variants.setdefault(search.variant, []).append(search)
    offered = {
        rate: next(r for r in searches[0].runs if r["rate_per_user"] == rate)[
            "offered_deliveries_per_s"
        ]
        for rate in rates
    }
    lines = [
        "| channels | consumer | "
        + " | ".join(f"µs/delivery at {offered[rate]:,.0f}/s (ratio)" for rate in rates)
        + " |",
        "|---|---|" + "---|" * len(rates),
    ]
    base = None
    for (channels, consumer), group in variants.items():
        medians = [median_of_known([cost_at(s, rate) for s in group]) for rate in rates]
        base = base or medians
        cells = [f"{_num(m)} ({_ratio(m, b)})" for m, b in zip(medians, base, strict=True)]
        lines.append(f"| {channels} | {consumer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_at(search: Search, rate: float) -> float | None:
    return median_of_known(
        r["server_cpu_us_per_delivery"]
        for r in search.runs
        if r["passed"] and r["rate_per_user"] == rate and r["server_cpu_us_per_delivery"]
    )


def table(searches: Sequence[Search]) -> str:
    rate = common_rate(searches)
    variants: dict[tuple[str, str], list[Search]] = {}
    for search in searches:
        variants.setdefault(search.variant, []).append(search)
    rows = []
    for variant, group in variants.items():
        capacities = [s.entry["deliveries_per_s"] for s in group]
        costs = [cost_at(s, rate) for s in group] if rate is not None else []
        rows.append(
            (variant, group, median_of_known(capacities), median_of_known(costs), capacities, costs)
        )
    base_capacity, base_cost = rows[0][2], rows[0][3]
    offered = None
    if rate is not None:
        sample = next(r for r in searches[0].runs if r["rate_per_user"] == rate)
        offered = sample["offered_deliveries_per_s"]
    lines = [
        f"CPU per delivery at {rate:g} msg/s per user ({offered:,.0f} deliveries/s offered), "
        "a load every search held."
        if rate is not None
        else "No load held by every search: CPU per delivery not compared.",
        "",
        "| channels | consumer | rounds | capacity, deliveries/s (median) | ratio to "
        f"{rows[0][0][0]} | each round | server CPU µs/delivery (median) | ratio to "
        f"{rows[0][0][0]} | each round | limited by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (channels, consumer), group, capacity, cost, capacities, costs in rows:
        limits = ", ".join(sorted({s.entry["limited_by"] for s in group}))
        lines.append(
            f"| {channels} | {consumer} | {len(group)} | {_num(capacity)} | "
            f"{_ratio(capacity, base_capacity)} | {' / '.join(_num(c) for c in capacities)} | "
            f"{_num(cost)} | {_ratio(cost, base_cost)} | {' / '.join(_num(c) for c in costs)} "
            f"| {limits} |"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"{value / base:.2f}x"


def main(argv: Sequence[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "results/capacity-versions")
    searches = read_searches(root)
    if not searches:
        print(f"no capacity summaries under {root}", file=sys.stderr)
        return 1
    print(table(searches))
    print()
    print(cost_table(searches))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
