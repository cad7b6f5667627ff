"""The README's picture (load/reporting/picture.py): every stack of a capacity summary, its
figure as written, one bar per ASGI server; a file that is not a capacity summary exits 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from load.reporting.picture import capacity_picture
from load.tests.helpers import ROOT


def entry(
    layer: str, asgi: str, capacity: float | None, servers: int = 1, search: str = ""
) -> dict:
    return {"layer": layer, "asgi": asgi, "servers": servers, "deliveries_per_s": capacity,
            "search": search or f"{layer}-{asgi}-{servers}"}  # fmt: skip


def test_every_stack_and_its_figure_is_drawn() -> None:
    summary = {
        "capacity": [
            entry("inmemory", "daphne", 4017.0),
            entry("inmemory", "uvicorn", 5660.0),
            entry("redis", "daphne", 2893.0),
            entry("redis", "daphne", 4013.0, servers=2),
            entry("postgres", "uvicorn", None),
        ]
    }
    svg = capacity_picture(summary, "Capacity")
    assert svg.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in svg
    texts = re.findall(r">([^<>]+)</text>", svg)
    for label in ("inmemory", "redis", "redis x2", "postgres", "daphne", "uvicorn"):
        assert label in texts
    bar_labels = [text for text in texts if text.endswith(" /s") or text == "-"]
    # Bars go series by series (daphne, then uvicorn), each over the stacks in order.
    assert bar_labels == ["4,017 /s", "2,893 /s", "4,013 /s", "-", "5,660 /s", "-", "-", "-"]


def test_a_search_with_a_busy_step_is_left_out() -> None:
    summary = {
        "harness": {"cpus": 2},
        "capacity_repeats": [
            entry("redis", "daphne", 900.0, search="redis-1"),
            entry("redis", "daphne", 2010.0, search="redis-2"),
            entry("redis", "daphne", 2200.0, search="redis-3"),
        ],
        "runs": [
            # 30 % of 2 CPUs stolen: 0.6 of a core taken from redis-1's step.
            {"search": "redis-1", "other_cpu_cores": 0.0, "steal_share": 0.3},
            {"search": "redis-2", "other_cpu_cores": 0.02, "steal_share": 0.0},
            {"search": "redis-3", "other_cpu_cores": 0.01, "steal_share": 0.01},
        ],
    }
    texts = re.findall(r">([^<>]+)</text>", capacity_picture(summary, "Capacity"))
    assert "2,105 /s" in texts  # the median of 2,010 and 2,200; 900 left out


def test_a_summary_without_capacities_exits_2_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "summary.json"
    source.write_text(json.dumps({"runs": []}))
    done = subprocess.run(
        [sys.executable, "-m", "load.reporting.picture", str(source), str(tmp_path / "x.svg")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "has no capacity entries" in line
    assert not (tmp_path / "x.svg").exists()
