"""The Locust side of clock agreement between the master and its remote workers.

Before the users start, the master times ``ROUNDS`` round trips to each worker over
Locust's own message channel (``chatload_clock_ping``/``_pong``) and keeps the fastest
(load/core/clock.py explains the arithmetic). Each worker receives its offset with the spawn
message (as a Locust option, like the run id) and sets its process's one ``clock.Clock``
to it: from then on every timestamp the harness takes in that process, which all come
from that object, is on the master's clock. When the plan's last socket should have left,
the master times the round trips again: the difference is the drift, reported with the
offsets in summary.json (a worker that never answered is listed with a null offset and a
warning). Workers that Locust forks on this machine (``--processes``) share the master's
clock and skip all of this.

The locustfile registers ``on_init`` and ``on_test_start`` as listeners, the clock's
``test_start`` before the users' module's, so the clock is set before the plan starts.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Protocol

import gevent
from gevent.event import AsyncResult, Event
from locust.runners import MasterRunner, WorkerRunner

from load.core import clock

logger = logging.getLogger("chatload")
PING = "chatload_clock_ping"
PONG = "chatload_clock_pong"
ROUNDS = 16  # enough for one quiet round trip among them; each takes well under 1 ms locally
PONG_TIMEOUT_S = 2.0


class Schedule(Protocol):
    """When the current test's last socket should have left (users.LoadProcess)."""

    @property
    def plan(self) -> object | None: ...
    @property
    def leave_at_ns(self) -> int: ...


class ClockSync:
    """The master's view: each remote worker's start and end estimate."""

    def __init__(self) -> None:
        self.pending: dict[int, AsyncResult] = {}
        self.sequence = itertools.count()
        self.start: dict[str, clock.Estimate] = {}
        self.end: dict[str, clock.Estimate] = {}
        self.names: dict[str, str] = {}
        self.done = Event()
        self.done.set()

    def reset(self) -> None:
        self.start.clear()
        self.end.clear()
        self.names.clear()
        self.done.set()

    def exchange(self, runner: MasterRunner, node_id: str) -> clock.Estimate | None:
        """ROUNDS round trips to one worker; None if it never answered."""
        exchanges = []
        for _ in range(ROUNDS):
            sequence = next(self.sequence)
            answer = self.pending[sequence] = AsyncResult()
            t0 = time.time_ns()
            runner.send_message(PING, {"seq": sequence}, client_id=node_id)
            try:
                t1, t2, t3 = answer.get(timeout=PONG_TIMEOUT_S)
            except gevent.Timeout:
                logger.warning("clock: worker %s did not answer a clock ping", node_id)
                continue
            finally:
                self.pending.pop(sequence, None)
            exchanges.append(clock.Exchange(t0, t1, t2, t3))
        try:
            return clock.estimate(exchanges)
        except ValueError:
            return None

    def measure(self, runner: MasterRunner, into: dict[str, clock.Estimate]) -> None:
        """Every ready worker at once (one greenlet each); bounded by the pong timeouts."""
        nodes = [node.id for node in runner.clients.all]
        for node_id in nodes:
            self.names[node_id] = f"{runner.get_worker_index(node_id)}:{node_id}"
        jobs = {node_id: gevent.spawn(self.exchange, runner, node_id) for node_id in nodes}
        gevent.joinall(list(jobs.values()), timeout=ROUNDS * PONG_TIMEOUT_S + 5)
        for node_id, job in jobs.items():
            if job.ready() and job.value is not None:
                into[node_id] = job.value

    def report(self) -> dict[str, Any] | None:
        """summary.json's ``harness`` additions: every worker asked, answered or not;
        None when no remote worker was timed."""
        return clock.clock_report(self.names, self.start, self.end)


SYNC = ClockSync()


def on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(PING, _on_ping)
    elif isinstance(runner, MasterRunner):
        runner.register_message(PONG, _on_pong)


def _on_ping(environment: Any, msg: Any, **_kwargs: Any) -> None:
    # Stamped on this worker's own clock, never the shifted one: the master computes the
    # shift from these.
    received = time.time_ns()
    environment.runner.send_message(
        PONG, {"seq": msg.data["seq"], "t1": received, "t2": time.time_ns()}
    )


def _on_pong(environment: Any, msg: Any, **_kwargs: Any) -> None:
    arrived = time.time_ns()
    answer = SYNC.pending.get(msg.data["seq"])
    if answer is not None:
        answer.set((msg.data["t1"], msg.data["t2"], arrived))


def remote_workers(options: Any) -> bool:
    """Workers on other machines (or started by hand): only Locust's --processes forks
    workers that share this machine's clock."""
    return not getattr(options, "processes", None)


def on_test_start(
    environment: Any, *, process_clock: clock.Clock, schedule: Schedule, **_kwargs: Any
) -> None:
    """The master times every remote worker's clock and sends each its offset; a worker
    sets ``process_clock`` to it. ``schedule`` tells the master when to time them again."""
    runner, options = environment.runner, environment.parsed_options
    if isinstance(runner, MasterRunner):
        SYNC.reset()
        offsets: dict[str, int] = {}
        if remote_workers(options):
            SYNC.measure(runner, SYNC.start)
            offsets = {node: round(e.offset_ns) for node, e in SYNC.start.items()}
            for node, estimate in SYNC.start.items():
                logger.info(
                    "clock: worker %s is %+.3f ms from the master (±%.3f ms)",
                    SYNC.names[node], estimate.offset_ns / 1e6, estimate.uncertainty_ns / 1e6,
                )  # fmt: skip
            SYNC.done.clear()
            gevent.spawn(_measure_at_end, runner, schedule)
        # Sent to every worker with the spawn message, like the run id.
        options.chatload_clock_offsets = offsets
    elif isinstance(runner, WorkerRunner):
        offsets = getattr(options, "chatload_clock_offsets", None) or {}
        # A worker the master could not time gets no offset and reads its own clock; the
        # summary lists it with a null offset and says so.
        if offsets and runner.client_id not in offsets:
            logger.warning("clock: the master could not time this worker: its own clock is used")
        process_clock.follow_master(offsets.get(runner.client_id, 0))


def _measure_at_end(runner: MasterRunner, schedule: Schedule) -> None:
    """Again when the last socket should have left (master clock): the drift. The users'
    listener, which runs after the clock's, has set the schedule's plan by now."""
    try:
        if schedule.plan is not None:
            delay = (schedule.leave_at_ns - time.time_ns()) / 1e9
            gevent.sleep(max(delay, 0.0))
        SYNC.measure(runner, SYNC.end)
    finally:
        SYNC.done.set()
