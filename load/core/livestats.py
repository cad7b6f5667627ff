"""Numbers while a run goes (no Locust import): what each load process ships every second,
how the master combines them, and the one-line terminal form.

Each process ships a ``Snapshot``: the sends and closed memberships since its last one
(appended on the master, so nothing is counted twice), its open sockets, and cumulative
per-second counts. From those the master computes, every second:

* delivered/s: first copies received during the last whole second that every process's
  latest snapshot covers (``delivered_second``). A snapshot taken during a second holds
  only part of that second; reading "the second before now" from it read 0.6 of the rate
  all through a steady run;
* lost so far: for every second of sends whose drain has passed (in every process's latest
  snapshot), the deliveries expected
  (sockets firmly in the room at each send, as in the final accounting) minus the first
  copies that arrived; a settled second is computed once. Deliveries of messages sent
  during a handshake or in a socket's window of doubt count as arrived here, so this can
  read a little low until the exact result at the end, never high (the exact result also
  says what was unconfirmed);
* unconfirmed so far: for the same seconds, the deliveries expected in the window of doubt
  of sockets that have closed (as in the final accounting) minus those that arrived;
* p50/p99 of the messages sent in the last ``RECENT_S`` seconds, errors by kind, sockets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from load.core.stats import (
    RESULT_COUNTS,
    LogHistogram,
    Members,
    Membership,
    Window,
    memberships_from,
)

SECOND_NS = 1_000_000_000
RECENT_S = 5  # the window of the live percentiles
FOREVER_NS = 2**62


@dataclass
class Snapshot:
    """One load process's second: deltas (sends, memberships) and cumulative state."""

    process: str
    at_ns: int  # when it was taken: it holds every delivery received before this
    sends: list[tuple[str, int]]
    memberships: list[Membership]
    open_sockets: list[tuple[str, int]]
    arrived: dict[int, int]  # send second -> first copies received (cumulative)
    received: dict[int, int]  # receipt second -> first copies received (cumulative)
    errors: dict[str, int]
    recent_latency: dict[int, dict[str, Any]]  # send second -> histogram (cumulative)
    # send second -> first copies in a socket's window of doubt (cumulative)
    in_doubt: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "at_ns": self.at_ns,
            "sends": self.sends,
            "memberships": self.memberships,
            "open_sockets": self.open_sockets,
            "arrived": {str(k): v for k, v in self.arrived.items()},
            "received": {str(k): v for k, v in self.received.items()},
            "errors": self.errors,
            "recent_latency": {str(k): v for k, v in self.recent_latency.items()},
            "in_doubt": {str(k): v for k, v in self.in_doubt.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            process=data["process"],
            at_ns=int(data["at_ns"]),
            sends=[(room, int(ns)) for room, ns in data["sends"]],
            memberships=memberships_from(data["memberships"]),
            open_sockets=[(room, int(ns)) for room, ns in data["open_sockets"]],
            arrived={int(k): int(v) for k, v in data["arrived"].items()},
            received={int(k): int(v) for k, v in data["received"].items()},
            errors={str(k): int(v) for k, v in data["errors"].items()},
            recent_latency={int(k): v for k, v in data["recent_latency"].items()},
            in_doubt={int(k): int(v) for k, v in data.get("in_doubt", {}).items()},
        )


