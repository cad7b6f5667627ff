"""Browser fixtures: one headless Chromium for the session, a fresh set of windows per test,
and, when a test fails, its screenshots, console log and server logs in one folder.

The servers come from the root conftest's ``live_chat`` (shared per session); this file
only adds the browser around them.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver

from e2e.browser import (
    Browser,
    HeadlessChromium,
    Profiles,
    UniqueRoom,
    WindowPool,
    chromium_paths,
)
from harness import ROOT, ChatServer, ServiceError
from harness.live import LiveChat, missing_dependency

ARTIFACTS_DIR = ROOT / "e2e-artifacts"


@pytest.fixture(scope="session")
def headless_chromium() -> Iterator[HeadlessChromium]:
    """Starts headless Chromium browsers (Debian's, by path); skips or fails when absent."""
    try:
        chromium, chromedriver = chromium_paths()
    except ServiceError as error:
        missing_dependency(str(error))
    factory = HeadlessChromium(chromium, chromedriver)
    yield factory
    factory.remove_profiles()


@pytest.fixture(scope="session")
def chromium(headless_chromium: HeadlessChromium) -> Iterator[WebDriver]:
    """The session's browser: starting one costs about half a second, so tests share it,
    each in windows of its own (see ``browser``)."""
    driver = headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def window_pool(chromium: WebDriver) -> WindowPool:
    return WindowPool(chromium)


class FailureArtifacts:
    """What a failed test leaves in e2e-artifacts/<test id>/: a screenshot and the chat
    log of each window, the browser console, and the server log lines written during it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(
        self, driver: WebDriver, handles: list[str], server_logs: list[tuple[ChatServer, str]]
    ) -> Path:
        shutil.rmtree(self.directory, ignore_errors=True)  # an earlier run's, same test
        self.directory.mkdir(parents=True)
        # The server logs first: they do not depend on the browser still answering.
        for server, text in server_logs:
            name = f"server-{server.port}-{server.env['CHANNEL_LAYER']}.log"
            (self.directory / name).write_text(text)
        windows = []
        for number, handle in enumerate(handles, start=1):
            try:
                driver.switch_to.window(handle)
                driver.save_screenshot(str(self.directory / f"window-{number}.png"))
                chat_log = driver.execute_script(
                    "const log = document.getElementById('chat-log'); return log && log.value;"
                )
                windows.append({"window": number, "url": driver.current_url, "chat_log": chat_log})
            except WebDriverException as error:  # a crashed or closed window: keep the rest
                windows.append({"window": number, "error": error.msg})
        (self.directory / "windows.json").write_text(
            json.dumps(windows, indent=2, ensure_ascii=False) + "\n"
        )
        console = [
            f"{entry['level']} {entry['source']} {entry['message']}"
            for entry in driver.get_log("browser")
        ]
        (self.directory / "console.log").write_text("\n".join(console) + "\n")
        return self.directory


@pytest.fixture
def failure_artifacts(request: pytest.FixtureRequest) -> FailureArtifacts:
    test_id = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.nodeid).strip("-")
    return FailureArtifacts(ARTIFACTS_DIR / test_id)


@pytest.fixture
def browser(
    request: pytest.FixtureRequest,
    window_pool: WindowPool,
    failure_artifacts: FailureArtifacts,
    live_chat: LiveChat,
) -> Iterator[Browser]:
    """The session's browser, for one test: the windows it uses are emptied afterwards;
    if the test failed, they are first saved to its artifact folder, whose path is printed."""
    driver = window_pool.driver
    driver.get_log("browser")  # drop earlier tests' console output
    browser = Browser(window_pool)
    try:
        yield browser
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            folder = failure_artifacts.save(driver, browser.handles, live_chat.logs_during_test())
            print(f"\nbrowser screenshots, console and server logs: {folder}")
    finally:
        browser.close_windows()


@pytest.fixture
def profiles(
    request: pytest.FixtureRequest,
    headless_chromium: HeadlessChromium,
    failure_artifacts: FailureArtifacts,
) -> Iterator[Profiles]:
    """Browsers of this test's own, quit when it ends; if it failed, each one's windows
    and console are saved first, in profile-N/ of the test's artifact folder (the watched
    servers' logs in profile-1/), and the folder's path is printed."""
    profiles = Profiles(headless_chromium)
    try:
        yield profiles
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            server_logs = profiles.logs_during_test()
            for number, driver in enumerate(profiles.drivers, start=1):
                FailureArtifacts(failure_artifacts.directory / f"profile-{number}").save(
                    driver, driver.window_handles, server_logs if number == 1 else []
                )
            print(f"\nbrowser screenshots, console and server logs: {failure_artifacts.directory}")
    finally:
        profiles.quit_all()


@pytest.fixture
def unique_room(request: pytest.FixtureRequest) -> UniqueRoom:
    """``unique_room(label)`` -> a room name no other test (or run sharing a Redis) uses."""
    test_name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.originalname)[:40]

    def make(label: str) -> str:
        return f"{test_name}-{label}-{uuid.uuid4().hex[:8]}"

    return make
