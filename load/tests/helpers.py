"""Helpers for the load tests: run ``python -m load`` as a subprocess (Locust patches the
standard library with gevent at import, so it never runs inside pytest)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def summary(self, out: Path) -> dict[str, Any]:
        """``out/summary.json``, every run record's accounting checked on the way."""
        return read_summary(out)


def read_summary(out: Path) -> dict[str, Any]:
    """``out/summary.json``, every run record's accounting checked on the way: the one
    way a test reads a summary."""
    summary = json.loads((out / "summary.json").read_text())
    for record in summary.get("runs", []):
        assert_accounting(record)
    return summary


def assert_accounting(record: dict[str, Any]) -> None:
    """Every expected delivery of a run record ended in exactly one of delivered, lost or
    unconfirmed, and the record says so itself."""
    counts = {k: record[k] for k in ("expected", "delivered", "lost", "unconfirmed")}
    assert counts["lost"] >= 0 and counts["unconfirmed"] >= 0, counts
    assert counts["expected"] == counts["delivered"] + counts["lost"] + counts["unconfirmed"], (
        counts
    )
    assert record["accounting_consistent"], counts


def run_load(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Finished:
    """``python -m load ARGS`` from the repository root (``env`` replaces the environment)."""
    finished = subprocess.run(
        [sys.executable, "-m", "load", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Finished(finished.returncode, finished.stdout, finished.stderr)
