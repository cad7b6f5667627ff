"""The identity cells: does every HTTP answer reach the user it belongs to when Channels
itself supplies the HTTP handler? Opt-in (``nox -s identity``, compat/README.md).

CVE-2020-35681 (PYSEC-2021-113): in channels 3.0.0 to 3.0.2 a ProtocolTypeRouter without
an "http" key handled every HTTP connection with one shared AsgiHandler, which kept each
request's scope and ``send`` on itself, so with the right timing an answer, its
``Set-Cookie: sessionid`` included, went to another client. 3.0.3 fixed it (commit
e85874d). Each cell here is a virtualenv of its own with one of those two releases and the
Django and Daphne of the time; Daphne serves compat/identity_asgi.py (the app routed
without an "http" key) from app/, and ``harness.check_identity`` runs from this
interpreter against it. compat/test_identity.py holds the expectations: 3.0.2 leaks (a
strict expected failure), 3.0.3 does not.

The default test suite never builds these virtualenvs: the tests are marked ``identity``
and left out unless pytest gets ``--identity`` (compat/identity_plugin.py).

    venv = cell_venv(CELLS[0])                                   # cached in .nox/identity-cells/
    accounts = make_accounts(folder, users=USERS, python=venv.python)
    with identity_server(venv.python, accounts, log_dir=folder) as server:
        report = check_identity(server.url, accounts, shape="burst")
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.accounts import Accounts
from harness.backends import APP_DIR, ROOT
from harness.chat import ChatServer, chat_environment
from harness.identity import IdentityReport
from harness.processes import LOOPBACK, ServiceError, free_port, launch, stop_process, wait_until

__all__ = [
    "CELLS",
    "PROBLEM_KINDS",
    "ROUNDS",
    "USERS",
    "CellVenv",
    "IdentityCell",
    "breakdown",
    "cell_venv",
    "daphne_command",
    "ensure_running",
    "identity_server",
    "problem_kind",
    "run_lines",
    "server_environment",
    "venv_stamp",
]

# What the server imports: compat/identity_asgi.py, found through PYTHONPATH (the checkout's
# root); app/ is Daphne's working directory, so mysite and chat import as they always do.
IDENTITY_APPLICATION = "compat.identity_asgi:application"

# The Django and Daphne of channels 3.0's time, both with wheels for Python 3.11. psutil is
# not the server's: ``python -m harness.accounts`` runs in the cell (so that the cell's
# own Django migrates the database and hashes the password), and importing the harness
# package imports psutil. Everything else is left to the resolver (identity-installed.txt
# in the cell's virtualenv says what it chose).
COMMON_REQUIREMENTS = ("Django==3.2.25", "daphne==3.0.2", "psutil==7.2.2")

# 16 users logging in at once, then 10 page loads each: 192 requests when every login is
# answered (a login whose form is not answered makes no POST).
USERS = 16
ROUNDS = 10

VENV_ROOT = ROOT / ".nox" / "identity-cells"
VENV_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 600.0
PIP_SOCKET_TIMEOUT_S = 60  # pip's own --timeout, per network operation
CHECK_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 30.0
STAMP_FILE = "identity-stamp.txt"
INSTALLED_FILE = "identity-installed.txt"
INSTALL_LOG = "identity-install.log"
# Versions the summary line names, from the cell's installed.txt.
SHOWN_PACKAGES = ("channels", "django", "daphne", "twisted", "asgiref")


@dataclass(frozen=True)
class IdentityCell:
    """One channels release with COMMON_REQUIREMENTS; ``leaks``: it has CVE-2020-35681."""

    channels: str
    leaks: bool

    @property
    def name(self) -> str:
        return f"channels{self.channels}"

    @property
    def requirements(self) -> tuple[str, ...]:
        return (f"channels=={self.channels}", *COMMON_REQUIREMENTS)


CELLS = (IdentityCell("3.0.2", leaks=True), IdentityCell("3.0.3", leaks=False))


@dataclass(frozen=True)
class CellVenv:
    """A cell's virtualenv: its interpreter, what is installed, and how it was had."""

    cell: IdentityCell
    path: Path
    python: str
    installed: dict[str, str] = field(default_factory=dict)
    reused: bool = False
    build_s: float = 0.0

    def versions(self) -> str:
        """``channels 3.0.2, django 3.2.25, ...``: the SHOWN_PACKAGES that are installed."""
        return ", ".join(
            f"{name} {self.installed[name]}" for name in SHOWN_PACKAGES if name in self.installed
        )


