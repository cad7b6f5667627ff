"""The clock offset estimate on synthetic exchanges, the clock a worker reads, a worker
whose clock was never measured, and negative latencies. No network, no Locust."""

from __future__ import annotations

import ast
import random
import time

import pytest

from load.commands.measure import with_clocks
from load.core import clock
from load.core.clock import Clock, Correction, Estimate, Exchange, estimate
from load.core.codec import encode_frame_payload, encode_text, parse_server_payload
from load.core.stats import FastLedger, SocketLedger, Tally, Window, summarize
from load.tests.helpers import ROOT

MS = 1_000_000
SECOND = 1_000_000_000


def exchange(
    master_send_ns: int, *, offset_ns: int, out_ns: int, back_ns: int, hold_ns: int = 20_000
) -> Exchange:
    """A round trip to a worker whose clock is ``offset_ns`` ahead: ``out_ns`` on the way
    there, ``back_ns`` on the way back, ``hold_ns`` inside the worker."""
    t0 = master_send_ns
    t1 = t0 + out_ns + offset_ns
    t2 = t1 + hold_ns
    t3 = t2 - offset_ns + back_ns
    return Exchange(t0, t1, t2, t3)


def test_a_symmetric_round_trip_gives_the_offset_exactly() -> None:
    one = exchange(10**18, offset_ns=250 * MS, out_ns=300_000, back_ns=300_000)
    assert one.offset_ns == 250 * MS
    assert one.round_trip_ns == 600_000


def test_the_minimum_round_trip_wins_and_bounds_the_error() -> None:
    rng = random.Random(7)
    true_offset = -37 * MS
    exchanges = []
    for number in range(16):
        # Queueing delays, unequal in the two directions; one quiet exchange among them.
        out, back = (
            (150_000, 160_000)
            if number == 11
            else (rng.randint(200_000, 5 * MS), rng.randint(200_000, 5 * MS))
        )
        exchanges.append(
            exchange(10**18 + number * MS, offset_ns=true_offset, out_ns=out, back_ns=back)
        )
    result = estimate(exchanges)
    assert result.round_trip_ns == 310_000  # the quiet one
    assert result.uncertainty_ns == 155_000
    assert result.exchanges == 16
    assert abs(result.offset_ns - true_offset) <= result.uncertainty_ns
    assert result.offset_ns == pytest.approx(true_offset - 5_000)  # half the asymmetry


def test_the_bound_holds_even_for_a_one_sided_delay() -> None:
    # All the delay on the way out: the estimate is off by half the trip, never more.
    one = exchange(0, offset_ns=250 * MS, out_ns=2 * MS, back_ns=0)
    result = estimate([one])
    assert abs(result.offset_ns - 250 * MS) == pytest.approx(result.uncertainty_ns)


def test_an_asymmetric_path_widens_the_bound_past_the_latency_it_qualifies() -> None:
    # 5 ms towards the worker, 25 ms back: the estimate is off by half the difference
    # (10 ms), within the bound of half the round trip (15 ms); with two such workers the
    # latency bound (30 ms) exceeds a p50 of 20 ms, and the record says so.
    one = exchange(0, offset_ns=250 * MS, out_ns=5 * MS, back_ns=25 * MS, hold_ns=0)
    result = estimate([one])
    assert result.offset_ns - 250 * MS == pytest.approx(-10 * MS)
    assert result.uncertainty_ns == pytest.approx(15 * MS)
    bound = clock.latency_bound_ns([Correction(result), Correction(result)])
    assert bound == pytest.approx(30 * MS)
    assert bound is not None
    note = clock.trust_note(bound / MS, p50_ms=20.0)
    assert note is not None and "±30.000 ms" in note


def test_impossible_exchanges_are_refused() -> None:
    with pytest.raises(ValueError, match="no clock exchange"):
        estimate([])
    # A reply stamped before the ping was received: a broken exchange, not a sample.
    with pytest.raises(ValueError):
        estimate([Exchange(t0=100, t1=200, t2=150, t3=300)])


