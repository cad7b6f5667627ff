"""The pure parts: message codec, histogram accuracy, exact delivery arithmetic, merging
tallies from several processes, and the WebSocket framing. No Locust, no network."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from load.core.codec import encode_frame_payload, encode_text, parse_server_payload, parse_text
from load.core.plan import Shape, build_plan
from load.core.scenarios import send_times
from load.core.stats import (
    LogHistogram,
    SocketLedger,
    Tally,
    Window,
    accounting_holds,
    firm_expected,
    summarize,
)
from load.inlocust.wire import OP_TEXT, FrameParser, encode_client_frame, mask_payload
from load.reporting import report

SECOND = 1_000_000_000
# Sending from 0 s, every message measured, for 100 s.
WINDOW = Window(start_ns=0, measure_from_ns=0, until_ns=100 * SECOND)


def server_frame(text: str) -> bytes:
    """What the tutorial consumer sends for ``text``."""
    return json.dumps({"message": text}).encode()


def test_codec_round_trip_through_the_servers_json() -> None:
    text = encode_text("ab12cd", "ab12cd-3", "p1f2as4.17", 1_700_000_000_123_456_789)
    assert json.loads(encode_frame_payload(text)) == {"message": text}
    stamp, problem = parse_server_payload(server_frame(text))
    assert problem is None
    assert stamp == parse_text(text)
    assert stamp is not None
    assert stamp.room == "ab12cd-3" and stamp.send_ns == 1_700_000_000_123_456_789


def test_codec_falls_back_to_json_for_other_spacing_and_reports_other_frames() -> None:
    text = encode_text("r", "r-1", "m.1", 5)
    assert parse_server_payload(json.dumps({"message": text}, separators=(",", ":")).encode())[0]
    assert parse_server_payload(b'{"error": "too long"}') == (None, "server error frame: too long")
    assert parse_server_payload(server_frame("hello")) == (
        None,
        "message is not a load-test message",
    )
    assert parse_server_payload(b"not json")[1] == "frame is not JSON"


def test_histogram_quantiles_are_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(7, 1.5) for _ in range(20_000)]  # µs, ~1 ms median
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        # Not None: the histogram holds values. (The test fails either way if it were.)
        assert abs(histogram.quantile(q) - exact) / exact <= 0.01, q  # type: ignore[operator]
    assert histogram.quantile(1.0) == max(values)


def test_histogram_merge_equals_one_histogram_of_everything() -> None:
    rng = random.Random(3)
    values = [rng.uniform(50, 5000) for _ in range(3000)]
    whole, left, right = LogHistogram(), LogHistogram(), LogHistogram()
    for i, value in enumerate(values):
        whole.add(value)
        (left if i % 3 else right).add(value)
    left.merge(LogHistogram.from_dict(json.loads(json.dumps(right.to_dict()))))
    assert left.buckets == whole.buckets
    assert (left.count, left.max, left.min) == (whole.count, whole.max, whole.min)


def ledger_for(tally: Tally, room: str, join_s: float, grace_s: float = 2.0) -> SocketLedger:
    return SocketLedger(tally, room, int(join_s * SECOND), int(grace_s * SECOND))


def stamp(room: str, msg_id: str, send_s: float):
    return parse_text(encode_text("run", room, msg_id, int(send_s * SECOND)))


def test_firm_window_window_of_doubt_and_outside_deliveries() -> None:
    tally = Tally(WINDOW)
    # A socket that joined at 10 s and starts leaving at 20 s: firm for sends in [10, 18],
    # in doubt for sends in (18, 20].
    ledger = ledger_for(tally, "run-1", join_s=10)
    sends = {"early": 9.5, "a": 11, "b": 15, "c": 17.9, "late": 19, "missing": 16,
             "gone": 19.5, "after": 20.5, "never": 21}  # fmt: skip
    for send_s in sends.values():
        tally.sends.append(("run-1", int(send_s * SECOND)))
    # "missing" (firm), "gone" (in doubt) and "never" (after the end) never arrive
    for msg_id in ("early", "a", "b", "c", "late"):
        ledger.deliver(stamp("run-1", msg_id, sends[msg_id]), int((sends[msg_id] + 0.001) * SECOND))
    ledger.deliver(stamp("run-1", "b", 15), int(15.5 * SECOND))  # a second copy
    ledger.deliver(stamp("run-2", "x", 12), int(12.1 * SECOND))  # another room's message
    ledger.start_leaving(20 * SECOND)
    ledger.deliver(stamp("run-1", "after", 20.5), int(20.6 * SECOND))  # sent after the end
    assert tally.memberships == [("run-1", 10 * SECOND, 18 * SECOND, 20 * SECOND)]
    result = summarize(tally)
    # firm: a, b, c, missing -> 4 expected, 3 delivered, 1 lost; in doubt: late, gone -> 2
    # expected, 1 delivered, 1 unconfirmed; early and after arrived from outside: 2 more.
    assert (result["expected"], result["delivered"]) == (8, 6)
    assert (result["lost"], result["unconfirmed"], result["ambiguous"]) == (1, 1, 3)
    assert (result["duplicated"], result["leaked"]) == (1, 1)
    assert result["latency_samples"] == 6
    assert result["delivery_ratio"] == round(6 / 8, 6)
    assert result["accounting_consistent"]


def test_a_socket_the_server_closed_has_a_short_window_of_doubt() -> None:
    tally = Tally(WINDOW)
    ledger = ledger_for(tally, "run-1", join_s=10)
    # dropped 0.2 s before the close was noticed at 20 s, and one sent 0.05 s before it
    for send_s in (19.8, 19.95):
        tally.sends.append(("run-1", int(send_s * SECOND)))
    ledger.start_leaving(20 * SECOND, grace_ns=SECOND // 10)
    assert tally.memberships == [("run-1", 10 * SECOND, int(19.9 * SECOND), 20 * SECOND)]
    assert (summarize(tally)["lost"], summarize(tally)["unconfirmed"]) == (1, 1)


def test_a_socket_we_close_expects_nothing_that_races_our_close() -> None:
    tally = Tally(WINDOW)
    ledger = ledger_for(tally, "run-1", join_s=10)
    # none arrives: 3 s before our close (firm), 1 s before (in doubt), 0.05 s (racing it)
    for send_s in (17, 19, 19.95):
        tally.sends.append(("run-1", int(send_s * SECOND)))
    ledger.start_leaving(20 * SECOND, end_ns=int(19.9 * SECOND))
    assert tally.memberships == [("run-1", 10 * SECOND, 18 * SECOND, int(19.9 * SECOND))]
    result = summarize(tally)
    assert (result["expected"], result["lost"], result["unconfirmed"]) == (2, 1, 1)


def test_no_end_has_a_longer_grace_than_the_ledger_settles_with() -> None:
    tally = Tally(WINDOW)
    ledger = ledger_for(tally, "run-1", join_s=0, grace_s=1)
    ledger.deliver(stamp("run-1", "m1", 5), int(5.01 * SECOND))
    ledger.deliver(stamp("run-1", "m2", 7), int(7.01 * SECOND))  # m1 is firm now
    ledger.start_leaving(7 * SECOND, grace_ns=3 * SECOND)  # would have put m1 in doubt
    assert tally.memberships == [("run-1", 0, 6 * SECOND, 7 * SECOND)]
    assert tally.counters["delivered_firm"] == 1 and tally.counters["delivered_in_doubt"] == 1


def test_the_identity_check_fails_when_a_delivery_ends_nowhere() -> None:
    assert accounting_holds(expected=10, delivered=7, lost=2, unconfirmed=1)
    assert not accounting_holds(expected=10, delivered=7, lost=2, unconfirmed=0)
    assert not accounting_holds(expected=10, delivered=12, lost=-1, unconfirmed=-1)


def test_pending_deliveries_become_firm_once_older_than_grace() -> None:
    tally = Tally(WINDOW)
    ledger = ledger_for(tally, "run-1", join_s=0, grace_s=1)
    ledger.deliver(stamp("run-1", "m1", 5), int(5.01 * SECOND))
    assert tally.counters["delivered_firm"] == 0  # may still fall in the close window
    ledger.deliver(stamp("run-1", "m2", 7), int(7.01 * SECOND))
    assert tally.counters["delivered_firm"] == 1  # m1 is now more than 1 s old


def test_firm_expected_counts_members_at_send_time() -> None:
    memberships = [("r", 0, 100, 110), ("r", 50, 200, 400), ("r", 300, 250, 300),
                   ("s", 0, 1000, 1000)]  # fmt: skip
    # the third window is empty (left within grace of joining) and counts for nothing
    sends = [("r", 10), ("r", 50), ("r", 100), ("r", 150), ("r", 260), ("s", 5), ("t", 5)]
    assert firm_expected(sends, memberships) == 1 + 2 + 2 + 1 + 0 + 1 + 0


def simulate_process(plan_rooms: dict[str, list[str]], process: int, seed: int) -> Tally:
    """One load process's tally for sockets ``process::N``: every member of a room gets
    every message sent in it, except a fixed, known set that is dropped."""
    rng = random.Random(seed)
    tally = Tally(WINDOW)
    for room, members in plan_rooms.items():
        for member in members:
            if not member.startswith(f"{process}:"):
                continue
            ledger = ledger_for(tally, room, join_s=1)
            for sender_index in range(len(members)):
                for seq in range(5):
                    send_s = 2 + seq + sender_index * 0.01
                    msg_id = f"{sender_index}.{seq}"
                    if (member, msg_id) in DROPPED:
                        continue
                    ledger.deliver(
                        stamp(room, msg_id, send_s),
                        int((send_s + rng.uniform(0.0005, 0.005)) * SECOND),
                    )
            ledger.start_leaving(12 * SECOND)
        # the sends of this process's members
        for sender_index, member in enumerate(members):
            if member.startswith(f"{process}:"):
                for seq in range(5):
                    tally.sends.append((room, int((2 + seq + sender_index * 0.01) * SECOND)))
    tally.processes.append({"cpu_s": 0.5, "wall_s": 10.0})
    return tally


DROPPED = {("0:1", "1.3"), ("1:2", "0.0"), ("1:2", "2.4")}


def test_counts_are_exact_when_rooms_span_several_processes() -> None:
    # Rooms whose members live in different load processes (as with locust --processes).
    rooms = {"run-a": ["0:0", "1:0", "2:0"], "run-b": ["0:1", "1:1", "1:2", "2:1"]}
    merged = Tally(WINDOW)
    for process in range(3):
        shipped = simulate_process(rooms, process, seed=process).to_dict()
        merged.merge(Tally.from_dict(json.loads(json.dumps(shipped))))
    result = summarize(merged)
    sent = 5 * (3 + 4)
    expected = 5 * 3 * 3 + 5 * 4 * 4
    assert (result["sent"], result["expected"]) == (sent, expected)
    assert result["lost"] == len(DROPPED)
    assert result["delivered"] == expected - len(DROPPED)
    assert (result["duplicated"], result["leaked"], result["ambiguous"]) == (0, 0, 0)
    assert result["unconfirmed"] == 0 and result["accounting_consistent"]
    assert result["client_processes"] == 3 and result["client_cpu_s"] == 1.5


def test_send_times_are_spread_not_lockstep() -> None:
    first = send_times(0, 100, 1.0, random.Random(1))
    second = send_times(0, 100, 1.0, random.Random(2))
    assert 80 <= len(first) <= 120
    assert first[0] != second[0]
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert min(gaps) >= 0.5 and max(gaps) <= 1.5 and len(set(gaps)) > 10


def test_rooms_spread_over_servers_and_isolation_names_are_confusable() -> None:
    plan = build_plan("isolation", Shape(24, 6, 1.0), ("ws://a:1", "ws://b:2"), run_id="x")
    assert [plan.room_name(i) for i in range(3)] == ["x-0", "x-0.", "x-0_"]
    members_of_room_0 = [u for u in range(24) if plan.room_of_user(u) == plan.room_name(0)]
    assert {plan.target_of_user(u) for u in members_of_room_0} == {"ws://a:1", "ws://b:2"}


def test_client_frames_are_masked_and_server_frames_parse_from_one_buffer() -> None:
    payload = "ü" * 70_000
    frame = encode_client_frame(payload.encode())
    assert frame[1] & 0x80 and frame[1] & 0x7F == 127
    key = frame[10:14]
    assert mask_payload(frame[14:], key) == payload.encode()

    def unmasked(data: bytes) -> bytes:  # a server frame (never masked)
        length = len(data)
        if length < 126:
            return bytes([0x81, length]) + data
        return bytes([0x81, 126]) + length.to_bytes(2, "big") + data

    stream = (
        unmasked(b"a" * 10)
        + unmasked(b"b" * 300)
        + bytes([0x01, 2])
        + b"xy"
        + bytes([0x80, 1])
        + b"z"
    )
    parser = FrameParser()
    out = []
    for i in range(0, len(stream), 7):  # arbitrary chunk boundaries
        out += parser.feed(stream[i : i + 7])
    assert out == [(OP_TEXT, b"a" * 10), (OP_TEXT, b"b" * 300), (OP_TEXT, b"xyz")]


@pytest.mark.parametrize("bad", [b"\xff\xfe", b'{"message": 3}'])
def test_unusable_frames_are_problems_not_crashes(bad: bytes) -> None:
    assert parse_server_payload(bad)[0] is None


def test_the_report_flags_unconfirmed_deliveries_like_losses() -> None:
    run = {"layer": "redis", "scenario": "fanout", "expected": 100, "lost": 0,
           "unconfirmed": 3, "leaked": 0, "duplicated": 0, "errors": 0,
           "client_saturated": False, "accounting_consistent": True}  # fmt: skip
    (problem,) = report.problems(run)
    assert problem.startswith("3 of 100 expected deliveries unconfirmed")
    assert report.problems({**run, "unconfirmed": 0}) == []