def venv_stamp(cell: IdentityCell, python_version: str | None = None) -> str:
    """What a cached virtualenv must have been built for: the Python version and the
    requirements, one a line."""
    version = python_version or platform.python_version()
    return "\n".join([f"python {version}", *cell.requirements]) + "\n"


def stamp_matches(venv: Path, stamp: str) -> bool:
    """True when ``venv`` was built (completely: the stamp is written last) for ``stamp``."""
    try:
        return (venv / STAMP_FILE).read_text() == stamp
    except OSError:
        return False


def parse_freeze(text: str) -> dict[str, str]:
    """``pip freeze`` output as {lower-case name: version}; other lines are left out."""
    pairs = (line.strip().split("==", 1) for line in text.splitlines() if "==" in line)
    return {name.lower(): version for name, version in pairs}


def _run(command: list[str], *, log: Path, timeout: float, what: str) -> str:
    """Run ``command`` with its output appended to ``log``; ServiceError on failure."""
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{what} took more than {timeout:.0f} s (log: {log})") from None
    except OSError as error:  # no such interpreter
        raise ServiceError(f"{what} failed: {error}") from None
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise ServiceError(f"{what} failed: {last} (log: {log})")
    return done.stdout


def cell_venv(
    cell: IdentityCell, *, root: Path = VENV_ROOT, python: str = sys.executable
) -> CellVenv:
    """The cell's virtualenv under ``root``: reused when it was built for the same Python
    and requirements and its packages import, else built afresh with ``python -m venv``
    and pip (wheels only, a bounded time for each step)."""
    venv = root / cell.name
    venv_python = str(venv / "bin" / "python")
    stamp = venv_stamp(cell)
    log = venv / INSTALL_LOG
    started = time.monotonic()
    if stamp_matches(venv, stamp):
        check = [venv_python, "-c", "import channels, daphne, django, psutil"]
        with contextlib.suppress(ServiceError, OSError):
            _run(check, log=log, timeout=CHECK_TIMEOUT_S, what=f"checking {venv}")
            installed = parse_freeze((venv / INSTALLED_FILE).read_text())
            return CellVenv(cell, venv, venv_python, installed, reused=True)
    shutil.rmtree(venv, ignore_errors=True)
    venv.mkdir(parents=True)
    _run(
        [python, "-m", "venv", str(venv)],
        log=log,
        timeout=VENV_TIMEOUT_S,
        what=f"making the virtualenv {venv}",
    )
    pip = [venv_python, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [
            *pip,
            "install",
            "--quiet",
            "--only-binary=:all:",
            f"--timeout={PIP_SOCKET_TIMEOUT_S}",
            "--retries=2",
            *cell.requirements,
        ],
        log=log,
        timeout=INSTALL_TIMEOUT_S,
        what=f"installing {' '.join(cell.requirements)}",
    )
    freeze = _run([*pip, "freeze"], log=log, timeout=CHECK_TIMEOUT_S, what="pip freeze")
    (venv / INSTALLED_FILE).write_text(freeze)
    (venv / STAMP_FILE).write_text(stamp)
    return CellVenv(
        cell, venv, venv_python, parse_freeze(freeze), build_s=time.monotonic() - started
    )


def daphne_command(python: str, host: str, port: int) -> list[str]:
    """Daphne of the cell's interpreter serving IDENTITY_APPLICATION on host:port."""
    return [python, "-m", "daphne", "-b", host, "-p", str(port), IDENTITY_APPLICATION]


