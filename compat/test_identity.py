"""The identity cells (compat/identity.py) and their pure parts.

``test_every_answer_reaches_its_own_user`` is marked ``identity``: it builds virtualenvs
with channels 3.0.2 and 3.0.3 and runs only with ``--identity`` (``nox -s identity``);
the default run deselects it (compat/identity_plugin.py). The rest run everywhere: no
network, no virtualenv, no server.
"""

from __future__ import annotations

import ast
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from compat.identity import (
    CELLS,
    COMMON_REQUIREMENTS,
    IDENTITY_APPLICATION,
    INSTALLED_FILE,
    ROUNDS,
    STAMP_FILE,
    USERS,
    CellVenv,
    IdentityCell,
    breakdown,
    cell_venv,
    daphne_command,
    ensure_running,
    identity_server,
    parse_freeze,
    problem_kind,
    run_lines,
    server_environment,
    stamp_matches,
    venv_stamp,
)
from compat.identity_plugin import RUNS
from harness.accounts import make_accounts
from harness.backends import APP_DIR, ROOT
from harness.identity import SHAPES, IdentityReport, check_identity

pytest_plugins = "pytester"

LEAK = (
    "CVE-2020-35681: channels 3.0.0 to 3.0.2 answer every HTTP connection of a router "
    "without an 'http' key with one shared AsgiHandler"
)


def cell_params() -> Iterator[object]:
    for cell in CELLS:
        # raises=AssertionError: only the check's verdict is the expected failure; a cell
        # that cannot install or whose server dies fails outright.
        leak = pytest.mark.xfail(strict=True, raises=AssertionError, reason=LEAK)
        yield pytest.param(cell, id=cell.name, marks=[leak] if cell.leaks else [])


@pytest.fixture(scope="session")
def cell_venvs(request: pytest.FixtureRequest) -> Callable[[IdentityCell], CellVenv]:
    """``cell_venvs(cell)`` -> the cell's virtualenv, built (or found in the cache) once
    per session."""
    venvs: dict[str, CellVenv] = {}
    runs = request.config.stash.setdefault(RUNS, [])

    def get(cell: IdentityCell) -> CellVenv:
        if cell.name not in venvs:
            venv = venvs[cell.name] = cell_venv(cell)
            how = "reused" if venv.reused else f"built in {venv.build_s:.0f} s"
            runs.append(f"{cell.name}: virtualenv {venv.path} {how}")
        return venvs[cell.name]

    return get


# Every problem described, so that ``breakdown`` can tell a page or session of another user
# (the leak) from an anonymous page or an unanswered request.
EVERY_PROBLEM = 1_000_000
# A server with the leak loses most concurrent logins (their answers go to another
# connection), and then every page is an anonymous one. The staggered shape logs the users
# in one by one first, so that its concurrent page loads can show another user's page.
LOGINS_OF_SHAPE = {"burst": "together", "staggered": "one_by_one"}


@pytest.mark.identity
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", list(cell_params()))
def test_every_answer_reaches_its_own_user(
    cell: IdentityCell,
    shape: str,
    cell_venvs: Callable[[IdentityCell], CellVenv],
    identity_runs: list[str],
    tmp_path: Path,
) -> None:
    """16 users log in (at once in the burst, one by one before the staggered pages) and
    load their room page 10 times each, together, from this interpreter, against Daphne
    serving the router without an "http" key in the cell."""
    venv = cell_venvs(cell)
    started = time.monotonic()
    accounts = make_accounts(tmp_path / "accounts", users=USERS, python=venv.python)
    with identity_server(venv.python, accounts, log_dir=tmp_path) as server:
        report = check_identity(
            server.url,
            accounts,
            shape=shape,
            rounds=ROUNDS,
            logins=LOGINS_OF_SHAPE[shape],
            examples=EVERY_PROBLEM,
        )
        ensure_running(server)
    lines = run_lines(venv, report, time.monotonic() - started)
    identity_runs.extend(lines)
    assert report.clean, " ".join(line.strip() for line in lines) + f" (log: {server.log_path})"


# The pure parts.


