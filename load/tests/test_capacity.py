"""A real, short capacity search on InMemory: every step is reported, the capacity entry has
the contract's shape and names a replayable load, and the baseline gate fails the command
when the capacity fell; the gate compares like with like and refuses what it cannot
compare. (Pure parts of the search: test_search.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load.commands.capacity import (
    REPLAY_FIELDS,
    SearchSettings,
    add_efficiency,
    read_baseline,
    regressions,
    search_description,
    unmatched_baseline,
)
from load.core.plan import Shape, build_plan
from load.core.search import ALL_PASSED, LIMITS, STEP_LIMIT, Objective
from load.reporting.record import Stack
from load.tests.helpers import run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

CAPACITY_KEYS = (
    "layer", "servers", "consumer", "asgi", "slo", "users", "rooms", "rate_per_user",
    "deliveries_per_s", "messages_per_s", "limited_by", "past_capacity",
    "server_cpu_us_per_delivery", *REPLAY_FIELDS, "versions",
)  # fmt: skip


def described(layer: str = "inmemory", servers: int = 1, *, vary: str = "rate",
              scenario: str = "fanout", users: int = 20, rooms: int = 4, rate: float = 4.0,
              message_bytes: int = 0, layer_config: str | None = None,
              **entry: object) -> dict:  # fmt: skip
    """A capacity entry as `capacity` writes it for that search (its description), plus
    ``entry``: the same search as the short one below unless told otherwise."""
    plan = build_plan(scenario, Shape(users, rooms, rate), ["ws://127.0.0.1:1"], duration_s=1.5,
                      settle_s=0.5, drain_s=1.0, message_bytes=message_bytes)  # fmt: skip
    stack = Stack(layer, servers, "async", "daphne", layer_config)
    return {**search_description(stack, plan, SearchSettings(Objective(), vary=vary)), **entry}


def test_a_short_search_reports_every_step_and_fails_a_fallen_capacity(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"capacity": [described(deliveries_per_s=1e9)]}))
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
    assert entry["limited_by"] in (*LIMITS, ALL_PASSED, STEP_LIMIT)
    assert entry["slo"] == {"p99_ms": 100.0, "loss": 0, "errors": 0}
    # What a replay needs, as the search was asked.
    assert {key: entry[key] for key in REPLAY_FIELDS} == {
        key: value for key, value in described().items() if key in REPLAY_FIELDS
    }
    assert entry["versions"] == summary["harness"]["packages"]
    steps = summary["runs"]
    assert [run["step"] for run in steps] == list(range(1, len(steps) + 1))
    for run in steps:
        assert run["passed"] == (not run["broke"])
        assert run["timeline"] and run["settle_s"] == 0.5 and run["duration_s"] == 1.5
    # 400 deliveries/s to start with, and down from there if that fails: one InMemory
    # Daphne holds some step. The capacity is a step that passed, stated as a shape any
    # client can replay.
    assert entry["deliveries_per_s"] is not None, f"no step held: {entry['past_capacity']}"
    held = [run for run in steps if run["passed"] and run["rate_per_user"]
            == entry["rate_per_user"]]  # fmt: skip
    assert held and (entry["users"], entry["rooms"]) == (20, 4)
    assert entry["deliveries_per_s"] == held[-1]["delivered_per_s"]
    assert held[-1]["latency_ms"]["p99"] <= 100 and held[-1]["lost"] == 0
    if entry["limited_by"] == ALL_PASSED:
        assert entry["rate_per_user"] == 16 and entry["past_capacity"] is None
    elif entry["limited_by"] != STEP_LIMIT:  # cut short: the lowest failure need not be first
        assert entry["past_capacity"]["broke"][0] == entry["limited_by"]
    report = (out / "report.html").read_text()
    assert report.count("<svg") >= 3 + len(steps)  # the curves, and each step's timeline
    assert "<script" not in report


def test_the_socket_search_raises_open_sockets_and_says_what_one_costs(tmp_path: Path) -> None:
    """`--scenario idle --vary users`: rooms of 10 idle sockets, doubled each step; two steps
    (20 then 40 sockets) hold on any machine, so the search ends at the top (``max``), with
    the sockets held, the handshake p99 and the memory per socket on both sides."""
    out = tmp_path / "out"
    finished = run_load(
        "capacity", "--layers", "inmemory", "--scenario", "idle", "--vary", "users",
        "--users", "20", "--rooms", "2", "--ramp-steps", "2", "--settle", "0",
        "--duration", "1", "--drain", "0.5", "--out", str(out), timeout=240,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    (entry,) = finished.summary(out)["capacity"]
    assert entry["slo"] == {"p99_ms": 100.0, "loss": 0, "errors": 0, "connect_p99_ms": 1000.0}
    assert entry["limited_by"] == ALL_PASSED, entry["past_capacity"]
    assert (entry["sockets"], entry["users"], entry["rooms"]) == (40, 40, 4)
    assert 0 < entry["connect_ms"]["p99"] <= 1000
    assert entry["server_kb_per_socket"] is not None and entry["client_kb_per_socket"] > 0
    assert "40 open sockets (handshake p99" in finished.stdout


def test_the_gate_compares_each_stack_with_its_own_baseline() -> None:
    def entry(layer: str, servers: int, capacity: float | None) -> dict:
        return described(layer, servers, deliveries_per_s=capacity)

    baseline = [entry("redis", 1, 3000), entry("redis", 2, 5000), entry("inmemory", 1, 3000)]
    current = [entry("redis", 1, 2500), entry("redis", 2, 3900), entry("redis-pubsub", 1, 4000),
               entry("inmemory", 1, None)]  # fmt: skip
    problems, notes = regressions(current, baseline, max_drop=0.2)
    assert problems == [
        "redis-x2: capacity 3,900 deliveries/s against the baseline's 5,000 (-22%)",
        "inmemory: capacity 0 deliveries/s against the baseline's 3,000 (-100%)",
    ]
    assert "redis: capacity 2,500 deliveries/s against the baseline's 3,000 (-17%)" in notes
    assert "redis-pubsub: no baseline (no baseline entry is like this search)" in notes


@pytest.mark.parametrize(
    "differs",
    [
        {"scenario": "isolation"},
        {"message_bytes": 1024},
        {"layer_config": '{"capacity": 1000}'},
        {"users": 40},  # another room shape at the same rate
        {"vary": "users"},
        {"servers": 2},
    ],
)
def test_the_gate_compares_like_with_like(differs: dict) -> None:
    """Capacities of another scenario, message size, layer config, room shape, varied
    quantity or server count are not compared: "no baseline"."""
    baseline = [described("redis", deliveries_per_s=3000)]
    problems, notes = regressions([described("redis", **differs, deliveries_per_s=1)],
                                  baseline, max_drop=0.2)  # fmt: skip
    assert problems == [] and len(notes) == 1 and "no baseline (" in notes[0]


@pytest.mark.parametrize("differs", [{"rooms": 2}, {"rate": 1.0}])
def test_varying_users_compares_the_room_size_and_the_rate(differs: dict) -> None:
    baseline = [described(vary="users", users=20, rooms=4, deliveries_per_s=3000)]
    current = described(vary="users", **{"users": 20, "rooms": 4, **differs})
    # A refusal here is a str; the test fails either way if it is None.
    assert unmatched_baseline(baseline, [current]).count("room shape rooms of") == 1  # type: ignore[union-attr]


def test_like_ignores_what_does_not_change_the_search() -> None:
    # The layer config's spacing and key order; when users are varied, the number of rooms
    # the search started with (the room size and the rate are what it keeps).
    spaced = described("redis", layer_config='{"capacity": 1000, "expiry": 60}')
    packed = described("redis", layer_config='{"expiry":60,"capacity":1000}')
    assert unmatched_baseline([spaced], [packed]) is None
    assert unmatched_baseline([described(vary="users", users=20, rooms=4)],
                              [described(vary="users", users=50, rooms=10)]) is None  # fmt: skip


def test_a_baseline_like_no_search_of_the_run_is_refused_saying_what_differs() -> None:
    baseline = [described("redis", scenario="isolation", message_bytes=1024)]
    reason = unmatched_baseline(baseline, [described("redis"), described("inmemory")])
    assert reason is not None
    assert reason.startswith("no baseline entry is like any search of this run (")
    assert "scenario isolation in the baseline, fanout here" in reason
    assert "message_bytes 1024 in the baseline, 0 here" in reason
    assert "inmemory" not in reason  # the closest search, redis, has the same layer
    assert "\n" not in reason


def test_a_baseline_from_before_the_replay_fields_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"capacity": [{"layer": "redis", "servers": 1,
                   "consumer": "async", "asgi": "daphne", "deliveries_per_s": 3000}]}))  # fmt: skip
    with pytest.raises(ValueError, match="was written before capacity entries carried") as info:
        read_baseline(old)
    assert "re-record it" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("baseline", "says"),
    [
        ("missing.json", "cannot read the baseline"),
        ("notjson.json", "is not JSON"),
        ("old.json", "re-record it"),
        ("unlike.json", "no baseline entry is like any search of this run (scenario churn"),
    ],
)
def test_a_bad_baseline_is_one_line_and_exit_2_before_any_search(
    tmp_path: Path, baseline: str, says: str
) -> None:
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "old.json").write_text(json.dumps({"capacity": [{"layer": "inmemory"}]}))
    (tmp_path / "unlike.json").write_text(
        json.dumps({"capacity": [described(scenario="churn", deliveries_per_s=1)]})
    )
    finished = run_load(
        "capacity", "--layers", "inmemory", "--users", "20", "--rooms", "4", "--rate", "4",
        "--settle", "0.5", "--duration", "1.5", "--drain", "1",
        "--baseline", str(tmp_path / baseline), "--out", str(tmp_path / "out"), timeout=60,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr
    (line,) = finished.stderr.strip().splitlines()
    assert says in line and "Traceback" not in finished.stderr
    assert not (tmp_path / "out").exists()  # refused before any search


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


def test_a_malformed_baseline_entry_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"capacity": [described(layer_config="{not json")]}))
    with pytest.raises(ValueError, match="capacity entry 1 is malformed") as info:
        read_baseline(bad)
    assert "\n" not in str(info.value)
