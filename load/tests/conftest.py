"""Helpers for the load tests: run ``python -m load`` as a subprocess (Locust patches
the standard library with gevent at import, so it never runs inside pytest)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from live import missing_dependency

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def summary(self, out: Path) -> dict[str, Any]:
        return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="session")
def load_dependencies() -> None:
    """Locust and websockets must be installed (CI fails without them)."""
    for module, package in (("locust", "locust"), ("websockets", "websockets")):
        if importlib.util.find_spec(module) is None:
            missing_dependency(f"{package} is not installed: pip install -e '.[test]'")


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
