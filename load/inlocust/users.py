"""The Locust side: the chat user and the hooks that merge every process's tally.

Every load process (the only one, or each worker) keeps a ``Tally``. When its users have
finished (stop sending, drain, close) it ships the tally to the master with
``runner.send_message("chatload_result", ...)``; the master merges one per worker, writes
the merged tally for ``python -m load`` to summarise, and ends a headless run. Locust's own
request statistics get one "connect" sample per handshake and one "round trip" sample per
message (the sender's own copy), which keeps its web UI, CSV and HTML informative; the exact
numbers come from the tally, never from those (Locust rounds to whole milliseconds).
The hooks are plain functions; load/locustfile.py registers them, and hands the test
start the process's one clock (load/core/clock.py), which every timestamp here comes from.

The client shares its machine with the server it measures, so its per-delivery CPU is kept
small (load/README.md, "Harness cost"): each socket is read by a callback in the gevent hub
(``wire.HubReceiver``), sends fire from libev timers (``_on_timers``), and ``FastLedger``
defers the histogram and timeline arithmetic to a fold once a second. Code called from
those callbacks (``FastLedger``, listeners of Locust's request event for the round trips)
runs in the hub and must never block.
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import psutil
from gevent.event import Event
from locust import User, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from harness.login import SESSION_COOKIE, HttpBrowser, NoAnswer
from load.core.clock import Clock
from load.core.codec import encode_frame_payload, encode_text, id_prefix
from load.core.logins import LoadAccounts, read_accounts
from load.core.plan import SECOND_NS, Plan, add_options, new_run_id, plan_from_options
from load.core.scenarios import CHURN_STAY_S, CLOSE_TIMEOUT_S, send_times
from load.core.stats import FastLedger, Tally, Window, summarize
from load.inlocust import slow_reader
from load.inlocust.clocksync import SYNC
from load.inlocust.wire import Connection, HubReceiver, WireError

logger = logging.getLogger("chatload")
RESULT_MESSAGE = "chatload_result"
LOOP_LAG_PERIOD_S = 0.02
# A user whose socket is lost reconnects, like a person reloading the page: after a
# jittered wait that doubles from RECONNECT_BACKOFF_S up to RECONNECT_BACKOFF_MAX_S with
# each failed attempt, at most MAX_RECONNECTS times; a churn user opens at most this many
# sessions.
MAX_RECONNECTS = 40
MAX_CHURN_SESSIONS = 100_000
RECONNECT_BACKOFF_S = 0.25
RECONNECT_BACKOFF_MAX_S = 2.0
LOGIN_TIMEOUT_S = 60.0
# How a session ended (run_session).
DONE, NO_CONNECT, DROPPED = "done", "no_connect", "dropped"


def add_arguments(parser: Any) -> None:
    """The run options (load/core/plan.py's OPTIONS), shown in the web UI too."""
    add_options(parser, for_locust=True)
    parser.add_argument(
        "--results-file",
        default="",
        include_in_web_ui=False,
        help="where the master writes the merged tally as JSON (python -m load reads it)",
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class LoadProcess:
    """This process's share of the current test (reset at each test start)."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.tally: Tally | None = None

    def reset(
        self, plan: Plan, test_start_ns: int, *, workers: int, worker: bool, clock: Clock
    ) -> None:
        self.plan = plan
        self.clock = clock  # this process's one clock: every timestamp comes from it
        self.window = Window.of(plan, test_start_ns)
        self.tally = Tally(self.window)
        # (CPU seconds, monotonic time) at the measured window's start and end (the monitor)
        self.cpu_from: tuple[float, float] | None = None
        self.cpu_until: tuple[float, float] | None = None
        # This process's memory before its users connect, and at the window's end with
        # every socket open: what the load generator pays per socket.
        self.rss_before_mb = _rss_mb()
        self.rss_open_mb: float | None = None
        self.sockets_open = 0  # open at the window's end, when rss_open_mb is read
        self.token = f"p{os.getpid():x}{secrets.token_hex(2)}"
        # Whom users log in as (--login, --accounts); None: anonymous users.
        self.accounts: LoadAccounts | None = (
            read_accounts(plan.accounts, plan.login) if plan.login != "none" else None
        )
        self.workers = workers
        self.next_local_user = 0
        self.next_socket = 0
        self.users_running = 0
        self.live: dict[int, FastLedger] = {}
        self.reported = False
        self.users_done = Event()
        # Early end of the drain: a single load process with a steady membership knows
        # when every message it sent has reached every member of its room.
        self.single = workers == 1 and not worker and plan.scenario != "churn"
        self.members: Counter[str] = Counter()  # open sockets per room
        self.expected_deliveries = 0  # Σ over sends of the room's open sockets at the time
        self.drained = Event()
        self.merged: Tally | None = None  # master / local runner: the sum of the tallies
        self.results_received = 0
        self.results_expected = 1

    @property
    def first_deliveries(self) -> int:
        assert self.tally is not None  # only asked for after reset()
        return self.tally.deliveries.count

    @property
    def leave_at_ns(self) -> int:
        assert self.plan is not None  # only asked for after reset()
        return self.window.until_ns + round(self.plan.drain_s * SECOND_NS)

    def everything_arrived(self) -> bool:
        return self.single and self.first_deliveries >= self.expected_deliveries

    def wait_for_drain(self, *others: Any) -> None:
        """Until the drain ends (or one of ``others``, greenlets, ends first)."""
        timeout = max(0.0, (self.leave_at_ns - self.clock.time_ns()) / 1e9)
        gevent.wait([self.drained, *others], timeout=timeout, count=1)

    def user_index(self, worker_index: int) -> int:
        """A number unique across processes: worker k of n takes k, k + n, k + 2n, ..."""
        index = self.next_local_user * self.workers + worker_index
        self.next_local_user += 1
        return index


PROCESS = LoadProcess()


@dataclass(frozen=True)
class Session:
    """One socket's part of the plan: where, and when to send, stop and leave (ns)."""

    room: str
    target: str
    send_from_ns: int
    send_until_ns: int
    leave_ns: int


def _sleep_until_ns(deadline_ns: int, *, clock: Clock) -> None:
    delay = (deadline_ns - clock.time_ns()) / 1e9
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
    """One chat participant following the plan, then stopping."""

    sender: str | None = None  # the username it logged in as (None: anonymous)
    cookie: str | None = None  # its Cookie header, once logged in

    # Locust's own wait between tasks is unused: the task runs the whole plan once.
    def wait_time(self) -> float:
        return 0.0

    @task
    def follow_plan(self) -> None:
        process = PROCESS
        if process.plan is None or process.reported:
            raise StopUser()
        worker_index = max(getattr(self.environment.runner, "worker_index", 0), 0)
        user_index = process.user_index(worker_index)
        # Running from here: a user still logging in when the run reports is counted.
        process.users_running += 1
        try:
            if not self.log_in(user_index):
                return  # counted: its sockets are missing from the run (not offered)
            if process.plan.scenario == "churn":
                self.churn(user_index)
            else:
                self.stay(user_index)
        finally:
            process.users_running -= 1
            if process.users_running == 0 and process.clock.time_ns() >= process.window.until_ns:
                process.users_done.set()
        raise StopUser()

    def log_in(self, user_index: int) -> bool:
        """As the plan's ``login`` says: nothing (anonymous), the session the harness wrote,
        or the login form over HTTP, timed as "login" in Locust's table. False (an error
        counted) when the login failed."""
        process, plan = PROCESS, PROCESS.plan
        assert plan is not None  # follow_plan checked it
        if process.accounts is None:
            return True
        name = process.accounts.username_of(user_index)
        if plan.login == "sessions":
            self.sender = name
            self.cookie = f"{SESSION_COOKIE}={process.accounts.sessions[name]}"
            return True
        host = plan.target_of_user(user_index).removeprefix("ws://")
        # Logins queue on the server for its password hashes: give them time.
        browser = HttpBrowser(f"http://{host}", timeout=LOGIN_TIMEOUT_S)
        started = time.perf_counter()
        problem = f"{name}: the login set no session cookie"
        try:
            session = browser.log_in(name, process.accounts.password)
        except NoAnswer as error:
            session, problem = None, f"{name}: {error}"
        login_ms = (time.perf_counter() - started) * 1000
        if session is None:
            assert process.tally is not None  # set with the plan
            process.tally.error("login_failed", process.clock.time_ns())
            _fire(self.environment, "login", login_ms, RuntimeError(problem))
            return False
        _fire(self.environment, "login", login_ms)
        self.sender, self.cookie = name, browser.cookie_header()
        return True

    def stay(self, user_index: int) -> None:
        """fanout, isolation, idle: one socket for the whole test; after a lost connection,
        reconnect with a bounded backoff while there is sending time left (each failure is
        counted: its kind in errors, and sockets_dropped, reconnects, reconnect_failures)."""
        process, plan = PROCESS, PROCESS.plan
        assert plan is not None and process.tally is not None  # follow_plan checked the plan
        session = Session(
            room=plan.room_of_user(user_index),
            target=plan.target_of_user(user_index),
            send_from_ns=process.window.start_ns,
            send_until_ns=process.window.until_ns if plan.rate > 0 else 0,
            leave_ns=process.leave_at_ns,
        )
        slow = slow_reader.slow_window(plan, process.window, user_index)
        if slow is not None:
            process.tally.counters["slow_sockets"] += 1
        rng = random.Random()
        counters = process.tally.counters
        dropped = False
        failures = 0
        for _attempt in range(MAX_RECONNECTS):
            outcome = self.run_session(session, rng, reconnect=dropped, slow=slow)
            if outcome == DONE or process.clock.time_ns() >= process.window.until_ns:
                return
            if outcome == DROPPED:
                counters["sockets_dropped"] += 1
                dropped, failures = True, 0
            else:
                failures += 1
                if dropped:
                    counters["reconnect_failures"] += 1
            backoff = min(RECONNECT_BACKOFF_S * 2**failures, RECONNECT_BACKOFF_MAX_S)
            gevent.sleep(backoff * rng.uniform(0.5, 1.0))  # people do not reload in lockstep

    def churn(self, user_index: int) -> None:
        """Connect, send for a while, linger for the drain, leave; the next room; repeat."""
        process, plan = PROCESS, PROCESS.plan
        assert plan is not None  # follow_plan checked it
        rng = random.Random()
        _sleep_until_ns(process.window.start_ns, clock=process.clock)
        for number in range(MAX_CHURN_SESSIONS):
            now_ns = process.clock.time_ns()
            if now_ns >= process.window.until_ns:
                return
            stop_ns = min(now_ns + int(rng.uniform(*CHURN_STAY_S) * 1e9), process.window.until_ns)
            self.run_session(
                Session(
                    room=plan.room_of_user(user_index, number),
                    target=plan.target_of_user(user_index),
                    send_from_ns=0,
                    send_until_ns=stop_ns,
                    leave_ns=stop_ns + round(plan.drain_s * SECOND_NS),
                ),
                rng,
            )

    def run_session(
        self,
        session: Session,
        rng: random.Random,
        *,
        reconnect: bool = False,
        slow: tuple[int, int] | None = None,
    ) -> str:
        """One socket: connect, send, wait, close. DONE if it ran to its planned end,
        NO_CONNECT if the handshake failed, DROPPED if the connection was lost. A
        ``reconnect`` that connects is counted; a ``slow`` socket stops reading in that
        window (ns)."""
        process = PROCESS
        assert process.plan is not None and process.tally is not None  # follow_plan checked
        connection = self.connect(session)
        if connection is None:
            return NO_CONNECT
        if reconnect:
            process.tally.counters["reconnects"] += 1
        if slow is not None:
            slow_reader.shrink_receive_buffer(connection.sock)
        join_ns = process.clock.time_ns()
        socket_no = process.next_socket
        process.next_socket += 1
        own_prefix = id_prefix(f"{process.token}s{socket_no}.", self.sender)
        ledger = self.ledger(session.room, join_ns, own_prefix=own_prefix)
        process.live[socket_no] = ledger
        process.members[session.room] += 1
        if slow is None:
            receiver = connection.receive_in_hub(ledger.on_text, clock=process.clock)
        else:
            # A slow reader stops in its callback, which must never happen in the hub: it
            # reads in a greenlet of its own (receive_loop), as every socket once did.
            handler = slow_reader.read_slowly(ledger.on_text, *slow, clock=process.clock)
            receiver = gevent.spawn(connection.receive_loop, handler, clock=process.clock)
        # When the reader saw the connection end (a hub callback right after it), not when
        # this greenlet next runs: the membership of a socket the server closed ends there.
        noticed_ns: list[int] = []
        receiver.rawlink(lambda _receiver: noticed_ns.append(process.clock.time_ns()))
        try:
            self.send_until(session, connection, receiver, socket_no, rng)
            if not receiver.ready():
                if session.leave_ns == process.leave_at_ns:
                    process.wait_for_drain(receiver)
                else:
                    receiver.join(
                        timeout=max(0.0, (session.leave_ns - process.clock.time_ns()) / 1e9)
                    )
            if receiver.ready():  # the server ended the connection before we left
                # Seen within a round trip of the server's close, not within the drain.
                ledger.start_leaving(
                    noticed_ns[0] if noticed_ns else process.clock.time_ns(),
                    grace_ns=round(process.plan.close_grace_s * SECOND_NS),
                )
                process.tally.error(f"connection_{_outcome(receiver)}", process.clock.time_ns())
                _fire(self.environment, "connection lost", 0, RuntimeError(str(receiver.value)))
                return DROPPED
            # Drained early: everything sent has arrived, so nothing is still in flight.
            drained = process.drained.is_set()
            leave_ns = process.clock.time_ns()
            ledger.start_leaving(
                leave_ns,
                firm_until_ns=process.window.until_ns if drained else None,
                # What others send this close to our own close races it (the server may
                # take our close first): our doing, not the server's, so not expected.
                end_ns=leave_ns - round(process.plan.close_grace_s * SECOND_NS),
            )
            self.close(connection, receiver)
            return DONE
        finally:
            # Also runs when Locust kills the user mid-plan: membership ends now, so
            # nothing sent later is expected of this socket.
            ledger.start_leaving(process.clock.time_ns())
            process.members[session.room] -= 1
            process.live.pop(socket_no, None)
            connection.abort()
            if not receiver.ready():
                receiver.kill(block=False)

    def connect(self, session: Session) -> Connection | None:
        """Open the room's socket, timing the handshake; None (counted) if it fails."""
        tally = PROCESS.tally
        assert tally is not None  # set with the plan, which follow_plan checked
        started = time.perf_counter()
        try:
            connection = Connection.open(
                session.target,
                f"/ws/chat/{session.room}/",
                cookie=self.cookie,
                deflate=PROCESS.plan is not None and PROCESS.plan.deflate,
            )
        except WireError as error:
            tally.error(error.kind, PROCESS.clock.time_ns())
            _fire(self.environment, "connect", (time.perf_counter() - started) * 1000, error)
            return None
        connect_ms = (time.perf_counter() - started) * 1000
        tally.connect.add(connect_ms * 1000)
        tally.counters["connects"] += 1
        if connection.deflate:
            tally.counters["deflate_sockets"] += 1
        _fire(self.environment, "connect", connect_ms)
        return connection

    def ledger(self, room: str, join_ns: int, *, own_prefix: str) -> FastLedger:
        """The accounting of one socket; its ``on_text`` is the receive callback."""
        environment = self.environment

        # The sender's own copy: a round trip in Locust's table.
        def round_trip(ms: float) -> None:
            _fire(environment, "round trip", ms)

        def on_error(kind: str, problem: str) -> None:
            _fire(environment, kind, 0, RuntimeError(problem))

        process = PROCESS
        assert process.plan is not None and process.tally is not None  # follow_plan checked
        return FastLedger(
            process.tally,
            room,
            join_ns,
            round(process.plan.drain_s * SECOND_NS),
            run_id=process.plan.run_id,
            own_prefix=own_prefix,
            round_trip=round_trip,
            on_error=on_error,
        )

    def send_until(
        self,
        session: Session,
        connection: Connection,
        receiver: HubReceiver,
        socket_no: int,
        rng: random.Random,
    ) -> None:
        """Send at the plan's rate from the session's start until its stop (or until the
        connection ends). The sends run as hub timer callbacks; this greenlet waits."""
        process, plan = PROCESS, PROCESS.plan
        assert plan is not None  # follow_plan checked it
        prefix = id_prefix(f"{process.token}s{socket_no}.", self.sender)
        start_s = max(process.clock.time(), session.send_from_ns / 1e9)
        moments = send_times(start_s, session.send_until_ns / 1e9, plan.rate, rng)
        sequence = iter(range(len(moments)))
        tally, room = process.tally, session.room
        assert tally is not None  # set with the plan

        def send_one() -> bool:
            if receiver.ready():
                return False
            send_ns = process.clock.time_ns()
            if send_ns >= session.send_until_ns:
                # A timer that fired after the sending ended (a busy machine): the send would
                # fall in the drain, outside the plan, so it is not made (and counted).
                tally.counters["sends_past_end"] += 1
                return False
            text = encode_text(
                plan.run_id, room, f"{prefix}{next(sequence)}", send_ns, plan.message_bytes
            )
            try:
                connection.send_payload(encode_frame_payload(text))
            except OSError:
                tally.error("send_failed", process.clock.time_ns())
                return False
            tally.sends.append((room, send_ns))
            process.expected_deliveries += process.members[room]
            return True

        done = Event()
        cancel = _on_timers(moments, send_one, done.set, clock=process.clock)
        try:
            gevent.wait([done, receiver], count=1)
        finally:
            cancel()

    def close(self, connection: Connection, receiver: gevent.Greenlet) -> None:
        """The close handshake, bounded by CLOSE_TIMEOUT_S."""
        tally = PROCESS.tally
        assert tally is not None  # set with the plan, which follow_plan checked
        connection.start_close()
        receiver.join(timeout=CLOSE_TIMEOUT_S)
        if not receiver.ready():
            tally.error("close_timeout", PROCESS.clock.time_ns())
        elif receiver.value == "closed":
            tally.counters["sessions_closed_cleanly"] += 1
        else:
            tally.error(f"close_{_outcome(receiver)}", PROCESS.clock.time_ns())


def _outcome(receiver: Any) -> str:
    """How a socket's reader ended: its own word ("closed", "eof", "reset", ...), or
    "error" when its callback raised (a hub receiver says so itself; a slow reader's
    greenlet only holds the exception), else "failed"."""
    if receiver.value:
        return str(receiver.value)
    return "error" if getattr(receiver, "exception", None) is not None else "failed"


def _on_timers(
    moments: list[float], action: Callable[[], bool], on_done: Callable[[], None], *, clock: Clock
) -> Callable[[], None]:
    """Call ``action()`` at each wall-clock moment (s) from a chain of libev timers, in
    the hub: no greenlet wakes per send. The chain stops early when ``action`` returns
    False (or raises); ``on_done()`` runs when it ends. Returns a cancel function."""
    loop = gevent.get_hub().loop
    position = iter(moments)
    timer: Any = None

    def arm() -> None:
        nonlocal timer
        moment = next(position, None)
        if moment is None:
            timer = None
            on_done()
            return
        timer = loop.timer(max(0.0, moment - clock.time()))
        timer.start(fire)

    def fire() -> None:
        nonlocal timer
        timer.close()
        timer = None
        try:
            going = action()
        except Exception:
            on_done()
            raise  # the hub logs it
        if going:
            arm()
        else:
            on_done()

    def cancel() -> None:
        nonlocal timer
        if timer is not None:
            timer.stop()
            timer.close()
            timer = None

    arm()
    return cancel


def _fold(process: LoadProcess, now_ns: int) -> None:
    """Once a second: the bulk part of the accounting (see stats.FastLedger), so that its
    cost falls inside the measured CPU and the tally stays current."""
    for ledger in process.live.values():
        ledger.settle(now_ns)
    assert process.tally is not None  # the monitor runs after reset()
    process.tally.fold()


def _monitor(process: LoadProcess) -> None:
    """From the test start: count the open sockets at each second of the timeline. During
    the measured window: this process's CPU time, and how late a short sleep wakes (the
    load process's own scheduling delay, i.e. the measurement's queueing)."""
    window, tally = process.window, process.tally
    assert tally is not None  # spawned after reset()
    connected = tally.timeline.counts["connected"]
    next_second = window.second(process.clock.time_ns()) + 1
    for _ in range(10_000_000):  # bounded by the leave time below
        now_ns = process.clock.time_ns()
        if now_ns >= process.leave_at_ns or process.reported or process.drained.is_set():
            return
        if process.cpu_from is None and now_ns >= window.measure_from_ns:
            process.cpu_from = (_cpu_seconds(), time.monotonic())
        if process.cpu_until is None and now_ns >= window.until_ns:
            process.cpu_until = (_cpu_seconds(), time.monotonic())
            process.rss_open_mb = _rss_mb()
            process.sockets_open = len(process.live)
        if now_ns >= window.until_ns and process.everything_arrived():
            process.drained.set()
        if window.second(now_ns) >= next_second:
            connected[window.second(now_ns)] += len(process.live)
            next_second = window.second(now_ns) + 1
            _fold(process, now_ns)
        before = time.perf_counter()
        gevent.sleep(LOOP_LAG_PERIOD_S)
        if process.cpu_from is not None and process.cpu_until is None:
            lag_us = (time.perf_counter() - before - LOOP_LAG_PERIOD_S) * 1e6
            tally.loop_lag.add(max(lag_us, 1.0))


def _report_when_done(environment: Any, process: LoadProcess) -> None:
    _sleep_until_ns(process.window.until_ns, clock=process.clock)
    process.wait_for_drain()
    # Users close their sockets after the drain; give them the close timeout and a bit.
    process.users_done.wait(timeout=CLOSE_TIMEOUT_S + 2.0)
    _send_result(environment, process)


def _send_result(environment: Any, process: LoadProcess) -> None:
    if process.reported or process.plan is None:
        return
    assert process.tally is not None  # set with the plan
    process.reported = True
    now_ns = process.clock.time_ns()
    for ledger in list(process.live.values()):
        ledger.start_leaving(now_ns)
    if process.users_running:
        process.tally.error("user_unfinished_at_report", now_ns, process.users_running)
    cpu_from = process.cpu_from or (_cpu_seconds(), time.monotonic())
    cpu_until = process.cpu_until or (_cpu_seconds(), time.monotonic())
    process.tally.processes.append(
        {
            "cpu_s": cpu_until[0] - cpu_from[0],
            "wall_s": cpu_until[1] - cpu_from[1],
            "rss_before_mb": round(process.rss_before_mb, 2),
            "rss_open_mb": round(process.rss_open_mb or _rss_mb(), 2),
            "sockets_open": process.sockets_open,
        }
    )
    environment.runner.send_message(RESULT_MESSAGE, process.tally.to_dict())


def _on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    runner.register_message(RESULT_MESSAGE, _on_result)
    # The web UI's chat-load tab and page: load/inlocust/webui.py.


def _on_test_start(environment: Any, *, process_clock: Clock, **_kwargs: Any) -> None:
    runner = environment.runner
    options = environment.parsed_options
    if not isinstance(runner, WorkerRunner):
        # The master decides the room-name prefix and the test's start; workers receive
        # both with the spawn message (Locust forwards custom options to workers).
        # The user count too: a worker's own -u is not the test's.
        options.chatload_run_id = options.run_id or new_run_id()
        options.chatload_start_ns = process_clock.time_ns()
        options.chatload_users = options.num_users or runner.target_user_count or 1
        slow_reader.announce_start(options.results_file, options.chatload_start_ns)
    options.run_id = options.chatload_run_id
    plan = plan_from_options(options, users=options.chatload_users, targets=_targets(environment))
    workers = options.expect_workers if isinstance(runner, WorkerRunner) else 1
    PROCESS.reset(
        plan,
        options.chatload_start_ns,
        workers=max(workers or 1, 1),
        worker=isinstance(runner, (WorkerRunner, MasterRunner)),
        clock=process_clock,
    )
    if isinstance(runner, MasterRunner):
        PROCESS.results_expected = max(runner.worker_count, 1)
        return
    gevent.spawn(_monitor, PROCESS)
    gevent.spawn(_report_when_done, environment, PROCESS)


def _targets(environment: Any) -> tuple[str, ...] | None:
    listed = environment.parsed_options.targets
    if listed:
        return None  # plan_from_options reads --targets itself
    return (environment.host,) if environment.host else None


def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    # Stopped before the plan ended (web UI Stop, --run-time): report what was measured.
    if not isinstance(environment.runner, MasterRunner):
        _send_result(environment, PROCESS)


def _on_result(environment: Any, msg: Any, **_kwargs: Any) -> None:
    process = PROCESS
    tally = Tally.from_dict(msg.data)
    if process.merged is None:
        process.merged = Tally(tally.window)
    process.merged.merge(tally)
    process.results_received += 1
    if process.results_received < process.results_expected:
        return
    logger.info("chat load result: %s", json.dumps(summarize(process.merged)))
    # The result waits for the clocks' end estimate (drift), in its own greenlet: the
    # estimate's answers arrive through this message handler's loop.
    gevent.spawn(_write_result, environment, process)


def _write_result(environment: Any, process: LoadProcess) -> None:
    SYNC.done.wait(timeout=10.0)
    options = environment.parsed_options
    if options and options.results_file:
        # Spawned by _on_result once every tally arrived: merged is set, and so is the plan.
        assert process.plan is not None and process.merged is not None
        result = {
            "plan": process.plan.to_dict(),
            "tally": process.merged.to_dict(),
            "clocks": SYNC.report(),
        }
        Path(options.results_file).write_text(json.dumps(result))
    if options and options.headless:
        gevent.spawn_later(0.2, environment.runner.quit)
