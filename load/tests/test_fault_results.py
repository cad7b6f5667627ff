"""What a fault run's record says beyond the timeline's accounting, on synthetic data (no
servers): a fault that never fired is not a fault's result (named as a problem, left out
of the medians; the real injection failure and its exit status are in test_faults.py),
and a slow reader's server growth is measured once the kernel's buffers are full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from load.commands.sampling import Sample
from load.core.faults import (
    SLOW_READER_RCVBUF,
    InjectorLog,
    buffers_full_s,
    failure,
    kernel_buffer_bytes,
    rss_readings,
)
from load.core.plan import Fault, Shape, build_plan
from load.core.stats import SECOND_NS, Window
from load.reporting import report


def run(delivered_per_s: float, *, injected: bool, error: str | None = None) -> dict[str, Any]:
    return {
        "layer": "redis", "consumer": "async", "servers": 1, "asgi": "daphne",
        "scenario": "fanout", "delivered_per_s": delivered_per_s, "delivery_ratio": 1.0,
        "latency_ms": {"p50": 1.0, "p99": 2.0}, "lost": 0, "leaked": 0, "duplicated": 0,
        "errors": 0, "client_saturated": False,
        "fault": {"kind": "redis-stall", "injected": injected, "injector_error": error},
    }  # fmt: skip


def test_only_a_fault_that_broke_its_target_counts_as_injected() -> None:
    log = InjectorLog(began_ns=1)  # tried, but the break raised before "broken"
    assert not log.injected
    log.events.append(("broken", 2))
    assert log.injected


def test_a_fault_that_never_fired_or_whose_injector_failed_is_a_failure() -> None:
    assert failure(None) is None
    assert failure(run(1.0, injected=True)["fault"]) is None
    assert failure(run(1.0, injected=False, error="gone")["fault"]) == (
        "the redis-stall fault never fired: gone"
    )
    # A failure here is a str; the test fails either way if it is None.
    assert "injector failed: mending failed" in failure(  # type: ignore[operator]
        run(1.0, injected=True, error="mending failed")["fault"]
    )
    (problem,) = report.problems(run(1.0, injected=False, error="gone"))
    assert problem.startswith("the redis-stall fault never fired: gone")


def test_a_run_whose_fault_never_fired_is_left_out_of_the_median() -> None:
    runs = [
        run(100.0, injected=True),
        run(200.0, injected=True),
        run(9000.0, injected=False, error="gone"),
    ]
    (row,) = report.medians(runs)
    assert (row["runs"], row["excluded"], row["delivered_per_s"]) == (2, 1, 150.0)
    assert "2 (1 left out)" in report.medians_table([row])


SLOW = Fault("slow-reader", at_s=2.0, for_s=10.0, slow_share=0.2)


def test_the_kernel_holds_tcp_wmem_max_and_the_doubled_receive_buffer(tmp_path: Path) -> None:
    tcp_wmem = tmp_path / "tcp_wmem"
    tcp_wmem.write_text("4096\t16384\t4194304\n")
    assert kernel_buffer_bytes(tcp_wmem) == 4194304 + 2 * SLOW_READER_RCVBUF
    assert kernel_buffer_bytes(tmp_path / "missing") is None


def test_a_slow_socket_fills_the_buffers_at_its_rooms_byte_rate() -> None:
    # 5 members at 50 msg/s of about 4,000 bytes: each socket is sent about 1 MB/s.
    plan = build_plan("fanout", Shape(5, 1, 50.0), ["ws://h:1"], message_bytes=4000, fault=SLOW)
    assert buffers_full_s(plan, 4_020_000) == pytest.approx(4.0, abs=0.01)
    assert buffers_full_s(plan, None) is None


class Readings:
    """What rss_readings reads of a ServerSampler: its samples."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples


def test_growth_per_second_is_the_slope_after_the_buffers_filled() -> None:
    plan = build_plan("fanout", Shape(5, 1, 50.0), ["ws://h:1"], message_bytes=4000, fault=SLOW)
    if kernel_buffer_bytes() is None:
        pytest.skip("no /proc/sys/net/ipv4/tcp_wmem to read (not Linux)")
    full_s = buffers_full_s(plan, kernel_buffer_bytes())
    assert full_s is not None and full_s < SLOW.for_s - 2
    window = Window(start_ns=0, measure_from_ns=0, until_ns=20 * SECOND_NS)
    grows_from_s = SLOW.at_s + full_s

    def rss(t_s: float) -> float:  # flat while the kernel buffers it, then 1.5 MiB/s
        return 80.0 + max(0.0, t_s - grows_from_s) * 1.5

    samples = [Sample(round(t / 5 * SECOND_NS), 1.0, rss(t / 5)) for t in range(0, 100)]
    readings = rss_readings(
        Readings(samples), InjectorLog(began_ns=2 * SECOND_NS), window, SLOW, plan
    )
    assert readings.buffers_full_s == full_s
    assert readings.growth_mb_per_s == pytest.approx(1.5, abs=0.05)
    # Another fault kind, or no plan: nothing about buffers.
    assert rss_readings(Readings(samples), None, window, SLOW).growth_mb_per_s is None
