"""Headless Chromium for the browser tests, and the chat pages as the tests drive them.

Chromium and ChromeDriver are Debian's, found on PATH by path (services.find_executable),
never downloaded: the network is closed to the tests, so Selenium Manager must not run.
Chromium runs headless (no display) and without its sandbox (containers and CI run as
root, where the sandbox refuses to start), with a throw-away profile.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from harness import ChatServer, find_executable

# What e2e/conftest.py's ``unique_room(label)`` fixture hands the tests.
UniqueRoom = Callable[[str], str]

# Long enough for a loaded 2-core CI machine; a passing wait returns as soon as it holds.
WAIT_SECONDS = 10.0
# WebDriverWait polls every 0.5 s by default, which would dominate the suite's run time.
POLL_SECONDS = 0.02

CHROMIUM_ARGUMENTS = (
    "--headless=new",  # no display in containers and CI
    "--no-sandbox",  # the sandbox cannot start as root
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-background-networking",  # the network is closed: no update or sync traffic
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    # Several chat windows are open at once and only one has focus; keep the others
    # running at full speed so that what they receive does not depend on focus.
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--window-size=1280,900",  # room for the tutorial's 100-column chat log in screenshots
)


def chromium_paths() -> tuple[str, str]:
    """(chromium, chromedriver) on PATH, or ServiceError naming the package to install."""
    return find_executable("chromium"), find_executable("chromedriver")


def start_chromium(chromium: str, chromedriver: str, profile_dir: Path) -> WebDriver:
    """Headless Chromium driven through ChromeDriver, both given by path, console logged."""
    options = Options()
    options.binary_location = chromium
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile_dir}")
    # Keep the pages' console output so that a failing test can save it.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so Selenium skips Selenium Manager (which would download).
    # WebDriver is the class ``webdriver.Chrome`` names, used directly: the tutorial's
    # tests see ``webdriver.Chrome`` replaced by HeadlessChromium (app/chat/conftest.py).
    return WebDriver(options=options, service=Service(executable_path=chromedriver))


class HeadlessChromium:
    """A ``webdriver.Chrome`` replacement that starts Debian's Chromium headless.

    Each call starts a browser with a fresh profile; ``remove_profiles()`` deletes the
    profiles once those browsers have quit.
    """

    def __init__(self, chromium: str, chromedriver: str) -> None:
        self.chromium = chromium
        self.chromedriver = chromedriver
        self._profiles: list[Path] = []

    def __call__(self) -> WebDriver:
        profile = Path(tempfile.mkdtemp(prefix="chat-chromium-"))
        self._profiles.append(profile)
        return start_chromium(self.chromium, self.chromedriver, profile)

    def remove_profiles(self) -> None:
        for profile in self._profiles:
            shutil.rmtree(profile, ignore_errors=True)
        self._profiles.clear()


class Profiles:
    """Browsers of one test's own, apart from the session's: each ``start()`` is a new
    browser with a profile, and so a cookie jar, of its own (tabs of one browser share
    one; see test_identity.py). ``watch(server)`` puts that server's log lines from then
    on in the test's failure report."""

    def __init__(self, factory: HeadlessChromium) -> None:
        self.factory = factory
        self.drivers: list[WebDriver] = []
        self._log_offsets: list[tuple[ChatServer, int]] = []

    def start(self) -> WebDriver:
        driver = self.factory()
        self.drivers.append(driver)
        return driver

    def watch(self, server: ChatServer) -> None:
        self._log_offsets.append((server, server.log_path.stat().st_size))

    def logs_during_test(self) -> list[tuple[ChatServer, str]]:
        logs = []
        for server, offset in self._log_offsets:
            with server.log_path.open("rb") as log:
                log.seek(offset)
                logs.append((server, log.read().decode(errors="replace")))
        return logs

    def quit_all(self) -> None:
        drivers, self.drivers = self.drivers, []
        for driver in drivers:
            driver.quit()


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], Any], describe: Callable[[], str]
) -> Any:
    """WebDriverWait(...).until(condition), polling fast; on timeout, an AssertionError
    whose text ``describe()`` writes then, so it can say what the page showed."""
    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=POLL_SECONDS).until(condition)
    except TimeoutException:
        raise AssertionError(f"after waiting {WAIT_SECONDS:.0f} s: {describe()}") from None


