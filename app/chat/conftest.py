"""Lets the tutorial's own part 4 tests (chat/tests.py, kept byte-for-byte as the tutorial
prints them) run headless under pytest.

Their ``webdriver.Chrome()`` would start Google Chrome with a display, inside a sandbox,
after Selenium Manager downloads a matching driver. None of that works here: containers
and CI run as root (where Chromium's sandbox cannot start), have no display, and the
network is closed. So while ChatTests runs, ``webdriver.Chrome`` starts Debian's Chromium
and ChromeDriver, by path, headless and without the sandbox (see e2e/browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from e2e.browser import HeadlessChromium, chromium_paths
from harness import ServiceError
from harness.live import missing_dependency

TUTORIAL_TESTS = Path(__file__).with_name("tests.py")


def _is_tutorial_test(item: pytest.Item) -> bool:
    return item.path == TUTORIAL_TESTS


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tutorial's file carries no marks; it drives a browser, so `-m "not browser"`
    # (nox -s unit) must leave it out. tryfirst: before `-m` selects by marks.
    for item in items:
        if _is_tutorial_test(item):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="class", autouse=True)
def headless_chromium_for_the_tutorial_tests(
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """While the tutorial's ChatTests runs (set up before its setUpClass, which calls
    ``webdriver.Chrome()``), that call starts headless Chromium; other tests are untouched."""
    if request.node.path != TUTORIAL_TESTS:
        yield
        return
    try:
        start_chromium = HeadlessChromium(*chromium_paths())
    except ServiceError as error:
        missing_dependency(str(error))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webdriver, "Chrome", start_chromium)
        yield
    start_chromium.remove_profiles()
