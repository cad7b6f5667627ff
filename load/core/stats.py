"""Exact delivery accounting and mergeable statistics (no Locust import: unit-testable).

Every Locust process keeps one ``Tally``; tallies merge by addition (counters, histogram
buckets) and concatenation (send and membership records), so the totals are the same
whether one process or many generated the load. ``summarize`` turns the merged tally into
the contract's numbers:

* only messages sent in the measured window (``Window``) count in the summary; those sent
  while the server settles count in the per-second timeline alone;
* each socket's membership is a record (room, join_ns, firm_until_ns, end_ns): it joined
  when its handshake completed (the tutorial consumer calls group_add before accept) and
  ended at ``end_ns``: when it noticed that the server had closed it (firm until the
  short close grace before), or, for a socket we close, the close grace before we started
  to close it (what is sent later races our own close; firm until the drain before);
  see load/README.md;
* a message is *expected* at every socket whose membership covers its send time;
  sent at or before ``firm_until_ns`` it ends *delivered* or *lost*; sent in the window
  of doubt (``firm_until_ns``, ``end_ns``] it ends *delivered* or *unconfirmed* (the
  socket was gone before it arrived, at a time the client could not yet know it);
* a delivery of a message sent outside the membership (during the handshake, or after the
  end) counts as expected and delivered when it arrives: a bonus, not a doubt;
* so expected == delivered + lost + unconfirmed, exactly; lost and unconfirmed cannot be
  negative, as each first delivery is one distinct (message, socket) pair of its class
  (duplicates and leaks are counted apart and never as delivered). ``ambiguous`` counts
  the deliveries that were in doubt or outside the membership;
* every received copy of a measurement message is also checked for its sender: its
  ``user`` must be the username its id names (codec.sender_of), or absent for an
  anonymous sender; any other is *misattributed* (counted apart, whatever else it is).

``SocketLedger`` states these rules one delivery at a time; it is the reference.
``FastLedger`` is what the load client runs: the same rules, with the per-delivery work
cut to a prefix match, a set lookup and a few appends, and the rest done in bulk
(``DeliveryLog.fold``, ``FastLedger.settle``). A test holds the two to the same numbers.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from load.core.codec import (
    SENDER_MARK,
    USER_FIELD,
    Stamp,
    parse_server_frame,
    room_prefix,
    sender_of,
)
from load.core.plan import SECOND_NS, Plan


def median_of_known(values: Iterable[float | None], digits: int | None = None) -> float | None:
    """The median of the values that are known (None left out), rounded to ``digits``
    decimals when given; None when no value is known. The one median of the harness, its
    report and its studies."""
    known = [value for value in values if value is not None]
    if not known:
        return None
    middle = statistics.median(known)
    return middle if digits is None else round(middle, digits)


# Bucket i holds values in [RATIO**i, RATIO**(i+1)); reporting the geometric middle of a
# bucket is off by at most sqrt(RATIO) - 1 = 0.995 % of the true value.
RATIO = 1.02
_LOG_RATIO = math.log(RATIO)
_HALF_STEP = math.sqrt(RATIO)


def bucket_index(value_us: float) -> int:
    return int(math.log(value_us) / _LOG_RATIO) if value_us > 1.0 else 0


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
        self.add_at(bucket_index(value_us), value_us)

    def add_at(self, index: int, value_us: float) -> None:
        """``add`` with the bucket already computed (one delivery feeds two histograms)."""
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

    def cdf_ms(self) -> list[tuple[float, float]]:
        """(upper edge in ms, fraction of values at or below it) for every bucket used."""
        points = []
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            edge = min(RATIO ** (index + 1), self.max or 0.0) if self.max else RATIO ** (index + 1)
            points.append((round(edge / 1000, 4), round(seen / self.count, 6)))
        return points

    def percentiles_ms(self, names: Iterable[str]) -> dict[str, float | None]:
        """{"p50": ms, ..., "max": ms} rounded to the microsecond."""
        result: dict[str, float | None] = {}
        for name in names:
            q = 1.0 if name == "max" else float(name[1:]) / 100
            value = self.quantile(q)
            result[name] = None if value is None else round(value / 1000, 3)
        return result


@dataclass(frozen=True)
class Window:
    """When a run sends, in wall-clock ns: sending starts at ``start_ns`` (second 0 of the
    timeline); messages sent in [measure_from_ns, until_ns) are the measured ones."""

    start_ns: int
    measure_from_ns: int
    until_ns: int

    @classmethod
    def of(cls, plan: Plan, test_start_ns: int) -> Window:
        start_ns = test_start_ns + round(plan.connect_s * SECOND_NS)
        measure_from_ns = start_ns + round(plan.settle_s * SECOND_NS)
        return cls(start_ns, measure_from_ns, measure_from_ns + round(plan.duration_s * SECOND_NS))

    @property
    def duration_s(self) -> float:
        return (self.until_ns - self.measure_from_ns) / SECOND_NS

    def second(self, ns: int) -> int:
        """The timeline second ``ns`` falls in (negative before sending starts)."""
        return (ns - self.start_ns) // SECOND_NS

    def measured(self, send_ns: int) -> bool:
        return self.measure_from_ns <= send_ns < self.until_ns

    def to_dict(self) -> dict[str, int]:
        return {"start_ns": self.start_ns, "measure_from_ns": self.measure_from_ns,
                "until_ns": self.until_ns}  # fmt: skip


class Timeline:
    """Per-second counts of one run (second 0: sending starts), mergeable by addition.

    ``firm``, ``in_doubt`` and ``outside`` (the membership) deliveries and ``latency`` are
    filed under the second the message was *sent* (so delivered + lost + unconfirmed =
    expected holds for every second);
    ``received`` under the second it arrived; ``errors`` when they happened;
    ``connected`` is the number of open sockets sampled at the start of each second.
    """

    FIELDS = ("firm", "in_doubt", "outside", "received", "errors", "connected")

    def __init__(self) -> None:
        self.counts: dict[str, Counter[int]] = {name: Counter() for name in self.FIELDS}
        self.latency: dict[int, LogHistogram] = {}

    def latency_at(self, second: int) -> LogHistogram:
        histogram = self.latency.get(second)
        if histogram is None:
            histogram = self.latency[second] = LogHistogram()
        return histogram

    def merge(self, other: Timeline) -> None:
        for name in self.FIELDS:
            self.counts[name].update(other.counts[name])
        for second, histogram in other.latency.items():
            self.latency_at(second).merge(histogram)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {name: {str(k): v for k, v in c.items()} for name, c in self.counts.items()},
            "latency": {str(k): h.to_dict() for k, h in self.latency.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        timeline = cls()
        for name in cls.FIELDS:
            timeline.counts[name] = Counter(
                {int(k): int(v) for k, v in data["counts"].get(name, {}).items()}
            )
        timeline.latency = {int(k): LogHistogram.from_dict(h) for k, h in data["latency"].items()}
        return timeline


# One socket's membership: (room, join_ns, firm_until_ns, end_ns), see the module's doc.
Membership = tuple[str, int, int, int]


def memberships_from(rows: Iterable[Sequence[Any]]) -> list[Membership]:
    """Membership records read back from JSON (lists) as tuples of ints."""
    return [(str(room), int(join), int(firm), int(end)) for room, join, firm, end in rows]


def membership_bounds(
    join_ns: int,
    leave_ns: int,
    grace_ns: int,
    firm_until_ns: int | None = None,
    end_ns: int | None = None,
) -> tuple[int, int]:
    """(firm_until_ns, end_ns) of a socket that joined at ``join_ns`` and left (or noticed
    its close) at ``leave_ns``: firm until ``grace_ns`` before leaving, or until
    ``firm_until_ns`` when the caller knows that nothing sent before then is still on its
    way, never before the join (then the firm part is empty); expected until ``end_ns``
    (default: until it left), never before the firm part ends."""
    firm_until = max(firm_until_ns or 0, leave_ns - grace_ns, join_ns - 1)
    return firm_until, max(leave_ns if end_ns is None else end_ns, firm_until)


def delivery_class(send_ns: int, join_ns: int, firm_until_ns: int, end_ns: int) -> str:
    """The timeline field a first delivery of a message sent at ``send_ns`` falls in."""
    if join_ns <= send_ns <= firm_until_ns:
        return "firm"
    if firm_until_ns < send_ns <= end_ns:
        return "in_doubt"
    return "outside"


# The counter each delivery class adds to (measured window only).
CLASS_COUNTER = {
    "firm": "delivered_firm",
    "in_doubt": "delivered_in_doubt",
    "outside": "delivered_outside",
}


# Counters every Tally has (all exact integers). Deliveries count the measured window only.
COUNTERS = (
    "delivered_firm",  # first receipt of a message at a socket firmly in the sender's room
    "delivered_in_doubt",  # first receipt of a message sent in the receiver's window of doubt
    "delivered_outside",  # first receipt of a message sent before the join or after the end
    "duplicated",  # a second (or later) receipt of a message at one socket
    "leaked",  # receipt of a message sent in another room
    "misattributed",  # receipt whose user is not the sender's (any copy, any room)
    "foreign",  # well-formed chat messages that are not this harness's (someone else typing)
    "connects",  # completed handshakes
    "deflate_sockets",  # handshakes that negotiated permessage-deflate (--deflate on)
    "sends_past_end",  # a send timer that fired after the sending ended: not sent
    "sessions_closed_cleanly",  # our close frame answered by the server's close frame
)


@dataclass
class Tally:
    """Everything one process measured; ``merge`` adds another process's tally."""

    window: Window
    counters: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # kind -> count
    latency: LogHistogram = field(default_factory=LogHistogram)  # µs, measured deliveries
    connect: LogHistogram = field(default_factory=LogHistogram)  # µs, every handshake
    loop_lag: LogHistogram = field(default_factory=LogHistogram)  # µs, gevent loop lag
    timeline: Timeline = field(default_factory=Timeline)
    # (room, send_ns) of every message sent, the settle period's included
    sends: list[tuple[str, int]] = field(default_factory=list)
    # (room, join_ns, firm_until_ns, end_ns) of every socket that completed its handshake
    memberships: list[Membership] = field(default_factory=list)
    # per process: {"cpu_s", "wall_s", "rss_before_mb", "rss_open_mb", "sockets_open"}
    processes: list[dict[str, float]] = field(default_factory=list)
    # FastLedger's first deliveries not yet in ``latency`` and ``timeline`` (never shipped)
    deliveries: DeliveryLog = field(default_factory=lambda: DeliveryLog(), repr=False,
                                    compare=False)  # fmt: skip

    def fold(self) -> None:
        """Bring ``latency`` and ``timeline`` up to date with every delivery so far."""
        self.deliveries.fold(self)

    def merge(self, other: Tally) -> None:
        self.fold()
        other.fold()
        self.counters.update(other.counters)
        self.errors.update(other.errors)
        self.latency.merge(other.latency)
        self.connect.merge(other.connect)
        self.loop_lag.merge(other.loop_lag)
        self.timeline.merge(other.timeline)
        self.sends.extend(other.sends)
        self.memberships.extend(other.memberships)
        self.processes.extend(other.processes)

    def error(self, kind: str, at_ns: int, count: int = 1) -> None:
        self.errors[kind] += count
        self.timeline.counts["errors"][self.window.second(at_ns)] += count

    def to_dict(self) -> dict[str, Any]:
        self.fold()
        return {
            "window": self.window.to_dict(),
            "counters": dict(self.counters),
            "errors": dict(self.errors),
            "latency": self.latency.to_dict(),
            "connect": self.connect.to_dict(),
            "loop_lag": self.loop_lag.to_dict(),
            "timeline": self.timeline.to_dict(),
            "sends": self.sends,
            "memberships": self.memberships,
            "processes": self.processes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            window=Window(**data["window"]),
            counters=Counter(data["counters"]),
            errors=Counter(data["errors"]),
            latency=LogHistogram.from_dict(data["latency"]),
            connect=LogHistogram.from_dict(data["connect"]),
            loop_lag=LogHistogram.from_dict(data["loop_lag"]),
            timeline=Timeline.from_dict(data["timeline"]),
            sends=[(room, int(ns)) for room, ns in data["sends"]],
            memberships=memberships_from(data["memberships"]),
            processes=list(data["processes"]),
        )


