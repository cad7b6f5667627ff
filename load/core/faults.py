"""What a fault did to a run (``bench --fault KIND``): the accounting, pure, so it is
unit-tested on synthetic timelines; and the little both processes share.

Each kind (what it does, refuses, records and shows) is one object in
load/core/faultkinds.py. The rest lives by the process that runs it: the harness's
``check_fault`` and ``FaultInjector`` in load/commands/inject.py (``python -m load
bench``), the slow readers' sockets in load/inlocust/slow_reader.py (inside Locust).

Here: ``fault_record`` turns the run's timeline, the injector's log (``InjectorLog``), the
servers' memory samples (``rss_readings``) and logs into the contract's ``fault`` object,
adding the kind's own fields; ``failure`` says when such a record is not a fault's result.
(``window_seconds`` comes from faultkinds.py, whose slow-reader record needs it too.)
Both sides: ``start_file``, where Locust announces the start of sending to the harness,
and what the kernel holds for a slow reader (``SLOW_READER_RCVBUF``,
``kernel_buffer_bytes``, ``buffers_full_s``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from load.core.faultkinds import KINDS, window_seconds
from load.core.plan import SECOND_NS, Fault, Plan

if TYPE_CHECKING:
    from load.commands.sampling import Sample
    from load.core.stats import Window

TRACEBACK = "Traceback (most recent call last)"
# A second's messages count as prompt when their p99 is at most this (the capacity
# search's default objective).
PROMPT_P99_MS = 100.0


# ------------------------------------------------------------------ both processes


def start_file(results_file: Path) -> Path:
    """Where the Locust side writes the test's start (ns), beside its results file."""
    return results_file.with_name(results_file.name + ".start")


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


# ------------------------------------------------------------------ accounting


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
    record.update(KINDS[fault.kind].recorded(fault, rows, counters=counters, log=log, rss=rss))
    return record


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


class Sampled(Protocol):
    """What rss_readings reads of a ServerSampler (load/commands/sampling.py): its samples."""

    @property
    def samples(self) -> Sequence[Sample]: ...


def rss_readings(
    sampler: Sampled,
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
    known = [(s.at_ns, s.rss_mb) for s in sampler.samples if s.rss_mb is not None]
    before = [rss_mb for at_ns, rss_mb in known if at_ns <= began]
    after = [rss_mb for at_ns, rss_mb in known if began <= at_ns <= window.until_ns]
    readings = RssReadings(
        before=round(before[-1], 1) if before else None,
        peak=round(max(after), 1) if after else None,
        after=round(after[-1], 1) if after else None,
    )
    if plan is None or not KINDS[fault.kind].stops_reading:
        return readings
    buffer_bytes = kernel_buffer_bytes()
    full_s = buffers_full_s(plan, buffer_bytes)
    growth = None
    if full_s is not None:
        full_ns = window.start_ns + round((fault.at_s + full_s) * SECOND_NS)
        end_ns = window.start_ns + round(fault.end_s * SECOND_NS)
        points = [
            (at_ns / SECOND_NS, rss_mb) for at_ns, rss_mb in known if full_ns <= at_ns <= end_ns
        ]
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
