"""The README's faults table from faults_matrix.sh's output: medians of the runs of each
(fault, layer, ASGI server, servers), as Markdown.

    python studies/faults/fault_table.py results/faults
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for load.core
from load.core.faultkinds import KINDS  # after the path it needs
from load.core.faults import failure

COLUMNS = (
    ("dropped", lambda r: r["fault"]["sockets_dropped"]),
    ("reconnects", lambda r: r["fault"]["reconnects"]),
    ("reconnect failures", lambda r: r["fault"]["reconnect_failures"]),
    ("lost in window", lambda r: r["fault"]["lost_in_window"]),
    ("lost outside", lambda r: r["fault"]["lost_outside_window"]),
    ("unconfirmed in / outside", None),
    ("delivery ratio", lambda r: r["delivery_ratio"]),
    ("recover s", lambda r: r["fault"]["time_to_recover_s"]),
    ("steady s", lambda r: r["fault"].get("time_to_steady_s")),
    ("back up s", lambda r: r["fault"].get("mend_s", NOT_APPLICABLE)),
    ("max latency ms", lambda r: r["latency_ms"]["max"]),
    ("tracebacks", lambda r: r["fault"]["server_tracebacks"]),
    ("RSS MiB before/peak/after", None),
    ("errors", lambda r: r["errors"]),
)


NOT_APPLICABLE = "-"  # a field this fault kind does not have (mend_s: backend-restart only)


def median(values: list[Any]) -> Any:
    """The median; 'never' counts as longer than any number (null time_to_recover)."""
    if NOT_APPLICABLE in values:
        return NOT_APPLICABLE
    if any(v is None for v in values):
        known = sorted(v for v in values if v is not None)
        ordered = known + [None] * (len(values) - len(known))
        return ordered[len(ordered) // 2]
    value = statistics.median(values)
    return round(value, 3) if isinstance(value, float) else value


def cell(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def main(root: Path) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for summary in sorted(root.glob("*/summary.json")):
        for run in json.loads(summary.read_text())["runs"]:
            if failure(run["fault"]):  # not a fault's result: never part of a median
                print(f"left out ({summary.parent.name}): {failure(run['fault'])}", file=sys.stderr)
                continue
            key = (run["fault"]["kind"], run["layer"], run.get("asgi", "daphne"), run["servers"])
            groups[key].append(run)
    headings = ["fault", "layer", "asgi", "servers", "runs", *(name for name, _ in COLUMNS)]
    print("| " + " | ".join(headings) + " |")
    print("|" + "---|" * len(headings))
    for (kind, layer, asgi, servers), runs in groups.items():
        cells = [kind, layer, asgi, str(servers), str(len(runs))]
        for _name, get in COLUMNS:
            if _name == "unconfirmed in / outside":
                cells.append(
                    "/".join(
                        cell(median([r["fault"].get(k, 0) for r in runs]))
                        for k in ("unconfirmed_in_window", "unconfirmed_outside_window")
                    )
                )
            elif get is None:
                rss = [r["fault"]["server_rss_mb"] for r in runs]
                cells.append(
                    "/".join(cell(median([x[k] for x in rss])) for k in ("before", "peak", "after"))
                )
            else:
                cells.append(cell(median([get(r) for r in runs])))
        print("| " + " | ".join(cells) + " |")
    for (kind, layer, asgi, servers), runs in groups.items():
        extra = []
        for run in runs:
            fault = run["fault"]
            if fault["kind"] in KINDS:  # what the kind alone records (failover, slow readers)
                extra.extend(KINDS[fault["kind"]].table_notes(fault))
            extra.append(json.dumps(run["errors_by_kind"]))
        print(f"\n{kind} {layer} {asgi} x{servers}: " + "; ".join(extra))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
