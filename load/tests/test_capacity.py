"""A real, short capacity search on InMemory: every step is reported, the capacity entry has
the contract's shape and names a replayable load, and the baseline gate fails the command
when the capacity fell. (Pure parts of the search: test_search.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load.capacity import SearchSettings, add_efficiency, regressions
from load.search import ALL_PASSED, LIMITS, Objective
from load.tests.helpers import run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

CAPACITY_KEYS = (
    "layer", "servers", "consumer", "asgi", "slo", "users", "rooms", "rate_per_user",
    "deliveries_per_s", "messages_per_s", "limited_by", "past_capacity",
    "server_cpu_us_per_delivery",
)  # fmt: skip


def test_a_short_search_reports_every_step_and_fails_a_fallen_capacity(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps({"capacity": [{"layer": "inmemory", "servers": 1, "consumer": "async",
                                  "asgi": "daphne", "vary": "rate", "deliveries_per_s": 1e9}]})
    )  # fmt: skip
    out = tmp_path / "out"
    finished = run_load(
        "capacity", "--layers", "inmemory", "--users", "20", "--rooms", "4", "--rate", "4",
        "--ramp-steps", "3", "--settle", "0.5", "--duration", "1.5", "--drain", "1",
        "--baseline", str(baseline), "--out", str(out), timeout=240,
    )  # fmt: skip
    # Nothing holds a billion deliveries a second: the gate fails, in one line.
    assert finished.returncode == 3, finished.stderr
    (regression,) = finished.stderr.strip().splitlines()
    assert "regression: inmemory: capacity" in regression and "baseline's" in regression

    summary = finished.summary(out)
    (entry,) = summary["capacity"]
    assert all(key in entry for key in CAPACITY_KEYS)
    assert entry["limited_by"] in (*LIMITS, ALL_PASSED)
    assert entry["slo"] == {"p99_ms": 100.0, "loss": 0, "errors": 0}
    steps = summary["runs"]
    assert [run["step"] for run in steps] == list(range(1, len(steps) + 1))
    for run in steps:
        assert run["passed"] == (not run["broke"])
        assert run["timeline"] and run["settle_s"] == 0.5 and run["duration_s"] == 1.5
    if entry["deliveries_per_s"] is not None:
        # The capacity is a step that passed, stated as a shape any client can replay.
        held = [run for run in steps if run["passed"] and run["rate_per_user"]
                == entry["rate_per_user"]]  # fmt: skip
        assert held and (entry["users"], entry["rooms"]) == (20, 4)
        assert entry["deliveries_per_s"] == held[-1]["delivered_per_s"]
        assert held[-1]["latency_ms"]["p99"] <= 100 and held[-1]["lost"] == 0
    if entry["limited_by"] == ALL_PASSED:
        assert entry["rate_per_user"] == 16 and entry["past_capacity"] is None
    else:
        assert entry["past_capacity"]["broke"][0] == entry["limited_by"]
    report = (out / "report.html").read_text()
    assert report.count("<svg") >= 3 + len(steps)  # the curves, and each step's timeline
    assert "<script" not in report


def test_the_gate_compares_each_stack_with_its_own_baseline() -> None:
    def entry(layer: str, servers: int, capacity: float | None) -> dict:
        return {"layer": layer, "servers": servers, "consumer": "async", "asgi": "daphne",
                "vary": "rate", "deliveries_per_s": capacity}  # fmt: skip

    baseline = [entry("redis", 1, 3000), entry("redis", 2, 5000), entry("inmemory", 1, 3000)]
    current = [entry("redis", 1, 2500), entry("redis", 2, 3900), entry("redis-pubsub", 1, 4000),
               entry("inmemory", 1, None)]  # fmt: skip
    problems, notes = regressions(current, baseline, max_drop=0.2)
    assert problems == [
        "redis-x2: capacity 3,900 deliveries/s against the baseline's 5,000 (-22%)",
        "inmemory: capacity 0 deliveries/s against the baseline's 3,000 (-100%)",
    ]
    assert "redis: capacity 2,500 deliveries/s against the baseline's 3,000 (-17%)" in notes
    assert "redis-pubsub: no baseline capacity to compare with" in notes


def test_efficiency_is_compared_at_the_highest_load_every_stack_held() -> None:
    """Server µs per delivery comes from one common ramp step; a stack that held no step at
    all gets none, and does not take the comparison away from the others."""

    def step(search: str, rate: float, passed: bool, cost: float) -> dict:
        return {"search": search, "phase": "ramp", "passed": passed, "rate_per_user": rate,
                "users": 100, "rooms": 10, "offered_deliveries_per_s": rate * 1000,
                "server_cpu_us_per_delivery": cost}  # fmt: skip

    records = [
        step("inmemory-1", 1, True, 210), step("inmemory-1", 2, True, 200),
        step("inmemory-1", 4, False, 190),
        step("redis-1", 1, True, 300), step("redis-1", 2, False, 280),
        step("postgres-1", 1, False, 900),
    ]  # fmt: skip
    entries = [{"search": name} for name in ("inmemory-1", "redis-1", "postgres-1")]
    common = add_efficiency(entries, records, SearchSettings(Objective()))
    assert common == {"vary": "rate", "users": 100, "rooms": 10, "rate_per_user": 1,
                      "offered_deliveries_per_s": 1000}  # fmt: skip
    assert [e["server_cpu_us_per_delivery"] for e in entries] == [210, 300, None]
