"""The fault-window accounting on synthetic timelines, and the fault's place in the plan:
no network, no Locust."""

from __future__ import annotations

import argparse

import pytest

from load.commands.inject import check_fault
from load.core.faults import (
    InjectorLog,
    RssReadings,
    fault_record,
    time_to_recover,
    time_to_steady,
    window_seconds,
)
from load.core.plan import Fault, Shape, build_plan, plan_from_options
from load.core.stats import Window
from load.inlocust.slow_reader import slow_window
from load.reporting.record import Stack
from load.tests.test_plan import locust_like_parser

USERS = 10


def row(
    t_s: int,
    *,
    sent: int = 10,
    lost: int = 0,
    unconfirmed: int = 0,
    connected: int = USERS,
    p50: float = 5.0,
):
    return {
        "t_s": t_s,
        "sent": sent,
        "delivered": sent * USERS - lost - unconfirmed,
        "lost": lost,
        "unconfirmed": unconfirmed,
        "errors": 0,
        "connected": connected,
        "p50_ms": p50,
        "p99_ms": p50 * 3,
    }


def restart_timeline() -> list[dict]:
    """Redis down in seconds 3-4: losses there, sockets back during second 6, whole at 7."""
    rows = [row(t) for t in range(3)]
    rows += [row(3, lost=60, unconfirmed=7, connected=USERS), row(4, lost=100, connected=0)]
    rows += [row(5, lost=20, connected=2), row(6, lost=5, unconfirmed=2, connected=8)]
    rows += [row(7), row(8)]
    rows += [row(9, sent=0), row(10, sent=0)]  # the drain: nothing sent, nothing to judge
    return rows


def test_losses_are_split_by_the_fault_window() -> None:
    fault = Fault("redis-restart", at_s=3.0, for_s=2.0)
    assert list(window_seconds(fault)) == [3, 4]
    record = fault_record(
        fault,
        restart_timeline(),
        users=USERS,
        counters={"sockets_dropped": 10, "reconnects": 10, "reconnect_failures": 4},
        log=InjectorLog(began_ns=1, ended_ns=2),
        rss=RssReadings(70.0, 75.5, 72.0),
        server_logs=[
            "ok\nTraceback (most recent call last):\n x",
            "Traceback (most recent call last)",
        ],
    )
    assert record["lost_in_window"] == 160
    assert record["lost_outside_window"] == 25
    assert (record["unconfirmed_in_window"], record["unconfirmed_outside_window"]) == (7, 2)
    assert record["time_to_recover_s"] == 2.0  # second 7 starts 2 s after the fault ends
    assert record["recovered_at_s"] == 7
    assert record["server_tracebacks"] == 2
    assert record["server_rss_mb"] == {"before": 70.0, "peak": 75.5, "after": 72.0}
    assert (record["sockets_dropped"], record["reconnects"], record["reconnect_failures"]) == (
        10,
        10,
        4,
    )
    # The contract's keys, in its order.
    assert list(record)[:13] == [
        "kind", "at_s", "for_s", "sockets_dropped", "reconnects", "reconnect_failures",
        "lost_in_window", "lost_outside_window", "time_to_recover_s", "server_tracebacks",
        "server_rss_mb", "recovered_at_s", "time_to_steady_s",
    ]  # fmt: skip
    assert record["time_to_steady_s"] == 2.0  # second 7 on: whole, p99 15 ms


def test_a_fractional_window_counts_every_second_it_touches() -> None:
    fault = Fault("redis-stall", at_s=2.5, for_s=1.0)
    assert list(window_seconds(fault)) == [2, 3]
    # The first full second after 3.5 s is second 4: recovery can be no sooner than 0.5 s.
    assert time_to_recover([row(3), row(4), row(5)], fault, USERS) == (0.5, 4)


def test_held_messages_are_whole_at_once_and_steady_once_prompt_to_the_end() -> None:
    # A broker that holds messages while it is away: nothing lost at first, nobody
    # dropped, but the messages of the window arrive seconds late, and then its queue
    # overflows and some are lost after the window.
    fault = Fault("backend-restart", at_s=3.0, for_s=2.0)
    rows = [row(t) for t in range(3)] + [row(t, p50=1500.0) for t in (3, 4, 5)]
    rows += [row(6, p50=900.0, lost=20), row(7, p50=30.0), row(8), row(9, sent=0)]
    record = fault_record(
        fault, rows, users=USERS, counters={}, log=InjectorLog(), rss=RssReadings(),
        server_logs=[],
    )  # fmt: skip
    assert record["time_to_recover_s"] == 0.0  # second 5: late, but nothing lost
    assert record["time_to_steady_s"] == 2.0  # second 7 on: p99 90 ms, then 15 ms
    assert time_to_steady(rows, fault, USERS, p99_ms=50.0) == 3.0
    late = [*rows[:8], row(8, p50=500.0)]  # the last second of sending was late
    assert time_to_steady(late, fault, USERS) is None


