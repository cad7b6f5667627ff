"""Who is logged in, in which tab (issue #17, "Who said it"; docs/logged-in-as-someone-else.md).

People trying the chat report that, entering a room, they are now and then logged out, or
logged in as another user who was in that room. These tests show why, in a real browser
against a real Daphne: every tab of one browser profile sends the same session cookie, so
logging in or out in one tab does it for all of them; but an open WebSocket keeps the user
of its handshake (AuthMiddlewareStack reads the cookie then, and only then), so the change
shows only on a tab's next page. The positive controls: two separate profiles, and one
profile on two host names, keep two users apart.

Every user logs in through the app's login form (a password hash, about 0.3 s of the
server's CPU each). Each test starts browsers of its own (``profiles``) and never the
session's: its session cookie would go with the session's windows to every other server
on 127.0.0.1, since a browser keeps cookies per host name, whatever the port.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from e2e.browser import ChatWindow, HeadlessChromium, Profiles, UniqueRoom, log_in_to_room
from harness import Accounts, ChatServer, make_accounts

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class AccountsChat:
    """A Daphne chat server whose database holds two users, A and B."""

    server: ChatServer
    accounts: Accounts

    @property
    def a(self) -> str:
        return self.accounts.usernames[0]

    @property
    def b(self) -> str:
        return self.accounts.usernames[1]

    def log_in(
        self, driver: WebDriver, room: str, username: str, host: str | None = None
    ) -> ChatWindow:
        """Log in as ``username`` in the driver's current window and enter ``room``."""
        return log_in_to_room(
            driver, self.server, room, username, self.accounts.password, host=host
        )


@pytest.fixture(scope="module")
def accounts_chat(
    headless_chromium: HeadlessChromium, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccountsChat]:
    """One server for this file's tests (each uses rooms of its own), on the InMemory
    layer: which layer carries the messages does not matter to who sent them.
    ``headless_chromium`` comes first so that a missing Chromium skips before any start."""
    directory = tmp_path_factory.mktemp("identity")
    accounts = make_accounts(directory / "accounts", users=2)
    server = ChatServer.start(env=accounts.env, log_dir=directory / "server")
    try:
        yield AccountsChat(server, accounts)
    finally:
        server.stop()


@pytest.fixture
def chat(accounts_chat: AccountsChat, profiles: Profiles) -> AccountsChat:
    """The server with A and B, its log from now on in this test's failure report."""
    profiles.watch(accounts_chat.server)
    return accounts_chat


def send_and_expect(
    sender: ChatWindow, text: str, line: str, *logs: tuple[ChatWindow, list[str]]
) -> None:
    """``sender`` types ``text``; each (window, log) then shows ``line`` last, after the
    lines already in its log (which this adds it to)."""
    sender.type_message(text)
    for window, log in logs:
        log.append(line)
        window.wait_for_log(log)


def test_tabs_of_one_profile_share_a_login_but_an_open_socket_keeps_its_user(
    chat: AccountsChat, profiles: Profiles, unique_room: UniqueRoom
) -> None:
    room = unique_room("room")
    driver = profiles.start()

    # Tab 1 logs in as A and enters the room.
    tab1 = chat.log_in(driver, room, chat.a)
    assert tab1.page_user() == chat.a

    # Tab 2, of the same profile, logs in as B and enters the same room: the profile's one
    # session cookie is B's now (Django's login() deleted A's session, which the cookie
    # named, and started a new one for B).
    driver.switch_to.new_window("tab")
    tab2 = chat.log_in(driver, room, chat.b)
    assert tab2.page_user() == chat.b

    # Tab 1 still shows A, and its socket, opened with A's cookie, still sends as A:
    # both tabs attribute its message to A, and tab 2's to B.
    assert tab1.page_user() == chat.a
    log1: list[str] = []
    log2: list[str] = []
    send_and_expect(tab1, "from tab 1", f"{chat.a}: from tab 1", (tab1, log1), (tab2, log2))
    send_and_expect(tab2, "from tab 2", f"{chat.b}: from tab 2", (tab1, log1), (tab2, log2))

    # Tab 1's next page is B's, and so is its new socket (the reload empties its log).
    tab1.reload_room()
    assert tab1.page_user() == chat.b
    log1 = []
    send_and_expect(
        tab1, "from tab 1, reloaded", f"{chat.b}: from tab 1, reloaded", (tab1, log1), (tab2, log2)
    )