# room.html keeps the page's socket in the top-level `let chatSocket` (a new one each
# time it reconnects); a script run by WebDriver can read it by name. 0 connecting,
# 1 open, 2 closing, 3 closed.
SOCKET_STATE_SCRIPT = "return typeof chatSocket === 'undefined' ? -1 : chatSocket.readyState;"
SOCKET_OPEN = 1
SOCKET_CLOSED = 3

# Django's auth views (app/mysite/urls.py) and where the app's settings send you after them.
LOGIN_PATH = "/accounts/login/"
LOGGED_OUT_PATH = "/chat/"  # LOGOUT_REDIRECT_URL


class PageWindow:
    """One browser window showing a page served by ``server``."""

    def __init__(self, driver: WebDriver, handle: str, server: ChatServer) -> None:
        self.driver = driver
        self.handle = handle
        self.server = server

    def focus(self) -> None:
        """Make this the window WebDriver commands go to."""
        if self.driver.current_window_handle != self.handle:
            self.driver.switch_to.window(self.handle)


class ChatWindow(PageWindow):
    """One browser window showing a chat room page (room.html)."""

    def __init__(
        self,
        driver: WebDriver,
        handle: str,
        server: ChatServer,
        room: str,
        *,
        host: str | None = None,
    ) -> None:
        super().__init__(driver, handle, server)
        self.room = room
        # The host name the page was loaded from (the browser keeps cookies per host name,
        # so `localhost` and `127.0.0.1` are two logins); the server's own by default.
        self.netloc = f"{host}:{server.port}" if host else server.netloc

    def __repr__(self) -> str:
        return f"<window on {self.netloc} in room {self.room!r}>"

    def wait_for_open_socket(self) -> None:
        """Wait until the room's WebSocket is open, that is the server accepted it and
        (the consumer adds it to the group before accepting) it is in the room's group."""
        self.focus()

        def socket_open(driver: WebDriver) -> bool:
            state = driver.execute_script(SOCKET_STATE_SCRIPT)
            if state == SOCKET_CLOSED:
                raise AssertionError(f"{self}: the chat socket closed instead of opening")
            return state == SOCKET_OPEN

        wait_until(self.driver, socket_open, lambda: f"{self}: the chat socket did not open")

    def type_message(self, text: str) -> None:
        """Type ``text`` and press Enter, as a person would (Basic Multilingual Plane only:
        ChromeDriver cannot type other characters)."""
        self.type_messages(text)

    def type_messages(self, *texts: str) -> None:
        """Type each text and press Enter after it, all in one go."""
        self.focus()
        message_input = self.driver.find_element(By.ID, "chat-message-input")
        message_input.send_keys(*(text + Keys.ENTER for text in texts))
        self._wait_until_sent(message_input)

    def paste_message_and_click_send(self, text: str) -> None:
        """Put ``text`` in the input as a paste would, then click Send: for text that
        ChromeDriver cannot type, such as emoji."""
        self.focus()
        message_input = self.driver.find_element(By.ID, "chat-message-input")
        self.driver.execute_script("arguments[0].value = arguments[1];", message_input, text)
        self.driver.find_element(By.ID, "chat-message-submit").click()
        self._wait_until_sent(message_input)

    def _wait_until_sent(self, message_input: WebElement) -> None:
        # The page clears the input right after handing the message to its socket.
        wait_until(
            self.driver,
            lambda _: message_input.get_property("value") == "",
            lambda: f"{self}: the page did not send the message (input was not cleared)",
        )

    def log(self) -> list[str]:
        """The messages in #chat-log, one per line, in the order they arrived."""
        self.focus()
        value = self.driver.execute_script("return document.getElementById('chat-log').value;")
        return value.split("\n")[:-1]  # the page ends every message with "\n"

    def wait_for_log(self, expected: list[str]) -> None:
        """Wait until the log holds as many messages as ``expected``, then require exactly
        those, in that order: a missing, reordered or duplicated message fails here."""

        def log_long_enough(_: WebDriver) -> tuple[list[str]] | None:
            log = self.log()
            return (log,) if len(log) >= len(expected) else None

        (log,) = wait_until(
            self.driver,
            log_long_enough,
            lambda: f"{self}: expected chat log {expected!r}, got {self.log()!r}",
        )
        # browser.py is not a test module, so pytest does not rewrite this assert to show
        # both sides: the message does.
        assert log == expected, f"{self}: expected chat log {expected!r}, got {log!r}"

    def status(self) -> str:
        """What #chat-status tells the person about the connection."""
        self.focus()
        return self.driver.find_element(By.ID, "chat-status").text

    def wait_for_status(self, start: str) -> str:
        """Wait until #chat-status starts with ``start``; return the whole text."""
        return wait_until(
            self.driver,
            lambda _: (status := self.status()).startswith(start) and status,
            lambda: f"{self}: expected a status starting {start!r}, got {self.status()!r}",
        )

    def watch_socket(self) -> None:
        """Remember the page's current socket, and the close codes it will get."""
        self.focus()
        self.driver.execute_script(
            "window.watchedSocket = chatSocket; window.watchedCloses = [];"
            "chatSocket.addEventListener('close', (e) => window.watchedCloses.push(e.code));"
        )

    def watched_socket_closes(self) -> list[int]:
        """The close codes the watched socket got (empty while it is open)."""
        self.focus()
        return self.driver.execute_script("return window.watchedCloses;")

    def wait_for_watched_socket_close(self) -> int:
        """Wait until the watched socket has closed; return its close code."""
        (code,) = wait_until(
            self.driver,
            lambda _: self.watched_socket_closes(),
            lambda: f"{self}: the watched socket stayed open (status {self.status()!r})",
        )
        return code

    def uses_watched_socket(self) -> bool:
        """True while the page still uses the socket ``watch_socket`` remembered."""
        self.focus()
        return self.driver.execute_script("return chatSocket === window.watchedSocket;")

    def reload(self) -> None:
        """Reload the page, as a person would (the new page's socket may still be
        connecting, or refused: wait for the status)."""
        self.focus()
        self.driver.refresh()

    def reload_room(self) -> None:
        """Reload the page and wait until the new page's socket is open: a new handshake,
        with whatever session cookie the browser holds now."""
        self.focus()
        self.driver.execute_script("window.beforeReload = true;")
        self.driver.refresh()
        wait_until(
            self.driver,
            lambda driver: driver.execute_script("return window.beforeReload !== true;"),
            lambda: f"{self}: the page was not reloaded",
        )
        self.wait_for_open_socket()

    def page_user(self) -> str | None:
        """Whom the page says you are (``#chat-user``), or None when it says you are
        anonymous (it shows ``#login-link`` instead)."""
        self.focus()
        named = self.driver.find_elements(By.ID, "chat-user")
        if named:
            return named[0].text
        if self.driver.find_elements(By.ID, "login-link"):
            return None
        # Neither: not a room page as room.html writes it, which must not pass as anonymous.
        raise AssertionError(
            f"{self}: the page says neither who you are nor that you are anonymous"
        )

    def log_out(self) -> None:
        """Click the page's Log out button and wait for the page Django sends you to
        afterwards (LOGOUT_REDIRECT_URL, the index page)."""
        self.focus()
        self.driver.find_element(By.ID, "logout-submit").click()
        wait_until(
            self.driver,
            lambda _: self.path() == LOGGED_OUT_PATH,
            lambda: f"{self}: expected {LOGGED_OUT_PATH} after logging out, got {self.path()!r}",
        )

    def path(self) -> str:
        self.focus()
        return self.driver.execute_script("return window.location.pathname;")

    def script_flag(self, name: str) -> Any:
        """The value of ``window[name]`` in this page (None when unset)."""
        self.focus()
        return self.driver.execute_script("return window[arguments[0]] ?? null;", name)

    def wait_for_script_flag(self, name: str) -> None:
        """Wait until a script in the page has set ``window[name]``."""
        wait_until(
            self.driver,
            lambda _: self.script_flag(name) is not None,
            lambda: f"{self}: no script set window.{name}",
        )

    def insert_html(self, markup: str) -> None:
        """Parse ``markup`` as HTML at the end of the page, as an unsafe page would."""
        self.focus()
        self.driver.execute_script(
            "document.body.insertAdjacentHTML('beforeend', arguments[0]);", markup
        )


