"""Fixtures of the load tests (helpers live in load/tests/helpers.py)."""

from __future__ import annotations

import importlib.util

import pytest

from harness.live import missing_dependency


@pytest.fixture(scope="session")
def load_dependencies() -> None:
    """Locust, websockets and matplotlib must be installed (CI fails without them)."""
    for module in ("locust", "websockets", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            missing_dependency(f"{module} is not installed: pip install -e '.[test]'")
