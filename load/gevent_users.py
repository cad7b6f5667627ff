"""The Locust side: the chat user, its command-line options and the result hooks.

Every load process (the only one, or each worker) keeps a ``Tally``; when its users have
finished (stop sending, drain, close) it ships the tally to the master with
``runner.send_message("chatload_result", ...)``; the master merges one per worker and
then ends a headless run. Locust's own request statistics get one "connect" sample per
handshake and one "round trip" sample per message (the sender's own copy), which keeps the
web UI, CSV and HTML informative; the exact numbers come from the tally, never from those
(Locust rounds response times to whole milliseconds).
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import secrets
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from load import report
from load.codec import encode_frame_payload, encode_text, parse_server_payload
from load.scenarios import (
    CHURN_STAY_S,
    CLOSE_TIMEOUT_S,
    DEFAULT_DRAIN_S,
    DEFAULT_DURATION_S,
    SCENARIOS,
    Plan,
    new_run_id,
    send_times,
)
from load.stats import SocketLedger, Tally, summarize
from load.wire import Connection, WireError

logger = logging.getLogger("chatload")
RESULT_MESSAGE = "chatload_result"
LOOP_LAG_PERIOD_S = 0.05


def add_arguments(parser: Any) -> None:
    """Custom Locust options (shown in the web UI too)."""
    group = parser  # Locust's parser: include_in_web_ui works on it, not on groups
    group.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="fanout",
        help="fanout, isolation, churn or idle (default fanout)",
    )
    group.add_argument("--rooms", type=int, default=10, help="number of rooms (default 10)")
    group.add_argument(
        "--rate", type=float, default=1.0, help="messages per user per second (default 1)"
    )
    group.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help="seconds of sending from the test start (default 20)",
    )
    group.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds after the test start before anyone sends, so every "
        "user has joined (default 0)",
    )
    group.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN_S,
        help="seconds to wait for deliveries after sending stops (default 2)",
    )
    group.add_argument(
        "--run-id", default="", help="prefix of the room names (default: random per test)"
    )
    group.add_argument(
        "--targets", default="", help="comma-separated ws://HOST:PORT servers (default: --host)"
    )
    group.add_argument(
        "--results-file",
        default="",
        include_in_web_ui=False,
        help="where the master writes the merged result as JSON",
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadProcess:
    """State of this process's share of the current test (reset at each test start)."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, plan: Plan | None, start_ns: int | None = None) -> None:
        self.plan = plan
        self.tally = Tally()
        self.start_ns = start_ns or time.time_ns()
        # CPU and wall time are counted from when sending starts (set by the monitor)
        self.send_start_cpu = _cpu_seconds()
        self.send_start_wall = time.monotonic()
        self.token = f"p{os.getpid():x}{secrets.token_hex(2)}"
        self.next_local_user = 0
        self.next_socket = 0
        self.users_running = 0
        self.live: dict[int, SocketLedger] = {}
        self.reported = False
        self.users_done = Event()
        self.merged = Tally()  # master / local runner: the sum of the workers' tallies
        self.results_received = 0
        self.results_expected = 1

    @property
    def send_from_ns(self) -> int:
        return self.start_ns + int(self.plan.warmup_s * 1e9)

    @property
    def send_until_ns(self) -> int:
        return self.send_from_ns + int(self.plan.duration_s * 1e9)

    @property
    def leave_at_ns(self) -> int:
        return self.send_until_ns + int(self.plan.drain_s * 1e9)


PROCESS = LoadProcess()


def _plan_from_options(environment: Any) -> Plan:
    options = environment.parsed_options
    host = environment.host or ""
    targets = tuple(t for t in (options.targets or host).split(",") if t)
    if not targets:
        raise ValueError("give --host ws://HOST:PORT (or --targets)")
    return Plan(
        scenario=options.scenario,
        run_id=options.run_id or options.chatload_run_id,
        rooms=max(1, int(options.rooms)),
        rate=float(options.rate),
        duration_s=float(options.duration),
        warmup_s=float(options.warmup),
        drain_s=float(options.drain),
        targets=targets,
    )


def _wait_until_ns(deadline_ns: int) -> None:
    delay = (deadline_ns - time.time_ns()) / 1e9
    if delay > 0:
        gevent.sleep(delay)


def _fire(environment: Any, name: str, ms: float, error: Exception | None = None) -> None:
    environment.events.request.fire(
        request_type="WS",
        name=name,
        response_time=ms,
        response_length=0,
        exception=error,
        context={},
    )


