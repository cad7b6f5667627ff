"""The sessions people run. `nox -s tests` is what CI runs (via quickstart.py / .ci/run).

nox -s tests          everything CI runs: app, browser and load smoke tests
nox -s unit           the fast consumer tests, no browser
nox -s e2e            the browser suite only
nox -s heavy          the tests that measure load for minutes (left out of tests)
nox -s bench          the main job: capacity of each layer, with charts
nox -s capacity -- ... python -m load capacity ...
nox -s serve -- ...   the chat on http://127.0.0.1:8000 (python services.py serve ...)
nox -s lint           ruff, mypy and pip-audit
nox -s compat         the version matrix (opt-in, slow)
nox -s identity       the identity cells: channels 3.0.2's session leak and 3.0.3 (opt-in)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
# Keep session venvs between runs; each session still re-runs its install, so a changed
# pyproject.toml is picked up, but an unchanged one costs seconds instead of a minute.
nox.options.reuse_venv = "yes"


def install_project(session: nox.Session) -> None:
    session.install("-e", ".[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI runs."""
    install_project(session)
    session.run("pytest", *session.posargs)


@nox.session
def unit(session: nox.Session) -> None:
    """Consumer and settings tests: no browser, no Locust (Redis is still real)."""
    install_project(session)
    session.run("pytest", "app", "-m", "not browser", *session.posargs)


@nox.session
def heavy(session: nox.Session) -> None:
    """The long load and fault runs (marker `heavy`), left out of `tests`: the fidelity
    check at and past a capacity, each layer's own fault behaviour (NATS, RabbitMQ,
    PostgreSQL and Valkey restarts, a Redis stall and failover, a slow reader), and the
    newest layers' (valkey, sqlite) runs that their tests mark `heavy_on_layers`. Nightly in
    the workflow."""
    install_project(session)
    session.run("pytest", "--heavy", "-m", "heavy", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """The browser suite: the tutorial's part 4 tests and e2e/, headless Chromium."""
    install_project(session)
    session.run("pytest", "e2e", "app/chat/tests.py", *session.posargs)


# The main job: the capacity of the three everyday layers, the Redis layers also on two
# servers (a layer that crosses processes should gain from a second one). About 5 minutes.
MAIN_JOB = ("capacity", "--layers", "inmemory,redis,redis-pubsub", "--servers", "1,2")
LOAD_COMMANDS = ("run", "bench", "capacity", "replay")


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: capacity per layer, with charts (`python -m load capacity ...`).

    Arguments go to that search (`-- --repeat 3`); arguments that start with a command go
    to it instead: `-- bench --layers redis` is the single-load-point benchmark,
    `-- run --target ws://...` loads a server you started.
    """
    install_project(session)
    if session.posargs[:1] and session.posargs[0] in LOAD_COMMANDS:
        session.run("python", "-m", "load", *session.posargs)
    else:
        session.run("python", "-m", "load", *MAIN_JOB, *session.posargs)


@nox.session
def capacity(session: nox.Session) -> None:
    """`python -m load capacity ...`: how much each layer holds (try `-- --help`)."""
    install_project(session)
    session.run("python", "-m", "load", "capacity", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Serve the chat on http://127.0.0.1:8000 (InMemory, Daphne); for another layer or
    server: `-- --layer nats --asgi uvicorn`."""
    install_project(session)
    session.run("python", "services.py", "serve", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy (its files and settings: [tool.mypy] in
    pyproject.toml), and pip-audit. mypy follows the imports into Django, channels, Locust
    and the rest, so the project is installed with its test dependencies; the lint extra
    brings ruff, mypy and pip-audit. pip-audit then checks that environment against PyPI's
    vulnerability database, so a dependency with a known vulnerability fails the session."""
    session.install("-e", ".[test,lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    audit_environment(session)


def audit_environment(session: nox.Session) -> None:
    """pip-audit over every package installed in the session, exactly as installed.

    What is audited is `pip freeze --all --exclude-editable`: every distribution of the
    environment at its installed version (pip and setuptools too, upgraded first: the
    versions a venv bundles carry known advisories), less the editable project itself,
    which is not on PyPI. A package with a known vulnerability fails the session. A package
    pip-audit could not check (PyPI's per-version JSON not served, the service unreachable)
    is no pass: the session names how many and why, and fails under CI (as a missing
    dependency does); elsewhere it warns that no audit was done. No advisory is ignored; to
    accept one, add `--ignore-vuln ID` below with the reason beside it (docs/guide.md).
    """
    session.install("--upgrade", "pip", "setuptools")
    frozen = session.run(
        "python", "-m", "pip", "freeze", "--all", "--exclude-editable", silent=True, log=False
    )
    tmp = Path(session.create_tmp())
    requirements = tmp / "audited-environment.txt"
    requirements.write_text(str(frozen))
    report = tmp / "audit.json"
    session.run(
        "pip-audit",
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--output",
        str(report),
        "--requirement",
        str(requirements),
        success_codes=[0, 1],
    )
    dependencies = json.loads(report.read_text())["dependencies"]
    vulnerable = [
        f"{d['name']} {d['version']}: {', '.join(v['id'] for v in d['vulns'])}"
        for d in dependencies
        if d.get("vulns")
    ]
    if vulnerable:
        session.error("known vulnerabilities: " + "; ".join(vulnerable))
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if skipped:
        why = f"{skipped[0]['name']}: {skipped[0]['skip_reason']}"
        message = (
            f"pip-audit could not check {len(skipped)} of {len(dependencies)} packages "
            f"(e.g. {why}): no audit was done for them"
        )
        if os.environ.get("CI"):
            session.error(message)
        session.warn(message)
        return
    session.log(f"pip-audit: {len(dependencies)} packages, no known vulnerabilities")


@nox.session(default=False)
def compat(session: nox.Session) -> None:
    """The version matrix (opt-in, slow): results/compat/compat.md and compat.json.

    Each Django / channels / channels-redis / redis-py cell gets its own virtualenv and runs
    the compat-marked tests on both Redis layers. Options go after `--` (try `-- --help`,
    `-- --list`, `-- --only 'Django5.2-*'`); see compat/README.md.
    """
    # uv builds each cell's virtualenv from its global wheel cache in about two seconds,
    # which is what keeps the whole matrix within half an hour on two cores.
    # The runner itself imports harness/ (a throw-away redis-server), which needs psutil
    # and, through the app's environment module, Django; the cells install the rest.
    session.install("uv>=0.5", "psutil>=5.9", "Django>=4.2,<6.0")
    session.run("python", "-m", "compat", *session.posargs)


@nox.session(default=False)
def identity(session: nox.Session) -> None:
    """The identity cells (opt-in): channels 3.0.2, which has CVE-2020-35681, and 3.0.3,
    each with Django 3.2.25 and Daphne 3.0.2 in a virtualenv of its own (cached in
    .nox/identity-cells/), serving the router without an "http" key to 16 logged-in users
    at once. 3.0.2 must leak (a strict expected failure), 3.0.3 must not; about 4 minutes.
    Arguments go to pytest (`-- -k burst`); see compat/README.md, "Identity cells"."""
    install_project(session)
    session.run(
        "pytest", "--identity", "-m", "identity", "compat/test_identity.py", *session.posargs
    )