def test_a_clock_set_to_the_estimate_reads_the_master_clock() -> None:
    true_offset = 250 * MS  # the worker's clock is this far ahead of the master's
    master_now = 10**18 + 5 * SECOND
    start = estimate([exchange(10**18, offset_ns=true_offset, out_ns=400_000, back_ns=400_000)])
    worker = Clock(own_ns=lambda: master_now + true_offset)
    assert worker.time_ns() == master_now + true_offset  # its own clock until told otherwise
    worker.follow_master(round(start.offset_ns))
    assert worker.time_ns() == master_now
    assert worker.time() == master_now / 1e9
    # A latency between a worker 250 ms ahead and one on time comes out right once both
    # read the master's clock (on their own clocks it would read -243 ms).
    sent_on_worker = worker.time_ns()
    master_now += 7 * MS
    on_time = Clock(own_ns=lambda: master_now)
    assert on_time.time_ns() - sent_on_worker == 7 * MS


def test_the_real_clock_is_read_with_the_offset() -> None:
    shifted = Clock(250 * MS)
    before = time.time_ns()
    read = shifted.time_ns()
    after = time.time_ns()
    assert before - 250 * MS <= read <= after - 250 * MS


def test_drift_and_the_latency_bound() -> None:
    start = Estimate(
        offset_ns=250 * MS, uncertainty_ns=200_000, round_trip_ns=400_000, exchanges=16, at_ns=0
    )
    end = Estimate(
        offset_ns=250 * MS + 300_000,
        uncertainty_ns=100_000,
        round_trip_ns=200_000,
        exchanges=16,
        at_ns=60 * 10**9,
    )
    drifting = Correction(start, end)
    steady = Correction(
        Estimate(offset_ns=0.0, uncertainty_ns=50_000, round_trip_ns=100_000, exchanges=16, at_ns=0)
    )
    assert drifting.drift_ns == 300_000
    assert drifting.error_bound_ns == 200_000 + 300_000 + 100_000
    # Two workers: the two largest bounds add; one worker: its offset cancels.
    assert clock.latency_bound_ns([drifting, steady]) == 600_000 + 50_000
    assert clock.latency_bound_ns([drifting]) == 0.0
    entry = clock.worker_entry("1:host", drifting)
    assert entry["clock_offset_ms"] == 250.0
    assert entry["clock_uncertainty_ms"] == 0.2
    assert entry["clock_drift_ms"] == 0.3
    assert entry["clock_warning"] is None
    assert Correction.from_dict(drifting.to_dict()) == drifting


def test_an_untrustworthy_latency_is_said_plainly() -> None:
    assert clock.trust_note(0.4, p50_ms=6.9) is None
    note = clock.trust_note(2.5, p50_ms=0.8)
    assert note is not None and "cannot be trusted" in note and "0.800" in note
    assert clock.trust_note(2.5, p50_ms=None) is None


def test_a_worker_never_measured_is_listed_with_a_null_offset_and_a_warning() -> None:
    measured = estimate([exchange(10**18, offset_ns=3 * MS, out_ns=200_000, back_ns=200_000)])
    names = {"node-a": "0:node-a", "node-b": "1:node-b"}
    report = clock.clock_report(names, start={"node-a": measured}, end={"node-a": measured})
    assert report is not None
    by_name = {entry["worker"]: entry for entry in report["workers"]}
    assert set(by_name) == {"0:node-a", "1:node-b"}  # never left out
    silent = by_name["1:node-b"]
    assert silent["clock_offset_ms"] is None and silent["clock_exchanges"] == 0
    assert "no clock exchange with this worker completed" in silent["clock_warning"]
    assert by_name["0:node-a"]["clock_offset_ms"] == 3.0
    assert by_name["0:node-a"]["clock_warning"] is None
    # With two workers, one unknown, the latency bound is unknown, not the other's bound.
    assert report["latency_accuracy_ms"] is None
    note = clock.trust_note(None, p50_ms=5.0, never_measured=["1:node-b"])
    assert note is not None and "cannot be trusted" in note and "1:node-b" in note
    # No remote worker was asked: nothing to report.
    assert clock.clock_report({}, start={}, end={}) is None