def test_two_cells_one_with_the_leak_and_its_fix_on_the_same_django_and_daphne():
    assert [(cell.name, cell.leaks) for cell in CELLS] == [
        ("channels3.0.2", True),
        ("channels3.0.3", False),
    ]
    for cell in CELLS:
        assert cell.requirements == (f"channels=={cell.channels}", *COMMON_REQUIREMENTS)
    assert "Django==3.2.25" in COMMON_REQUIREMENTS
    assert "daphne==3.0.2" in COMMON_REQUIREMENTS
    # Exact pins only: a cell is one combination, not a range.
    assert all("==" in requirement for cell in CELLS for requirement in cell.requirements)


def test_the_served_router_has_no_http_key():
    source = (ROOT / "compat" / "identity_asgi.py").read_text()
    routers = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "ProtocolTypeRouter"
    ]
    assert len(routers) == 1
    (mapping,) = routers[0].args
    assert isinstance(mapping, ast.Dict)
    assert [ast.literal_eval(key) for key in mapping.keys if key is not None] == ["websocket"]
    assert IDENTITY_APPLICATION == "compat.identity_asgi:application"


def test_a_stamp_names_the_python_and_every_requirement():
    stamp = venv_stamp(CELLS[0], "3.11.7")
    assert stamp.splitlines() == ["python 3.11.7", *CELLS[0].requirements]
    assert venv_stamp(CELLS[0], "3.11.7") != venv_stamp(CELLS[1], "3.11.7")
    assert venv_stamp(CELLS[0], "3.11.7") != venv_stamp(CELLS[0], "3.12.1")


def test_only_a_venv_with_the_same_stamp_is_reused(tmp_path: Path):
    stamp = venv_stamp(CELLS[1], "3.11.7")
    assert not stamp_matches(tmp_path / "missing", stamp)
    (tmp_path / STAMP_FILE).write_text(venv_stamp(CELLS[0], "3.11.7"))
    assert not stamp_matches(tmp_path, stamp)
    (tmp_path / STAMP_FILE).write_text(stamp)
    assert stamp_matches(tmp_path, stamp)


def fake_venv(root: Path, cell: IdentityCell, *, imports: bool) -> Path:
    """A cached cell virtualenv whose ``python`` only exits 0 (its packages import) or 1."""
    venv = root / cell.name
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\nexit {0 if imports else 1}\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (venv / INSTALLED_FILE).write_text("channels==3.0.3\nDjango==3.2.25\n")
    (venv / STAMP_FILE).write_text(venv_stamp(cell))
    return venv


def test_a_cached_venv_whose_packages_import_is_reused_without_pip(tmp_path: Path):
    cell = CELLS[1]
    venv = fake_venv(tmp_path, cell, imports=True)
    # Were it rebuilt, this "python" would fail to make a virtualenv.
    found = cell_venv(cell, root=tmp_path, python="/nonexistent/python")
    assert found.reused and found.path == venv
    assert found.python == str(venv / "bin" / "python")
    assert found.installed == {"channels": "3.0.3", "django": "3.2.25"}
    assert found.versions() == "channels 3.0.3, django 3.2.25"


def test_a_cached_venv_that_cannot_import_is_built_again(tmp_path: Path):
    from harness.processes import ServiceError

    cell = CELLS[1]
    venv = fake_venv(tmp_path, cell, imports=False)
    with pytest.raises(ServiceError, match="making the virtualenv"):
        cell_venv(cell, root=tmp_path, python="/nonexistent/python")
    assert not (venv / STAMP_FILE).exists()  # the broken one was removed first


def test_make_accounts_runs_the_interpreter_it_is_given(tmp_path: Path):
    """The cells make their users with their own Django: ``make_accounts(python=...)``."""
    called = tmp_path / "argv.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$@" > {called}\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    accounts = make_accounts(tmp_path / "users", users=3, python=str(python))
    database = tmp_path / "users" / "chat-users.sqlite3"
    assert called.read_text().split() == ["-m", "harness.accounts", str(database), "3"]
    assert accounts.usernames == ("user00000", "user00001", "user00002")
    assert accounts.env == {"CHAT_DATABASE": str(database)}


def test_pip_freeze_is_read_by_lower_case_name():
    text = "Django==3.2.25\nzope.interface==8.7\n-e git+https://x#egg=y\n\nTwisted==26.10.0\n"
    assert parse_freeze(text) == {
        "django": "3.2.25",
        "zope.interface": "8.7",
        "twisted": "26.10.0",
    }