class ChatUser(User):
    """One chat participant following the chosen scenario, then stopping."""

    # Locust's own wait between tasks is unused: the task runs the whole plan once.
    def wait_time(self) -> float:
        return 0.0

    @task
    def follow_plan(self) -> None:
        process = PROCESS
        plan = process.plan
        if plan is None or process.reported:
            raise StopUser()
        runner = self.environment.runner
        workers = getattr(self.environment.parsed_options, "expect_workers", 1) or 1
        worker_index = max(getattr(runner, "worker_index", 0), 0)
        user_index = (
            process.next_local_user * (workers if isinstance(runner, WorkerRunner) else 1)
            + worker_index
        )
        process.next_local_user += 1
        process.users_running += 1
        rng = random.Random()
        try:
            if plan.scenario == "churn":
                _wait_until_ns(process.send_from_ns)
                session = 0
                while time.time_ns() < process.send_until_ns and session < 100_000:
                    stay_ns = int(rng.uniform(*CHURN_STAY_S) * 1e9)
                    stop_ns = min(time.time_ns() + stay_ns, process.send_until_ns)
                    leave_ns = stop_ns + int(plan.drain_s * 1e9)
                    self.session(
                        plan,
                        user_index,
                        plan.room_of_user(user_index, session),
                        0,
                        stop_ns,
                        leave_ns,
                        rng,
                    )
                    session += 1
            else:
                # fanout, isolation, idle: one socket for the whole test; reconnect after a
                # lost connection while there is time left (each failure is counted)
                attempts = 0
                while time.time_ns() < process.send_until_ns and attempts < 20:
                    attempts += 1
                    rate_ok = plan.scenario != "idle"
                    completed = self.session(
                        plan,
                        user_index,
                        plan.room_of_user(user_index),
                        process.send_from_ns,
                        process.send_until_ns if rate_ok else 0,
                        process.leave_at_ns,
                        rng,
                    )
                    if completed:
                        break
                    gevent.sleep(0.5)  # back off before reconnecting (bounded: attempts)
        finally:
            process.users_running -= 1
            if process.users_running == 0 and time.time_ns() >= process.send_until_ns:
                process.users_done.set()
        raise StopUser()

    def session(
        self,
        plan: Plan,
        user_index: int,
        room: str,
        start_sending_ns: int,
        stop_sending_ns: int,
        leave_ns: int,
        rng: random.Random,
    ) -> bool:
        """One socket: connect, send from ``start_sending_ns`` until ``stop_sending_ns``,
        wait until ``leave_ns``, close. True if it ran to its planned end."""
        process = PROCESS
        tally = process.tally
        target = plan.target_of_user(user_index)
        started = time.perf_counter()
        try:
            connection = Connection.open(target, f"/ws/chat/{room}/")
        except WireError as error:
            tally.error(error.kind)
            _fire(self.environment, "connect", (time.perf_counter() - started) * 1000, error)
            return False
        join_ns = time.time_ns()
        connect_ms = (time.perf_counter() - started) * 1000
        tally.connect.add(connect_ms * 1000)
        tally.counters["connects"] += 1
        _fire(self.environment, "connect", connect_ms)

        grace_ns = int(plan.drain_s * 1e9)
        ledger = SocketLedger(tally, plan.run_id, room, join_ns, grace_ns)
        socket_no = process.next_socket
        process.next_socket += 1
        process.live[socket_no] = ledger
        prefix = f"{process.token}s{socket_no}."
        environment = self.environment
        counters = tally.counters

        def on_text(payload: bytes, recv_ns: int) -> None:
            stamp, problem = parse_server_payload(payload)
            if stamp is not None:
                ledger.deliver(stamp, recv_ns)
                if stamp.msg_id.startswith(prefix):  # our own copy: a round trip
                    _fire(environment, "round trip", (recv_ns - stamp.send_ns) / 1e6)
            elif problem == "message is not a load-test message":
                counters["foreign"] += 1
            else:
                kind = "server_error_frame" if problem.startswith("server error") else "bad_frame"
                tally.error(kind)
                _fire(environment, kind, 0, RuntimeError(problem))

        receiver = gevent.spawn(connection.receive_loop, on_text)
        try:
            start_s = max(time.time(), start_sending_ns / 1e9)
            for moment in send_times(start_s, stop_sending_ns / 1e9, plan.rate, rng):
                gevent.sleep(max(0.0, moment - time.time()))
                if receiver.ready():
                    break
                seq_id = f"{prefix}{counters['sent']}"
                send_ns = time.time_ns()
                payload = encode_frame_payload(encode_text(plan.run_id, room, seq_id, send_ns))
                try:
                    connection.send_payload(payload)
                except OSError:
                    tally.error("send_failed")
                    break
                counters["sent"] += 1
                tally.sends.append((room, send_ns))
            if not receiver.ready():
                receiver.join(timeout=max(0.0, (leave_ns - time.time_ns()) / 1e9))
            if receiver.ready():
                # The server ended the connection before we left.
                ledger.start_leaving(time.time_ns())
                tally.error(f"connection_{receiver.value or 'failed'}")
                _fire(environment, "connection lost", 0, RuntimeError(str(receiver.value)))
                return False
            ledger.start_leaving(time.time_ns())
            connection.start_close()
            receiver.join(timeout=CLOSE_TIMEOUT_S)
            if not receiver.ready():
                tally.error("close_timeout")
            elif receiver.value == "closed":
                counters["sessions_closed_cleanly"] += 1
            else:
                tally.error(f"close_{receiver.value}")
            return True
        finally:
            # Also runs when Locust kills the user mid-plan: membership ends now, so
            # nothing sent later is expected of this socket.
            ledger.start_leaving(time.time_ns())
            process.live.pop(socket_no, None)
            connection.abort()
            if not receiver.ready():
                receiver.kill(block=False)