class IndexWindow(PageWindow):
    """One browser window showing the index page (index.html), where a room is chosen."""

    def __repr__(self) -> str:
        return f"<index page window on {self.server.netloc}>"

    def type_into_focused_element(self, *keys: str) -> None:
        """Type where the page put the focus (the room name input, if it autofocuses)."""
        self.focus()
        ActionChains(self.driver).send_keys(*keys).perform()

    def type_room_name_and_click_enter_button(self, room: str) -> None:
        self.focus()
        self.driver.find_element(By.ID, "room-name-input").send_keys(room)
        self.driver.find_element(By.ID, "room-name-submit").click()

    def path(self) -> str:
        self.focus()
        return self.driver.execute_script("return window.location.pathname;")

    def wait_for_room(self, room: str) -> ChatWindow:
        """Wait until this window shows ``room``'s page with its socket open."""
        wait_until(
            self.driver,
            lambda _: self.path() == f"/chat/{room}/",
            lambda: f"{self}: expected to be in room {room!r}, but the path is {self.path()!r}",
        )
        window = ChatWindow(self.driver, self.handle, self.server, room)
        window.wait_for_open_socket()
        return window

    def error_text(self) -> str:
        self.focus()
        return self.driver.find_element(By.ID, "room-name-error").text

    def wait_for_error_text(self) -> str:
        """Wait until the page explains a problem with the room name; return the text."""
        return wait_until(
            self.driver,
            lambda _: self.error_text(),
            lambda: f"{self}: #room-name-error stayed empty (path is {self.path()!r})",
        )

    def mark_document(self, name: str) -> None:
        """Set ``window[name]`` in the current document; navigating away discards it."""
        self.focus()
        self.driver.execute_script("window[arguments[0]] = true;", name)

    def document_is_marked(self, name: str) -> bool:
        # ChromeDriver waits for a navigation in progress to finish before it runs a
        # script, so a navigation the page started is over by the time this answers.
        self.focus()
        return self.driver.execute_script("return window[arguments[0]] === true;", name)


