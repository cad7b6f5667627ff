"""Run one cell: a fresh virtualenv holding exactly its versions, then the compat-marked tests.

The installer is uv (its global cache makes a warm install take about two seconds); the tests
run from the checkout with the cell's interpreter, so Daphne, Locust and Selenium all come
from the cell. Every step has a time limit, and nothing is retried: a cell's first outcome is
its result.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compat import RESULTS_DIR_VARIABLE
from compat.matrix import PACKAGES, Cell, project_requirements, pytest_args_for
from harness import launch, stop_process
from load.core.summaries import read_capacity_summary

ROOT = Path(__file__).resolve().parent.parent

# The compat-marked tests on both Redis layers (the layer fixture's ids are the layer names).
DEFAULT_PYTEST_ARGS = ("-m", "compat", "-k", "not inmemory")

# compat/pytest_plugin.py copies the load summaries of the cell's tests below this directory.
PYTEST_PLUGIN = "compat.pytest_plugin"

INSTALL_TIMEOUT_S = 600.0

# `--capacity`: a short InMemory capacity search per cell, in the cell's virtualenv. The
# search's defaults (100 users in 10 rooms from 1 msg/s, doubling, then narrowing; steps of
# 2 s warm-up and 3 s measured) take about a minute; five ramp steps reach 16 times the
# start, past what one InMemory Daphne holds on two cores.
DEFAULT_CAPACITY_ARGS = ("--layers", "inmemory", "--ramp-steps", "5")
CAPACITY_TIMEOUT_S = 600.0
# What a cell's pytest gets, after SIGTERM at its time limit, to stop its own servers.
STOP_GRACE_S = 15.0
# Longest one reason line may be in the table (the logs keep the rest).
REASON_CHARS = 240


@dataclass
class CellResult:
    """What one cell did. ``outcome`` is passed, failed, install-failed or timed-out."""

    cell: str
    series: dict[str, str]
    requirements: list[str]
    outcome: str
    redis_url: str = ""
    reason: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    installed: dict[str, str] = field(default_factory=dict)
    tests: dict[str, int] = field(default_factory=dict)
    delivery: list[dict[str, Any]] = field(default_factory=list)
    server_errors: list[tuple[str, int]] = field(default_factory=list)
    install_s: float = 0.0
    test_s: float = 0.0
    log_dir: str = ""
    # With --capacity: the cell's capacity entry (read_capacity), or {"error": reason}.
    capacity: dict[str, Any] | None = None
    capacity_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def redacted(url: str) -> str:
    """``url`` without its password, for the report (CI's Redis may need one)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """Collapse whitespace so a reason fits in one table cell; cut it at ``limit``."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def install_error_line(output: str) -> str:
    """The installer's reason in one line: uv's ``error:`` and ``cause:`` lines, joined."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    wanted = [
        re.sub(r"^(error|cause|hint):\s*", "", line)
        for line in lines
        if re.match(r"^(error|cause|hint|╰─▶|Because|And because)", line)
    ]
    return one_line(": ".join(wanted) if wanted else (lines[-1] if lines else "no output"))


def output_error_line(output: str) -> str:
    """The first error pytest printed when there is no junit report to read."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("E "):
            return one_line(line[1:])
    for line in lines:
        if re.search(r"\b\w*(Error|Exception)\b", line):
            return one_line(line)
    return one_line(lines[-1] if lines else "no output")


def read_junit(path: Path) -> tuple[dict[str, int], str | None, str | None]:
    """Counts, the first failure or error, and the first skip reason, from a junit XML file."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    # A test that fails and then errors in teardown is one test with two entries.
    not_passed = counts["failures"] + counts["errors"] + counts["skipped"]
    counts["passed"] = max(0, counts["tests"] - not_passed)
    first_failure = first_skip = None
    for case in root.iter("testcase"):
        test = case.get("name", "?")
        for child in case:
            message = child.get("message") or (child.text or "").strip() or child.tag
            first = message.splitlines()[0] if message.strip() else child.tag
            if child.tag in ("failure", "error") and first_failure is None:
                first_failure = one_line(f"{test}: {first}")
            elif child.tag == "skipped" and first_skip is None:
                first_skip = one_line(f"{test}: {first}")
    return counts, first_failure, first_skip


def read_delivery(results_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Each load run reported below ``results_dir`` (by compat/pytest_plugin.py, as
    ``<test name>/.../summary.json``), and one problem line per file that cannot be read.

    A run is named by its ``layer`` where the summary knows it (``python -m load bench``),
    else by its test's parameter id, ``redis`` in ``test_x[redis]`` (``python -m load run``
    cannot know the layer of the server it is pointed at).
    """
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    for summary_path in sorted(results_dir.rglob("summary.json")):
        test_name = summary_path.relative_to(results_dir).parts[0]
        parameters = re.search(r"\[(.+)\]$", test_name)
        try:
            for run in json.loads(summary_path.read_text())["runs"]:
                runs.append(
                    {
                        "label": run.get("layer") or (parameters[1] if parameters else test_name),
                        "delivery_ratio": float(run["delivery_ratio"]),
                        "users": run.get("users"),
                        "expected": run.get("expected"),
                        "delivered": run.get("delivered"),
                        "summary": str(summary_path.relative_to(results_dir)),
                    }
                )
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"unreadable load summary {summary_path}: {error!r}")
    return sorted(runs, key=lambda run: run["label"]), problems


