"""``python -m load replay``: a capacity entry's shape measured again on a real InMemory
Daphne, judged with the entry's own objective; and the one-line refusals of a summary that
cannot be replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load.commands.capacity import SearchSettings, search_description
from load.core.plan import Shape, build_plan
from load.core.search import Objective
from load.reporting.record import Stack
from load.tests.helpers import run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]


def entry(*, p99_ms: float = 100.0, held: float | None = 64.0) -> dict:
    """A capacity entry as `capacity` writes it, of a tiny shape: 4 users in 2 rooms at
    2 msg/s each (16 deliveries/s offered), 1 s measured after 0.5 s of warm-up."""
    plan = build_plan("fanout", Shape(4, 2, 2.0), ["ws://127.0.0.1:1"], duration_s=1.0,
                      settle_s=0.5, drain_s=1.0)  # fmt: skip
    settings = SearchSettings(Objective(p99_ms=p99_ms))
    return {
        **search_description(Stack("inmemory", 1, "async", "daphne"), plan, settings),
        "users": 4, "rooms": 2, "rate_per_user": 2.0, "deliveries_per_s": held,
        "limited_by": "max",
    }  # fmt: skip


def test_each_entry_is_replayed_and_judged_with_its_own_objective(tmp_path: Path) -> None:
    # The same shape twice: within 100 ms it holds; within 0.001 ms nothing can.
    old = tmp_path / "old.json"
    recorded = {**entry(), "versions": {"django": "0.0"}}  # another Django when recorded
    old.write_text(json.dumps({"capacity": [recorded, entry(p99_ms=0.001)]}))
    out = tmp_path / "out"
    finished = run_load("replay", str(old), "--out", str(out), timeout=120)
    assert finished.returncode == 3, finished.stderr  # one entry no longer holds
    summary = finished.summary(out)
    held, broke = summary["replay"]
    assert (held["entry"], held["held"], held["broken"], held["runs_held"]) == (
        "inmemory", True, [], 1)  # fmt: skip
    assert (broke["entry"], broke["held"], broke["broken"]) == ("inmemory-2", False, ["latency"])
    assert broke["slo"]["p99_ms"] == 0.001
    assert held["versions_changed"] == {"django": ["0.0", summary["harness"]["packages"]["django"]]}
    assert broke["versions_changed"] == {}  # none recorded, none compared
    first, second = summary["runs"]
    assert (first["replay_of"], second["replay_of"]) == ("inmemory", "inmemory-2")
    for run in summary["runs"]:
        # The recorded shape and timing, on the recorded stack.
        assert (run["users"], run["rooms"], run["rate_per_user"]) == (4, 2, 2.0)
        assert (run["duration_s"], run["settle_s"], run["drain_s"]) == (1.0, 0.5, 1.0)
        assert (run["layer"], run["asgi"], run["scenario"]) == ("inmemory", "daphne", "fanout")
        assert run["sent"] > 0 and run["lost"] == 0
    assert "inmemory: holds:" in finished.stdout and "versions changed: django 0.0 -> " in (
        finished.stdout
    )
    assert "inmemory-2: DOES NOT HOLD (latency)" in finished.stdout
    assert (out / "report.html").exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the capacity summary"),
        ("[]", "has no capacity entries"),
        (json.dumps({"capacity": [{"layer": "inmemory", "deliveries_per_s": 1}]}),
         "re-record it"),
        (json.dumps({"capacity": [entry(held=None)]}), "nothing to replay"),
        (json.dumps({"capacity": [{**entry(), "layer": "carrier-pigeon"}]}),
         "layer 'carrier-pigeon' is not one of"),
    ],
)  # fmt: skip
def test_a_summary_that_cannot_be_replayed_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, says: str
) -> None:
    old = tmp_path / "old.json"
    if content is not None:
        old.write_text(content)
    finished = run_load("replay", str(old), "--out", str(tmp_path / "out"), timeout=60)
    assert finished.returncode == 2, finished.stderr
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("python -m load replay: error: ") and says in line
    assert not (tmp_path / "out").exists()