def log_in_to_room(
    driver: WebDriver,
    server: ChatServer,
    room: str,
    username: str,
    password: str,
    *,
    host: str | None = None,
) -> ChatWindow:
    """In the driver's current window, log in through the app's login form as a person
    does (open it, type the name and password, click Log in), with ``next`` set to
    ``room``'s page; return that page once its socket is open.

    ``host`` is the host name to use instead of the server's address (``localhost`` for
    ``127.0.0.1``, which the app's ALLOWED_HOSTS admits while DEBUG is on)."""
    room_path = f"/chat/{room}/"
    origin = f"http://{host}:{server.port}" if host else server.url
    driver.get(f"{origin}{LOGIN_PATH}?next={room_path}")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    window = ChatWindow(driver, driver.current_window_handle, server, room, host=host)

    def in_room(_: WebDriver) -> bool:
        # A refused login stays on the form and says so: fail with that, not a timeout.
        if errors := driver.find_elements(By.ID, "login-error"):
            raise AssertionError(f"logging in as {username!r} failed: {errors[0].text!r}")
        return window.path() == room_path

    wait_until(
        driver,
        in_room,
        lambda: f"logging in as {username!r}: expected {room_path}, got {window.path()!r}",
    )
    window.wait_for_open_socket()
    return window


class WindowPool:
    """The session browser's windows, lent to one test at a time.

    Opening a window costs a few hundred milliseconds, so a window a test is done with is
    kept for the next one, but emptied first: navigating it to about:blank unloads the
    page, which closes its socket and discards everything the page's scripts set.
    """

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.home_handle = driver.current_window_handle  # never lent, so the session lives
        self._idle: list[str] = []

    def borrow(self) -> str:
        if self._idle:
            handle = self._idle.pop()
            self.driver.switch_to.window(handle)
        else:
            self.driver.switch_to.new_window("window")
            handle = self.driver.current_window_handle
        return handle

    def give_back(self, handles: list[str]) -> None:
        for handle in handles:
            self.driver.switch_to.window(handle)
            self.driver.get("about:blank")
            self._idle.append(handle)
        self.driver.switch_to.window(self.home_handle)


class Browser:
    """One test's windows in the session's browser, each showing a page of the chat."""

    def __init__(self, pool: WindowPool) -> None:
        self.pool = pool
        self.driver = pool.driver
        self.handles: list[str] = []

    def new_window(self) -> str:
        handle = self.pool.borrow()
        self.handles.append(handle)
        return handle

    def open_room(self, server: ChatServer, room: str) -> ChatWindow:
        """A window showing ``room`` on ``server``, its socket open."""
        handle = self.new_window()
        self.driver.get(f"{server.url}/chat/{room}/")
        window = ChatWindow(self.driver, handle, server, room)
        window.wait_for_open_socket()
        return window

    def open_index(self, server: ChatServer) -> IndexWindow:
        """A window showing the index page (/chat/)."""
        handle = self.new_window()
        self.driver.get(f"{server.url}/chat/")
        return IndexWindow(self.driver, handle, server)

    def close_windows(self) -> None:
        """Empty this test's windows and return them to the pool."""
        handles, self.handles = self.handles, []
        self.pool.give_back(handles)
