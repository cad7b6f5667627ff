"""The load client's accounting (``FastLedger`` + ``DeliveryLog``) gives the same numbers
as the straightforward reference (``SocketLedger``, one delivery at a time, and the
receive callback the client used before), on the same random streams of frames. No
network, no Locust.

The streams hold what a run can see: several sockets of one room sharing a tally, sends
before a socket's join and during its close, copies of one message, messages from a
look-alike room (leaks), logged-in senders' frames with their user, another user or
none (misattributed), foreign chat text, other JSON spacing and escapes, padding,
error frames, garbage, sub-microsecond and negative latencies, a settle period before
the measured window and sends after it. Sockets end as a run ends them: we close after
the drain grace, after an early drain (a later firm end), or the server closes them (the
short close grace). The fast side also settles and folds at random moments, as the
client's monitor does every second.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from load.core.codec import (
    encode_frame_payload,
    encode_text,
    id_prefix,
    parse_server_frame,
    parse_server_payload,
)
from load.core.stats import (
    PENDING_FOLD,
    FastLedger,
    SocketLedger,
    Tally,
    Window,
    problem_kind,
    summarize,
    timeline,
)

SECOND = 1_000_000_000
RUN, ROOM = "ab12cd", "ab12cd-4"
GRACE = 2 * SECOND
CLOSE_GRACE = SECOND // 10
T0 = 1_700_000_000 * SECOND
# Sending starts at T0; the first second settles the server; 20 s are measured (a long
# stream goes on for about 30 s).
WINDOW = Window(start_ns=T0, measure_from_ns=T0 + SECOND, until_ns=T0 + 21 * SECOND)
SOCKETS = 3
OWN = "p1a2s0."  # socket 0's own messages: its round trips


def random_stream(rng: random.Random, count: int) -> list[tuple[int, bytes, int]]:
    """(socket, frame, receipt ns) in receipt order."""
    events = []
    now = T0 - SECOND  # some sends happen before the sockets join
    sent: list[tuple[str, int]] = []
    for i in range(count):
        now += rng.randint(1_000, 40_000_000 if count <= 1500 else 5_000_000)
        socket = rng.randrange(SOCKETS)
        send_ns = now - rng.randint(0, 5_000_000)
        kind = rng.random()
        if kind < 0.55:
            msg_id = f"p1a2s{rng.randrange(SOCKETS)}.{i}"
            sent.append((msg_id, send_ns))
            pad = rng.choice([0, 0, 0, 200])
            frame = encode_frame_payload(encode_text(RUN, ROOM, msg_id, send_ns, pad))
        elif kind < 0.70:  # a logged-in sender: its user, mostly; sometimes another or none
            sender = f"user{rng.randrange(5)}"
            msg_id = id_prefix(f"p1a2s{rng.randrange(SOCKETS)}.", sender) + str(i)
            sent.append((msg_id, send_ns))
            user = rng.choice([sender] * 8 + ["user9", None, "user@x.y"])
            data = {"message": encode_text(RUN, ROOM, msg_id, send_ns)}
            frame = json.dumps(data if user is None else {**data, "user": user}).encode()
        elif kind < 0.705:  # an anonymous sender's message, named after someone
            text = encode_text(RUN, ROOM, f"p1a2s1.a{i}", send_ns)
            frame = json.dumps({"message": text, "user": "user3"}).encode()
        elif kind < 0.78 and sent:  # another copy of an earlier message (maybe to another socket)
            msg_id, send_ns = rng.choice(sent)
            frame = encode_frame_payload(encode_text(RUN, ROOM, msg_id, send_ns))
        elif kind < 0.82:  # a leak from a look-alike room, sometimes one of our own ids
            frame = encode_frame_payload(encode_text(RUN, ROOM + ".", f"p1a2s0.x{i}", send_ns))
        elif kind < 0.85:  # someone typing in the room
            frame = json.dumps({"message": f"hello {i}"}).encode()
        elif kind < 0.88:  # other JSON spacing: a measurement on the slow path
            text = encode_text(RUN, ROOM, f"p1a2s0.q{i}", send_ns)
            frame = json.dumps({"message": text}, separators=(",", ":")).encode()
        elif kind < 0.89:  # a non-ASCII id, escaped or not: still a measurement
            text = encode_text(RUN, ROOM, f"é{i}", send_ns)
            frame = json.dumps({"message": text}, ensure_ascii=rng.random() < 0.5).encode()
        elif kind < 0.90:  # our room's shape, but not UTF-8: a bad frame
            frame = encode_frame_payload(encode_text(RUN, ROOM, f"v{i}", send_ns))
            frame = frame.replace(f"v{i}".encode(), b"v\xff")
        elif kind < 0.92:
            frame = b'{"error": "message too long"}'
        elif kind < 0.94:  # sent 500 ns "after" receipt (clock skew): latency 0
            frame = encode_frame_payload(encode_text(RUN, ROOM, f"n{i}", now + 500))
        elif kind < 0.96:  # a latency under 1 µs
            frame = encode_frame_payload(encode_text(RUN, ROOM, f"u{i}", now - 700))
        elif kind < 0.98:  # a time that is not a number, and a frame that is not JSON
            frame = encode_frame_payload(f"chatload|{RUN}|{ROOM}|z{i}|12a".encode().decode())
        else:
            frame = b"\xff\xfe not json"
        events.append((socket, frame, now))
    return events


def sends_of(events: list[tuple[int, bytes, int]]) -> list[tuple[str, int]]:
    """The sends behind the stream: one per message of the room, whatever its copies."""
    sends: dict[str, int] = {}
    for _socket, frame, _recv_ns in events:
        stamp, _problem = parse_server_payload(frame)
        if stamp is not None and stamp.room == ROOM:
            sends.setdefault(stamp.msg_id, stamp.send_ns)
    return [(ROOM, send_ns) for send_ns in sends.values()]


def plan_of(rng: random.Random, events: list[tuple[int, bytes, int]]) -> dict[str, Any]:
    """When each socket joins and starts leaving, how (``ends``: the keyword arguments of
    start_leaving), and when the monitor would fold."""
    last = events[-1][2]
    joins = [T0 + rng.randint(-SECOND // 2, SECOND) for _ in range(SOCKETS)]
    joins[2] = T0 + rng.randint(2 * SECOND, 8 * SECOND)  # joins while others send
    leaves = [rng.randint(T0 + 3 * SECOND, max(last, T0 + 3 * SECOND)) for _ in range(SOCKETS)]
    leaves[0] = last + SECOND  # one socket stays to the end
    ends = [
        rng.choice(
            [
                {},  # Locust stopped it
                {"end_ns": leave - CLOSE_GRACE},  # we close it after the drain
                {"grace_ns": CLOSE_GRACE},  # the server closed it
                {"firm_until_ns": leave - SECOND // 2, "end_ns": leave - CLOSE_GRACE},  # drained
            ]
        )
        for leave in leaves
    ]
    folds = sorted(rng.randint(events[0][2], last) for _ in range(rng.randint(0, 12)))
    return {"joins": joins, "leaves": leaves, "ends": ends, "folds": folds}


def reference(events: list[tuple[int, bytes, int]], plan: dict[str, Any]):
    """SocketLedger, and the receive callback the client had before FastLedger."""
    tally = Tally(WINDOW)
    tally.sends.extend(sends_of(events))
    ledgers = [SocketLedger(tally, ROOM, join, GRACE) for join in plan["joins"]]
    round_trips: list[float] = []
    problems: list[tuple[str, str]] = []
    for socket, frame, recv_ns in events:
        for number, ledger in enumerate(ledgers):
            if ledger.firm_until_ns is None and recv_ns >= plan["leaves"][number]:
                ledger.start_leaving(plan["leaves"][number], **plan["ends"][number])
        stamp, user, problem = parse_server_frame(frame)
        if stamp is not None:
            ledgers[socket].deliver(stamp, recv_ns, user)
            if socket == 0 and stamp.msg_id.startswith(OWN):
                round_trips.append((recv_ns - stamp.send_ns) / 1e6)
        elif problem == "message is not a load-test message":
            tally.counters["foreign"] += 1
        else:
            assert problem is not None  # parse_server_payload gives one without a stamp
            kind = "server_error_frame" if problem.startswith("server error") else "bad_frame"
            tally.error(kind, recv_ns)
            problems.append((kind, problem))
    for number, ledger in enumerate(ledgers):
        ledger.start_leaving(plan["leaves"][number], **plan["ends"][number])
    return tally, round_trips, problems


def fast(events: list[tuple[int, bytes, int]], plan: dict[str, Any]):
    """FastLedger as the client runs it, settled and folded at the plan's moments."""
    tally = Tally(WINDOW)
    tally.sends.extend(sends_of(events))
    round_trips: list[float] = []
    problems: list[tuple[str, str]] = []
    ledgers = [
        FastLedger(
            tally,
            ROOM,
            join,
            GRACE,
            run_id=RUN,
            own_prefix=OWN if number == 0 else "p9.",
            round_trip=round_trips.append if number == 0 else None,
            on_error=lambda kind, problem: problems.append((kind, problem)),
        )
        for number, join in enumerate(plan["joins"])
    ]
    folds = list(plan["folds"])
    for socket, frame, recv_ns in events:
        while folds and folds[0] <= recv_ns:
            moment = folds.pop(0)
            for ledger in ledgers:
                if ledger.firm_until_ns is None:
                    ledger.settle(moment)
            tally.fold()
        for number, ledger in enumerate(ledgers):
            if ledger.firm_until_ns is None and recv_ns >= plan["leaves"][number]:
                ledger.start_leaving(plan["leaves"][number], **plan["ends"][number])
        ledgers[socket].on_text(frame, recv_ns)
    for number, ledger in enumerate(ledgers):
        ledger.start_leaving(plan["leaves"][number], **plan["ends"][number])
    return tally, round_trips, problems


