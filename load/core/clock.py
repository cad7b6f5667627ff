"""How far a worker's wall clock is from the master's, NTP-style (no Locust import).

The master sends a ping stamped ``t0`` (its clock); the worker stamps its receipt ``t1``
and its reply ``t2`` (the worker's clock); the master stamps the reply's arrival ``t3``.
If the two one-way trips took equally long, the worker's clock is ahead of the master's by

    offset = ((t1 - t0) + (t2 - t3)) / 2

and the trips took ``round_trip = (t3 - t0) - (t2 - t1)`` in all. Whatever the split of
the round trip between the two directions, the true offset lies within ``round_trip / 2``
of that estimate, so the exchange with the shortest round trip gives the tightest bound:
it is the one kept (queueing only ever adds delay, so the shortest trip is also the
least disturbed). This is done before a run starts and again when it ends; the
difference is the drift.

A worker reads the master's clock during the run (``Clock``, the one object in each
process that every timestamp comes from, set to the start estimate's offset), so
latencies between sockets of different workers and the membership windows behind
``expected`` compare like with like. The correction cannot wait until the
results are merged: a latency sample is the difference of two workers' timestamps and is
filed into a histogram bucket the moment it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MS = 1_000_000


@dataclass(frozen=True)
class Exchange:
    """One timestamped round trip, in ns: t0/t3 on the master's clock, t1/t2 on the
    worker's."""

    t0: int
    t1: int
    t2: int
    t3: int

    @property
    def offset_ns(self) -> float:
        """How far the worker's clock is ahead of the master's (negative: behind)."""
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2

    @property
    def round_trip_ns(self) -> int:
        """Time on the wire and in the message loops, the master's handling excluded."""
        return (self.t3 - self.t0) - (self.t2 - self.t1)


@dataclass(frozen=True)
class Estimate:
    """The offset from the best of several exchanges, taken at ``at_ns`` (worker clock)."""

    offset_ns: float
    uncertainty_ns: float  # half the best round trip: the true offset is within this
    round_trip_ns: int
    exchanges: int
    at_ns: int  # when, on the master's clock

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset_ns": self.offset_ns,
            "uncertainty_ns": self.uncertainty_ns,
            "round_trip_ns": self.round_trip_ns,
            "exchanges": self.exchanges,
            "at_ns": self.at_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(
            offset_ns=float(data["offset_ns"]),
            uncertainty_ns=float(data["uncertainty_ns"]),
            round_trip_ns=int(data["round_trip_ns"]),
            exchanges=int(data["exchanges"]),
            at_ns=int(data["at_ns"]),
        )


def estimate(exchanges: Iterable[Exchange]) -> Estimate:
    """The minimum-round-trip exchange's offset; ValueError if there is no usable one."""
    usable = [e for e in exchanges if e.round_trip_ns >= 0 and e.t3 >= e.t0 and e.t2 >= e.t1]
    if not usable:
        raise ValueError("no clock exchange completed: cannot estimate the offset")
    best = min(usable, key=lambda e: e.round_trip_ns)
    return Estimate(
        offset_ns=best.offset_ns,
        uncertainty_ns=best.round_trip_ns / 2,
        round_trip_ns=best.round_trip_ns,
        exchanges=len(usable),
        at_ns=best.t0,
    )


@dataclass(frozen=True)
class Correction:
    """A worker's clock relative to the master's over a run: the estimate before the start
    (which the worker applies) and, once the run has ended, the one after (drift)."""

    start: Estimate
    end: Estimate | None = None

    @property
    def drift_ns(self) -> float:
        return 0.0 if self.end is None else self.end.offset_ns - self.start.offset_ns

    @property
    def uncertainty_ns(self) -> float:
        """How wrong the applied offset was at the start."""
        return self.start.uncertainty_ns

    @property
    def error_bound_ns(self) -> float:
        """How wrong a corrected timestamp of this worker can be at any time of the run:
        the start estimate's bound, plus the drift since (taken as its whole when the end
        estimate says so; the end's own bound is added, since drift is read from it)."""
        if self.end is None:
            return self.start.uncertainty_ns
        return self.start.uncertainty_ns + abs(self.drift_ns) + self.end.uncertainty_ns

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.to_dict(), "end": self.end and self.end.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Correction:
        end = data.get("end")
        return cls(Estimate.from_dict(data["start"]), Estimate.from_dict(end) if end else None)