class SocketLedger:
    """The receiving side of one socket's membership: classifies each delivery.

    Whether a delivery is firm depends on when the socket's membership ends, which is not
    known yet when it arrives; deliveries stay pending until their send time is more than
    ``grace`` in the past (then they are firm whatever happens later: no end uses a longer
    grace) or until the socket starts to leave.
    """

    __slots__ = (
        "end_ns",
        "firm_until_ns",
        "grace_ns",
        "join_ns",
        "pending",
        "room",
        "seen",
        "tally",
    )

    def __init__(self, tally: Tally, room: str, join_ns: int, grace_ns: int) -> None:
        self.tally = tally
        self.room = room
        self.join_ns = join_ns
        self.grace_ns = grace_ns
        self.firm_until_ns: int | None = None
        self.end_ns: int | None = None
        self.seen: set[str] = set()
        self.pending: deque[int] = deque()

    def deliver(self, stamp: Stamp, recv_ns: int, user: str | None = None) -> bool:
        """Account one received measurement message (receipt time ``recv_ns``, the frame's
        ``user``); True for the first copy of a message of this socket's room."""
        tally = self.tally
        if user != sender_of(stamp.msg_id):
            tally.counters["misattributed"] += 1
        if stamp.room != self.room:
            # Room names carry the run id, so another run's message here is a leak too.
            tally.counters["leaked"] += 1
            return False
        if stamp.msg_id in self.seen:
            tally.counters["duplicated"] += 1
            return False
        self.seen.add(stamp.msg_id)
        send_ns = stamp.send_ns
        window = tally.window
        timeline = tally.timeline
        # An arrival before its send (clock error between workers) goes to the lowest
        # bucket and is counted in negative_latencies, never dropped silently.
        latency_us = max(recv_ns - send_ns, 0) / 1000
        index = bucket_index(latency_us)
        timeline.latency_at((send_ns - window.start_ns) // SECOND_NS).add_at(index, latency_us)
        timeline.counts["received"][(recv_ns - window.start_ns) // SECOND_NS] += 1
        if window.measure_from_ns <= send_ns < window.until_ns:
            tally.latency.add_at(index, latency_us)
            if recv_ns < send_ns:
                tally.counters["negative_latencies"] += 1
        if send_ns < self.join_ns:
            self._count(send_ns, "outside")
        elif self.firm_until_ns is not None:
            assert self.end_ns is not None  # start_leaving sets both
            self._count(
                send_ns, delivery_class(send_ns, self.join_ns, self.firm_until_ns, self.end_ns)
            )
        else:
            pending = self.pending
            pending.append(send_ns)
            # Anything sent more than grace ago is firm whenever the close starts.
            horizon = recv_ns - self.grace_ns
            while pending and pending[0] <= horizon:
                self._count(pending.popleft(), "firm")
        return True

    def _count(self, send_ns: int, kind: str) -> None:
        tally = self.tally
        window = tally.window
        tally.timeline.counts[kind][(send_ns - window.start_ns) // SECOND_NS] += 1
        if window.measure_from_ns <= send_ns < window.until_ns:
            tally.counters[CLASS_COUNTER[kind]] += 1

    def start_leaving(
        self,
        leave_ns: int,
        *,
        firm_until_ns: int | None = None,
        grace_ns: int | None = None,
        end_ns: int | None = None,
    ) -> None:
        """The socket starts to close, or noticed that it was closed, at ``leave_ns``: its
        membership ends then, or at ``end_ns`` if given (the last send time still expected
        of it). It is firm until ``grace_ns`` (default: the ledger's grace, which is also
        the most it may be) before ``leave_ns``, or until ``firm_until_ns`` when the caller
        knows that nothing sent before then is still on its way."""
        if self.firm_until_ns is not None:
            return
        grace = self.grace_ns if grace_ns is None else min(grace_ns, self.grace_ns)
        firm_until, end = membership_bounds(self.join_ns, leave_ns, grace, firm_until_ns, end_ns)
        self.firm_until_ns, self.end_ns = firm_until, end
        for send_ns in self.pending:
            self._count(send_ns, delivery_class(send_ns, self.join_ns, firm_until, end))
        self.pending.clear()
        self.tally.memberships.append((self.room, self.join_ns, firm_until, end))


class DeliveryLog:
    """First deliveries (send ns, receipt ns) waiting to be added to a tally's latency
    histograms and timeline: two C-level appends per delivery, and ``fold`` does what
    ``SocketLedger.deliver`` does per delivery for all of them in one loop. The monitor
    folds every second (so the cost stays in the measured CPU), and a tally folds itself
    before it is read, merged or shipped."""

    __slots__ = ("folded", "receipts", "sends")

    def __init__(self) -> None:
        self.sends = array("q")
        self.receipts = array("q")
        self.folded = 0

    @property
    def count(self) -> int:
        """First deliveries so far, folded or not."""
        return self.folded + len(self.sends)

    def fold(self, tally: Tally) -> None:
        sends, receipts = self.sends, self.receipts
        if not sends:
            return
        window = tally.window
        start, low, high = window.start_ns, window.measure_from_ns, window.until_ns
        received = tally.timeline.counts["received"]
        measured = tally.latency
        latency_at = tally.timeline.latency_at
        log, log_ratio = math.log, _LOG_RATIO
        second: int | None = None
        per_second: LogHistogram  # set by the first delivery (no second equals None)
        negative = 0  # as SocketLedger.deliver: in the lowest bucket, and counted
        for send_ns, recv_ns in zip(sends, receipts, strict=True):
            latency_ns = recv_ns - send_ns
            value_us = latency_ns / 1000 if latency_ns > 0 else 0.0
            index = int(log(value_us) / log_ratio) if value_us > 1.0 else 0
            # Log order is receipt order, so the send second rarely changes between two.
            if (send_ns - start) // SECOND_NS != second:
                second = (send_ns - start) // SECOND_NS
                per_second = latency_at(second)
            per_second.add_at(index, value_us)
            received[(recv_ns - start) // SECOND_NS] += 1
            if low <= send_ns < high:
                measured.add_at(index, value_us)
                if latency_ns < 0:
                    negative += 1
        if negative:
            tally.counters["negative_latencies"] += negative
        self.folded += len(sends)
        del sends[:]
        del receipts[:]


SENDER_MARK_BYTES = SENDER_MARK.encode()
# Fold a socket's pending send times when this many pile up (bounds memory and the scan).
PENDING_FOLD = 4096
NOT_A_LOAD_TEST_MESSAGE = "message is not a load-test message"


def problem_kind(problem: str) -> str:
    """The error kind of a frame that is not a measurement (see parse_server_frame)."""
    return "server_error_frame" if problem.startswith("server error") else "bad_frame"


class FastLedger:
    """``SocketLedger`` plus the receive callback of the load client, with the same
    results and less work per delivery (``on_text`` is called for every text frame).

    * A frame of this socket's room starts with a constant (``codec.room_prefix``): one
      ``startswith`` and a few C-level byte checks replace JSON, UTF-8 and ``Stamp``; a
      logged-in sender's frame ends with its ``user`` (``codec.USER_FIELD``), split off
      with one ``partition``.
      Anything else (another room's message: a leak; other spacing; foreign text; an
      error frame) takes ``parse_server_frame`` and is classified as before.
    * Message ids stay ``bytes`` in the seen-set.
    * Latencies go to ``tally.deliveries`` (folded in bulk).
    * The send times of deliveries that may still turn out in doubt wait in a list and
      are classified in bulk by ``settle`` (anything sent more than ``grace`` before
      ``now`` is firm whenever the membership ends, because ending at ``now`` or later,
      with ``grace`` or a shorter one, makes the firm window reach at least
      ``now - grace``) and by ``start_leaving``.

    ``round_trip(ms)`` is called for each copy of this socket's own messages,
    ``on_error(kind, problem)`` for each frame counted as an error.
    """

    __slots__ = (
        "end_ns",
        "firm_until_ns",
        "grace_ns",
        "join_ns",
        "log_receipt",
        "log_send",
        "on_error",
        "own",
        "pending",
        "prefix",
        "room",
        "round_trip",
        "seen",
        "tally",
    )

    def __init__(
        self,
        tally: Tally,
        room: str,
        join_ns: int,
        grace_ns: int,
        *,
        run_id: str,
        own_prefix: str = "",
        round_trip: Callable[[float], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.tally = tally
        self.room = room
        self.join_ns = join_ns
        self.grace_ns = grace_ns
        self.firm_until_ns: int | None = None
        self.end_ns: int | None = None
        self.prefix = room_prefix(run_id, room)
        self.own = own_prefix.encode() if own_prefix else None
        self.round_trip = round_trip
        self.on_error = on_error
        self.seen: set[bytes] = set()
        self.pending: list[int] = []
        self.log_send = tally.deliveries.sends.append
        self.log_receipt = tally.deliveries.receipts.append

    def on_text(self, payload: bytes, recv_ns: int) -> None:
        """Account one text frame received at ``recv_ns``."""
        prefix = self.prefix
        if payload.startswith(prefix) and payload.endswith(b'"}'):
            # The cases where parse_server_frame's own fast path would decline or differ
            # (escapes, non-ASCII, a non-numeric time) go the slow way below.
            body, has_user, user = payload[len(prefix) : -2].partition(USER_FIELD)
            if (
                body.isascii()
                and b'"' not in body
                and b"\\" not in body
                and (not has_user or (user.isascii() and b'"' not in user and b"\\" not in user))
            ):
                msg_id, _, rest = body.partition(b"|")
                send_field = rest.partition(b"|")[0]
                if send_field.isdigit():
                    self._account(msg_id, int(send_field), recv_ns, user if has_user else None)
                    return
        self._slow(payload, recv_ns)

    def _attribute(self, msg_id: bytes, user: bytes | None) -> None:
        """Count a receipt whose ``user`` is not the sender its id names."""
        sender, mark, _ = msg_id.partition(SENDER_MARK_BYTES)
        if (sender if mark else None) != user:
            self.tally.counters["misattributed"] += 1

    def _account(self, msg_id: bytes, send_ns: int, recv_ns: int, user: bytes | None) -> None:
        self._attribute(msg_id, user)
        seen = self.seen
        if msg_id in seen:
            self.tally.counters["duplicated"] += 1
        else:
            seen.add(msg_id)
            self.log_send(send_ns)
            self.log_receipt(recv_ns)
            if self.firm_until_ns is None and send_ns >= self.join_ns:
                pending = self.pending
                pending.append(send_ns)
                if len(pending) >= PENDING_FOLD:
                    self.settle(recv_ns)
            elif self.firm_until_ns is None:  # sent during the handshake
                self._count([send_ns], "outside")
            else:
                assert self.end_ns is not None  # start_leaving sets it with firm_until_ns
                kind = delivery_class(send_ns, self.join_ns, self.firm_until_ns, self.end_ns)
                self._count([send_ns], kind)
        own = self.own
        if own is not None and msg_id.startswith(own) and self.round_trip is not None:
            self.round_trip((recv_ns - send_ns) / 1e6)

    def _slow(self, payload: bytes, recv_ns: int) -> None:
        stamp, text_user, problem = parse_server_frame(payload)
        tally = self.tally
        if stamp is None:
            if problem == NOT_A_LOAD_TEST_MESSAGE:
                tally.counters["foreign"] += 1
            else:
                assert problem is not None  # parse_server_frame gives one without a stamp
                kind = problem_kind(problem)
                tally.error(kind, recv_ns)
                if self.on_error is not None:
                    self.on_error(kind, problem)
            return
        msg_id = stamp.msg_id.encode()
        user = text_user.encode() if text_user is not None else None
        if stamp.room == self.room:
            self._account(msg_id, stamp.send_ns, recv_ns, user)
            return
        # Room names carry the run id, so another run's message here is a leak too.
        self._attribute(msg_id, user)
        tally.counters["leaked"] += 1
        own = self.own
        if own is not None and msg_id.startswith(own) and self.round_trip is not None:
            self.round_trip((recv_ns - stamp.send_ns) / 1e6)

    def _count(self, sends: Iterable[int], kind: str) -> None:
        tally = self.tally
        window = tally.window
        start, low, high = window.start_ns, window.measure_from_ns, window.until_ns
        per_second = tally.timeline.counts[kind]
        measured = 0
        for send_ns in sends:
            per_second[(send_ns - start) // SECOND_NS] += 1
            if low <= send_ns < high:
                measured += 1
        if measured:
            tally.counters[CLASS_COUNTER[kind]] += measured

    def settle(self, now_ns: int) -> None:
        """Count as firm what was sent more than ``grace`` before ``now_ns`` (a time no
        later than this socket's leaving)."""
        if not self.pending:
            return
        horizon = now_ns - self.grace_ns
        pending = self.pending
        self._count([ns for ns in pending if ns <= horizon], "firm")
        self.pending = [ns for ns in pending if ns > horizon]

    def start_leaving(
        self,
        leave_ns: int,
        *,
        firm_until_ns: int | None = None,
        grace_ns: int | None = None,
        end_ns: int | None = None,
    ) -> None:
        """As ``SocketLedger.start_leaving``."""
        if self.firm_until_ns is not None:
            return
        grace = self.grace_ns if grace_ns is None else min(grace_ns, self.grace_ns)
        firm_until, end = membership_bounds(self.join_ns, leave_ns, grace, firm_until_ns, end_ns)
        self.firm_until_ns, self.end_ns = firm_until, end
        pending, self.pending = self.pending, []
        join = self.join_ns
        self._count([ns for ns in pending if join <= ns <= firm_until], "firm")
        self._count([ns for ns in pending if firm_until < ns <= end], "in_doubt")
        self._count([ns for ns in pending if not join <= ns <= end], "outside")
        self.tally.memberships.append((self.room, join, firm_until, end))


class RoomIntervals:
    """How many of some (room, from_ns, until_ns) intervals hold a given time."""

    def __init__(self, intervals: Iterable[tuple[str, int, int]]) -> None:
        starts: dict[str, list[int]] = defaultdict(list)
        ends: dict[str, list[int]] = defaultdict(list)
        for room, from_ns, until_ns in intervals:
            if until_ns >= from_ns:
                starts[room].append(from_ns)
                ends[room].append(until_ns)
        for values in (*starts.values(), *ends.values()):
            values.sort()
        self._starts = dict(starts)
        self._ends = dict(ends)

    def at(self, room: str, at_ns: int) -> int:
        room_starts = self._starts.get(room)
        if not room_starts:
            return 0
        # begun at or before the time, minus those that ended before it
        return bisect.bisect_right(room_starts, at_ns) - bisect.bisect_left(self._ends[room], at_ns)


class Members:
    """From membership records: how many sockets of a room expected a message sent at a
    given time, firmly (``firm``) and in their window of doubt (``in_doubt``)."""

    def __init__(self, memberships: Iterable[Membership]) -> None:
        records = list(memberships)
        self._firm = RoomIntervals((room, join, firm) for room, join, firm, _end in records)
        self._member = RoomIntervals((room, join, end) for room, join, _firm, end in records)

    def firm(self, room: str, send_ns: int) -> int:
        return self._firm.at(room, send_ns)

    def at(self, room: str, send_ns: int) -> tuple[int, int]:
        """(firm, in doubt) expected deliveries of a message of ``room`` sent at ``send_ns``."""
        firm = self._firm.at(room, send_ns)
        return firm, self._member.at(room, send_ns) - firm


def firm_expected(sends: Iterable[tuple[str, int]], memberships: Iterable[Membership]) -> int:
    """Σ over messages of the sockets firmly in the message's room at its send time."""
    members = Members(memberships)
    return sum(members.firm(room, send_ns) for room, send_ns in sends)


LATENCY_NAMES = ("p50", "p90", "p95", "p99", "max")
# The exact counts of a finished run, in the order the live page and tab show them.
RESULT_COUNTS = (
    "sent",
    "expected",
    "delivered",
    "lost",
    "unconfirmed",
    "duplicated",
    "leaked",
    "misattributed",
    "errors",
)
CONNECT_NAMES = ("p50", "p95", "p99", "max")
# A load generator above this CPU share of one core, or whose event loop wakes this late in
# more than one sample in twenty, measures itself as much as the server. (p95, not p99: a
# 3 s window holds 150 samples, and one hiccup of the machine is not a saturated client.)
SATURATED_CPU_SHARE = 0.85
SATURATED_LOOP_LAG_P95_MS = 10.0


def summarize(tally: Tally) -> dict[str, Any]:
    """The contract's counters, percentiles and saturation verdict for the measured window."""
    tally.fold()
    window = tally.window
    members = Members(tally.memberships)
    sent = expected_firm = expected_in_doubt = 0
    for room, send_ns in tally.sends:
        if window.measure_from_ns <= send_ns < window.until_ns:
            sent += 1
            firm, in_doubt = members.at(room, send_ns)
            expected_firm += firm
            expected_in_doubt += in_doubt
    counters = tally.counters
    outside = counters["delivered_outside"]
    expected = expected_firm + expected_in_doubt + outside
    delivered = counters["delivered_firm"] + counters["delivered_in_doubt"] + outside
    lost = expected_firm - counters["delivered_firm"]
    unconfirmed = expected_in_doubt - counters["delivered_in_doubt"]
    errors = sum(tally.errors.values())
    cpu_s = sum(p["cpu_s"] for p in tally.processes)
    shares = [p["cpu_s"] / p["wall_s"] for p in tally.processes if p["wall_s"] > 0]
    lag = tally.loop_lag.percentiles_ms(("p50", "p95", "p99", "max"))
    # What the load generator pays per open socket (older tallies lack the fields).
    grown_mb = sum(p["rss_open_mb"] - p["rss_before_mb"] for p in tally.processes
                   if "rss_open_mb" in p)  # fmt: skip
    sockets_open = sum(p.get("sockets_open", 0) for p in tally.processes)
    reasons = []
    if shares and max(shares) > SATURATED_CPU_SHARE:
        reasons.append(f"a client process used {max(shares):.0%} of a CPU")
    if lag["p95"] is not None and lag["p95"] > SATURATED_LOOP_LAG_P95_MS:
        reasons.append(f"client event loop lag p95 {lag['p95']:.1f} ms")
    duration_s = window.duration_s
    # What the server delivered at, whenever the messages were sent: at overload a backlog
    # makes messages sent in the window arrive after the drain, and delivered_per_s
    # (first copies of the window's messages) then falls below it.
    seconds = window_seconds(window)
    received = sum(tally.timeline.counts["received"][second] for second in seconds)
    return {
        "sent": sent,
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "unconfirmed": unconfirmed,
        "duplicated": counters["duplicated"],
        "leaked": counters["leaked"],
        "misattributed": counters["misattributed"],
        "errors": errors,
        "delivery_ratio": round(delivered / expected, 6) if expected else 1.0,
        "delivered_per_s": round(delivered / duration_s, 1) if duration_s > 0 else 0.0,
        "received_per_s": round(received / len(seconds), 1) if seconds else None,
        "latency_ms": tally.latency.percentiles_ms(LATENCY_NAMES),
        # measured deliveries whose receipt came before their send (in latency_ms at 0)
        "negative_latencies": counters["negative_latencies"],
        "connect_ms": tally.connect.percentiles_ms(CONNECT_NAMES),
        "client_cpu_s": round(cpu_s, 3),
        "client_saturated": bool(reasons),
        # Fields beyond the contract's minimum:
        "errors_by_kind": dict(sorted(tally.errors.items())),
        "ambiguous": counters["delivered_in_doubt"] + outside,
        "foreign": counters["foreign"],
        "connects": counters["connects"],
        "deflate_sockets": counters["deflate_sockets"],
        # sends whose timer fired after the sending ended, not made (a busy client)
        "sends_past_end": counters["sends_past_end"],
        "client_kb_per_socket": round(grown_mb * 1024 / sockets_open, 1) if sockets_open else None,
        "latency_samples": tally.latency.count,
        "client_processes": len(tally.processes),
        "client_cpu_share_max": round(max(shares), 3) if shares else None,
        "client_cpu_us_per_delivery": round(cpu_s * 1e6 / delivered, 1) if delivered else None,
        "client_loop_lag_ms": lag,
        "client_saturated_reasons": reasons,
        "accounting_consistent": accounting_holds(expected, delivered, lost, unconfirmed),
    }


def accounting_holds(expected: int, delivered: int, lost: int, unconfirmed: int) -> bool:
    """Every expected delivery ended in exactly one of delivered, lost or unconfirmed."""
    return lost >= 0 and unconfirmed >= 0 and expected == delivered + lost + unconfirmed


def timeline(tally: Tally) -> list[dict[str, Any]]:
    """One entry per second of the run, from the first second anything happened to the
    last: sent, expected, delivered, lost and unconfirmed by send second, errors, open sockets,
    deliveries received, and the latency percentiles of that second's messages."""
    tally.fold()
    window = tally.window
    members = Members(tally.memberships)
    sent: Counter[int] = Counter()
    expected_firm: Counter[int] = Counter()
    expected_in_doubt: Counter[int] = Counter()
    for room, send_ns in tally.sends:
        second = (send_ns - window.start_ns) // SECOND_NS
        sent[second] += 1
        firm, in_doubt = members.at(room, send_ns)
        expected_firm[second] += firm
        expected_in_doubt[second] += in_doubt
    counts = tally.timeline.counts
    seconds: set[int] = set(sent)
    for per_second in counts.values():
        seconds.update(per_second)
    if not seconds:
        return []
    rows = []
    for second in range(min(seconds), max(seconds) + 1):
        firm, in_doubt = counts["firm"][second], counts["in_doubt"][second]
        outside = counts["outside"][second]
        histogram = tally.timeline.latency.get(second)
        percentiles = (
            histogram.percentiles_ms(("p50", "p99"))
            if histogram is not None
            else {"p50": None, "p99": None}
        )
        rows.append(
            {
                "t_s": second,
                "sent": sent[second],
                "expected": expected_firm[second] + expected_in_doubt[second] + outside,
                "delivered": firm + in_doubt + outside,
                "lost": expected_firm[second] - firm,
                "unconfirmed": expected_in_doubt[second] - in_doubt,
                "errors": counts["errors"][second],
                "connected": counts["connected"][second],
                "received": counts["received"][second],
                "p50_ms": percentiles["p50"],
                "p99_ms": percentiles["p99"],
            }
        )
    return rows


def window_seconds(window: Window) -> range:
    """The timeline seconds that lie wholly inside the measured window."""
    first = -(-(window.measure_from_ns - window.start_ns) // SECOND_NS)
    last = (window.until_ns - window.start_ns) // SECOND_NS
    return range(first, max(first, last))


def measured_seconds(rows: Sequence[Mapping[str, Any]], window: Window) -> list[int]:
    """The timeline seconds of ``rows`` that lie wholly inside the measured window."""
    seconds = window_seconds(window)
    return [row["t_s"] for row in rows if row["t_s"] in seconds]