def server_environment(
    accounts_env: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's whole environment: ``base`` (this process's), the chat on InMemory with
    the accounts' database, and the checkout's root first on PYTHONPATH (for
    IDENTITY_APPLICATION)."""
    base = os.environ if base is None else base
    path = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    return {
        **base,
        "PYTHONUNBUFFERED": "1",
        **chat_environment(layer="inmemory", extra={**accounts_env, "PYTHONPATH": path}),
    }


@contextlib.contextmanager
def identity_server(
    python: str, accounts: Accounts, *, log_dir: Path, timeout: float = SERVER_START_TIMEOUT_S
) -> Iterator[ChatServer]:
    """Daphne of ``python`` serving IDENTITY_APPLICATION on a free loopback port with the
    users of ``accounts``, once it answers GET /chat/; stopped on exit, also on failure."""
    port = free_port(LOOPBACK)
    command = daphne_command(python, LOOPBACK, port)
    env = server_environment(accounts.env)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"daphne-{port}.log"
    process = launch(command, log_path=log_path, cwd=APP_DIR, env=env)
    try:
        server = ChatServer(
            process,
            host=LOOPBACK,
            port=port,
            log_path=log_path,
            env={"CHANNEL_LAYER": "inmemory", **accounts.env},
            asgi="daphne",
            command=command,
            process_env=env,
        )
        wait_until(
            server.serves_index,
            timeout=timeout,
            process=process,
            what=f"daphne ({python}, {IDENTITY_APPLICATION}) on port {port}",
            log=log_path,
        )
        yield server
    finally:
        stop_process(process)


def ensure_running(server: ChatServer) -> None:
    """ServiceError when the server has exited: a check against a dead server counts
    "unanswered", which must not pass for a leak."""
    if server.process.poll() is not None:
        raise ServiceError(
            f"the server exited with code {server.process.returncode} during the check "
            f"(log: {server.log_path})"
        )


# What each problem of an IdentityReport was, read from its description (harness/identity.py
# writes them): another user's page or session is the leak itself; the rest is what the
# leak leaves behind (an answer that went elsewhere is one that never came).
ANOTHER_USERS_PAGE = "another user's page"
ANONYMOUS_PAGE = "anonymous page"
ANOTHER_USERS_SESSION = "another user's session"
NO_SESSION_COOKIE = "login set no session cookie"
ANONYMOUS_SESSION = "anonymous session"
UNANSWERED = "unanswered"
PROBLEM_KINDS = (
    ANOTHER_USERS_PAGE,
    ANOTHER_USERS_SESSION,
    ANONYMOUS_PAGE,
    NO_SESSION_COOKIE,
    ANONYMOUS_SESSION,
    UNANSWERED,
)
_PAGE_NAMED = re.compile(r"'s page named (.*)$")
_SESSION_OF = re.compile(r"'s login got the session of (.*)$")


def problem_kind(example: str) -> str:
    """Which of PROBLEM_KINDS one of an IdentityReport's ``examples`` is."""
    kind, _, text = example.partition(": ")
    if kind == "wrong_user":
        page = _PAGE_NAMED.search(text)
        return ANONYMOUS_PAGE if page is None or page[1] == "nobody" else ANOTHER_USERS_PAGE
    if kind == "foreign_session":
        session = _SESSION_OF.search(text)
        if session is None:
            return NO_SESSION_COOKIE
        if session[1].startswith("nobody (unanswered)"):
            return UNANSWERED
        return ANONYMOUS_SESSION if session[1] in ("None", "nobody") else ANOTHER_USERS_SESSION
    return UNANSWERED


def breakdown(report: IdentityReport) -> dict[str, int]:
    """How many of the report's described problems are of each kind (all of them when the
    report described every problem: see test_identity.py's ``every_problem_described``)."""
    counts = dict.fromkeys(PROBLEM_KINDS, 0)
    for example in report.examples:
        counts[problem_kind(example)] += 1
    return counts


def run_lines(
    venv: CellVenv, report: IdentityReport, seconds: float, *, examples: int = 5
) -> list[str]:
    """The run's summary of one check: a line with the cell, what was counted and how long
    it took; for a check that was not clean, what its problems were (``breakdown``) and
    the first ``examples`` of them, indented."""
    verdict = "clean" if report.clean else "NOT clean"
    head = (
        f"{venv.cell.name} {report.shape}: {verdict}: {report.requests} requests, "
        f"{report.answered} answered, wrong_user {report.wrong_user}, foreign_session "
        f"{report.foreign_session}, unanswered {report.unanswered}; {seconds:.0f} s "
        f"({venv.versions()})"
    )
    if not report.examples:
        return [head]
    problems = report.wrong_user + report.foreign_session + report.unanswered
    kinds = ", ".join(f"{kind} {n}" for kind, n in breakdown(report).items() if n)
    described = f"{len(report.examples)} of {problems} problems described: {kinds}"
    return [head, f"    {described}", *(f"    {e}" for e in report.examples[:examples])]
