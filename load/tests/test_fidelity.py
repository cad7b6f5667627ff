"""Fidelity: the harness's latency agrees with an independent client in the same minute.

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

import pytest

from load.tests.helpers import ROOT

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

DURATION_S = 10
# The harness warms up for users/spawn rate + 1 s after Locust starts (about 1.5 s);
# the probe starts sending about then too, so both measure the same seconds.
PROBE_WARMUP_S = 3.5


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
    (run,) = json.loads((out / "summary.json").read_text())["runs"]
    independent = json.loads(probe.stdout)
    assert run["lost"] == 0 and run["errors"] == 0 and run["leaked"] == 0
    assert independent["delivered"] == independent["expected"]
    ours, theirs = run["latency_ms"]["p50"], independent["latency_ms"]["p50"]
    print(f"harness p50 {ours} ms, probe p50 {theirs} ms")  # shown with -rA, for the record
    report = f"harness p50 {ours} ms, probe p50 {theirs} ms\n{harness_stdout}"
    assert abs(ours - theirs) <= 2.0 or 1 / 1.5 <= ours / theirs <= 1.5, report