def read_capacity(summary_path: Path) -> dict[str, Any]:
    """The first capacity entry of a ``python -m load capacity`` summary.json, reduced to
    what the matrix shows; raises ValueError with the reason it cannot."""
    entry = read_capacity_summary(summary_path, what="the cell's capacity summary")[0]
    keys = (
        "layer",
        "consumer",
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "limited_by",
        "users",
        "rooms",
        "rate_per_user",
    )
    capacity = {key: entry.get(key) for key in keys}
    if capacity["deliveries_per_s"] is None:
        # The first step already broke the objective: say what broke, not "0".
        past = entry.get("past_capacity") or {}
        capacity["error"] = one_line(
            f"not even the first step held ({entry.get('limited_by')}"
            + (f": {past['behaviour']}" if past.get("behaviour") else "")
            + ")"
        )
    return capacity


def run_capacity(
    *, venv_python: str, log_dir: Path, env: dict[str, str], args: tuple[str, ...]
) -> tuple[dict[str, Any], float]:
    """A capacity search with the cell's interpreter; (its reduced entry, seconds). A
    search that fails gives ``{"error": reason}``: the capacity is a measurement, so it
    never turns a cell red."""
    out = log_dir / "capacity"
    command = [venv_python, "-m", "load", "capacity", *args, "--out", str(out)]
    started = time.monotonic()
    code, output = _run_logged(
        command, log=log_dir / "capacity.log", timeout_s=CAPACITY_TIMEOUT_S, env=env
    )
    seconds = round(time.monotonic() - started, 1)
    if code is None:
        return {"error": f"capacity search did not finish within {CAPACITY_TIMEOUT_S:.0f} s"}, (
            seconds
        )
    if code != 0:
        return {"error": "capacity search failed: " + output_error_line(output)}, seconds
    try:
        return read_capacity(out / "summary.json"), seconds
    except ValueError as error:
        return {"error": str(error)}, seconds


def server_errors(basetemp: Path, top: int = 3) -> list[tuple[str, int]]:
    """The most frequent ERROR lines in the Daphne logs the tests left (harness/chat.py writes
    them as daphne-<port>.log under pytest's temporary directory), with their counts."""
    counts: collections.Counter[str] = collections.Counter()
    # pytest links <name>current to the newest <name>N: read each file once.
    logs = {path.resolve() for path in basetemp.rglob("daphne-*.log")}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = re.search(r"\bERROR\s+(.*)$", line)
            if match:
                counts[one_line(match[1], 160)] += 1
    return counts.most_common(top)