def test_daphne_runs_from_the_cells_interpreter_on_loopback():
    command = daphne_command("/venvs/c/bin/python", "127.0.0.1", 8123)
    assert command == [
        "/venvs/c/bin/python",
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        "8123",
        "compat.identity_asgi:application",
    ]


def test_the_server_finds_the_variant_module_and_the_accounts_database():
    base = {"PATH": "/bin", "PYTHONPATH": "/elsewhere", "CHANNEL_LAYER": "redis"}
    env = server_environment({"CHAT_DATABASE": "/tmp/x/users.sqlite3"}, base)
    assert env["PYTHONPATH"] == os.pathsep.join([str(ROOT), "/elsewhere"])
    assert env["CHAT_DATABASE"] == "/tmp/x/users.sqlite3"
    assert env["CHANNEL_LAYER"] == "inmemory"  # never a layer with a server to reach
    assert env["PATH"] == "/bin"
    assert server_environment({}, {})["PYTHONPATH"] == str(ROOT)
    # app/ is the working directory, the root is on the path: compat.identity_asgi imports.
    assert (ROOT / "compat" / "identity_asgi.py").exists() and (APP_DIR / "mysite").is_dir()


def test_each_problem_is_read_as_the_leak_itself_or_what_it_leaves_behind():
    # The descriptions exactly as harness/identity.py writes them.
    kinds = {
        "wrong_user: user00001's page named user00007": "another user's page",
        "wrong_user: user00001's page named nobody": "anonymous page",
        "foreign_session: user00001's login got the session of user00007": (
            "another user's session"
        ),
        "foreign_session: user00001's login got the session of None": "anonymous session",
        "foreign_session: user00001's login set no session cookie": ("login set no session cookie"),
        "foreign_session: user00001's login got the session of nobody (unanswered)": ("unanswered"),
        "unanswered: user00003: GET /accounts/login/: TimeoutError: timed out": "unanswered",
    }
    assert {example: problem_kind(example) for example in kinds} == kinds


def leaky_report() -> IdentityReport:
    report = IdentityReport(
        "burst", 16, requests=176, answered=20, wrong_user=2, foreign_session=1, unanswered=156
    )
    report.examples += [
        "wrong_user: user00001's page named user00007",
        "wrong_user: user00002's page named nobody",
        "foreign_session: user00002's login set no session cookie",
        "unanswered: user00003: GET /chat/identity/: TimeoutError: timed out",
    ]
    return report


def test_a_breakdown_counts_every_kind():
    assert breakdown(leaky_report()) == {
        "another user's page": 1,
        "another user's session": 0,
        "anonymous page": 1,
        "login set no session cookie": 1,
        "anonymous session": 0,
        "unanswered": 1,
    }


def test_the_run_lines_say_what_was_counted_and_show_the_first_problems():
    venv = CellVenv(CELLS[0], Path("/v"), "/v/bin/python", {"channels": "3.0.2"})
    assert run_lines(venv, leaky_report(), 112.4, examples=1) == [
        "channels3.0.2 burst: NOT clean: 176 requests, 20 answered, wrong_user 2, "
        "foreign_session 1, unanswered 156; 112 s (channels 3.0.2)",
        "    4 of 159 problems described: another user's page 1, anonymous page 1, "
        "login set no session cookie 1, unanswered 1",
        "    wrong_user: user00001's page named user00007",
    ]
    clean = IdentityReport("staggered", 16, requests=176, answered=176)
    (line,) = run_lines(venv, clean, 5.0)
    assert line.startswith("channels3.0.2 staggered: clean: ")


# The opt-in itself: an inner pytest with the plugin.

MARKED = """
import pytest

@pytest.mark.identity
def test_installs_a_vulnerable_release(identity_runs):
    identity_runs.append("counted: 1")

def test_plain():
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(APP_DIR)]))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    pytester.makepyfile(test_inner=MARKED)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p", "compat.identity_plugin", "-p", "no:cacheprovider", "-p", "no:locust", *args
        )

    return run


def test_identity_tests_are_deselected_without_the_option(inner):
    result = inner("-m", "identity")
    result.assert_outcomes(deselected=2)
    assert "identity checks" not in result.stdout.str()
    result = inner()
    result.assert_outcomes(passed=1, deselected=1)


def test_the_option_runs_them_and_prints_what_they_counted(inner):
    result = inner("--identity", "-m", "identity")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*identity checks*", "counted: 1"])
