"""The index page (/chat/): Enter and the button both take you to the room; a name that
cannot be a room is explained on the page instead.

The page's checks run in the browser, the same on every layer, so one layer is enough.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.keys import Keys

from e2e.browser import Browser, UniqueRoom
from harness.live import LiveChat

pytestmark = pytest.mark.browser

LAYER = "inmemory"
LONGEST_ROOM_NAME = 94  # the group is "chat_<room>" and group names are under 100 characters


def test_enter_in_the_autofocused_input_opens_the_room(
    live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    (server,) = live_chat(LAYER)
    room = unique_room("room")
    index = browser.open_index(server)
    # As in the tutorial's tests: type without clicking, so the input must have the focus.
    index.type_into_focused_element(room, Keys.ENTER)
    chat = index.wait_for_room(room)
    chat.type_message("arrived by Enter")
    chat.wait_for_log(["arrived by Enter"])


def test_the_enter_button_opens_the_room_even_with_the_longest_name(
    live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    (server,) = live_chat(LAYER)
    room = unique_room("room").ljust(LONGEST_ROOM_NAME, "x")
    assert len(room) == LONGEST_ROOM_NAME
    index = browser.open_index(server)
    index.type_room_name_and_click_enter_button(room)
    chat = index.wait_for_room(room)  # the server accepted the socket too
    chat.type_message("arrived by the button")
    chat.wait_for_log(["arrived by the button"])


@pytest.mark.parametrize(
    ("room", "explanation"),
    [
        pytest.param("", "Type a room name first.", id="empty"),
        pytest.param("x" * (LONGEST_ROOM_NAME + 1), "at most 94 characters", id="too-long"),
        pytest.param("café", "only ASCII letters", id="non-ascii"),
        pytest.param("two words", "only ASCII letters", id="space"),
        pytest.param("a/b", "only ASCII letters", id="slash"),
        pytest.param("room?x=<b>", "only ASCII letters", id="query-and-markup"),
    ],
)
def test_an_invalid_room_name_is_explained_and_not_opened(
    live_chat: LiveChat, browser: Browser, room: str, explanation: str
) -> None:
    (server,) = live_chat(LAYER)
    index = browser.open_index(server)
    index.mark_document("stillOnTheIndexPage")

    index.type_into_focused_element(room, Keys.ENTER)

    assert explanation in index.wait_for_error_text()
    assert index.document_is_marked("stillOnTheIndexPage"), f"{index} navigated away"
    assert index.path() == "/chat/"
