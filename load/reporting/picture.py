"""The README's picture: the capacity of each stack in a capacity ``summary.json``, drawn
by the report's own chart code as one SVG file.

    python -m load.reporting.picture results/DATE-MACHINE/capacity/summary.json \\
        results/DATE-MACHINE/capacity.svg

One group of bars per layer (and server count), one bar per ASGI server; the figure is the
median capacity of the stack's quiet searches (``busy_searches``: none of its steps had
more than 0.25 of a core taken by other work or the hypervisor's steal), "-" where no quiet
search held anything. Exit status 2, with one line, for a file that is
not a capacity summary.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

XMLNS = 'xmlns="http://www.w3.org/2000/svg"'


def stack_label(entry: Mapping[str, Any]) -> str:
    servers = entry.get("servers", 1)
    return entry["layer"] + (f" x{servers}" if servers > 1 else "")


def capacity_picture(summary: Mapping[str, Any], title: str) -> str:
    """A standalone SVG document of the summary's capacities."""
    # Imported here: matplotlib only when a picture is drawn.
    from load.core.search import busy_searches, quiet_median
    from load.reporting import charts

    entries: Sequence[Mapping[str, Any]] = (
        summary.get("capacity_repeats") or summary.get("capacity") or []
    )
    if not entries:
        raise ValueError("it has no capacity entries: give the summary.json of a capacity run")
    labels = list(dict.fromkeys(stack_label(entry) for entry in entries))
    servers = list(dict.fromkeys(entry.get("asgi", "daphne") for entry in entries))
    stacks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for entry in entries:
        stacks.setdefault((stack_label(entry), entry.get("asgi", "daphne")), []).append(entry)
    busy = busy_searches(summary)
    figure = {key: quiet_median(group, busy) for key, group in stacks.items()}
    series = [(asgi, [figure.get((label, asgi)) for label in labels]) for asgi in servers]
    svg = charts.bars(labels, series, title, "/s", value_format="{:,.0f}")
    if XMLNS not in svg.split(">", 1)[0]:  # a file of its own, not inline in a page
        svg = svg.replace("<svg ", f"<svg {XMLNS} ", 1)
    return svg + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print(
            "usage: python -m load.reporting.picture SUMMARY.json OUT.svg [TITLE]",
            file=sys.stderr,
        )
        return 2
    source, out = Path(args[0]), Path(args[1])
    title = (
        args[2]
        if len(args) == 3
        else "Capacity, quiet searches' median: deliveries/s at p99 ≤ 100 ms, nothing lost"
    )
    try:
        summary = json.loads(source.read_text())
        svg = capacity_picture(summary, title)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        print(f"picture: error: cannot draw {source}: {error}", file=sys.stderr)
        return 2
    out.write_text(svg)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
