"""Local server processes, started and stopped within bounds: the parts every service shares.

Finding an executable (or saying which Debian package provides it), picking a free
loopback port, waiting for a process to answer with a deadline (and failing early when it
dies), stopping it and everything it started, reading its CPU time and memory, and turning
a SIGTERM or SIGHUP into the same clean stop as Ctrl-C.
harness/chat.py and harness/backends.py build the chat servers and the layers' servers on these.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import psutil

LOOPBACK = "127.0.0.1"

# Debian/Ubuntu package that provides each executable the tests and benchmark run.
DEBIAN_PACKAGES = {
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "postgres": "postgresql",
    "initdb": "postgresql",
    "pg_isready": "postgresql",
    "createdb": "postgresql",
    "rabbitmq-server": "rabbitmq-server",
    "epmd": "rabbitmq-server",  # erlang-base, which rabbitmq-server depends on
    "nats-server": "nats-server",
    "faketime": "faketime",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}


class ServiceError(RuntimeError):
    """A service could not be found, started or reached; the text is one line."""


class MissingExecutable(ServiceError):
    """A system executable is not installed; the text names the package to install.

    The fixtures turn this one into a skip (locally) or a failure (in CI); any other
    ServiceError is a failure everywhere, because the software is there and broke."""


def apt_hint(name: str) -> str:
    """The one-line message for a missing executable, with its apt-get line."""
    package = DEBIAN_PACKAGES.get(name, name)
    return f"{name} not found on PATH: install it with `sudo apt-get install {package}`"


def find_executable(name: str) -> str:
    """Path of a system executable, or MissingExecutable saying which package to install."""
    path = shutil.which(name)
    if path is None:
        raise MissingExecutable(apt_hint(name))
    return path


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the caller binds it soon after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    process: subprocess.Popen,
    what: str,
    log: Path,
) -> None:
    """Poll ``ready()`` until true; fail early if the process dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(
                f"{what} exited with code {process.returncode} while starting: "
                f"{last_line(log)} (log: {log})"
            )
        if ready():
            return
        time.sleep(delay)  # polling a port that is not open yet; the deadline bounds it
        delay = min(delay * 2, 0.2)
    raise ServiceError(
        f"{what} was not ready within {timeout:.0f} s; last log line: {last_line(log)} (log: {log})"
    )


def last_line(log: Path) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log"
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# Open files a process the harness starts may hold: a socket each, and the socket search
# (`capacity --scenario idle --vary users`) aims past 20,000 sockets on one server.
OPEN_FILES_WANTED = 262_144


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise this process's open-files limit (which the processes it starts inherit) to
    ``wanted`` where the system allows: the soft limit up to the hard one, and as root the
    hard one too, up to the kernel's fs.nr_open. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            ceiling = hard
        target = min(wanted, max(ceiling, hard))
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
            return target
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def launch(
    command: list[str],
    *,
    log_path: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    fresh_log: bool = False,
) -> subprocess.Popen:
    """Start a process with its output in ``log_path`` (appended to, or written afresh with
    ``fresh_log``), in a session of its own (so that ``stop_process`` and
    ``kill_process_group`` find everything it starts), as ``user`` if given, allowed as
    many open files as the system lets it have (``raise_open_files_limit``)."""
    raise_open_files_limit()
    with log_path.open("wb" if fresh_log else "ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **run_as(user),
        )


class RunAs(TypedDict, total=False):
    """The keyword arguments ``run_as`` gives subprocess.Popen and subprocess.run."""

    user: str
    group: int
    extra_groups: list[int]


def run_as(user: str | None) -> RunAs:
    """subprocess keyword arguments that run a command as ``user`` (root only), with that
    user's group and none of root's supplementary groups."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def stop_process(
    process: subprocess.Popen, *, stop_signal: int = signal.SIGTERM, timeout: float = 5.0
) -> None:
    """Ask a process started by ``launch`` to stop with ``stop_signal``; SIGKILL its whole
    process group after ``timeout``. Whatever of the group is left once the main process
    has gone (a server's helper processes) is killed too, so nothing outlives the harness."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(process)
            process.wait(timeout=timeout)
    kill_process_group(process)


def kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILL every process in the session ``launch`` gave ``process`` (its id is the
    process group's id, even after the process itself has exited)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# `kill`, `timeout`, a cancelled CI job (SIGTERM) and a closed terminal (SIGHUP).
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived. A KeyboardInterrupt, so every ``with`` and ``finally``
    that stops a server after Ctrl-C stops it after ``kill`` too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_on_termination() -> None:
    """From now on, SIGTERM and SIGHUP raise ``Terminated`` in the main thread (call it
    from there). The first one only: later ones are ignored, so that a second ``kill``
    cannot cut short the stopping the first one started (every stop has its own time
    limit; SIGKILL still ends everything at once)."""

    def terminated(signum: int, frame: object) -> None:
        for number in TERMINATION_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Terminated(signum)

    for number in TERMINATION_SIGNALS:
        signal.signal(number, terminated)


def interrupted_status(interruption: KeyboardInterrupt) -> int:
    """The exit status after an interruption: 128 + the signal's number, the shell's own
    convention for "ended by signal N" (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + getattr(interruption, "signum", signal.SIGINT)


class ProcessStats:
    """CPU time and resident memory of a running process (psutil, so any OS)."""

    def __init__(self, pid: int, *, with_children: bool = False) -> None:
        self.pid = pid
        # PostgreSQL forks a process per connection, RabbitMQ runs under a shell script:
        # their server is the whole tree. (A child's CPU leaves the sum when it exits.)
        self.with_children = with_children
        try:
            # Created once: psutil then notices if the pid is reused by another process.
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._process = None

    def cpu_seconds(self) -> float | None:
        """User plus system CPU seconds used so far; None when unknown (process gone,
        access denied), never a made-up 0."""
        if self._process is None:
            return None
        try:
            times = self._process.cpu_times()
            total = times.user + times.system
            for child in self._children():
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        except psutil.Error:
            return None
        return total

    def _children(self) -> list[psutil.Process]:
        if not self.with_children or self._process is None:
            return []
        return self._process.children(recursive=True)

    def rss_mb(self) -> float | None:
        """Resident memory in MiB; None when unknown (process gone, access denied)."""
        if self._process is None:
            return None
        try:
            total = self._process.memory_info().rss
            for child in self._children():
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return None
        return total / 2**20
