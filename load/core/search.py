"""The capacity search, as pure logic (no network, no Locust): unit-tested on synthetic steps.

A search varies one quantity (messages per user per second, or users) and measures one
step at a time:

1. **Ramp**: start, start * factor, start * factor ** 2, ... while each step meets the
   objective.
2. **Confirm**: the first step that fails, and any step on which the load generator
   saturated, is measured once more. If it passes the second time, the first failure is
   marked noisy and the search goes on; one noisy step on a shared machine must not end a
   search far below what the server holds.
3. **Narrow**: between the last passing step and the first failing one, geometric
   bisection until they are within ``resolution`` of each other. When even the first step
   fails, the search goes down by ``factor`` until a step passes, but not below ``floor``:
   a step below it would measure too few messages to say anything (the capacity command
   sets it at MIN_WINDOW_MESSAGES in the measured window), and the search ends there with
   nothing held.

The capacity is the highest passing step below the lowest failing one. A step on which the
load generator saturated, twice in a row, ends the search: beyond it the harness, not the
server, is the limit (``limited_by: client``, the capacity a lower bound). A search that
reaches its step limit before it ends says so (``limited_by: steps``). Every step is
reported.

Also here, as pure logic on step records: when a step was measured on a busy machine
(``is_busy``: other work or the hypervisor's steal took more than BUSY_OTHER_CORES), and
which searches of a summary were busy, so that the search, the report's picture and the
studies judge a step the same way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from load.core.scenarios import CHURN_STAY_S, CLOSE_TIMEOUT_S
from load.core.stats import median_of_known

# What can end a search, in the order a tie is reported (the most severe first): the load
# generator, then a shape the harness did not manage to offer, then wrong deliveries (a
# leak, a duplicate or a wrong sender is a wrong answer, whatever the latency), then
# errors, loss and latency.
LIMITS = (
    "client",
    "not_offered",
    "leak",
    "duplicates",
    "misattributed",
    "errors",
    "loss",
    "memory",
    "handshake",
    "latency",
)
# A search that never saw a failing step says so with this.
ALL_PASSED = "max"
# A search that reached its step limit (``max_steps``) before it ended.
STEP_LIMIT = "steps"
DEFAULT_MAX_STEPS = 20
# Scenarios whose users keep one socket and send at the plan's rate the whole time.
STEADY_SCENARIOS = ("fanout", "isolation")
# A shortfall of messages sent must exceed this many standard deviations of their chance
# variation, and SENT_SHARE, to make a step "not offered" (sent_too_few).
SENT_SIGMAS = 4.0
# Sending at least this share of the planned messages is always "offered": a sender 10 %
# behind its schedule has changed the load measured, while chance alone stays well under
# that once a window holds a few hundred messages.
SENT_SHARE = 0.9


def planned_connects(run: Mapping[str, Any]) -> int:
    """The fewest handshakes the run's plan asks for. Every user connects at the start; a
    churn user then opens a new session at least once per longest possible session (its
    longest stay, the drain it lingers for and the close handshake's timeout: about twice a
    usual session, so only handshakes that take seconds make a churn run fall short)."""
    users = run["users"]
    if run["scenario"] != "churn":
        # A user that reconnects after a drop adds a handshake, but a drop is also an
        # error, which breaks the objective by itself.
        return users
    longest_session_s = CHURN_STAY_S[1] + run["drain_s"] + CLOSE_TIMEOUT_S
    send_s = run["settle_s"] + run["duration_s"]
    return users * max(1, math.ceil(send_s / longest_session_s))


def planned_messages(run: Mapping[str, Any]) -> float | None:
    """Messages the plan sends in the measured window (users x rate x duration), or None
    where it depends on more than the plan (churn: on how long each handshake and close
    takes; its sessions are checked through ``planned_connects``)."""
    if run["scenario"] not in STEADY_SCENARIOS:
        return None
    return run["users"] * run["rate_per_user"] * run["duration_s"]


def sent_too_few(sent: int, planned: float, users: int) -> bool:
    """Whether ``sent`` falls short of ``planned`` (by ``users`` senders) by more than
    chance explains.

    Each user sends at intervals of 1/rate ± 50 % (scenarios.send_times). Simulated with
    send_times, one user's count in a window of d seconds varies by at most rate·d/12 (the
    uniform intervals' squared coefficient of variation is 1/12) plus 1/4 (where the window
    cuts the intervals), and at a low rate after a short warm-up its mean is up to 6 % below
    rate·d (the first send's random phase). A shortfall counts when it exceeds both
    SENT_SIGMAS standard deviations of that and 1 - SENT_SHARE of the plan: chance does not
    fail a tiny step, and a sender 10 % behind fails a large one.
    """
    deviation = math.sqrt(planned / 12 + users / 4)
    allowed = max((1 - SENT_SHARE) * planned, SENT_SIGMAS * deviation)
    return sent < planned - allowed


@dataclass(frozen=True)
class Objective:
    """What a step must meet: p99 latency at most ``p99_ms``, at most ``loss`` messages
    lost and ``errors`` errors, no leak, duplicate or misattributed delivery, the shape
    offered in full (``planned_connects``, ``planned_messages``), and a load generator that
    kept up."""

    p99_ms: float = 100.0
    loss: int = 0
    errors: int = 0
    # The socket search's limits (None: not part of the objective): handshake p99, and the
    # chat servers' peak memory.
    connect_p99_ms: float | None = None
    max_server_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        limits = {"p99_ms": self.p99_ms, "loss": self.loss, "errors": self.errors}
        if self.connect_p99_ms is not None:
            limits["connect_p99_ms"] = self.connect_p99_ms
        if self.max_server_mb is not None:
            limits["max_server_mb"] = self.max_server_mb
        return limits

    def broken(self, run: Mapping[str, Any]) -> list[str]:
        """Every limit ``run`` broke, the one that broke first in time first.

        "First" comes from the run's per-second timeline: the second in which p99 first
        went past the objective, or a message sent then was lost, or an error happened.
        Limits that broke in the same second, or without a timeline, follow LIMITS.
        """
        broke = []
        if run["client_saturated"]:
            broke.append("client")
        if self.not_offered(run):
            broke.append("not_offered")
        if run["leaked"]:
            broke.append("leak")
        if run["duplicated"]:
            broke.append("duplicates")
        if run.get("misattributed"):  # absent from summaries older than the count
            broke.append("misattributed")
        if run["errors"] > self.errors:
            broke.append("errors")
        if run["lost"] + run.get("unconfirmed", 0) > self.loss:  # unconfirmed: may be lost
            broke.append("loss")
        p99 = run["latency_ms"]["p99"]
        if (p99 is None and run["expected"]) or (p99 is not None and p99 > self.p99_ms):
            broke.append("latency")
        if self.connect_p99_ms is not None:
            connect_p99 = run["connect_ms"]["p99"]
            if connect_p99 is None or connect_p99 > self.connect_p99_ms:
                broke.append("handshake")
        rss = run.get("server_rss_mb")
        if self.max_server_mb is not None and rss is not None and rss > self.max_server_mb:
            broke.append("memory")
        onset = self._onsets(run.get("timeline") or [])
        return sorted(broke, key=lambda limit: (onset.get(limit, math.inf), LIMITS.index(limit)))

    @staticmethod
    def not_offered(run: Mapping[str, Any]) -> bool:
        """Whether the harness failed to offer the run's shape: fewer handshakes than the
        plan asks for, or clearly fewer messages sent in the measured window."""
        if run["connects"] < planned_connects(run):
            return True
        planned = planned_messages(run)
        if planned is None:
            return False
        # A window without a single message measured nothing, whatever chance allows.
        return run["sent"] == 0 or sent_too_few(run["sent"], planned, run["users"])

    def _onsets(self, timeline: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """The first timeline second in which each limit was visibly broken."""
        onset: dict[str, int] = {}
        for row in timeline:
            second = row["t_s"]
            if row.get("errors"):
                onset.setdefault("errors", second)
            if row.get("lost"):
                onset.setdefault("loss", second)
            if row.get("p99_ms") is not None and row["p99_ms"] > self.p99_ms:
                onset.setdefault("latency", second)
        return onset


@dataclass
class Step:
    """One measured step: the value tried, why it was tried, and what it broke."""

    value: float
    phase: str  # "ramp", "confirm" or "narrow"
    broke: tuple[str, ...] = ()
    noisy: bool = False  # failed, then passed when measured again

    @property
    def passed(self) -> bool:
        return not self.broke


@dataclass
class Result:
    """Where a search ended. ``capacity`` is None when even the lowest step failed."""

    capacity: float | None
    limited_by: str
    past_capacity: float | None  # the lowest failing step (None when all passed)
    steps: list[Step] = field(default_factory=list)


class CapacitySearch:
    """Decides the next value to measure from the steps measured so far.

    search = CapacitySearch(start=0.5)
    while (value := search.next_value()) is not None:
        search.record(value, objective.broken(measure(value)))
    search.result()
    """

    def __init__(
        self,
        start: float,
        *,
        factor: float = 2.0,
        ramp_steps: int = 8,
        resolution: float = 0.15,
        whole: bool = False,
        max_steps: int = DEFAULT_MAX_STEPS,
        floor: float = 0.0,
    ) -> None:
        if start <= 0 or factor <= 1 or ramp_steps < 1 or resolution <= 0 or max_steps < 1:
            raise ValueError(
                "start > 0, factor > 1, ramp_steps ≥ 1, resolution > 0 and max_steps ≥ 1"
            )
        self.start = start
        self.factor = factor
        self.ramp_steps = ramp_steps
        self.resolution = resolution
        self.whole = whole  # users: whole numbers only
        self.max_steps = max_steps
        self.floor = floor  # the lowest value worth measuring
        self.steps: list[Step] = []
        self._lowest_fail: Step | None = None
        self._highest_pass: Step | None = None
        self._pending: tuple[float, str] | None = (self._round(start), "ramp")
        self._ended_by: str | None = None
        self._ramp_passes = 0

    def _round(self, value: float) -> float:
        return float(max(1, round(value))) if self.whole else round(value, 6)

    def next_value(self) -> float | None:
        """The value to measure next, or None when the search is over."""
        if self._pending is None or len(self.steps) >= self.max_steps:
            return None
        return self._pending[0]

    @property
    def next_phase(self) -> str | None:
        """Why the next value is measured: "ramp", "confirm" or "narrow"."""
        return self._pending[1] if self._pending else None

    def record(self, value: float, broke: Sequence[str]) -> None:
        """The outcome of measuring ``value`` (the list of limits broken, empty: passed)."""
        if self._pending is None or value != self._pending[0]:
            raise ValueError(f"expected a result for {self._pending}, got one for {value}")
        phase = self._pending[1]
        step = Step(value, phase, tuple(broke))
        self.steps.append(step)
        self._pending = None
        if phase == "confirm":
            first_try = self.steps[-2]
            if step.passed:
                first_try.noisy = True
                self._passed(step, first_try.phase)
            elif "client" in step.broke:
                # Beyond this the harness, not the server, is the limit.
                self._ended_by = "client"
            else:
                self._failed(step)
        elif step.passed:
            self._passed(step, phase)
        elif "client" in step.broke or phase == "ramp":
            # The end of a ramp, or of the harness's reach: measured twice before believed.
            self._pending = (value, "confirm")
        else:
            self._failed(step)

    def _passed(self, step: Step, phase: str) -> None:
        self._highest_pass = step
        if phase != "ramp":
            self._narrow()
            return
        self._ramp_passes += 1
        if self._ramp_passes >= self.ramp_steps:
            self._ended_by = ALL_PASSED
            return
        self._pending = (self._round(step.value * self.factor), "ramp")

    def _failed(self, step: Step) -> None:
        if self._lowest_fail is None or step.value < self._lowest_fail.value:
            self._lowest_fail = step
        if self._highest_pass is None:
            # Even the lowest step so far failed: go down until something passes.
            lower = self._round(step.value / self.factor)
            if self.floor <= lower < step.value:
                self._pending = (lower, "narrow")
            return
        self._narrow()

    def _narrow(self) -> None:
        # Only after a step passed and one failed: narrowing is between the two.
        assert self._highest_pass is not None and self._lowest_fail is not None
        low, high = self._highest_pass.value, self._lowest_fail.value
        if high <= low * (1 + self.resolution):
            return
        middle = self._round(math.sqrt(low * high))
        if low < middle < high:
            self._pending = (middle, "narrow")

    def result(self) -> Result:
        """Where the search ended (call once ``next_value`` returns None)."""
        passed = self._highest_pass.value if self._highest_pass else None
        past = self._lowest_fail.value if self._lowest_fail else None
        if self._ended_by == "client":
            return Result(passed, "client", self.steps[-1].value, self.steps)
        if self._pending is not None:  # a value was still to be measured
            return Result(passed, STEP_LIMIT, past, self.steps)
        if self._lowest_fail is None:
            return Result(passed, ALL_PASSED, None, self.steps)
        return Result(passed, self._lowest_fail.broke[0], past, self.steps)


# ---- A busy machine: whether a step, and so a search, measured the stack or a busy moment.

# A step during which more than this many cores were taken from the stack, by processes
# the harness did not start (other_cpu_cores) or by the hypervisor (steal_share), is
# measured once more; still over it, the step counts as contended.
# A quarter of a core is an eighth of the 2-core machine the README's figures come from;
# see load/README.md ("A busy machine") for what such a disturbance moved there.
BUSY_OTHER_CORES = 0.25


def taken_cores(record: Mapping[str, Any], cpus: int | None = None) -> float | None:
    """The cores taken from the stack during the step: by processes the harness did not
    start (``other_cpu_cores``) and by the hypervisor (``steal_share`` of the machine's
    ``cpus``). None when neither is known."""
    other, steal = record.get("other_cpu_cores"), record.get("steal_share")
    if other is None and steal is None:
        return None
    return (other or 0.0) + (steal or 0.0) * (cpus or os.cpu_count() or 1)


def is_busy(record: Mapping[str, Any], cpus: int | None = None) -> bool:
    """Whether more than BUSY_OTHER_CORES were taken from the stack during the step, by
    other work or by the hypervisor's steal (a VM whose host is busy loses CPU time the
    guest cannot see as a process: measured 2026-12-06, up to 48 % of a 2-vCPU VM's time
    for minutes). Unknown is not busy: there is nothing to say."""
    taken = taken_cores(record, cpus)
    return taken is not None and taken > BUSY_OTHER_CORES


def busy_searches(summary: Mapping[str, Any]) -> set[str]:
    """The searches of a capacity summary that were contended or had a step that
    ``is_busy`` calls busy, judged from the step records by today's rule (a summary written
    before steal counted has steps that were busy and not said to be)."""
    cpus = summary.get("harness", {}).get("cpus")
    entries = summary.get("capacity_repeats") or summary.get("capacity") or []
    busy = {entry["search"] for entry in entries if entry.get("contended")}
    busy |= {run["search"] for run in summary.get("runs", []) if is_busy(run, cpus)}
    return busy


def quiet_median(entries: Sequence[Mapping[str, Any]], busy: set[str]) -> float | None:
    """The median capacity of the searches in ``entries`` (one stack's) that were not busy."""
    return median_of_known(e["deliveries_per_s"] for e in entries if e["search"] not in busy)
