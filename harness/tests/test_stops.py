"""A plain ``kill`` stops everything: ``python -m load bench|capacity|run`` and pytest itself,
each started as a user starts it and sent SIGTERM (or SIGHUP) while its servers run, leave
no process and no temporary directory behind, and exit with the status docs/interfaces.md
gives.

Each command runs in a session of its own with TMPDIR pointed at a directory of the test,
so that "no temporary directory left" is an empty directory, and the signal goes to the
command alone, as ``kill PID``, ``timeout`` or a supervisor sends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from harness import (
    APP_DIR,
    ROOT,
    MissingExecutable,
    find_executable,
    last_line,
    launch,
    stop_process,
)
from harness.live import missing_dependency

pytestmark = pytest.mark.load

# Starting a backend, a chat server and Locust on a busy 2-core machine takes seconds;
# stopping them is bounded by stop_process's own limits (5 s, then SIGKILL).
STARTED_WITHIN_S = 90.0
STOPPED_WITHIN_S = 60.0
GONE_WITHIN_S = 10.0
POLL_S = 0.1


class Terminable:
    """A command in a session of its own, whose descendants are followed so that the test
    can say which of them outlived it (and kill those, so that a failing test leaves
    nothing behind either)."""

    def __init__(
        self, command: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path, scratch: Path
    ) -> None:
        self.log = log
        self.scratch = scratch  # the command's TMPDIR
        self.process = launch(
            list(command), log_path=log, cwd=cwd, env={**env, "TMPDIR": str(scratch)}
        )
        self.descendants: list[psutil.Process] = []

    def wait_for(self, *wanted: str) -> None:
        """Return once, for each of ``wanted``, a descendant runs whose command line holds
        it (a server or Locust is up); the descendants seen then are remembered."""
        parent = psutil.Process(self.process.pid)
        deadline = time.monotonic() + STARTED_WITHIN_S
        seen: list[str] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"exited with {self.process.returncode} before {wanted} ran: "
                    f"{last_line(self.log)}"
                )
            self._follow(parent.children(recursive=True))
            seen = [" ".join(_cmdline(child)) for child in self.descendants]
            if all(any(name in line for line in seen) for name in wanted):
                return
            time.sleep(POLL_S)  # polling the process table; the deadline bounds it
        pytest.fail(f"{wanted} not all running within {STARTED_WITHIN_S:.0f} s; saw {seen}")

    def _follow(self, children: list[psutil.Process]) -> None:
        known = {child.pid for child in self.descendants}
        self.descendants += [child for child in children if child.pid not in known]

    def signal_and_wait(self, signum: int) -> int:
        """Send ``signum``; the exit status once the command has ended."""
        # Its temporary directories are there now, so that "none left" means something.
        assert list(self.scratch.iterdir()), f"nothing in TMPDIR {self.scratch}"
        self._follow(psutil.Process(self.process.pid).children(recursive=True))
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOPPED_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOPPED_WITHIN_S:.0f} s after the signal")

    def assert_stopped_cleanly(self, status: int, expected_status: int) -> None:
        """The exit status expected, no traceback, no descendant alive, TMPDIR empty."""
        text = self.log.read_text(errors="replace")
        assert status == expected_status, text[-2000:]
        assert "Traceback" not in text, text[-2000:]
        assert self.left_running() == []
        assert sorted(path.name for path in self.scratch.iterdir()) == []

    def left_running(self) -> list[str]:
        """The descendants still alive a moment after the command ended (a zombie is dead,
        only not yet reaped by whoever inherited it)."""
        _gone, alive = psutil.wait_procs(self.descendants, timeout=GONE_WITHIN_S)
        return [
            f"{process.pid} {' '.join(_cmdline(process))[:120]}"
            for process in alive
            if _status(process) not in (None, psutil.STATUS_ZOMBIE)
        ]

    def kill_everything(self) -> None:
        stop_process(self.process)
        for process in self.descendants:
            with contextlib.suppress(psutil.Error):
                process.kill()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _status(process: psutil.Process) -> str | None:
    try:
        return process.status()
    except psutil.Error:
        return None


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The TMPDIR of the command under test: empty afterwards, or something was left."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
def start(tmp_path: Path, scratch: Path) -> Iterator:
    """``start(command, env=...)`` -> a Terminable, killed with all it started at teardown."""
    started: list[Terminable] = []

    def run(command: Sequence[str], *, cwd: Path = ROOT, env: dict[str, str]) -> Terminable:
        log = tmp_path / f"command-{len(started)}.log"
        started.append(Terminable(command, cwd=cwd, env=env, log=log, scratch=scratch))
        return started[-1]

    yield run
    for command in started:
        command.kill_everything()


def environment_without_urls() -> dict[str, str]:
    """This environment less the URL variables, so every backend is a throw-away one."""
    urls = ("REDIS_URL", "POSTGRES_URL", "RABBITMQ_URL", "NATS_URL", "VALKEY_URL", "CI")
    return {name: value for name, value in os.environ.items() if name not in urls}


def need(executable: str) -> None:
    try:
        find_executable(executable)
    except MissingExecutable as error:
        missing_dependency(str(error))


@pytest.mark.redis
def test_sigterm_of_bench_stops_redis_daphne_and_locust(start, scratch, tmp_path):
    need("redis-server")
    bench = start(
        [sys.executable, "-m", "load", "bench", "--layers", "redis", "--users", "4",
         "--rooms", "2", "--duration", "30", "--out", str(tmp_path / "out")],
        env=environment_without_urls(),
    )  # fmt: skip
    bench.wait_for("redis-server", "daphne", "locust")
    status = bench.signal_and_wait(signal.SIGTERM)
    bench.assert_stopped_cleanly(status, 128 + signal.SIGTERM)
    assert last_line(bench.log) == "python -m load bench: interrupted by SIGTERM"


@pytest.mark.nats
def test_sigterm_of_capacity_stops_the_broker_daphne_and_locust(start, scratch, tmp_path):
    need("nats-server")
    capacity = start(
        [sys.executable, "-m", "load", "capacity", "--layers", "nats", "--users", "4",
         "--rooms", "2", "--duration", "30", "--out", str(tmp_path / "out")],
        env=environment_without_urls(),
    )  # fmt: skip
    capacity.wait_for("nats-server", "daphne", "locust")
    status = capacity.signal_and_wait(signal.SIGTERM)
    capacity.assert_stopped_cleanly(status, 128 + signal.SIGTERM)


def test_sighup_of_run_stops_locust_and_removes_its_scratch(start, scratch, tmp_path, live_chat):
    (server,) = live_chat("inmemory")
    run = start(
        [sys.executable, "-m", "load", "run", "--target", server.ws_url, "--users", "2",
         "--rooms", "1", "--duration", "30", "--out", str(tmp_path / "out")],
        env=environment_without_urls(),
    )  # fmt: skip
    run.wait_for("locust")
    assert [path.name[:9] for path in scratch.iterdir()] == ["chatload-"]
    status = run.signal_and_wait(signal.SIGHUP)
    run.assert_stopped_cleanly(status, 128 + signal.SIGHUP)
    assert not (tmp_path / "out").exists()  # no result, so nothing misleading


# An inner pytest session holding the session's Redis and a chat server on it until the
# outer test terminates it.
HOLDS_SERVERS = """
import threading

def test_holds_servers(live_chat):
    live_chat("redis")
    threading.Event().wait(timeout=120)  # ended by the outer test's SIGTERM
"""


@pytest.mark.redis
def test_sigterm_of_pytest_tears_down_the_session_servers(start, scratch, tmp_path):
    need("redis-server")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_holds.py").write_text(HOLDS_SERVERS)
    env = {
        **environment_without_urls(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(APP_DIR)]),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
    }
    pytest_run = start(
        [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "-p", "no:cacheprovider",
         "-p", "no:locust", "--basetemp", str(tmp_path / "basetemp"), "-q", "test_holds.py"],
        cwd=inner,
        env=env,
    )  # fmt: skip
    pytest_run.wait_for("redis-server", "daphne")
    status = pytest_run.signal_and_wait(signal.SIGTERM)
    # Pytest's own status for an interrupted session; its report names the signal.
    pytest_run.assert_stopped_cleanly(status, pytest.ExitCode.INTERRUPTED)
    assert "Terminated: SIGTERM" in pytest_run.log.read_text()
