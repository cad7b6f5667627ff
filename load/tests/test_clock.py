"""The clock offset estimate on synthetic exchanges, and the correction a worker applies.
No network, no Locust."""

from __future__ import annotations

import random

import pytest

from load import clock
from load.clock import Correction, Estimate, Exchange, estimate

MS = 1_000_000


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


def test_impossible_exchanges_are_refused() -> None:
    with pytest.raises(ValueError, match="no clock exchange"):
        estimate([])
    # A reply stamped before the ping was received: a broken exchange, not a sample.
    with pytest.raises(ValueError):
        estimate([Exchange(t0=100, t1=200, t2=150, t3=300)])


def test_the_correction_moves_worker_timestamps_onto_the_master_clock() -> None:
    true_offset = 250 * MS
    start = estimate([exchange(10**18, offset_ns=true_offset, out_ns=400_000, back_ns=400_000)])
    correction = Correction(start)
    master_send = 10**18 + 5 * 10**9
    worker_reads = master_send + true_offset  # what the worker's own clock says then
    assert correction.to_master(worker_reads) == master_send
    # A latency between a worker 250 ms ahead and one on time comes out right after both
    # are corrected (uncorrected it would read 257 ms).
    on_time = Correction(estimate([exchange(10**18, offset_ns=0, out_ns=400_000, back_ns=400_000)]))
    received_on_time = master_send + 7 * MS
    latency = received_on_time - correction.to_master(worker_reads)
    assert (
        on_time.to_master(received_on_time) - correction.to_master(worker_reads)
        == latency
        == 7 * MS
    )


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
    assert Correction.from_dict(drifting.to_dict()) == drifting


def test_an_untrustworthy_latency_is_said_plainly() -> None:
    assert clock.trust_note(0.4, p50_ms=6.9) is None
    note = clock.trust_note(2.5, p50_ms=0.8)
    assert note is not None and "cannot be trusted" in note and "0.800" in note
    assert clock.trust_note(2.5, p50_ms=None) is None


def test_a_shifted_worker_reads_the_master_clock() -> None:
    import time

    shifted = clock.ShiftedTime(250 * MS)
    before = time.time_ns()
    read = shifted.time_ns()
    after = time.time_ns()
    assert before - 250 * MS <= read <= after - 250 * MS
    assert abs(shifted.time() - (time.time() - 0.25)) < 0.05
    assert shifted.perf_counter is time.perf_counter  # durations are not shifted
