"""A capacity search beside a process burning a core is ``contended``, and says so in the
terminal and report.html; the same search without it is not. (The arithmetic on synthetic
samples: test_machine.py.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from load.core.search import BUSY_OTHER_CORES
from load.tests.helpers import Finished, run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

# One step (--ramp-steps 1) of a small shape: the quiet search measures it once, the busy
# one twice; each measurement is about 8 s with Locust's start.
SEARCH = ("capacity", "--layers", "inmemory", "--users", "10", "--rooms", "2", "--rate", "2",
          "--ramp-steps", "1", "--settle", "0.5", "--duration", "1.5", "--drain", "1")  # fmt: skip
# The burner stops by itself after this, should the test be killed before it ends it.
BURN_FOR_S = 120


@pytest.fixture
def cpu_burner() -> Iterator[subprocess.Popen]:
    """A process the test (not the harness) starts, keeping one core busy."""
    burner = subprocess.Popen(
        [sys.executable, "-c",
         f"import time\nend = time.monotonic() + {BURN_FOR_S}\nwhile time.monotonic() < end: pass"]
    )  # fmt: skip
    yield burner
    burner.kill()
    burner.wait(timeout=10)


def search(out: Path) -> tuple[Finished, dict]:
    finished = run_load(*SEARCH, "--out", str(out), timeout=120)
    assert finished.returncode == 0, finished.stderr
    return finished, finished.summary(out)


def test_a_search_beside_a_cpu_burner_is_contended(tmp_path: Path, cpu_burner) -> None:
    finished, summary = search(tmp_path / "out")
    assert cpu_burner.poll() is None, "the burner ended before the search did"
    (entry,) = summary["capacity"]
    (step,) = summary["runs"]
    assert entry["contended"] is True and entry["contended_steps"] == 1
    assert entry["contended_step_numbers"] == [1]
    # measured twice, busy both times: most of a core went to the burner
    assert step["contended"] is True
    assert step["busy_first_try"] > BUSY_OTHER_CORES and step["other_cpu_cores"] > BUSY_OTHER_CORES
    assert (tmp_path / "out" / "runs" / "inmemory" / "step-01-busy").is_dir()
    assert "BUSY MACHINE" in finished.stdout
    assert "this figure is from a busy machine" in (tmp_path / "out" / "report.html").read_text()


def test_the_same_search_on_a_quiet_machine_is_not_contended(tmp_path: Path) -> None:
    finished, summary = search(tmp_path / "out")
    (entry,) = summary["capacity"]
    (step,) = summary["runs"]
    assert entry["contended"] is False and entry["contended_steps"] == 0
    assert step["other_cpu_cores"] is not None and step["other_cpu_cores"] <= BUSY_OTHER_CORES
    assert step["busy_first_try"] is None and step["contended"] is False
    assert "BUSY MACHINE" not in finished.stdout
    machine = summary["harness"]["machine"]
    (run,) = machine["runs"]
    assert run["stack"] == "inmemory" and run["before"] > 0 and run["after"] > 0
    assert machine["speed_index"] > 0