def test_logging_out_in_one_tab_logs_every_tab_out_at_its_next_page(
    chat: AccountsChat, profiles: Profiles, unique_room: UniqueRoom
) -> None:
    room = unique_room("room")
    driver = profiles.start()

    # Tab 1 logs in as A; tab 2 just opens the room, and is A without logging in.
    tab1 = chat.log_in(driver, room, chat.a)
    driver.switch_to.new_window("tab")
    driver.get(f"{chat.server.url}/chat/{room}/")
    tab2 = ChatWindow(driver, driver.current_window_handle, chat.server, room)
    tab2.wait_for_open_socket()
    assert tab2.page_user() == chat.a

    # Tab 2 logs out, and comes back to the room: anonymous.
    tab2.log_out()
    driver.get(f"{chat.server.url}/chat/{room}/")
    tab2.wait_for_open_socket()
    assert tab2.page_user() is None

    # Tab 1 still shows A and still sends as A; tab 2 sends anonymously (no name).
    assert tab1.page_user() == chat.a
    log1: list[str] = []
    log2: list[str] = []
    send_and_expect(tab1, "from tab 1", f"{chat.a}: from tab 1", (tab1, log1), (tab2, log2))
    send_and_expect(tab2, "from tab 2", "from tab 2", (tab1, log1), (tab2, log2))

    # Tab 1's next page is anonymous, and so is its new socket.
    tab1.reload_room()
    assert tab1.page_user() is None
    log1 = []
    send_and_expect(
        tab1, "from tab 1, reloaded", "from tab 1, reloaded", (tab1, log1), (tab2, log2)
    )


def test_separate_profiles_keep_their_own_users(
    chat: AccountsChat, profiles: Profiles, unique_room: UniqueRoom
) -> None:
    """The positive control of the first test: the same steps in two profiles (two
    browsers, two cookie jars) leave each its own user, before and after a reload.
    Before the reload, two tabs of one profile would pass as well (the first page and
    socket are A's either way); the reload is what tells them apart."""
    room = unique_room("room")
    first = profiles.start()
    one = chat.log_in(first, room, chat.a)
    second = profiles.start()
    two = chat.log_in(second, room, chat.b)
    assert (one.page_user(), two.page_user()) == (chat.a, chat.b)

    log1: list[str] = []
    log2: list[str] = []
    send_and_expect(one, "from one", f"{chat.a}: from one", (one, log1), (two, log2))
    send_and_expect(two, "from two", f"{chat.b}: from two", (one, log1), (two, log2))

    # A reload (a new page and a new handshake each) keeps each profile's user.
    one.reload_room()
    two.reload_room()
    assert (one.page_user(), two.page_user()) == (chat.a, chat.b)
    log1, log2 = [], []
    send_and_expect(
        one, "from one, reloaded", f"{chat.a}: from one, reloaded", (one, log1), (two, log2)
    )
    send_and_expect(
        two, "from two, reloaded", f"{chat.b}: from two, reloaded", (one, log1), (two, log2)
    )


def test_one_profile_keeps_a_login_per_host_name(
    chat: AccountsChat, profiles: Profiles, unique_room: UniqueRoom
) -> None:
    """The docs' other way to try two users in one browser: the same server under two
    host names, 127.0.0.1 and localhost, whose cookies the browser keeps apart."""
    room = unique_room("room")
    driver = profiles.start()

    tab1 = chat.log_in(driver, room, chat.a, host="127.0.0.1")
    driver.switch_to.new_window("tab")
    tab2 = chat.log_in(driver, room, chat.b, host="localhost")

    # After both logins and a reload of the first tab, each tab is still its own user.
    tab1.reload_room()
    assert (tab1.page_user(), tab2.page_user()) == (chat.a, chat.b)
    log1: list[str] = []
    log2: list[str] = []
    send_and_expect(tab1, "from 127.0.0.1", f"{chat.a}: from 127.0.0.1", (tab1, log1), (tab2, log2))
    send_and_expect(tab2, "from localhost", f"{chat.b}: from localhost", (tab1, log1), (tab2, log2))