def differences(one: Tally, other: Tally) -> list[str]:
    """Every way two tallies differ (float sums of latencies compared to 1e-9)."""
    found = []
    left, right = one.to_dict(), other.to_dict()
    left_hists = [left["latency"], *left["timeline"]["latency"].values()]
    right_hists = [right["latency"], *right["timeline"]["latency"].values()]
    for a, b in zip(left_hists, right_hists, strict=False):
        if a.pop("total") != pytest.approx(b.pop("total"), rel=1e-9, abs=1e-9):
            found.append("latency total")
    left["counters"] = {k: v for k, v in left["counters"].items() if v}
    right["counters"] = {k: v for k, v in right["counters"].items() if v}
    for key in left:
        if left[key] != right[key]:
            found.append(key)
    if summarize(one) != summarize(other):
        found.append("summary")
    if timeline(one) != timeline(other):
        found.append("timeline rows")
    return found


SEEDS = range(24)


def test_the_streams_end_sockets_every_way_and_leave_deliveries_in_doubt() -> None:
    """Across the seeds: every kind of end, deliveries in doubt, and unconfirmed ones."""
    kinds: set[tuple[str, ...]]
    kinds, in_doubt, unconfirmed = set(), 0, 0
    for seed in SEEDS:
        rng = random.Random(seed)
        count = rng.choice([60, 1500, 3 * PENDING_FOLD])
        events = random_stream(rng, count)
        plan = plan_of(rng, events)
        kinds.update(tuple(end) for end in plan["ends"])
        tally = reference(events, plan)[0]
        in_doubt += tally.counters["delivered_in_doubt"]
        unconfirmed += summarize(tally)["unconfirmed"]
    assert kinds == {(), ("end_ns",), ("grace_ns",), ("firm_until_ns", "end_ns")}
    assert in_doubt > 0 and unconfirmed > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_accounting_gives_the_reference_numbers(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.choice([60, 1500, 3 * PENDING_FOLD])
    events = random_stream(rng, count)
    plan = plan_of(rng, events)
    ref_tally, ref_round_trips, ref_problems = reference(events, plan)
    fast_tally, fast_round_trips, fast_problems = fast(events, plan)
    assert differences(ref_tally, fast_tally) == []
    assert fast_round_trips == ref_round_trips
    assert fast_problems == ref_problems
    result = summarize(ref_tally)
    assert result["accounting_consistent"], result
    assert result["expected"] == result["delivered"] + result["lost"] + result["unconfirmed"]
    # The streams exercise what they claim to (every kind of count is non-zero).
    if count > 1000:
        counters = ref_tally.counters
        names = ("delivered_firm", "delivered_outside", "duplicated", "leaked", "foreign")
        for name in (*names, "misattributed"):
            assert counters[name] > 0, name
        assert result["lost"] > 0
        assert ref_tally.errors["bad_frame"] and ref_tally.errors["server_error_frame"]
        assert ref_round_trips
        assert ref_tally.errors["bad_frame"] and ref_tally.errors["server_error_frame"]
        assert ref_round_trips


def test_the_comparison_catches_a_single_difference() -> None:
    """One delivery less, one copy more, or a shifted join on the fast side is found."""
    rng = random.Random(99)
    events = random_stream(rng, 1500)
    plan = plan_of(rng, events)
    ref_tally, _, _ = reference(events, plan)
    first_delivery = next(i for i, (_s, frame, _r) in enumerate(events) if b"p1a2s" in frame)
    missing_one = events[:first_delivery] + events[first_delivery + 1 :]
    assert differences(ref_tally, fast(missing_one, plan)[0])
    doubled = [*events[: first_delivery + 1], events[first_delivery], *events[first_delivery + 1 :]]
    assert differences(ref_tally, fast(doubled, plan)[0])
    late_join = {**plan, "joins": [join + SECOND // 2 for join in plan["joins"]]}
    assert differences(ref_tally, fast(events, late_join)[0])


def test_problem_kinds_match_the_reference_wording() -> None:
    # A frame without a stamp always comes with its problem, a str: the type cannot say so.
    assert problem_kind(parse_server_payload(b'{"error": "x"}')[1]) == "server_error_frame"  # type: ignore[arg-type]
    assert problem_kind(parse_server_payload(b"nope")[1]) == "bad_frame"  # type: ignore[arg-type]