def _run_logged(
    command: list[str], *, log: Path, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """Run ``command`` with its output in ``log``; return (exit code or None on timeout, output).

    The command gets a process group of its own so that on timeout everything it started
    (Daphne, redis-server, Chromium) is stopped with it.
    """
    process = launch(command, log_path=log, cwd=ROOT, env=env, fresh_log=True)
    try:
        code: int | None = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    # SIGTERM lets the cell's pytest stop its servers; then the whole group goes.
    stop_process(process, timeout=STOP_GRACE_S)
    return code, log.read_text(errors="replace")


def _tested_versions(installed: dict[str, str]) -> dict[str, str]:
    return {package: installed.get(package.lower(), "") for package in PACKAGES}


def run_cell(
    cell: Cell,
    *,
    uv: str,
    python: str,
    redis_url: str,
    venv_root: Path,
    log_root: Path,
    pytest_args: tuple[str, ...] = DEFAULT_PYTEST_ARGS,
    test_timeout_s: float = 900.0,
    capacity_args: tuple[str, ...] | None = None,
) -> CellResult:
    """Install ``cell`` into a fresh virtualenv and run the tests against the Redis at
    ``redis_url``, then, given ``capacity_args``, a capacity search; never raises for a
    red cell."""
    log_dir = log_root / cell.name
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    venv = venv_root / cell.name
    result = CellResult(
        cell=cell.name,
        series=dict(cell.series),
        requirements=list(cell.requirements),
        outcome="failed",
        redis_url=redacted(redis_url),
        log_dir=os.path.relpath(log_dir, ROOT),
    )

    started = time.monotonic()
    code, output = _run_logged(
        [uv, "venv", "--clear", "--quiet", "--python", python, str(venv)],
        log=log_dir / "venv.log",
        timeout_s=120,
    )
    if code != 0:
        result.outcome, result.reason = "install-failed", install_error_line(output)
        return result
    venv_python = str(venv / "bin" / "python")
    # The project's own dependency ranges and test tools come from pyproject.toml, so a cell
    # also checks that pyproject admits the combination; the cell's pins narrow them.
    project: list[str] = ["-r", str(ROOT / "pyproject.toml"), "--extra", "test"]
    if cell.without:
        # pyproject.toml's ranges less the packages that exclude this cell's pins.
        requirements = log_dir / "requirements.txt"
        requirements.write_text(
            "\n".join(project_requirements(ROOT / "pyproject.toml", without=cell.without)) + "\n"
        )
        project = ["-r", str(requirements)]
    install = [
        uv,
        "pip",
        "install",
        "--color",
        "never",
        "--python",
        venv_python,
        *project,
        *cell.requirements,
    ]
    code, output = _run_logged(install, log=log_dir / "install.log", timeout_s=INSTALL_TIMEOUT_S)
    result.install_s = round(time.monotonic() - started, 1)
    if code != 0:
        result.outcome = "install-failed" if code is not None else "timed-out"
        result.reason = (
            install_error_line(output)
            if code is not None
            else f"install did not finish within {INSTALL_TIMEOUT_S:.0f} s"
        )
        return result
    freeze = subprocess.run(
        [uv, "pip", "freeze", "--python", venv_python],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (log_dir / "installed.txt").write_text(freeze)
    result.installed = dict(
        line.lower().split("==", 1) for line in freeze.splitlines() if "==" in line
    )
    result.versions = _tested_versions(result.installed)

    results_dir = log_dir / "reported"
    results_dir.mkdir()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        RESULTS_DIR_VARIABLE: str(results_dir),
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    junit = log_dir / "junit.xml"
    basetemp = log_dir / "pytest-tmp"
    command = [
        venv_python,
        "-m",
        "pytest",
        *pytest_args_for(cell, pytest_args),
        "-p",
        PYTEST_PLUGIN,
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        f"--basetemp={basetemp}",
    ]
    started = time.monotonic()
    code, output = _run_logged(
        command, log=log_dir / "pytest.log", timeout_s=test_timeout_s, env=env
    )
    result.test_s = round(time.monotonic() - started, 1)
    result.delivery, problems = read_delivery(results_dir)
    result.server_errors = server_errors(basetemp)
    if capacity_args is not None and code is not None:
        result.capacity, result.capacity_s = run_capacity(
            venv_python=venv_python, log_dir=log_dir, env=env, args=capacity_args
        )

    if code is None:
        result.outcome = "timed-out"
        result.reason = f"tests did not finish within {test_timeout_s:.0f} s; last output: " + (
            one_line(output.strip().splitlines()[-1] if output.strip() else "none", 120)
        )
        return result
    first_failure = first_skip = None
    if junit.exists():
        result.tests, first_failure, first_skip = read_junit(junit)
    if code == 5:
        result.reason = "no test was selected: " + one_line(" ".join(pytest_args))
    elif code != 0:
        failed = result.tests.get("failures", 0) + result.tests.get("errors", 0)
        prefix = f"{failed} of {result.tests.get('tests', 0)} failed; first: " if failed else ""
        result.reason = prefix + (first_failure or output_error_line(output))
    elif result.tests.get("skipped"):
        # A skipped smoke test checked nothing: the cell is not green.
        result.reason = f"{result.tests['skipped']} skipped; first: {first_skip}"
    elif problems:
        result.reason = one_line(problems[0])
    else:
        result.outcome = "passed"
    return result
