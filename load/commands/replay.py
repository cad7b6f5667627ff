"""``python -m load replay OLD/summary.json``: does each capacity still hold?

Every ``capacity`` entry of an earlier ``python -m load capacity`` carries its stack, its
step's scenario, message size and timing, the shape that held and the objective
(capacity.search_description). A replay starts the same stack the way ``capacity`` does
(LiveStack), measures that one shape ``repeat`` times with the harness, and judges each run
with the entry's own objective. An entry holds when more than half of its runs held.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import ASGI_SERVERS, LAYERS, check_consumer
from load.commands.capacity import read_replayable
from load.commands.measure import measure
from load.commands.stack import LiveStack, accounts_for
from load.core.plan import Plan, Shape, build_plan
from load.core.search import LIMITS, Objective
from load.reporting.record import Stack


@dataclass(frozen=True)
class Replay:
    """One capacity entry to measure again: where, what, and what it must meet."""

    label: str
    stack: Stack
    plan: Plan
    objective: Objective
    recorded_deliveries_per_s: float
    recorded_versions: Mapping[str, str | None]


def read_replays(path: Path) -> tuple[list[Replay], list[str]]:
    """The replayable entries of the capacity summary at ``path``, and one note per entry
    that held nothing (it has no shape to replay). ValueError: one line saying what is
    wrong with the file."""
    entries = read_replayable(path, what="the capacity summary")
    replays, notes, labels = [], [], set()
    for number, entry in enumerate(entries, start=1):
        try:
            stack = _stack_of(entry)
            label = stack.label if stack.label not in labels else f"{stack.label}-{number}"
            labels.add(label)
            if entry["deliveries_per_s"] is None:
                notes.append(f"{label}: held no step when recorded, nothing to replay")
                continue
            replays.append(
                Replay(label, stack, _plan_of(entry), Objective(**entry["slo"]),
                       entry["deliveries_per_s"], entry.get("versions") or {})
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            reason = f"lacks {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(
                f"capacity entry {number} of {path} cannot be replayed: {reason}"
            ) from None
    if not replays:
        raise ValueError(f"no capacity entry of {path} held a step: nothing to replay")
    return replays, notes


def _stack_of(entry: Mapping[str, Any]) -> Stack:
    for name, value, allowed in (
        ("layer", entry["layer"], LAYERS),
        ("asgi", entry["asgi"], ASGI_SERVERS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    check_consumer(entry["consumer"])
    return Stack(entry["layer"], entry["servers"], entry["consumer"], entry["asgi"],
                 entry["layer_config"])  # fmt: skip


def _plan_of(entry: Mapping[str, Any]) -> Plan:
    return build_plan(
        entry["scenario"],
        Shape(users=entry["users"], rooms=entry["rooms"], rate=entry["rate_per_user"]),
        ["ws://127.0.0.1:1"],  # the real targets come with the stack
        duration_s=entry["duration_s"],
        settle_s=entry["settle_s"],
        drain_s=entry["drain_s"],
        close_grace_s=entry["close_grace_s"],
        message_bytes=entry["message_bytes"],
        login=entry.get("login", "none"),  # absent: written before logins, anonymous
    )


def replay(
    item: Replay,
    *,
    versions: Mapping[str, str | None],
    repeat: int,
    out: Path,
    on_record: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Measure ``item``'s shape ``repeat`` times on one start of its stack, with the
    package ``versions`` installed now; its verdict (an entry of summary.json's
    ``replay``)."""
    records = []
    servers_log = out / "runs" / item.label / "servers"
    with LiveStack(item.stack, servers_log, accounts=accounts_for(item.plan)) as live:
        for number in range(1, repeat + 1):
            run_dir = out / "runs" / item.label / f"run-{number:02d}"
            name = f"{item.label} replay {number}"
            record = measure(
                item.plan.again(),
                run_dir,
                stack=item.stack,
                live=live,
                progress=progress(name) if progress else None,
            )
            broke = item.objective.broken(record)
            record.update(
                {
                    "replay_of": item.label,
                    "repeat": number,
                    "passed": not broke,
                    "broke": broke,
                    "locust_files": f"runs/{item.label}/run-{number:02d}/",
                }
            )
            records.append(record)
            on_record(record)
            say(f"{name}: " + run_line(record))
            if broke and number < repeat:
                # As between capacity steps: a broken run's backlog must not reach the next.
                live.settle_down()
    return verdict(item, records, versions)


def run_line(record: Mapping[str, Any]) -> str:
    p99 = record["latency_ms"]["p99"]
    outcome = "held" if record["passed"] else "BROKE " + ",".join(record["broke"])
    return (
        f"{record['delivered_per_s']:,.0f} deliveries/s, p99 "
        f"{'-' if p99 is None else f'{p99:.1f} ms'}, lost {record['lost']}, "
        f"errors {record['errors']}: {outcome}"
    )


def verdict(
    item: Replay, records: Sequence[Mapping[str, Any]], versions: Mapping[str, str | None]
) -> dict[str, Any]:
    """Held when more than half of the runs held (one run: that run); ``broken`` lists
    every limit any run broke, the most severe first; figures are medians of the runs;
    ``versions_changed`` names each package whose version differs from the recorded one
    (recorded, now)."""
    held_runs = sum(1 for record in records if record["passed"])
    broken = {limit for record in records for limit in record["broke"]}
    p99s = [r["latency_ms"]["p99"] for r in records if r["latency_ms"]["p99"] is not None]
    return {
        "entry": item.label,
        "layer": item.stack.layer,
        "servers": item.stack.servers,
        "consumer": item.stack.consumer,
        "asgi": item.stack.asgi,
        "users": item.plan.users,
        "rooms": item.plan.rooms,
        "rate_per_user": item.plan.rate,
        "slo": item.objective.to_dict(),
        "held": held_runs * 2 > len(records),
        "broken": sorted(broken, key=LIMITS.index),
        "runs": len(records),
        "runs_held": held_runs,
        "recorded_deliveries_per_s": item.recorded_deliveries_per_s,
        "deliveries_per_s": statistics.median(r["delivered_per_s"] for r in records),
        "latency_p99_ms": statistics.median(p99s) if p99s else None,
        "versions_changed": {
            name: [recorded, versions.get(name)]
            for name, recorded in item.recorded_versions.items()
            if versions.get(name) != recorded
        },
    }


def verdict_line(entry: Mapping[str, Any]) -> str:
    """One entry's verdict in a sentence."""
    shape = (
        f"{entry['users']} users in {entry['rooms']} rooms at {entry['rate_per_user']:g} "
        f"msg/s each (recorded {entry['recorded_deliveries_per_s']:,.0f} deliveries/s)"
    )
    runs = f"{entry['runs_held']} of {entry['runs']} runs held"
    figures = f"median {entry['deliveries_per_s']:,.0f} deliveries/s"
    if entry["versions_changed"]:
        changes = ", ".join(
            f"{name} {old} -> {new}" for name, (old, new) in entry["versions_changed"].items()
        )
        figures += f" (versions changed: {changes})"
    if entry["held"]:
        return f"{entry['entry']}: holds: {shape}; {runs}, {figures}"
    return (
        f"{entry['entry']}: DOES NOT HOLD ({', '.join(entry['broken'])}): {shape}; {runs}, "
        f"{figures}"
    )
