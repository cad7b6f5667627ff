"""Remote workers on this machine, one with a wrong clock: ``python -m load run --workers
2`` and two ``python -m load worker`` processes, one under libfaketime 250 ms ahead. The
shifted run must report the offset, exact counts and the same latency distribution as the
run without it.

Rooms of 4 over 5 rooms: worker k takes users k, k+2, ..., so every room has two members
on each worker and half the deliveries cross from one clock to the other. With the
correction missing or applied twice, a quarter of the samples read 250 ms too long and a
quarter arrive "before" they were sent, while the other half, the median and every count
stay as they were: only the tails show it. So the test asserts on the whole distribution:
no negative latency (the minimum), and a p99 and a maximum that a 250 ms error would push
past. Those two bounds (half the shift, the shift) sit far above what this light load
shows (p99 about 15 ms), so a busy machine does not trip them. (The two runs' medians
are not compared: that is timing, 4.3 against 5.7 ms once on a busy machine, and a clock
error does not move the median anyway.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import free_port
from harness.live import missing_dependency
from load.tests.helpers import ROOT, read_summary

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

SHIFT_MS = 250.0
SHAPE = ["--users", "20", "--rooms", "5", "--rate", "4", "--duration", "4", "--drain", "2"]
RUN_TIMEOUT_S = 60


def faketime_command() -> list[str]:
    if shutil.which("faketime") is None:
        missing_dependency("faketime is not installed: sudo apt-get install faketime")
    # The offset form shifts the wall clock only; monotonic clocks stay real, so gevent's
    # timers and every duration are untouched.
    return ["faketime", "-f", f"+{SHIFT_MS / 1000:g}s"]


def run_with_workers(target: str, out: Path, *, shift_second: bool) -> dict:
    port = free_port("127.0.0.1")
    master = subprocess.Popen(
        [sys.executable, "-m", "load", "run", "--target", target, *SHAPE, "--out", str(out),
         "--workers", "2", "--master-bind", "127.0.0.1", "--master-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = [sys.executable, "-m", "load", "worker", "--master", f"127.0.0.1:{port}"]
    env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    logs = [(out.parent / f"{out.name}-worker{n}.log").open("w") for n in (0, 1)]
    workers: list[subprocess.Popen[Any]] = [  # bytes, beside the master's text
        subprocess.Popen(worker, cwd=ROOT, stdout=logs[0], stderr=subprocess.STDOUT),
        subprocess.Popen(
            (faketime_command() if shift_second else []) + worker,
            cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:
        stdout, stderr = master.communicate(timeout=RUN_TIMEOUT_S)
        assert master.returncode == 0, stderr + stdout
        for process in workers:  # the master tells them to quit when it ends
            process.wait(timeout=15)
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for log in logs:
            log.close()
    return read_summary(out)


def distribution(summary: dict) -> str:
    (run,) = summary["runs"]
    latency = run["latency_ms"]
    return (
        f"negative {run['negative_latencies']}, p50 {latency['p50']}, p99 {latency['p99']}, "
        f"max {latency['max']} ms; lost {run['lost']}, delivered {run['delivered']} of "
        f"{run['expected']}"
    )


def test_a_worker_250_ms_ahead_gives_the_same_numbers(live_chat, tmp_path: Path) -> None:
    faketime_command()
    (server,) = live_chat("inmemory")
    plain = run_with_workers(server.ws_url, tmp_path / "plain", shift_second=False)
    shifted = run_with_workers(server.ws_url, tmp_path / "shifted", shift_second=True)
    offsets = sorted(w["clock_offset_ms"] for w in shifted["harness"]["workers"])
    plain_offsets = [w["clock_offset_ms"] for w in plain["harness"]["workers"]]
    print(f"offsets (ms): plain {plain_offsets}, shifted {offsets}")
    print(f"plain:   {distribution(plain)}")
    print(f"shifted: {distribution(shifted)}")
    # The distribution first: a wrong correction shows in the tails, not in the counts.
    for summary in (plain, shifted):
        (run,) = summary["runs"]
        assert run["negative_latencies"] == 0, distribution(summary)
        assert run["latency_ms"]["p99"] < SHIFT_MS / 2, distribution(summary)
        assert run["latency_ms"]["max"] < SHIFT_MS, distribution(summary)
    for summary in (plain, shifted):
        (run,) = summary["runs"]
        assert run["errors"] == 0, run["errors_by_kind"]
        assert (run["lost"], run["duplicated"], run["leaked"]) == (0, 0, 0)
        assert run["delivered"] == run["expected"] == run["sent"] * 4  # rooms of 4
        assert run["ambiguous"] == 0
        assert run["client_processes"] == 2
        assert len(summary["harness"]["workers"]) == 2
    assert abs(offsets[0]) < 5
    assert abs(offsets[1] - SHIFT_MS) < 5
    for worker in shifted["harness"]["workers"]:
        assert worker["clock_warning"] is None
        assert worker["clock_uncertainty_ms"] < 5
        assert abs(worker["clock_drift_ms"]) < 5
    assert shifted["harness"]["latency_accuracy_ms"] < 5
