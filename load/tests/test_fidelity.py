"""Fidelity: the harness's latency agrees with an independent client in the same minute,
and its live numbers agree with its final ones.

100 Locust users in 10 rooms at 1 msg/s on one InMemory Daphne, and, at the same time,
``load.probe`` (asyncio + websockets, its own room of 10 at 1 msg/s). Both measure the
same server under the same load, so their medians must agree: within 1.5x, or 2 ms.
This compares two measurements; it asserts nothing about how fast the server is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import ChatServer
from load.core.search import Objective
from load.tests.helpers import ROOT, read_summary, run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

DURATION_S = 10
# The harness warms up for users/spawn rate + 1 s after Locust starts (about 1.5 s);
# the probe starts sending about then too, so both measure the same seconds.
PROBE_WARMUP_S = 3.5
# "Past the capacity": twice the capacity one short search found. One search can come out
# well below the median of several (a run of this test found 2,907 deliveries/s where
# three searches found 3,900 to 4,743), so 1.5 times it can sit at the real limit, where
# a verdict is a coin flip (that run: harness p99 65 ms, the probe alone 165 ms).
PAST = 2.0


def test_harness_median_latency_matches_an_independent_client(live_chat, tmp_path: Path):
    (server,) = live_chat("inmemory")
    out = tmp_path / "harness"
    harness = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "load",
            "run",
            "--target",
            server.ws_url,
            "--users",
            "100",
            "--rooms",
            "10",
            "--rate",
            "1",
            "--duration",
            str(DURATION_S),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "load.probe",
            "--target",
            server.ws_url,
            "--users",
            "10",
            "--rate",
            "1",
            "--duration",
            str(DURATION_S),
            "--warmup",
            str(PROBE_WARMUP_S),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DURATION_S + 60,
        check=False,
    )
    harness_stdout, harness_stderr = harness.communicate(timeout=DURATION_S + 90)
    assert harness.returncode == 0, harness_stderr
    assert probe.returncode == 0, probe.stderr
    (run,) = read_summary(out)["runs"]
    independent = json.loads(probe.stdout)
    assert run["lost"] == 0 and run["errors"] == 0 and run["leaked"] == 0
    assert independent["delivered"] == independent["expected"]
    ours, theirs = run["latency_ms"]["p50"], independent["latency_ms"]["p50"]
    print(f"harness p50 {ours} ms, probe p50 {theirs} ms")  # shown with -rA, for the record
    report = f"harness p50 {ours} ms, probe p50 {theirs} ms\n{harness_stdout}"
    assert abs(ours - theirs) <= 2.0 or 1 / 1.5 <= ours / theirs <= 1.5, report


def probe_command(target: str, *, users: int, rooms: int, rate: float, warmup: float,
                  duration: float) -> list[str]:  # fmt: skip
    return [
        sys.executable, "-m", "load.probe", "--target", target, "--users", str(users),
        "--rooms", str(rooms), "--rate", f"{rate:.4f}", "--warmup", str(warmup),
        "--duration", str(duration), "--drain", "2",
    ]  # fmt: skip


def probe_holds(result: dict, objective: Objective) -> bool:
    p99 = result["latency_ms"]["p99"]
    return result["lost"] == 0 and p99 is not None and p99 <= objective.p99_ms


@pytest.mark.heavy
def test_at_the_capacity_and_past_it_an_independent_client_agrees(tmp_path: Path) -> None:
    """Fidelity at the limit. A short search finds InMemory's capacity; then, on a server
    of its own, the harness replays the capacity's shape while load.probe measures a small
    room of its own in the same seconds, and load.probe alone replays the shape.

    The capacity is the highest step that passed and the next one (at most 1.1 times it)
    failed, so at the capacity itself p99 sits at the objective by construction and a
    replay's verdict is a coin flip on a shared machine (in three runs the probe alone
    measured p99 31, 149 and 134 ms there): those figures are printed for the record, not
    asserted. Asserted: one search resolution below the capacity the independent client
    loses nothing; at twice the capacity (PAST) both clients replaying the shape see the
    objective broken, and the probe's own small room is slower than on the idle server."""
    objective = Objective()
    search = run_load("capacity", "--layers", "inmemory", "--out", str(tmp_path / "search"),
                      timeout=300)  # fmt: skip
    assert search.returncode == 0, search.stderr
    (entry,) = search.summary(tmp_path / "search")["capacity"]
    # A capacity limited by the load generator, or never reached, cannot be checked here.
    assert entry["limited_by"] in ("latency", "loss", "errors"), entry
    users, rooms, rate = entry["users"], entry["rooms"], entry["rate_per_user"]
    harness_runs: dict[float, dict[str, Any]]
    alongside: dict[float, dict[str, Any]]
    alone: dict[float, dict[str, Any]]
    harness_runs, alongside, alone = {}, {}, {}
    with ChatServer.start(log_dir=tmp_path / "server") as server:
        # The probe's small room on the idle server: what "its p99 rises" is measured from.
        quiet = json.loads(
            subprocess.run(
                probe_command(server.ws_url, users=10, rooms=1, rate=1, warmup=1, duration=3),
                cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
            ).stdout
        )  # fmt: skip
        for factor in (1.0, PAST):
            out = tmp_path / f"harness-{factor}"
            harness = subprocess.Popen(
                [sys.executable, "-m", "load", "run", "--target", server.ws_url,
                 "--users", str(users), "--rooms", str(rooms), "--rate", f"{rate * factor:.4f}",
                 "--settle", "2", "--duration", "4", "--out", str(out)],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            # Locust starts (~1.5 s) and connects (~1.5 s), then settles 2 s: the probe
            # sends over the harness's measured window.
            alongside[factor] = json.loads(
                subprocess.run(
                    probe_command(server.ws_url, users=10, rooms=1, rate=1, warmup=5,
                                  duration=4),
                    cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
                ).stdout
            )  # fmt: skip
            _, stderr = harness.communicate(timeout=90)
            assert harness.returncode == 0, stderr
            (harness_runs[factor],) = read_summary(out)["runs"]
        for factor in (0.8, 1.0, PAST):
            alone[factor] = json.loads(
                subprocess.run(
                    probe_command(server.ws_url, users=users, rooms=rooms, rate=rate * factor,
                                  warmup=2, duration=5),
                    cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
                ).stdout
            )  # fmt: skip

    def p99(result: dict) -> float:
        return result["latency_ms"]["p99"]

    figures: dict[str, Any] = {
        "capacity": (entry["deliveries_per_s"], users, rooms, rate),
        "harness p99": {f: p99(r) for f, r in harness_runs.items()},
        "probe alongside p99": {"idle": p99(quiet), **{f: p99(r) for f, r in alongside.items()}},
        "probe alone p99": {f: p99(r) for f, r in alone.items()},
        "probe alone lost": {f: r["lost"] for f, r in alone.items()},
    }
    print(figures)  # shown with -rA, for the record
    assert alone[0.8]["lost"] == 0, figures
    assert objective.broken(harness_runs[PAST]), figures
    assert not probe_holds(alone[PAST], objective), figures
    # Its own small room: slower than on the idle server. (Not necessarily slower than at
    # the capacity: past it InMemory drops what overflows the big rooms' channels, and the
    # small room's p99 follows the event loop, in one run 145 ms at 1x and 137 ms at 2x.)
    assert p99(alongside[PAST]) > 2 * p99(quiet), figures


# The live delivered/s against the final delivered_per_s. Both count the same first copies
# (the live figure by receipt second, the final one by send second), so over the whole
# window they differ only by deliveries in flight at its two edges (a few ms of latency in
# 1 s: under 1 %); per second, sending at random intervals (1/rate ± 50 %) makes 40 users'
# count vary by about 4.5 % (one standard deviation). 5 % on the mean of the seconds
# holds with room when all are seen; the bug this guards against read 0.6 of the figure.
LIVE_MEAN_TOLERANCE = 0.05
# Every single steady second: more than five of those standard deviations.
LIVE_SECOND_TOLERANCE = 0.25


def test_the_live_delivered_per_s_agrees_with_the_final_figure(live_chat, tmp_path: Path):
    """40 users in 10 rooms at 1 msg/s (160 deliveries/s) for 8 s: the delivered/s the
    master published each second (the progress file, which the terminal line and the web
    UI's tab show) over the measured seconds, against the summary's delivered_per_s."""
    (server,) = live_chat("inmemory")
    out = tmp_path / "run"
    duration_s = 8
    finished = run_load(
        "run", "--target", server.ws_url, "--users", "40", "--rooms", "10", "--rate", "1",
        "--duration", str(duration_s), "--out", str(out),
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    (run,) = finished.summary(out)["runs"]
    assert run["lost"] == 0 and run["errors"] == 0, run
    lines = (out / "locust" / "progress.jsonl").read_text().splitlines()
    # With no settle period, timeline seconds 0 .. duration - 1 are the measured window.
    live = {
        line["delivered_second"]: line["delivered_per_s"]
        for line in map(json.loads, lines)
        if 0 <= line["delivered_second"] < duration_s
    }
    final = run["delivered_per_s"]
    report = f"final {final}/s, live by second {live}"
    print(report)  # shown with -rA, for the record
    assert len(live) >= duration_s - 2, report
    mean = sum(live.values()) / len(live)
    assert abs(mean - final) <= LIVE_MEAN_TOLERANCE * final, report
    assert all(abs(v - final) <= LIVE_SECOND_TOLERANCE * final for v in live.values()), report
