"""Faults injected into a run (``bench --fault KIND``) and what they did.

Three parts, each used by one side:

* the harness (the ``bench`` process): ``check_fault`` refuses a fault that cannot apply
  to a stack; ``FaultInjector`` is a thread that waits for the run's start of sending, then
  breaks the services the harness started itself (LiveStack) at ``at_s`` and mends them
  ``for_s`` seconds later; ``fault_record`` turns the run's timeline, the injector's log,
  the servers' memory samples and logs into the contract's ``fault`` object;
* the Locust side: ``announce_start`` tells the harness when sending starts, and
  ``slow_window`` / ``read_slowly`` make the slow-reader sockets stop reading;
* no Locust, gevent or network import at module level, so the accounting is unit-tested on
  synthetic timelines.

What each kind does to the services, at ``at_s`` and then at ``at_s + for_s``:

* redis-restart: redis-server stops (SIGTERM; with no persistence configured that is
  SHUTDOWN NOSAVE); it starts again on its port.
* redis-stall: SIGSTOP to redis-server, its connections stay open and nothing answers;
  SIGCONT.
* server-kill: SIGKILL to the first chat server; it starts again on its port.
* slow-reader: ``slow_share`` of the sockets stop reading (the Locust side); they read
  again.
* redis-failover: SIGKILL to the primary that Sentinel manages, a replica is promoted;
  the old primary starts again (and Sentinel makes it a replica).
* backend-restart: the layer's own server (redis-server, PostgreSQL, RabbitMQ or
  nats-server) stops cleanly; it starts again on its port with its data directory
  (``mend_s`` in the record: how long until it answered; RabbitMQ takes seconds).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from load.core.plan import BACKEND_FAULTS, REDIS_FAULTS, SECOND_NS, Fault, Plan

if TYPE_CHECKING:
    from load.commands.sampling import ServerSampler
    from load.commands.stack import LiveStack
    from load.core.clock import Clock
    from load.core.stats import Window
    from load.reporting.record import Stack

# The harness waits this long past the plan's connect time for Locust to announce the
# start of sending (Locust's own start-up, a busy machine).
START_WAIT_S = 60.0
START_POLL_S = 0.05
TRACEBACK = "Traceback (most recent call last)"
# A second's messages count as prompt when their p99 is at most this (the capacity
# search's default objective).
PROMPT_P99_MS = 100.0
REDIS_LAYERS = ("redis", "redis-pubsub")


# ------------------------------------------------------------------ harness: refuse


def check_fault(
    fault: Fault, stacks: Iterable[Stack], environ: Mapping[str, str] | None = None
) -> None:
    """ValueError (one line) when ``fault`` cannot apply to one of ``stacks``: a Redis
    fault on another layer, a backend fault where there is no backend or where the layer's
    URL variable in ``environ`` (default: this process's) points at a server the harness
    did not start and must not break."""
    from harness import service_of  # the harness side only

    environ = os.environ if environ is None else environ
    for stack in stacks:
        service = service_of(stack.layer)
        if fault.kind == "backend-restart" and service is None:
            raise ValueError(
                f"--fault backend-restart restarts the server behind the layer, and "
                f"{stack.layer} has none: use --layers redis,redis-pubsub,postgres,rabbitmq,nats"
            )
        # (redis-failover always starts a Sentinel set of its own.)
        own_url = service and environ.get(service.url_variable, "").strip()
        if fault.kind in BACKEND_FAULTS and fault.kind != "redis-failover" and own_url:
            raise ValueError(
                f"--fault {fault.kind} breaks only servers the harness starts, and "
                f"{service.url_variable} names your own: unset it to let bench start one"
            )
        if fault.kind in REDIS_FAULTS and stack.layer not in REDIS_LAYERS:
            raise ValueError(
                f"--fault {fault.kind} acts on Redis: use --layers redis,redis-pubsub "
                f"(not {stack.layer})"
            )
        if fault.kind == "server-kill" and stack.layer != "inmemory" and stack.servers < 2:
            raise ValueError(
                f"--fault server-kill on {stack.layer} needs --servers 2 or more, so that the "
                "users of the other server keep chatting across the layer"
            )


def start_file(results_file: Path) -> Path:
    """Where the Locust side writes the test's start (ns), beside its results file."""
    return results_file.with_name(results_file.name + ".start")


# ------------------------------------------------------------------ harness: inject


@dataclass
class InjectorLog:
    """What the injector did, in wall-clock ns (None: did not happen)."""

    began_ns: int | None = None
    ended_ns: int | None = None
    failover_s: float | None = None  # redis-failover: kill to a promoted replica
    mend_s: float | None = None  # from the start of mending to the service answering
    error: str | None = None
    events: list[tuple[str, int]] = field(default_factory=list)

    @property
    def injected(self) -> bool:
        """True once the fault really broke its target (not merely when it was tried)."""
        return any(name == "broken" for name, _ in self.events)


class NothingToBreak(Exception):
    """The fault's target was not there to break (a server that had already exited)."""


def require_running(what: str, process: Any) -> None:
    """NothingToBreak unless ``process`` (a Popen) is running: signalling a process that
    has exited does nothing, and the run would then be recorded as if it had a fault."""
    code = None if process is None else process.poll()
    if process is None or code is not None:
        raise NothingToBreak(f"{what} had already exited (code {code}) before the fault")


class FaultInjector:
    """``with FaultInjector(fault, plan, live, start_path):`` around the Locust run: a
    thread waits for the start of sending, sleeps until ``at_s``, breaks, sleeps
    ``for_s``, mends. On exit the service is mended whatever happened (a run that ended
    early must not leave Redis stopped)."""

    def __init__(self, fault: Fault, plan: Plan, live: LiveStack, start_path: Path) -> None:
        self.fault = fault
        self.plan = plan
        self.live = live
        self.start_path = start_path
        self.log = InjectorLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._mend: Callable[[], None] | None = None

    def __enter__(self) -> FaultInjector:
        self.start_path.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._mend is not None:  # the run ended inside the fault window
            self._do_mend()

    def sending_starts_ns(self) -> int | None:
        """Wall-clock ns of the start of sending, once Locust announced its test start."""
        deadline = time.monotonic() + self.plan.connect_s + START_WAIT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                test_start_ns = int(self.start_path.read_text())
            except (OSError, ValueError):
                time.sleep(START_POLL_S)  # polling for Locust's file; the deadline bounds it
                continue
            return test_start_ns + round(self.plan.connect_s * SECOND_NS)
        return None

    def _wait_until_ns(self, at_ns: int) -> bool:
        """Sleep until ``at_ns``; False when the run ended first."""
        return not self._stop.wait(max(0.0, (at_ns - time.time_ns()) / 1e9))

    def _run(self) -> None:
        try:
            start_ns = self.sending_starts_ns()
            if start_ns is None:
                self.log.error = "Locust never announced the start of sending"
                return
            at_ns = start_ns + round(self.fault.at_s * SECOND_NS)
            if not self._wait_until_ns(at_ns):
                self.log.error = "the run ended before the fault's time"
                return
            self.log.began_ns = time.time_ns()
            self._mend = self._break()
            self.log.events.append(("broken", time.time_ns()))
            if self._wait_until_ns(at_ns + round(self.fault.for_s * SECOND_NS)):
                self._do_mend()
        except Exception as error:  # reported in the record: a broken injector is a result
            self.log.error = f"{type(error).__name__}: {error}"

    def _do_mend(self) -> None:
        mend, self._mend = self._mend, None
        if mend is None:
            return
        started = time.monotonic()
        try:
            mend()
        except Exception as error:
            self.log.error = f"mending failed: {type(error).__name__}: {error}"
        self.log.mend_s = round(time.monotonic() - started, 3)
        self.log.ended_ns = time.time_ns()
        self.log.events.append(("mended", self.log.ended_ns))

    def _break(self) -> Callable[[], None] | None:
        """Inject the fault; returns what mends it."""
        kind, live = self.fault.kind, self.live
        backend = live.backend
        if kind in ("redis-restart", "backend-restart"):
            server = backend.server
            require_running(f"{server.service} server on port {server.port}", server.process)
            server.shutdown()
            return lambda: server.start_again()
        if kind == "redis-stall":
            redis = backend.server
            require_running(f"redis-server on port {redis.port}", redis.process)
            redis.pause()
            return redis.resume
        if kind == "server-kill":
            server = live.servers[0]
            require_running(f"{server.asgi} on port {server.port}", server.process)
            server.kill()
            return lambda: server.start_again()
        if kind == "redis-failover":
            sentinels = backend.sentinels
            killed = sentinels.kill_primary()
            started = time.monotonic()
            sentinels.wait_for_failover(killed, timeout=30.0)
            self.log.failover_s = round(time.monotonic() - started, 3)
            return lambda: killed.start_again()
        # slow-reader: the Locust side stops reading; nothing to do to the services.
        return lambda: None


def failure(fault: Mapping[str, Any] | None) -> str | None:
    """Why a fault record is not a fault's result, in words (None when it is, or when the
    run had no fault): the fault never fired, or its injector failed (a mend that did not
    happen leaves the recovery unmeasured). Such a run exits 1 and is never in a median."""
    if not fault:
        return None
    if not fault.get("injected"):
        reason = fault.get("injector_error") or "no reason recorded"
        return f"the {fault['kind']} fault never fired: {reason}"
    if fault.get("injector_error"):
        return f"the {fault['kind']} fault's injector failed: {fault['injector_error']}"
    return None


# ------------------------------------------------------------------ Locust side


def announce_start(results_file: str, test_start_ns: int) -> None:
    """Locust's master (or only process): tell the harness when the test started."""
    if results_file:
        start_file(Path(results_file)).write_text(str(test_start_ns))


def slow_window(plan: Plan, window: Window, user_index: int) -> tuple[int, int] | None:
    """(from_ns, until_ns) when this user's socket stops reading, or None. The slow
    sockets are spread evenly over the rooms: counted room by room, every
    ``1 / slow_share``-th member is slow."""
    fault = plan.fault
    if fault is None or fault.kind != "slow-reader":
        return None
    per_room = math.ceil(plan.users / plan.rooms)
    room, member = user_index % plan.rooms, user_index // plan.rooms
    place = room * per_room + member
    if int((place + 1) * fault.slow_share) <= int(place * fault.slow_share):
        return None
    start = window.start_ns + round(fault.at_s * SECOND_NS)
    return start, start + round(fault.for_s * SECOND_NS)


# A slow reader's socket receive buffer. Loopback lets the kernel buffer tens of MiB per
# socket (tcp_rmem's maximum is 32 MiB here), far more than a real slow client's path holds
# in flight, which would hide for many seconds what the server does with the backlog.
SLOW_READER_RCVBUF = 64 * 1024


# A sent frame's bytes beyond its message text ({"message": "..."} and the WebSocket
# header), and the text of an unpadded message (codec.encode_text).
FRAME_OVERHEAD_BYTES = 20
UNPADDED_MESSAGE_BYTES = 70
TCP_WMEM = Path("/proc/sys/net/ipv4/tcp_wmem")


def kernel_buffer_bytes(tcp_wmem: Path = TCP_WMEM) -> int | None:
    """What the kernel can hold for one slow reader before the server's own memory has to:
    the server's send buffer, which autotuning lets grow to ``tcp_wmem``'s maximum, and the
    reader's receive buffer (Linux doubles the SO_RCVBUF asked for, for its bookkeeping).
    None where ``tcp_wmem`` cannot be read (not Linux)."""
    try:
        wmem_max = int(tcp_wmem.read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return wmem_max + 2 * SLOW_READER_RCVBUF


def buffers_full_s(plan: Plan, buffer_bytes: int | None) -> float | None:
    """Seconds from the start of a slow-reader window until one slow socket's backlog has
    filled ``buffer_bytes``: it is sent every message of its room (``users / rooms``
    members at ``rate`` each) and reads none. None when that cannot be said."""
    if buffer_bytes is None or plan.rate <= 0:
        return None
    frame_bytes = (plan.message_bytes or UNPADDED_MESSAGE_BYTES) + FRAME_OVERHEAD_BYTES
    bytes_per_s = math.ceil(plan.users / plan.rooms) * plan.rate * frame_bytes
    return round(buffer_bytes / bytes_per_s, 2)


def shrink_receive_buffer(sock: Any) -> None:
    """Cap a slow reader's kernel receive buffer (this also turns off its autotuning)."""
    import socket

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_RCVBUF)


def read_slowly(
    handler: Callable[[bytes, int], None], from_ns: int, until_ns: int, *, clock: Clock
) -> Callable[[bytes, int], None]:
    """The receive callback of a slow reader: the first frame that arrives in
    [from_ns, until_ns) (on ``clock``, the users') blocks the receive loop until
    ``until_ns``, so the socket is not read and the server's buffers fill, as with a
    browser that stopped reading. (Frames read in the same ``recv`` as that one keep their
    earlier receipt time.)"""
    import gevent  # the Locust side only

    def on_text(payload: bytes, recv_ns: int) -> None:
        now_ns = clock.time_ns()
        if from_ns <= now_ns < until_ns:
            gevent.sleep((until_ns - now_ns) / 1e9)
        handler(payload, recv_ns)

    return on_text


# ------------------------------------------------------------------ accounting


def window_seconds(fault: Fault) -> range:
    """The timeline seconds that overlap the fault window."""
    return range(math.floor(fault.at_s), math.ceil(fault.end_s))


def time_to_recover(
    rows: Sequence[Mapping[str, Any]], fault: Fault, users: int
) -> tuple[float | None, int | None]:
    """(seconds from the fault's end, timeline second) of the first full second after the
    fault in which every user was connected and every message sent reached every firm
    member; (None, None) when that never happened while users were sending."""
    first = math.ceil(fault.end_s)
    for row in rows:
        second = row["t_s"]
        if second < first or not row["sent"]:
            continue
        if _whole(row, users):
            return round(max(0.0, second - fault.end_s), 3), second
    return None, None


def time_to_steady(
    rows: Sequence[Mapping[str, Any]], fault: Fault, users: int, p99_ms: float = PROMPT_P99_MS
) -> float | None:
    """Seconds from the fault's end to the start of the first full second after it from
    which on, to the end of sending, every second was whole (as in ``time_to_recover``)
    and its messages' p99 was at most ``p99_ms``; None when the last second of sending
    was not. Stricter than ``time_to_recover``: a layer that holds messages while its
    server is away is whole at once, and late, and may drop the backlog later."""
    first = math.ceil(fault.end_s)
    steady_from = None
    for row in rows:
        if row["t_s"] < first or not row["sent"]:
            continue
        prompt = row["p99_ms"] is not None and row["p99_ms"] <= p99_ms
        if _whole(row, users) and prompt:
            steady_from = row["t_s"] if steady_from is None else steady_from
        else:
            steady_from = None
    return None if steady_from is None else round(max(0.0, steady_from - fault.end_s), 3)


def _whole(row: Mapping[str, Any], users: int) -> bool:
    # Unconfirmed deliveries mean a socket of that second was gone: not whole either.
    return row["connected"] >= users and row["lost"] == 0 and not row.get("unconfirmed")


def fault_record(
    fault: Fault,
    rows: Sequence[Mapping[str, Any]],
    *,
    users: int,
    counters: Mapping[str, int],
    log: InjectorLog | None,
    rss: RssReadings,
    server_logs: Iterable[str],
) -> dict[str, Any]:
    """The contract's ``fault`` object (plus a few fields beyond it)."""
    inside = set(window_seconds(fault))
    lost_in = sum(row["lost"] for row in rows if row["t_s"] in inside)
    lost_out = sum(row["lost"] for row in rows if row["t_s"] not in inside)
    unconfirmed_in = sum(row.get("unconfirmed", 0) for row in rows if row["t_s"] in inside)
    unconfirmed_out = sum(row.get("unconfirmed", 0) for row in rows if row["t_s"] not in inside)
    recover_s, recovered_at = time_to_recover(rows, fault, users)
    steady_s = time_to_steady(rows, fault, users)
    record: dict[str, Any] = {
        "kind": fault.kind,
        "at_s": fault.at_s,
        "for_s": fault.for_s,
        "sockets_dropped": counters.get("sockets_dropped", 0),
        "reconnects": counters.get("reconnects", 0),
        "reconnect_failures": counters.get("reconnect_failures", 0),
        "lost_in_window": lost_in,
        "lost_outside_window": lost_out,
        "time_to_recover_s": recover_s,
        "server_tracebacks": sum(text.count(TRACEBACK) for text in server_logs),
        "server_rss_mb": {"before": rss.before, "peak": rss.peak, "after": rss.after},
        # Beyond the contract:
        "recovered_at_s": recovered_at,
        "time_to_steady_s": steady_s,
        # expected at sockets that closed before it arrived (maybe lost), by send second
        "unconfirmed_in_window": unconfirmed_in,
        "unconfirmed_outside_window": unconfirmed_out,
        "injected": log is not None and log.injected,
        "injector_error": log.error if log is not None else None,
    }
    if fault.kind == "redis-failover":
        record["failover_s"] = log.failover_s if log is not None else None
    if fault.kind == "backend-restart":
        record["mend_s"] = log.mend_s if log is not None else None
    if fault.kind == "slow-reader":
        record["slow_reader"] = slow_reader_findings(fault, rows, counters, rss)
    return record


def slow_reader_findings(
    fault: Fault, rows: Sequence[Mapping[str, Any]], counters: Mapping[str, int], rss: RssReadings
) -> dict[str, Any]:
    """Server growth per slow socket, and whether everyone else was delayed: the p50 of
    a second's deliveries is a normal reader's while slow readers are under half."""
    slow = counters.get("slow_sockets", 0)
    inside = set(window_seconds(fault))
    before = [row["p50_ms"] for row in rows if row["t_s"] < fault.at_s and row.get("p50_ms")]
    during = [row["p50_ms"] for row in rows if row["t_s"] in inside and row.get("p50_ms")]
    growth = None if rss.peak is None or rss.before is None else round(rss.peak - rss.before, 1)
    return {
        "slow_sockets": slow,
        "server_rss_growth_mb": growth,
        "server_kb_per_slow_socket": (
            round(growth * 1024 / slow, 1) if growth is not None and slow else None
        ),
        "kernel_buffer_kb_per_socket": (
            None if rss.buffer_bytes is None else round(rss.buffer_bytes / 1024)
        ),
        "buffers_full_after_s": rss.buffers_full_s,
        "server_rss_growth_mb_per_s": rss.growth_mb_per_s,
        "p50_ms_before": _median(before),
        "p50_ms_in_window": _median(during),
    }


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round((ordered[middle - 1] + ordered[middle]) / 2, 3)


@dataclass(frozen=True)
class RssReadings:
    """The chat servers' resident memory (MiB, summed over servers) before the fault, its
    peak from the fault to the end of sending, and at the end of sending."""

    before: float | None = None
    peak: float | None = None
    after: float | None = None
    # slow-reader: what the kernel holds per socket, when a slow socket's backlog has
    # outgrown it (seconds into the window), and the servers' growth from then to the end
    # of the window (MiB/s, a least-squares line through the sampler's readings).
    buffer_bytes: int | None = None
    buffers_full_s: float | None = None
    growth_mb_per_s: float | None = None


# The growth per second needs readings over at least this long past the full buffers.
GROWTH_MIN_SPAN_S = 1.0


def rss_readings(
    sampler: ServerSampler,
    log: InjectorLog | None,
    window: Window,
    fault: Fault,
    plan: Plan | None = None,
) -> RssReadings:
    """From the sampler; a sample taken while a killed server was down (unknown) is
    left out rather than read as 0. A slow-reader ``plan`` adds the growth past the
    kernel's buffers."""
    began = (
        log.began_ns
        if log is not None and log.began_ns
        else window.start_ns + round(fault.at_s * SECOND_NS)
    )
    known = [s for s in sampler.samples if s.rss_mb is not None]
    before = [s.rss_mb for s in known if s.at_ns <= began]
    after = [s.rss_mb for s in known if began <= s.at_ns <= window.until_ns]
    readings = RssReadings(
        before=round(before[-1], 1) if before else None,
        peak=round(max(after), 1) if after else None,
        after=round(after[-1], 1) if after else None,
    )
    if plan is None or fault.kind != "slow-reader":
        return readings
    buffer_bytes = kernel_buffer_bytes()
    full_s = buffers_full_s(plan, buffer_bytes)
    growth = None
    if full_s is not None:
        full_ns = window.start_ns + round((fault.at_s + full_s) * SECOND_NS)
        end_ns = window.start_ns + round(fault.end_s * SECOND_NS)
        points = [(s.at_ns / SECOND_NS, s.rss_mb) for s in known if full_ns <= s.at_ns <= end_ns]
        if len(points) >= 2 and points[-1][0] - points[0][0] >= GROWTH_MIN_SPAN_S:
            growth = round(_slope(points), 3)
    return replace(
        readings, buffer_bytes=buffer_bytes, buffers_full_s=full_s, growth_mb_per_s=growth
    )


def _slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of (x, y) points (at least two distinct x)."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