@dataclass
class LiveView:
    """Combines every process's snapshots on the master (or the only process)."""

    window: Window
    drain_s: float
    test_start_ns: int
    total_s: float
    sends: list[tuple[str, int]] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    latest: dict[str, Snapshot] = field(default_factory=dict)
    settled_lost: dict[int, int] = field(default_factory=dict)
    settled_unconfirmed: dict[int, int] = field(default_factory=dict)

    def add(self, snapshot: Snapshot) -> None:
        self.sends.extend(snapshot.sends)
        self.memberships.extend(snapshot.memberships)
        self.latest[snapshot.process] = snapshot

    def covered_ns(self, now_ns: int) -> int:
        """The time up to which every process's latest snapshot holds what it received."""
        return min([now_ns, *(s.at_ns for s in self.latest.values())])

    def _settle(self, now_ns: int) -> None:
        """Compute lost and unconfirmed for every send second whose drain has passed
        (once each)."""
        window = self.window
        drain_ns = round(self.drain_s * SECOND_NS)
        last = (self.covered_ns(now_ns) - drain_ns - window.start_ns) // SECOND_NS - 1
        by_second: dict[int, list[tuple[str, int]]] = {}
        for room, send_ns in self.sends:
            second = (send_ns - window.start_ns) // SECOND_NS
            if second <= last and second not in self.settled_lost:
                by_second.setdefault(second, []).append((room, send_ns))
        if not by_second:
            return
        members = Members(
            [*self.memberships]
            + [
                (room, join, FOREVER_NS, FOREVER_NS)
                for s in self.latest.values()
                for room, join in s.open_sockets
            ]
        )
        for second, sends in by_second.items():
            firm = in_doubt = 0
            for room, send_ns in sends:
                firm_here, in_doubt_here = members.at(room, send_ns)
                firm += firm_here
                in_doubt += in_doubt_here
            arrived = sum(s.arrived.get(second, 0) for s in self.latest.values())
            arrived_in_doubt = sum(s.in_doubt.get(second, 0) for s in self.latest.values())
            self.settled_lost[second] = max(firm - (arrived - arrived_in_doubt), 0)
            self.settled_unconfirmed[second] = max(in_doubt - arrived_in_doubt, 0)
        # Sends of settled seconds are no longer needed.
        self.sends = [
            (room, ns)
            for room, ns in self.sends
            if (ns - window.start_ns) // SECOND_NS not in self.settled_lost
        ]

    def view(self, now_ns: int) -> dict[str, Any]:
        """The numbers shown live: one JSON-able dict."""
        self._settle(now_ns)
        window = self.window
        current = (now_ns - window.start_ns) // SECOND_NS
        snapshots = list(self.latest.values())
        errors: Counter[str] = Counter()
        for snapshot in snapshots:
            errors.update(snapshot.errors)
        recent = LogHistogram()
        for snapshot in snapshots:
            for second, data in snapshot.recent_latency.items():
                if current - RECENT_S <= second < current:
                    recent.merge(LogHistogram.from_dict(data))
        percentiles = recent.percentiles_ms(("p50", "p99"))
        complete = window.second(self.covered_ns(now_ns)) - 1
        return {
            "elapsed_s": round(max(now_ns - self.test_start_ns, 0) / SECOND_NS, 1),
            "total_s": round(self.total_s, 1),
            "delivered_per_s": sum(s.received.get(complete, 0) for s in snapshots),
            "delivered_second": complete,
            "delivered": sum(sum(s.received.values()) for s in snapshots),
            "lost_so_far": sum(self.settled_lost.values()),
            "unconfirmed_so_far": sum(self.settled_unconfirmed.values()),
            "p50_ms": percentiles["p50"],
            "p99_ms": percentiles["p99"],
            "latency_samples": recent.count,
            "errors": sum(errors.values()),
            "errors_by_kind": dict(sorted(errors.items())),
            "connected": sum(len(s.open_sockets) for s in snapshots),
            "processes": len(snapshots),
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def progress_line(view: Mapping[str, Any], label: str = "") -> str:
    """One terminal line: elapsed/total, delivered/s, p99, lost so far (plain text)."""
    errors = view["errors"]
    return (
        f"{label + '  ' if label else ''}"
        f"{view['elapsed_s']:5.0f}/{view['total_s']:.0f} s  "
        f"delivered {view['delivered_per_s']:,}/s  "
        f"p50 {_ms(view['p50_ms'])}  p99 {_ms(view['p99_ms'])}  "
        f"lost so far {view['lost_so_far']:,}{_unconfirmed_text(view)}  "
        f"errors {errors:,}  sockets {view['connected']:,}"
    )


def _unconfirmed_text(view: Mapping[str, Any]) -> str:
    unconfirmed = view.get("unconfirmed_so_far", 0)
    return f" (+{unconfirmed:,} unconfirmed)" if unconfirmed else ""


def tab_rows(latest: dict[str, Any] | None, result: dict[str, Any] | None) -> list[dict[str, str]]:
    """The tab's table: the live numbers, then the exact result once there is one."""
    rows = []
    if latest is None:
        rows.append({"measure": "status", "value": "waiting for a test to start", "detail": ""})
    else:
        errors = ", ".join(f"{k} {v}" for k, v in latest["errors_by_kind"].items()) or "none"
        rows += [
            {"measure": "elapsed", "value": f"{latest['elapsed_s']:.0f} of {latest['total_s']:.0f} s", "detail": "connect, send, drain"},  # noqa: E501
            {"measure": "delivered/s", "value": f"{latest['delivered_per_s']:,}", "detail": "first copies received in the last whole second all processes reported"},  # noqa: E501
            {"measure": "lost so far", "value": f"{latest['lost_so_far']:,}", "detail": "expected minus arrived, for sends whose drain has passed"},  # noqa: E501
            {"measure": "unconfirmed so far", "value": f"{latest.get('unconfirmed_so_far', 0):,}", "detail": "expected at sockets that closed before it arrived (maybe lost)"},  # noqa: E501
            {"measure": f"p50 / p99 (last {RECENT_S} s)", "value": f"{_ms_text(latest['p50_ms'])} / {_ms_text(latest['p99_ms'])}", "detail": f"{latest['latency_samples']:,} deliveries"},  # noqa: E501
            {"measure": "errors", "value": f"{latest['errors']:,}", "detail": errors},
            {"measure": "connected sockets", "value": f"{latest['connected']:,}", "detail": f"{latest['processes']} load process(es)"},  # noqa: E501
        ]  # fmt: skip
    if result is not None:
        for name in RESULT_COUNTS:
            value = result.get(name, 0)
            rows.append({"measure": f"result: {name}", "value": f"{value:,}", "detail": "exact"})
        latency = result["latency_ms"]
        rows.append({
            "measure": "result: latency",
            "value": " / ".join(_ms_text(latency[k]) for k in ("p50", "p90", "p99", "max")),
            "detail": "p50 / p90 / p99 / max of every delivery",
        })  # fmt: skip
    return rows


def _ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"
