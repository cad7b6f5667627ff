"""``python -m load capacity``: how much each stack holds, where it breaks, and how.

For each stack (layer, servers, ASGI server) a ``CapacitySearch`` picks the offered loads;
each step is one measured run on fresh servers of the stack (started again, with the
backend emptied, before every step but the first). The result per stack is a
``capacity`` entry: the shape that held (replayable by any client), what broke first one
step past it, and the servers' CPU per delivery at a load that every stack held.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from load.commands.machine import MachineLog
from load.commands.measure import measure
from load.commands.stack import LiveStack, accounts_for
from load.core.plan import Plan, Shape
from load.core.search import (
    DEFAULT_MAX_STEPS,
    STEP_LIMIT,
    CapacitySearch,
    Objective,
    Result,
    is_busy,
    taken_cores,
)
from load.core.summaries import read_capacity_summary
from load.reporting.record import Stack

VARY = ("rate", "users")
# A rate step whose measured window would hold fewer messages than this says nothing about
# capacity (a stack that fails at every load, such as channels-postgres duplicating every
# message, used to halve the rate until no message was sent at all, for 20 steps).
MIN_WINDOW_MESSAGES = 10


@dataclass(frozen=True)
class SearchSettings:
    """How a search steps: the varied quantity, where it starts, how fast it climbs."""

    objective: Objective
    vary: str = "rate"  # "rate": messages per user per second; "users": sockets, room size kept
    factor: float = 2.0
    ramp_steps: int = 8
    # 0.1, not 0.2: with 20 % two searches that disagree only on one marginal step lie
    # 19 % apart; 10 % brings them within 9 % for one step more per search (measured:
    # studies/repeatability/repeatability.py, load/README.md).
    resolution: float = 0.1
    max_steps: int = DEFAULT_MAX_STEPS  # steps per search, confirmations included

    def start_value(self, base: Shape) -> float:
        return base.rate if self.vary == "rate" else float(base.rooms)

    def shape_at(self, base: Shape, value: float) -> Shape:
        """The shape of a step. Varying users keeps the room size: ``value`` rooms of
        ``base.users / base.rooms`` users each."""
        if self.vary == "rate":
            return replace(base, rate=value)
        rooms = int(value)
        return Shape(users=rooms * max(1, base.users // base.rooms), rooms=rooms, rate=base.rate)

    def new_search(self, base: Shape, duration_s: float) -> CapacitySearch:
        """The search over ``base``'s shape; a rate search goes no lower than the rate at
        which the ``duration_s`` window holds MIN_WINDOW_MESSAGES messages."""
        floor = MIN_WINDOW_MESSAGES / (base.users * duration_s) if self.vary == "rate" else 1.0
        return CapacitySearch(
            self.start_value(base),
            factor=self.factor,
            ramp_steps=self.ramp_steps,
            resolution=self.resolution,
            whole=self.vary == "users",
            max_steps=self.max_steps,
            floor=floor,
        )


def search_stack(
    stack: Stack,
    base: Plan,
    settings: SearchSettings,
    *,
    out: Path,
    label: str,
    on_record: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
    progress: Callable[[str], Any] | None = None,
    machine: MachineLog | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One search on one stack: every step's record, and the stack's capacity entry.
    ``progress(label)`` gives each step's live watcher (load/commands/progress.py); ``machine``
    takes the speed index before and after the search."""
    search = settings.new_search(base.shape, base.duration_s)
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    calibrated = machine.around(label) if machine else contextlib.nullcontext()
    with (
        calibrated,
        LiveStack(stack, out / "runs" / label / "servers", accounts=accounts_for(base)) as live,
    ):
        for number in range(1, settings.max_steps + 1):  # the search stops itself by then
            value = search.next_value()
            if value is None:
                break
            if number > 1:
                # Each step on fresh servers and an empty backend: what an earlier step
                # left behind must not decide this one (LiveStack.start_afresh says why).
                live.start_afresh()
            plan = base.with_shape(settings.shape_at(base.shape, value))
            run_dir = out / "runs" / label / f"step-{number:02d}"
            step_name = f"{label} step {number}"
            record = measure_quietly(
                plan,
                run_dir,
                stack=stack,
                live=live,
                progress=progress(step_name) if progress else None,
                say=say,
            )
            broke = settings.objective.broken(record)
            phase = search.next_phase
            search.record(value, broke)
            record.update(
                {
                    "step": number,
                    "passed": not broke,
                    "search": label,
                    "phase": phase,
                    "broke": broke,
                    "varied": settings.vary,
                    "locust_files": f"runs/{label}/step-{number:02d}/",
                    "server_pids": [server.pid for server in live.servers],
                }
            )
            records.append(record)
            on_record(record)
            say(step_line(label, record))
    for step, record in zip(search.steps, records, strict=True):
        record["noisy"] = step.noisy
    result = search.result()
    if result.limited_by == STEP_LIMIT:
        say(
            f"{label}: stopped at the step limit ({settings.max_steps} steps, --max-steps) "
            "before the search ended: the capacity is the highest step that held so far"
        )
    entry = capacity_entry(stack, base, settings, result, records)
    entry["search_s"] = round(time.monotonic() - started, 1)
    return records, entry