def test_never_recovered_is_null() -> None:
    fault = Fault("redis-restart", at_s=3.0, for_s=2.0)
    rows = [row(t, lost=1 if t >= 3 else 0) for t in range(10)]
    assert time_to_recover(rows, fault, USERS) == (None, None)
    missing_one = [row(t, connected=USERS - 1 if t >= 3 else USERS) for t in range(10)]
    assert time_to_recover(missing_one, fault, USERS) == (None, None)
    # a socket gone in every second (what it was sent is unconfirmed): never whole either
    in_doubt = [row(t, unconfirmed=1 if t >= 3 else 0) for t in range(10)]
    assert time_to_recover(in_doubt, fault, USERS) == (None, None)
    record = fault_record(
        fault, rows, users=USERS, counters={}, log=None, rss=RssReadings(), server_logs=[]
    )
    assert record["time_to_recover_s"] is None
    assert record["injected"] is False


def test_slow_reader_findings_per_slow_socket() -> None:
    fault = Fault("slow-reader", at_s=2.0, for_s=3.0, slow_share=0.1)
    rows = [row(t, p50=4.0) for t in range(2)] + [row(t, p50=40.0) for t in range(2, 5)]
    record = fault_record(
        fault,
        rows,
        users=USERS,
        counters={"slow_sockets": 4},
        log=InjectorLog(began_ns=1),
        rss=RssReadings(before=70.0, peak=90.0, after=88.0),
        server_logs=[],
    )
    slow = record["slow_reader"]
    assert slow["slow_sockets"] == 4
    assert slow["server_rss_growth_mb"] == 20.0
    assert slow["server_kb_per_slow_socket"] == 5120.0
    assert (slow["p50_ms_before"], slow["p50_ms_in_window"]) == (4.0, 40.0)


def test_slow_readers_are_spread_over_the_rooms() -> None:
    fault = Fault("slow-reader", at_s=1.0, for_s=2.0, slow_share=0.1)
    plan = build_plan("fanout", Shape(100, 10, 1.0), ["ws://h:1"], fault=fault)
    window = Window(start_ns=0, measure_from_ns=0, until_ns=20 * 10**9)
    slow = [i for i in range(100) if slow_window(plan, window, i) is not None]
    assert len(slow) == 10
    assert sorted(i % 10 for i in slow) == list(range(10))  # one in each room
    assert slow_window(plan, window, slow[0]) == (10**9, 3 * 10**9)
    plain = build_plan("fanout", Shape(100, 10, 1.0), ["ws://h:1"])
    assert all(slow_window(plain, window, i) is None for i in range(100))


def test_locust_rebuilds_the_fault() -> None:
    fault = Fault("slow-reader", at_s=2.5, for_s=1.5, slow_share=0.25)
    plan = build_plan("fanout", Shape(20, 2, 1.0), ["ws://h:1"], fault=fault)
    options = locust_like_parser().parse_args(plan.locust_args())
    assert plan_from_options(options, users=20).fault == fault
    plain = build_plan("fanout", Shape(20, 2, 1.0), ["ws://h:1"])
    assert "--fault" not in plain.locust_args()
    assert plan_from_options(argparse.Namespace(), users=20, targets=["ws://h:1"]).fault is None


@pytest.mark.parametrize(
    ("fault", "stack", "needle"),
    [
        (Fault("redis-stall"), Stack("inmemory"), "acts on Redis"),
        (Fault("redis-restart"), Stack("inmemory"), "acts on Redis"),
        (Fault("redis-failover"), Stack("nats"), "acts on Redis"),
        (Fault("redis-failover"), Stack("redis-pubsub", servers=2), None),
        (Fault("server-kill"), Stack("redis", servers=1), "--servers 2 or more"),
        (Fault("server-kill"), Stack("inmemory"), None),
        (Fault("slow-reader"), Stack("inmemory"), None),
        (Fault("backend-restart"), Stack("inmemory"), "inmemory has none"),
        (Fault("backend-restart"), Stack("nats"), None),
        (Fault("backend-restart"), Stack("valkey"), None),
        (Fault("backend-restart"), Stack("sqlite"), "sqlite has none"),
        (Fault("redis-restart"), Stack("valkey"), "acts on Redis"),
        (Fault("server-kill"), Stack("postgres", servers=1), "--servers 2 or more"),
    ],
)
def test_faults_that_cannot_apply_are_refused(fault, stack, needle) -> None:
    if needle is None:
        check_fault(fault, [stack], environ={})
    else:
        with pytest.raises(ValueError, match=needle):
            check_fault(fault, [stack], environ={})


@pytest.mark.parametrize("kind", ["redis-restart", "redis-stall", "backend-restart"])
def test_a_fault_never_breaks_a_server_the_harness_did_not_start(kind: str) -> None:
    with pytest.raises(ValueError, match="REDIS_URL names your own: unset it"):
        check_fault(Fault(kind), [Stack("redis")], environ={"REDIS_URL": "redis://db:6379/0"})
    # Another layer's variable is no reason to refuse; Sentinel is always the harness's own.
    check_fault(Fault(kind), [Stack("redis")], environ={"NATS_URL": "nats://db:4222"})
    check_fault(Fault("redis-failover"), [Stack("redis")], environ={"REDIS_URL": "redis://x"})


def test_the_fault_must_end_while_users_still_send() -> None:
    with pytest.raises(ValueError, match="must end before sending does"):
        build_plan(
            "fanout", Shape(4, 1, 1.0), ["ws://h:1"], duration_s=5, fault=Fault("redis-stall")
        )


def test_unknown_kinds_and_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Fault("disk-full")
    with pytest.raises(ValueError, match="slow-share"):
        Fault("slow-reader", slow_share=0)
