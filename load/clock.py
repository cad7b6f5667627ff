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

A worker reads the master's clock during the run (``Correction.to_master`` of every
timestamp it takes), so latencies between sockets of different workers and the membership
windows behind ``expected`` compare like with like. The correction cannot wait until the
results are merged: a latency sample is the difference of two workers' timestamps and is
filed into a histogram bucket the moment it arrives.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterable, Mapping, Sequence
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

    def to_master(self, worker_ns: int) -> int:
        """A timestamp of the worker's clock on the master's clock."""
        return worker_ns - round(self.start.offset_ns)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.to_dict(), "end": self.end and self.end.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Correction:
        end = data.get("end")
        return cls(Estimate.from_dict(data["start"]), Estimate.from_dict(end) if end else None)


def latency_bound_ns(corrections: Sequence[Correction]) -> float:
    """The most a latency can be off by clock error: a message sent on one worker and
    received on another carries both workers' error (the master itself sends nothing);
    with one worker, sender and receiver share its clock and the offset cancels."""
    if len(corrections) < 2:
        return 0.0
    bounds = sorted((c.error_bound_ns for c in corrections), reverse=True)
    return bounds[0] + bounds[1]


def worker_entry(name: str, correction: Correction) -> dict[str, Any]:
    """One worker's line in summary.json's ``harness.workers``."""
    return {
        "worker": name,
        "clock_offset_ms": round(correction.start.offset_ns / MS, 3),
        "clock_uncertainty_ms": round(correction.uncertainty_ns / MS, 3),
        "clock_error_bound_ms": round(correction.error_bound_ns / MS, 3),
        "clock_drift_ms": round(correction.drift_ns / MS, 3),
        "clock_offset_end_ms": (
            None if correction.end is None else round(correction.end.offset_ns / MS, 3)
        ),
        "clock_round_trip_ms": round(correction.start.round_trip_ns / MS, 3),
        "clock_exchanges": correction.start.exchanges,
    }


def trust_note(bound_ms: float, p50_ms: float | None) -> str | None:
    """A plain sentence when the clock bound is larger than the median it would qualify."""
    if p50_ms is None or bound_ms <= p50_ms:
        return None
    return (
        f"latency cannot be trusted: the workers' clocks are known only to within "
        f"±{bound_ms:.3f} ms, more than the p50 of {p50_ms:.3f} ms being measured"
    )


class ShiftedTime(types.ModuleType):
    """The ``time`` module as the harness's modules see it in a worker whose clock is
    ``shift_ns`` ahead of the master's: wall-clock readings on the master's clock;
    everything else (perf_counter, monotonic, sleep) untouched."""

    def __init__(self, shift_ns: int) -> None:
        super().__init__("time")
        self.shift_ns = shift_ns

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time_ns(self) -> int:
        return time.time_ns() - self.shift_ns

    def time(self) -> float:
        return (time.time_ns() - self.shift_ns) / 1e9