def test_a_missing_end_estimate_leaves_the_drift_unknown() -> None:
    start = estimate([exchange(10**18, offset_ns=0, out_ns=200_000, back_ns=200_000)])
    entry = clock.worker_entry("0:node", Correction(start))
    assert entry["clock_drift_ms"] is None and entry["clock_offset_end_ms"] is None
    assert entry["clock_warning"] == clock.NO_END_ESTIMATE


def test_the_record_lists_a_never_measured_worker_and_says_so() -> None:
    clocks = clock.clock_report({"node-b": "1:node-b"}, start={}, end={})
    record = with_clocks({"latency_ms": {"p50": 4.0}}, clocks)
    assert [w["worker"] for w in record["clock_workers"]] == ["1:node-b"]
    assert record["clock_workers"][0]["clock_offset_ms"] is None
    assert "1:node-b" in record["latency_trust"]


def negative_latency_stream() -> list[tuple[int, int]]:
    """(send ns, receipt ns) on a worker whose clock reads 250 ms behind the sender's:
    measured sends, every other one received "before" it was sent."""
    start = 10**18
    return [
        (
            start + 2 * SECOND + n * MS,
            start + 2 * SECOND + n * MS + (5 * MS if n % 2 else -245 * MS),
        )
        for n in range(10)
    ]


@pytest.mark.parametrize("ledger_kind", ["reference", "fast"])
def test_negative_latencies_are_counted_not_clamped_away(ledger_kind: str) -> None:
    start = 10**18
    window = Window(start_ns=start, measure_from_ns=start + SECOND, until_ns=start + 5 * SECOND)
    tally = Tally(window)
    room = "ab12cd-1"
    if ledger_kind == "reference":
        reference = SocketLedger(tally, room, start, 2 * SECOND)
    else:
        fast = FastLedger(tally, room, start, 2 * SECOND, run_id="ab12cd", own_prefix="none.")
    for number, (send_ns, recv_ns) in enumerate(negative_latency_stream()):
        payload = encode_frame_payload(encode_text("ab12cd", room, f"p1s0.{number}", send_ns))
        if ledger_kind == "reference":
            stamp, _problem = parse_server_payload(payload)
            assert stamp is not None
            reference.deliver(stamp, recv_ns)
        else:
            fast.on_text(payload, recv_ns)
    # A send before the measured window does not count, as in latency_ms.
    early = start + SECOND // 2
    payload = encode_frame_payload(encode_text("ab12cd", room, "p1s0.early", early))
    if ledger_kind == "reference":
        stamp, _problem = parse_server_payload(payload)
        assert stamp is not None
        reference.deliver(stamp, early - 245 * MS)
    else:
        fast.on_text(payload, early - 245 * MS)
    summary = summarize(tally)
    assert summary["negative_latencies"] == 5
    assert summary["latency_samples"] == 10  # still in the histogram, in its lowest bucket
    assert summary["latency_ms"]["p50"] <= 0.001  # the lowest bucket (below 1 µs)


# The modules of a load process that take or compare timestamps. Only clocksync reads the
# raw wall clock, on purpose: it measures it.
STAMPING_MODULES = (
    "inlocust/users.py",
    "inlocust/wire.py",
    "inlocust/webui.py",
    "inlocust/slow_reader.py",
    "core/livestats.py",
    "core/stats.py",
)


@pytest.mark.parametrize("module", STAMPING_MODULES)
def test_a_load_process_reads_wall_time_only_through_its_clock(module: str) -> None:
    tree = ast.parse((ROOT / "load" / module).read_text())
    raw_reads = [
        f"line {node.lineno}: time.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("time", "time_ns")
        and isinstance(node.value, ast.Name)
        and node.value.id == "time"
    ]
    assert raw_reads == [], f"{module} reads the wall clock around its Clock: {raw_reads}"
