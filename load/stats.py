"""Exact delivery accounting and mergeable statistics (no Locust import: unit-testable).

Every Locust process keeps one ``Tally``; tallies merge by addition (counters, histogram
buckets) and concatenation (send and membership records), so the totals are the same
whether one process or many generated the load. ``summarize`` turns the merged tally into
the contract's numbers:

* a socket is *firmly* in its room from its handshake's completion (the tutorial consumer
  calls group_add before accept) until ``grace`` before it starts to close; a message is
  *expected* at every socket firmly in the sender's room at the message's send time;
* a delivery of a message sent outside the receiver's firm window (during its handshake or
  within ``grace`` of its close) is *ambiguous*: it counts as expected and delivered when
  it arrives and is never counted as lost;
* lost = firm expected - firm delivered, which cannot be negative: each firm delivery is
  one distinct (message, socket) pair of the firm expected set (duplicates and leaks are
  counted apart and never as delivered).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from load.codec import Stamp

# Bucket i holds values in [RATIO**i, RATIO**(i+1)); reporting the geometric middle of a
# bucket is off by at most sqrt(RATIO) - 1 = 0.995 % of the true value.
RATIO = 1.02
_LOG_RATIO = math.log(RATIO)
_HALF_STEP = math.sqrt(RATIO)


class LogHistogram:
    """Counts of positive values in log-spaced buckets (≤1 % relative error); mergeable.

    Values are in microseconds; anything below 1 µs shares the lowest bucket.
    """

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value_us: float) -> None:
        index = int(math.log(value_us) / _LOG_RATIO) if value_us > 1.0 else 0
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += value_us
        if self.max is None or value_us > self.max:
            self.max = value_us
        if self.min is None or value_us < self.min:
            self.min = value_us

    def merge(self, other: LogHistogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min

    def quantile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (0 < q ≤ 1), within 1 %; exact max for q = 1."""
        if self.count == 0:
            return None
        if q >= 1.0:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = RATIO**index * _HALF_STEP if index > 0 else 1.0
                # Never report beyond the exact extremes.
                return min(max(middle, self.min or middle), self.max or middle)
        return self.max

    def to_dict(self) -> dict[str, Any]:
        return {
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogHistogram:
        histogram = cls()
        histogram.buckets = {int(k): int(v) for k, v in data["buckets"].items()}
        histogram.count = int(data["count"])
        histogram.total = float(data["total"])
        histogram.min = data["min"]
        histogram.max = data["max"]
        return histogram

    def percentiles_ms(self, names: Iterable[str]) -> dict[str, float | None]:
        """{"p50": ms, ..., "max": ms} rounded to the microsecond."""
        result: dict[str, float | None] = {}
        for name in names:
            q = 1.0 if name == "max" else float(name[1:]) / 100
            value = self.quantile(q)
            result[name] = None if value is None else round(value / 1000, 3)
        return result


# Counters every Tally has (all exact integers).
COUNTERS = (
    "sent",  # frames written to a socket in full
    "delivered_firm",  # first receipt of a message at a socket firmly in the sender's room
    "ambiguous",  # first receipt of a message sent during the receiver's handshake/close window
    "duplicated",  # a second (or later) receipt of a message at one socket
    "leaked",  # receipt of a message sent in another room
    "foreign",  # well-formed chat messages that are not this harness's (someone else typing)
    "connects",  # completed handshakes
    "sessions_closed_cleanly",  # our close frame answered by the server's close frame
)


@dataclass
class Tally:
    """Everything one process measured; ``merge`` adds another process's tally."""

    counters: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # kind -> count
    latency: LogHistogram = field(default_factory=LogHistogram)  # µs, every delivery
    connect: LogHistogram = field(default_factory=LogHistogram)  # µs, every handshake
    loop_lag: LogHistogram = field(default_factory=LogHistogram)  # µs, gevent loop lag
    # (room, send_ns) of every message sent
    sends: list[tuple[str, int]] = field(default_factory=list)
    # (room, join_ns, firm_until_ns) of every socket that completed its handshake
    memberships: list[tuple[str, int, int]] = field(default_factory=list)
    # per process: {"cpu_s": .., "wall_s": ..}
    processes: list[dict[str, float]] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.counters.update(other.counters)
        self.errors.update(other.errors)
        self.latency.merge(other.latency)
        self.connect.merge(other.connect)
        self.loop_lag.merge(other.loop_lag)
        self.sends.extend(other.sends)
        self.memberships.extend(other.memberships)
        self.processes.extend(other.processes)

    def error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] += count

    def to_dict(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "errors": dict(self.errors),
            "latency": self.latency.to_dict(),
            "connect": self.connect.to_dict(),
            "loop_lag": self.loop_lag.to_dict(),
            "sends": self.sends,
            "memberships": self.memberships,
            "processes": self.processes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            counters=Counter(data["counters"]),
            errors=Counter(data["errors"]),
            latency=LogHistogram.from_dict(data["latency"]),
            connect=LogHistogram.from_dict(data["connect"]),
            loop_lag=LogHistogram.from_dict(data["loop_lag"]),
            sends=[(room, int(ns)) for room, ns in data["sends"]],
            memberships=[(room, int(a), int(b)) for room, a, b in data["memberships"]],
            processes=list(data["processes"]),
        )