def latency_bound_ns(corrections: Sequence[Correction | None]) -> float | None:
    """The most a latency can be off by clock error: a message sent on one worker and
    received on another carries both workers' error (the master itself sends nothing);
    with one worker, sender and receiver share its clock and the offset cancels. None
    (unknown) when two or more workers took part and one of them was never measured."""
    if len(corrections) < 2:
        return 0.0
    if any(correction is None for correction in corrections):
        return None
    bounds = sorted((c.error_bound_ns for c in corrections if c is not None), reverse=True)
    return bounds[0] + bounds[1]


NEVER_MEASURED = (
    "no clock exchange with this worker completed: its timestamps are on its own clock, "
    "uncorrected, so latencies and membership windows involving it may be off by its whole "
    "clock offset"
)
NO_END_ESTIMATE = "no clock exchange completed at the end of the run: the drift is unknown"


def worker_entry(name: str, correction: Correction | None) -> dict[str, Any]:
    """One worker's line in summary.json's ``harness.workers``; a worker whose clock
    exchanges all failed (``correction`` None) is listed too, with null figures and
    ``clock_warning`` saying so."""
    if correction is None:
        return {
            "worker": name,
            "clock_offset_ms": None,
            "clock_uncertainty_ms": None,
            "clock_error_bound_ms": None,
            "clock_drift_ms": None,
            "clock_offset_end_ms": None,
            "clock_round_trip_ms": None,
            "clock_exchanges": 0,
            "clock_warning": NEVER_MEASURED,
        }
    end = correction.end
    return {
        "worker": name,
        "clock_offset_ms": round(correction.start.offset_ns / MS, 3),
        "clock_uncertainty_ms": round(correction.uncertainty_ns / MS, 3),
        "clock_error_bound_ms": round(correction.error_bound_ns / MS, 3),
        "clock_drift_ms": None if end is None else round(correction.drift_ns / MS, 3),
        "clock_offset_end_ms": None if end is None else round(end.offset_ns / MS, 3),
        "clock_round_trip_ms": round(correction.start.round_trip_ns / MS, 3),
        "clock_exchanges": correction.start.exchanges,
        "clock_warning": NO_END_ESTIMATE if end is None else None,
    }


def clock_report(
    names: Mapping[str, str],
    start: Mapping[str, Estimate],
    end: Mapping[str, Estimate],
) -> dict[str, Any] | None:
    """summary.json's ``harness`` additions for the workers ``names`` lists (node id ->
    name): every one of them, measured or not; None when no remote worker was asked."""
    if not names:
        return None
    corrections = {
        node: Correction(start[node], end.get(node)) if node in start else None
        for node in sorted(names)
    }
    bound = latency_bound_ns(list(corrections.values()))
    return {
        "workers": [worker_entry(names[node], c) for node, c in corrections.items()],
        "latency_accuracy_ms": None if bound is None else round(bound / MS, 3),
    }


def trust_note(
    bound_ms: float | None, p50_ms: float | None, *, never_measured: Sequence[str] = ()
) -> str | None:
    """A plain sentence when a worker's clock was never measured, or when the clock bound
    is larger than the median it would qualify."""
    if never_measured:
        return (
            f"latency cannot be trusted: the clock of worker(s) {', '.join(never_measured)} "
            f"was never measured (every clock exchange failed), so their timestamps are "
            f"uncorrected"
        )
    if bound_ms is None or p50_ms is None or bound_ms <= p50_ms:
        return None
    return (
        f"latency cannot be trusted: the workers' clocks are known only to within "
        f"±{bound_ms:.3f} ms, more than the p50 of {p50_ms:.3f} ms being measured"
    )


class Clock:
    """The wall clock as the harness's timestamps read it in one process: the master's.

    ``offset_ns`` is how far this process's own clock is ahead of the master's: 0 on the
    master and on the workers Locust forks beside it, the estimate's offset on a remote
    worker (set by the clock sync at the test start, before any user starts). One object
    per process, handed to whatever takes a timestamp (users, the wire's receipt stamps,
    slow readers, the live view), so a new timestamp cannot quietly read another clock.
    Durations are not its business: they use ``time.perf_counter``/``monotonic``.
    ``own_ns`` reads this process's own wall clock (a test hands in a fake one)."""

    def __init__(self, offset_ns: int = 0, *, own_ns: Callable[[], int] = time.time_ns) -> None:
        self.offset_ns = offset_ns
        self.own_ns = own_ns

    def follow_master(self, offset_ns: int) -> None:
        """From now on read the master's clock, this process's being ``offset_ns`` ahead."""
        self.offset_ns = offset_ns

    def time_ns(self) -> int:
        return self.own_ns() - self.offset_ns

    def time(self) -> float:
        return self.time_ns() / 1e9

    def __repr__(self) -> str:
        return f"Clock(offset_ns={self.offset_ns})"