def _monitor_loop_lag(process: LoadProcess, stop_ns: int) -> None:
    """From the start of sending, sample how late a short sleep wakes: the load
    process's scheduling delay (the measurement's own queueing)."""
    _wait_until_ns(process.send_from_ns)
    process.send_start_cpu = _cpu_seconds()
    process.send_start_wall = time.monotonic()
    histogram = process.tally.loop_lag
    for _ in range(1_000_000):
        if time.time_ns() >= stop_ns or process.reported:
            return
        before = time.perf_counter()
        gevent.sleep(LOOP_LAG_PERIOD_S)
        histogram.add(max(time.perf_counter() - before - LOOP_LAG_PERIOD_S, 1e-6) * 1e6)


def _report_when_done(environment: Any, process: LoadProcess) -> None:
    _wait_until_ns(process.leave_at_ns)
    # Users close their sockets after the drain; give them the close timeout and a bit.
    process.users_done.wait(timeout=CLOSE_TIMEOUT_S + 2.0)
    _send_result(environment, process)


def _send_result(environment: Any, process: LoadProcess) -> None:
    if process.reported or process.plan is None:
        return
    process.reported = True
    now_ns = time.time_ns()
    for ledger in list(process.live.values()):
        ledger.start_leaving(now_ns)
    if process.users_running:
        process.tally.error("user_unfinished_at_report", process.users_running)
    process.tally.processes.append(
        {
            "cpu_s": _cpu_seconds() - process.send_start_cpu,
            "wall_s": time.monotonic() - process.send_start_wall,
        }
    )
    environment.runner.send_message(RESULT_MESSAGE, process.tally.to_dict())


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    runner.register_message(RESULT_MESSAGE, _on_result)
    if environment.web_ui:

        @environment.web_ui.app.route("/chat-load")
        def _chat_load_page() -> Any:
            result = getattr(environment, "chatload_result", None)
            return report.live_page(result)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    options = environment.parsed_options
    if not isinstance(runner, WorkerRunner):
        # The master decides the room-name prefix and the test's start; workers receive
        # both with the spawn message (Locust forwards custom options to workers).
        options.chatload_run_id = new_run_id()
        options.chatload_start_ns = time.time_ns()
    plan = _plan_from_options(environment)
    PROCESS.reset(plan, options.chatload_start_ns)
    if isinstance(runner, MasterRunner):
        PROCESS.results_expected = max(runner.worker_count, 1)
        return
    gevent.spawn(_monitor_loop_lag, PROCESS, PROCESS.leave_at_ns)
    gevent.spawn(_report_when_done, environment, PROCESS)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    # Stopped before the plan ended (web UI Stop, --run-time): report what was measured.
    if not isinstance(environment.runner, MasterRunner):
        _send_result(environment, PROCESS)


def _on_result(environment: Any, msg: Any, **_kwargs: Any) -> None:
    process = PROCESS
    process.merged.merge(Tally.from_dict(msg.data))
    process.results_received += 1
    if process.results_received < process.results_expected:
        return
    plan = process.plan
    summary = summarize(process.merged, plan.duration_s)
    result = {"plan": plan.to_dict(), "summary": summary, "complete": True}
    environment.chatload_result = result
    logger.info("chat load result: %s", json.dumps(summary))
    options = environment.parsed_options
    if options and options.results_file:
        Path(options.results_file).write_text(json.dumps(result, indent=2))
    if options and options.headless:
        gevent.spawn_later(0.2, environment.runner.quit)