class SocketLedger:
    """The receiving side of one socket's membership: classifies each delivery.

    Whether a delivery is firm depends on when the socket starts to close, which is not
    known yet when it arrives; deliveries stay pending until their send time is more than
    ``grace`` in the past (then they are firm whatever happens later) or until ``finish``.
    """

    __slots__ = (
        "firm_until_ns",
        "grace_ns",
        "join_ns",
        "pending",
        "room",
        "run_id",
        "seen",
        "tally",
    )

    def __init__(self, tally: Tally, run_id: str, room: str, join_ns: int, grace_ns: int) -> None:
        self.tally = tally
        self.run_id = run_id
        self.room = room
        self.join_ns = join_ns
        self.grace_ns = grace_ns
        self.firm_until_ns: int | None = None
        self.seen: set[str] = set()
        self.pending: deque[int] = deque()

    def deliver(self, stamp: Stamp, recv_ns: int) -> None:
        """Account one received measurement message (receipt time ``recv_ns``)."""
        counters = self.tally.counters
        if stamp.room != self.room:
            # Room names carry the run id, so another run's message here is a leak too.
            counters["leaked"] += 1
            return
        if stamp.msg_id in self.seen:
            counters["duplicated"] += 1
            return
        self.seen.add(stamp.msg_id)
        send_ns = stamp.send_ns
        self.tally.latency.add(max(recv_ns - send_ns, 0) / 1000)
        if send_ns < self.join_ns:
            counters["ambiguous"] += 1
        elif self.firm_until_ns is not None:
            counters["delivered_firm" if send_ns <= self.firm_until_ns else "ambiguous"] += 1
        else:
            pending = self.pending
            pending.append(send_ns)
            # Anything sent more than grace ago is firm whenever the close starts.
            horizon = recv_ns - self.grace_ns
            while pending and pending[0] <= horizon:
                pending.popleft()
                counters["delivered_firm"] += 1

    def start_leaving(self, leave_ns: int) -> None:
        """The socket starts to close (or was found dead) at ``leave_ns``."""
        if self.firm_until_ns is not None:
            return
        self.firm_until_ns = max(leave_ns - self.grace_ns, self.join_ns - 1)
        counters = self.tally.counters
        for send_ns in self.pending:
            counters["delivered_firm" if send_ns <= self.firm_until_ns else "ambiguous"] += 1
        self.pending.clear()
        self.tally.memberships.append((self.room, self.join_ns, self.firm_until_ns))


def firm_expected(
    sends: Iterable[tuple[str, int]], memberships: Iterable[tuple[str, int, int]]
) -> int:
    """Σ over messages of the sockets firmly in the message's room at its send time."""
    joins: dict[str, list[int]] = defaultdict(list)
    ends: dict[str, list[int]] = defaultdict(list)
    for room, join_ns, until_ns in memberships:
        if until_ns >= join_ns:
            joins[room].append(join_ns)
            ends[room].append(until_ns)
    for values in (*joins.values(), *ends.values()):
        values.sort()
    total = 0
    for room, send_ns in sends:
        room_joins = joins.get(room)
        if room_joins:
            # joined at or before the send, minus those whose firm window ended before it
            total += bisect.bisect_right(room_joins, send_ns) - bisect.bisect_left(
                ends[room], send_ns
            )
    return total


LATENCY_NAMES = ("p50", "p90", "p95", "p99", "max")
CONNECT_NAMES = ("p50", "p95", "p99", "max")
# A load generator above this CPU share of one core, or whose event loop runs this late,
# measures itself as much as the server.
SATURATED_CPU_SHARE = 0.85
SATURATED_LOOP_LAG_P99_MS = 10.0


def summarize(tally: Tally, send_window_s: float) -> dict[str, Any]:
    """The contract's counters, percentiles and saturation verdict for one run."""
    counters = tally.counters
    expected_firm = firm_expected(tally.sends, tally.memberships)
    ambiguous = counters["ambiguous"]
    expected = expected_firm + ambiguous
    delivered = counters["delivered_firm"] + ambiguous
    lost = expected_firm - counters["delivered_firm"]
    errors = sum(tally.errors.values())
    cpu_s = sum(p["cpu_s"] for p in tally.processes)
    shares = [p["cpu_s"] / p["wall_s"] for p in tally.processes if p["wall_s"] > 0]
    lag = tally.loop_lag.percentiles_ms(("p50", "p99", "max"))
    reasons = []
    if shares and max(shares) > SATURATED_CPU_SHARE:
        reasons.append(f"a client process used {max(shares):.0%} of a CPU")
    if lag["p99"] is not None and lag["p99"] > SATURATED_LOOP_LAG_P99_MS:
        reasons.append(f"client event loop lag p99 {lag['p99']:.1f} ms")
    return {
        "sent": counters["sent"],
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "duplicated": counters["duplicated"],
        "leaked": counters["leaked"],
        "errors": errors,
        "delivery_ratio": round(delivered / expected, 6) if expected else 1.0,
        "delivered_per_s": round(delivered / send_window_s, 1) if send_window_s > 0 else 0.0,
        "latency_ms": tally.latency.percentiles_ms(LATENCY_NAMES),
        "connect_ms": tally.connect.percentiles_ms(CONNECT_NAMES),
        "client_cpu_s": round(cpu_s, 3),
        "client_saturated": bool(reasons),
        # Fields beyond the contract's minimum:
        "errors_by_kind": dict(sorted(tally.errors.items())),
        "ambiguous": ambiguous,
        "foreign": counters["foreign"],
        "connects": counters["connects"],
        "latency_samples": tally.latency.count,
        "client_processes": len(tally.processes),
        "client_cpu_share_max": round(max(shares), 3) if shares else None,
        "client_cpu_us_per_delivery": round(cpu_s * 1e6 / delivered, 1) if delivered else None,
        "client_loop_lag_ms": lag,
        "client_saturated_reasons": reasons,
        "accounting_consistent": lost >= 0,
    }
