"""The pytest side of the identity cells (compat/identity.py), loaded by the root
conftest.py for every run: the ``--identity`` option, the deselection of the tests marked
``identity`` without it, and a summary of what each identity check counted.

The identity tests build virtualenvs with channels 3.0.2, a release with a known session
leak (CVE-2020-35681), so nothing installs it unless asked: ``nox -s identity``, or
``pytest --identity -m identity compat/test_identity.py``.
"""

from __future__ import annotations

import pytest

MARK = "identity"
OPTION = "--identity"
RUNS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        OPTION,
        action="store_true",
        help="also run the tests marked identity: virtualenvs with channels 3.0.2 (which has "
        "CVE-2020-35681) and 3.0.3 serve logged-in users (`nox -s identity`)",
    )


def split_identity(items: list[pytest.Item]) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(the items to keep, the identity-marked ones) without ``--identity``."""
    marked = [item for item in items if item.get_closest_marker(MARK)]
    return [item for item in items if not item.get_closest_marker(MARK)], marked


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the identity tests out unless --identity is given. Deselected, not skipped:
    the default run must not even build their virtualenvs."""
    if config.getoption(OPTION):
        return
    kept, identity = split_identity(items)
    if identity:
        config.hook.pytest_deselected(items=identity)
        items[:] = kept


@pytest.fixture
def identity_runs(request: pytest.FixtureRequest) -> list[str]:
    """The session's identity summary lines: append one per check; they are printed at the
    end of the run, passed or failed."""
    return request.config.stash.setdefault(RUNS, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(RUNS, [])
    if lines:
        terminalreporter.section("identity checks")
        for line in lines:
            terminalreporter.write_line(line)
