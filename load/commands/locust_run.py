"""Run one plan with headless Locust in a subprocess and read back the merged tally.

Locust runs in a subprocess because it monkey-patches the standard library with gevent at
import, which must not happen in this process (nor in pytest).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from harness import kill_process_group, launch
from load.commands.remote import RemoteWorkers
from load.core.plan import Plan
from load.core.scenarios import CLOSE_TIMEOUT_S
from load.core.stats import Tally

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"
ROOT = Path(__file__).resolve().parents[2]
# Locust's own --run-time stops it this long after the plan should have ended; normally it
# ends as soon as every process has reported.
LOCUST_SLACK_S = 20.0
# The subprocess is killed this long after the plan should have ended.
KILL_AFTER_S = 120.0


class LocustError(Exception):
    """Locust ended without a result; the text is one line naming its log."""


def locust_command(
    plan: Plan,
    run_dir: Path,
    results_file: Path,
    remote: RemoteWorkers | None = None,
    progress_file: Path | None = None,
) -> list[str]:
    run_time_s = int(plan.total_s + CLOSE_TIMEOUT_S + LOCUST_SLACK_S)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        *plan.locust_args(),
        "--run-time", f"{run_time_s}s", "--stop-timeout", "0", "--exit-code-on-error", "0",
        "--only-summary", "--results-file", str(results_file),
        "--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html"),
    ]  # fmt: skip
    if remote is not None:
        command += remote.master_args()
    elif plan.processes > 1:
        command += ["--processes", str(plan.processes)]
    if progress_file is not None:
        command += ["--progress-file", str(progress_file)]
    return command


def results_path(run_dir: Path) -> Path:
    """Where the Locust master writes the merged tally of a run in ``run_dir``."""
    return run_dir / "chatload-result.json"


def run_locust(
    plan: Plan,
    run_dir: Path,
    *,
    remote: RemoteWorkers | None = None,
    progress: Callable[[Path], AbstractContextManager[Any]] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Tally:
    """Run ``plan``; Locust's CSV, HTML and log go to ``run_dir``. Returns the tally merged
    from every load process; the workers' clocks (remote workers only) go to
    ``run_dir/clocks.json`` (see ``read_clocks``). ``progress`` watches the master's
    progress file while Locust runs; ``on_start(pid)`` is told the master's process id as
    soon as it runs (its local workers are its children)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = results_path(run_dir)
    results_file.unlink(missing_ok=True)
    progress_file = run_dir / "progress.jsonl"
    progress_file.unlink(missing_ok=True)
    log_path = run_dir / "locust.log"
    limit_s = plan.total_s + KILL_AFTER_S + (remote.wait_s if remote else 0.0)
    command = locust_command(plan, run_dir, results_file, remote, progress_file)
    watching = progress(progress_file) if progress else contextlib.nullcontext()
    with watching:
        # In a session of its own, so that however this ends (a result, the time limit,
        # Ctrl-C, SIGTERM) the whole group goes: the master and any --processes workers.
        locust = launch(command, log_path=log_path, cwd=ROOT, fresh_log=True)
        try:
            if on_start is not None:
                on_start(locust.pid)
            returncode = locust.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            raise LocustError(
                f"Locust did not finish within {limit_s:.0f} s (log: {log_path})"
            ) from None
        finally:
            kill_process_group(locust)
            locust.wait()
    if not results_file.exists():
        raise LocustError(
            f"Locust exited with code {returncode} without a result (log: {log_path})"
        )
    result = json.loads(results_file.read_text())
    results_file.unlink()
    (run_dir / "clocks.json").write_text(json.dumps(result.get("clocks")))
    return Tally.from_dict(result["tally"])


def read_clocks(run_dir: Path) -> dict[str, Any] | None:
    """The remote workers' clock report of the last run in ``run_dir`` (None: no remote
    workers)."""
    path = run_dir / "clocks.json"
    return json.loads(path.read_text()) if path.exists() else None
