"""The measured window and the per-second timeline, on synthetic records: what the summary
counts, what each second shows, and that seconds add up to the whole. No network."""

from __future__ import annotations

import json

from load.core.codec import encode_text, parse_text
from load.core.plan import Shape, build_plan
from load.core.stats import SocketLedger, Tally, Window, summarize, timeline

SECOND = 1_000_000_000
# Sending starts at 100 s; 100-101 s settles the server; 101-104 s is measured.
WINDOW = Window(start_ns=100 * SECOND, measure_from_ns=101 * SECOND, until_ns=104 * SECOND)


def at(seconds: float) -> int:
    return round(seconds * SECOND)


def deliver(ledger: SocketLedger, msg_id: str, send_s: float, latency_ms: float) -> None:
    stamp = parse_text(encode_text("run", ledger.room, msg_id, at(send_s)))
    assert stamp is not None
    ledger.deliver(stamp, at(send_s) + round(latency_ms * 1e6))


def two_member_room() -> Tally:
    """Room "r" with two sockets for the whole run; one message a second from 100.5 s to
    103.5 s; the message sent at 102.5 s never reaches the second socket; one error."""
    tally = Tally(WINDOW)
    first = SocketLedger(tally, "r", at(99), at(1))
    second = SocketLedger(tally, "r", at(99), at(1))
    for number, send_s in enumerate((100.5, 101.5, 102.5, 103.5)):
        tally.sends.append(("r", at(send_s)))
        deliver(first, f"m{number}", send_s, latency_ms=2 + 100 * number)
        if send_s != 102.5:
            deliver(second, f"m{number}", send_s, latency_ms=3)
    tally.error("send_failed", at(102.7))
    for ledger in (first, second):
        ledger.start_leaving(at(106))
    return tally


def test_only_the_measured_window_counts_in_the_summary() -> None:
    result = summarize(two_member_room())
    # 100.5 s was the settle period: 3 messages measured, each expected at both sockets.
    assert (result["sent"], result["expected"], result["delivered"], result["lost"]) == (3, 6, 5, 1)
    assert result["latency_samples"] == 5
    assert result["latency_ms"]["max"] == 302  # the settle period's 2 ms is not in it
    assert result["delivered_per_s"] == round(5 / 3, 1)
    assert result["errors"] == 1


def test_each_second_shows_its_own_messages_and_adds_up_to_the_whole() -> None:
    tally = two_member_room()
    tally.timeline.counts["connected"].update({-1: 2, 0: 2, 1: 2, 2: 2, 3: 2})
    rows = {row["t_s"]: row for row in timeline(tally)}
    assert sorted(rows) == [-1, 0, 1, 2, 3]
    assert [rows[s]["sent"] for s in range(4)] == [1, 1, 1, 1]
    assert [rows[s]["expected"] for s in range(4)] == [2, 2, 2, 2]
    assert [rows[s]["delivered"] for s in range(4)] == [2, 2, 1, 2]
    assert [rows[s]["lost"] for s in range(4)] == [0, 0, 1, 0]
    assert rows[2]["errors"] == 1 and rows[3]["errors"] == 0
    assert rows[3]["p99_ms"] == 302  # that second's slowest message
    assert rows[-1]["connected"] == 2 and rows[-1]["sent"] == 0
    for row in rows.values():
        assert row["delivered"] + row["lost"] + row["unconfirmed"] == row["expected"]
    measured = [rows[s] for s in (1, 2, 3)]
    result = summarize(tally)
    assert sum(r["lost"] for r in measured) == result["lost"]
    assert sum(r["delivered"] for r in measured) == result["delivered"]


def test_timelines_merge_across_processes_like_the_totals() -> None:
    whole = two_member_room()
    halves = [Tally(WINDOW), Tally(WINDOW)]
    # The same room, its two sockets in two processes; the sends split between them.
    for index, tally in enumerate(halves):
        ledger = SocketLedger(tally, "r", at(99), at(1))
        for number, send_s in enumerate((100.5, 101.5, 102.5, 103.5)):
            if number % 2 == index:
                tally.sends.append(("r", at(send_s)))
            if index == 0 or send_s != 102.5:
                deliver(ledger, f"m{number}", send_s, latency_ms=2 + 100 * number if index == 0
                        else 3)  # fmt: skip
        ledger.start_leaving(at(106))
    halves[1].error("send_failed", at(102.7))
    merged = Tally(WINDOW)
    for half in halves:
        merged.merge(Tally.from_dict(json.loads(json.dumps(half.to_dict()))))
    assert timeline(merged) == timeline(whole)
    assert summarize(merged) == summarize(whole)


def test_the_window_follows_the_plan() -> None:
    plan = build_plan("fanout", Shape(100, 10, 1.0), ["ws://h:1"], settle_s=1.5, duration_s=4)
    window = Window.of(plan, test_start_ns=at(50))
    assert window.start_ns == at(50 + plan.connect_s)
    assert window.measure_from_ns == window.start_ns + at(1.5)
    assert window.until_ns == window.measure_from_ns + at(4)
    assert window.second(window.start_ns - 1) == -1
    assert window.measured(window.measure_from_ns) and not window.measured(window.until_ns)


def test_received_per_s_counts_arrivals_in_the_window_whenever_sent() -> None:
    """A backlog: delivered_per_s counts the window's messages (101.5, 102.5, 103.5 s),
    received_per_s what arrived in it (the settle period's message at 101.5 s and the
    one sent at 102.5 s; the others arrive after the window)."""
    tally = Tally(WINDOW)
    ledger = SocketLedger(tally, "r", at(99), at(1))
    for number, (send_s, latency_s) in enumerate(((100.5, 1.0), (101.5, 3.0), (102.5, 0.1),
                                                  (103.5, 2.0))):  # fmt: skip
        tally.sends.append(("r", at(send_s)))
        deliver(ledger, f"m{number}", send_s, latency_ms=latency_s * 1000)
    ledger.start_leaving(at(107))
    summary = summarize(tally)
    assert (summary["delivered"], summary["delivered_per_s"]) == (3, 1.0)
    assert summary["received_per_s"] == round(2 / 3, 1)