def measure_quietly(
    plan: Plan,
    run_dir: Path,
    *,
    stack: Stack,
    live: LiveStack,
    progress: Any,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One step; measured once more when the machine was busy (``is_busy``). The record
    kept is the second one, with ``contended`` true if the machine was busy again and
    ``busy_first_try`` the cores taken on the first try (``taken_cores``: other work and
    the hypervisor's steal; null: not measured again); the
    first try's Locust files are kept beside, in ``run_dir``-busy."""
    record = measure(plan, run_dir, stack=stack, live=live, progress=progress)
    first_taken = None
    if is_busy(record):
        first_taken = taken_cores(record)
        say(f"  the machine was busy ({_taken_text(record)}): measuring again")
        live.start_afresh()  # the second try starts as every step does, whatever the first left
        # the first try's Locust files move aside; the kept record's are in run_dir
        run_dir.rename(run_dir.with_name(run_dir.name + "-busy"))
        record = measure(plan.again(), run_dir, stack=stack, live=live, progress=progress)
    record["contended"] = is_busy(record)
    record["busy_first_try"] = first_taken
    return record


def _taken_text(record: Mapping[str, Any]) -> str:
    steal = record.get("steal_share")
    stolen = f", {steal * 100:.0f} % of the CPU time stolen by the hypervisor" if steal else ""
    return f"{taken_cores(record) or 0:.2f} cores taken by other work{stolen}"


def step_line(label: str, record: Mapping[str, Any]) -> str:
    verdict = "pass" if record["passed"] else "FAIL " + ",".join(record["broke"])
    return (
        f"{label} step {record['step']} ({record['phase']}): {record['users']} users, "
        f"{record['rooms']} rooms, {record['rate_per_user']:g} msg/s each -> "
        f"{record['delivered_per_s']:.0f} deliveries/s of "
        f"{record['offered_deliveries_per_s']:.0f}, "
        f"p99 {_ms(record['latency_ms']['p99'])}, lost {record['lost']}, "
        f"unconfirmed {record.get('unconfirmed', 0)}, errors {record['errors']}: {verdict}"
        + (f" (BUSY MACHINE: {_taken_text(record)})" if record.get("contended") else "")
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _step_at(records: Sequence[Mapping[str, Any]], settings: SearchSettings, value: float | None,
             *, passed: bool) -> Mapping[str, Any] | None:  # fmt: skip
    """The last record of the step measured at ``value`` with that outcome."""
    if value is None:
        return None
    for record in reversed(records):
        measured = record["rate_per_user"] if settings.vary == "rate" else float(record["rooms"])
        if measured == value and record["passed"] == passed:
            return record
    return None


def search_description(stack: Stack, base: Plan, settings: SearchSettings) -> dict[str, Any]:
    """What a search was asked to do: the stack, each step's scenario, message size and
    timing, the varied quantity, the starting shape and the objective. A capacity entry
    carries it, so that ``python -m load replay`` can rebuild the step and the gate can
    compare like with like (``key_of``)."""
    return {
        "layer": stack.layer,
        "servers": stack.servers,
        "consumer": stack.consumer,
        "asgi": stack.asgi,
        "layer_config": stack.layer_config,
        "slo": settings.objective.to_dict(),
        "scenario": base.scenario,
        "message_bytes": base.message_bytes,
        "duration_s": base.duration_s,
        "settle_s": base.settle_s,
        "drain_s": base.drain_s,
        "close_grace_s": base.close_grace_s,
        "vary": settings.vary,
        "start": {"users": base.users, "rooms": base.rooms, "rate_per_user": base.rate},
    }


# What an entry needs beyond the contract's keys to be replayed and gated on; a summary
# written before these existed is refused (read_replayable).
REPLAY_FIELDS = tuple(search_description(Stack(), Plan("fanout", Shape(1, 1, 1.0), ()),
                                         SearchSettings(Objective())))  # fmt: skip


def capacity_entry(
    stack: Stack,
    base: Plan,
    settings: SearchSettings,
    result: Result,
    records: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The contract's capacity entry for one search (``search_description``'s fields
    included); the CLI adds ``versions``."""
    held = _step_at(records, settings, result.capacity, passed=True)
    past = _step_at(records, settings, result.past_capacity, passed=False)
    if past is None and result.limited_by == "client" and records:
        past = records[-1]
    entry: dict[str, Any] = {
        **search_description(stack, base, settings),
        "users": held["users"] if held else None,
        "rooms": held["rooms"] if held else None,
        "rate_per_user": held["rate_per_user"] if held else None,
        "deliveries_per_s": held["delivered_per_s"] if held else None,
        "messages_per_s": round(held["sent"] / held["duration_s"], 1) if held else None,
        "limited_by": result.limited_by,
        "past_capacity": _past(past) if past else None,
        "server_cpu_us_per_delivery": None,  # filled in by add_efficiency
        # beyond the contract:
        "offered_deliveries_per_s": held["offered_deliveries_per_s"] if held else None,
        "latency_ms": dict(held["latency_ms"]) if held else None,
        "steps": len(records),
        "noisy_steps": sum(1 for r in records if r.get("noisy")),
        "search": records[0]["search"] if records else None,
        "contended": any(r.get("contended") for r in records),
        "contended_steps": sum(1 for r in records if r.get("contended")),
        "contended_step_numbers": [r["step"] for r in records if r.get("contended")],
        # Kept out of search_description, whose fields a replay requires: summaries from
        # before logins existed had anonymous users, and replay reads a missing login so.
        "login": base.login,
    }
    if base.scenario == "idle":
        # The socket search: how many open sockets held, what one costs, how fast they came.
        entry |= {
            "sockets": held["connects"] if held else None,
            "connect_ms": dict(held["connect_ms"]) if held else None,
            "server_kb_per_socket": held.get("server_kb_per_socket") if held else None,
            "client_kb_per_socket": held.get("client_kb_per_socket") if held else None,
            "deflate_sockets": held.get("deflate_sockets") if held else None,
        }
    return entry


def _past(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "users": record["users"],
        "rooms": record["rooms"],
        "rate_per_user": record["rate_per_user"],
        "offered_deliveries_per_s": record["offered_deliveries_per_s"],
        "delivered_per_s": record["delivered_per_s"],
        "delivery_ratio": record["delivery_ratio"],
        "lost": record["lost"],
        "errors": record["errors"],
        "latency_ms": {"p50": record["latency_ms"]["p50"], "p99": record["latency_ms"]["p99"]},
        "broke": list(record["broke"]),
        "behaviour": behaviour(record),
    }


def behaviour(record: Mapping[str, Any]) -> str:
    """In words, what the stack did at a step that broke the objective."""
    parts = []
    if record["lost"]:
        lost_share = record["lost"] / record["expected"] if record["expected"] else 0.0
        silent = " without an error" if not record["errors"] else ""
        parts.append(f"lost {lost_share:.1%} of deliveries{silent}")
    if record.get("unconfirmed"):
        parts.append(f"{record['unconfirmed']:,} deliveries unconfirmed (their socket closed)")
    if record["errors"]:
        kinds = ", ".join(f"{k} {v}" for k, v in record.get("errors_by_kind", {}).items())
        parts.append(f"{record['errors']} errors ({kinds})")
    p99 = record["latency_ms"]["p99"]
    if p99 is not None:
        parts.append(f"p99 {p99:,.0f} ms")
    if record.get("connects", record["users"]) < record["users"]:
        parts.append(f"{record['connects']:,} of {record['users']:,} sockets connected")
    connect_p99 = record.get("connect_ms", {}).get("p99")
    if "handshake" in record.get("broke", ()) and connect_p99 is not None:
        parts.append(f"handshake p99 {connect_p99:,.0f} ms")
    if "memory" in record.get("broke", ()) and record.get("server_rss_mb") is not None:
        parts.append(f"server memory {record['server_rss_mb']:,.0f} MB")
    if record["client_saturated"]:
        parts.append("the load generator saturated")
    return "; ".join(parts)


# What must be equal for two capacities to be compared (key_of), as the gate names them.
KEY_FIELDS = (
    "layer", "servers", "consumer", "asgi", "scenario", "vary", "room shape", "message_bytes",
    "layer_config", "login",
)  # fmt: skip


def key_of(entry: Mapping[str, Any]) -> tuple:
    """Like with like: the stack, the scenario, the varied quantity, the room shape (users
    and rooms when the rate is varied; the room size and the rate when users are), the
    message size, the layer config (as parsed JSON: spacing and key order aside) and how
    the users logged in. The order follows KEY_FIELDS."""
    start = entry["start"]
    if entry["vary"] == "rate":
        shape = f"{start['users']} users in {start['rooms']} rooms"
    else:
        room_size = max(1, start["users"] // start["rooms"])
        shape = f"rooms of {room_size} at {start['rate_per_user']:g} msg/s each"
    config = entry["layer_config"]
    config = json.dumps(json.loads(config), sort_keys=True) if config else None
    return (
        entry["layer"], entry["servers"], entry["consumer"], entry["asgi"], entry["scenario"],
        entry["vary"], shape, entry["message_bytes"], config, entry.get("login", "none"),
    )  # fmt: skip


def median_entries(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per stack: the repeat whose capacity is the median (the lower one of the
    middle two for an even count), with every repeat's deliveries/s in ``repeats``."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for entry in entries:
        by_key.setdefault(key_of(entry), []).append(entry)
    chosen = []
    for group in by_key.values():
        ordered = sorted(group, key=lambda e: e["deliveries_per_s"] or 0.0)
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["repeats"] = [e["deliveries_per_s"] for e in group]
        median["search_labels"] = [e["search"] for e in group]
        chosen.append(median)
    return chosen


def add_efficiency(
    entries: Sequence[dict[str, Any]],
    records: Sequence[Mapping[str, Any]],
    settings: SearchSettings,
) -> dict[str, Any] | None:
    """Server CPU per delivery of every stack at one load: the highest ramp step that
    every search passed (every search starts at the same value and climbs by the same
    factor, so their ramp steps coincide), leaving out searches that passed none. Returns
    that common load, or None."""
    passed_by_search: dict[str, set[float]] = {}
    for record in records:
        values = passed_by_search.setdefault(record["search"], set())
        if record["passed"] and record["phase"] in ("ramp", "confirm"):
            values.add(_value_of(record, settings))
    # A stack that held no ramp step at all (channels-postgres, for one) has no figure at a
    # common load; leaving it out keeps the comparison for the others.
    held_some = [values for values in passed_by_search.values() if values]
    if not held_some:
        return None
    common = set.intersection(*held_some)
    if not common:
        return None
    value = max(common)
    for entry in entries:
        searches = entry.get("search_labels", [entry["search"]])
        costs = [
            r["server_cpu_us_per_delivery"]
            for r in records
            if r["search"] in searches
            and r["passed"]
            and _value_of(r, settings) == value
            and r["server_cpu_us_per_delivery"] is not None
        ]
        entry["server_cpu_us_per_delivery"] = round(statistics.median(costs), 1) if costs else None
    sample = next(r for r in records if r["passed"] and _value_of(r, settings) == value)
    return {
        "vary": settings.vary,
        "users": sample["users"],
        "rooms": sample["rooms"],
        "rate_per_user": sample["rate_per_user"],
        "offered_deliveries_per_s": sample["offered_deliveries_per_s"],
    }


def _value_of(record: Mapping[str, Any], settings: SearchSettings) -> float:
    return record["rate_per_user"] if settings.vary == "rate" else float(record["rooms"])


def read_replayable(path: Path, *, what: str) -> list[dict[str, Any]]:
    """The capacity entries of an earlier summary.json that carry what a replay and the
    gate need (REPLAY_FIELDS); ValueError says in one line what is wrong."""
    entries = read_capacity_summary(path, what=what)
    missing = [field for field in REPLAY_FIELDS if any(field not in e for e in entries)]
    if missing:
        raise ValueError(
            f"{what} {path} was written before capacity entries carried {', '.join(missing)}: "
            "re-record it with this version's `python -m load capacity`"
        )
    for number, entry in enumerate(entries, start=1):
        try:
            key_of(entry)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(
                f"{what} {path}: capacity entry {number} is malformed ({error!r})"
            ) from None
    return entries


def read_baseline(path: Path) -> list[dict[str, Any]]:
    """The capacity entries of an earlier summary.json; ValueError says what is wrong."""
    return read_replayable(path, what="the baseline")


def unmatched_baseline(
    baseline: Sequence[Mapping[str, Any]], planned: Sequence[Mapping[str, Any]]
) -> str | None:
    """None when some baseline entry is like one of the ``planned`` searches (each a
    ``search_description``), else one line saying what differs from the closest one."""
    old_keys = [key_of(entry) for entry in baseline]
    new_keys = [key_of(entry) for entry in planned]
    if set(old_keys) & set(new_keys):
        return None

    def differences(old: tuple, new: tuple) -> list[str]:
        return [
            f"{name} {_shown(a)} in the baseline, {_shown(b)} here"
            for name, a, b in zip(KEY_FIELDS, old, new, strict=True)
            if a != b
        ]

    closest = min(
        (differences(old, new) for old in old_keys for new in new_keys), key=len, default=[]
    )
    return (
        "no baseline entry is like any search of this run (" + "; ".join(closest) + "): give "
        "a baseline recorded with the same stacks, scenario, shape, message size and layer "
        "config"
    )


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def regressions(
    entries: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], max_drop: float
) -> tuple[list[str], list[str]]:
    """(regressions, notes): one line per stack whose capacity fell more than ``max_drop``
    below the like baseline entry's (``key_of``), and one per stack that could not be
    compared: no like entry in the baseline ("no baseline"), or one that held nothing."""
    old_by_key = {key_of(e): e for e in baseline}
    problems: list[str] = []
    notes: list[str] = []
    for entry in entries:
        name = Stack(entry["layer"], entry["servers"], entry["consumer"], entry["asgi"]).label
        old = old_by_key.get(key_of(entry))
        if old is None:
            notes.append(f"{name}: no baseline (no baseline entry is like this search)")
            continue
        if not old.get("deliveries_per_s"):
            notes.append(f"{name}: the baseline held no step, nothing to compare with")
            continue
        new = entry["deliveries_per_s"] or 0.0
        drop = 1 - new / old["deliveries_per_s"]
        line = (
            f"{name}: capacity {new:,.0f} deliveries/s against the baseline's "
            f"{old['deliveries_per_s']:,.0f} ({-drop:+.0%})"
        )
        (problems if drop > max_drop else notes).append(line)
    return problems, notes
