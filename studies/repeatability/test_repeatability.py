"""The repeatability benchmark's arithmetic and its bad-argument exits (no servers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studies.repeatability.repeatability import ROOT, report, spread

SCRIPT = ROOT / "studies" / "repeatability" / "repeatability.py"


def test_the_spread_is_the_largest_deviation_from_the_median() -> None:
    # The README's InMemory searches before this change: 4,743 is 18 % above 4,017.
    median, deviation = spread([4017, 3900, 4743])
    assert median == 4017
    assert deviation == pytest.approx((4743 - 4017) / 4017)
    assert spread([100.0, 100.0, 100.0]) == (100.0, 0.0)
    with pytest.raises(ValueError):
        spread([])


def entry(search: str, figure: float | None) -> dict:
    return {"search": search, "deliveries_per_s": figure, "limited_by": "latency",
            "steps": 2, "search_s": 20.0}  # fmt: skip


def step(search: str, rate: float, broke: list[str]) -> dict:
    return {"search": search, "rate_per_user": rate, "passed": not broke, "broke": broke,
            "varied": "rate", "rooms": 10}  # fmt: skip


def test_the_report_shows_each_search_its_steps_and_whether_it_is_within_ten_percent() -> None:
    summary = {
        "capacity_repeats": [entry("inmemory-1", 1000.0), entry("inmemory-2", 1050.0),
                             entry("inmemory-3", 1200.0)],
        "runs": [step("inmemory-1", 1.0, []), step("inmemory-1", 2.0, ["latency"])],
    }  # fmt: skip
    lines, complete = report(summary)
    assert complete
    assert lines[0].startswith("inmemory-1: 1,000 deliveries/s, limited by latency")
    assert lines[0].endswith("1 pass, 2 latency")
    assert lines[-1] == (
        "median 1,050 deliveries/s of 3 searches (1,000 / 1,050 / 1,200); "
        "spread ±14.3% (NOT within ±10 %)"
    )
    lines, complete = report({"capacity_repeats": [entry("a", 1000.0), entry("b", None)]})
    assert not complete and "b: held nothing" in lines[1]
    assert lines[-1].endswith("spread ±0.0% (within ±10 %)")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--searches", "0"], "must be at least 1"),
        (["--summary", "/nonexistent/summary.json"], "cannot read"),
        (["--summary", "EMPTY"], "has no capacity entries"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    empty = tmp_path / "summary.json"
    empty.write_text(json.dumps({"runs": []}))
    args = [str(empty) if arg == "EMPTY" else arg for arg in args]
    finished = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
    assert finished.returncode == 2
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("repeatability: error:") and says in line
