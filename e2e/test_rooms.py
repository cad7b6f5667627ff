"""Rooms in a real browser: what is posted in a room reaches every window in it, in order
and exactly once, never a window in another room, and shows exactly as it was typed.

Each test runs on every layer (the root ``layer`` fixture: inmemory, redis, redis-pubsub,
postgres, rabbitmq, nats, valkey, sqlite) against a live Daphne server; delivery and
isolation also run with the sync consumer.
"""

from __future__ import annotations

import pytest

from e2e.browser import Browser, UniqueRoom
from harness import CONSUMERS, REDIS_LAYERS
from harness.live import LiveChat

pytestmark = pytest.mark.browser


# The newest layers' sync-consumer runs are in `nox -s heavy` (the default run's time).
@pytest.mark.heavy_on_layers("valkey", "sqlite", consumer=("sync",))
@pytest.mark.parametrize("consumer", CONSUMERS)
def test_message_reaches_every_window_in_the_room_in_order_exactly_once(
    layer: str, consumer: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    (server,) = live_chat(layer, consumer)
    room = unique_room("room")
    windows = [browser.open_room(server, room) for _ in range(3)]
    expected: list[str] = []

    # Each window posts in turn; every window, the sender included, shows each message
    # before the next is posted, so the order across senders is defined.
    for number, sender in enumerate(windows, start=1):
        message = f"message {number} from window {number}"
        sender.type_message(message)
        expected.append(message)
        for window in windows:
            window.wait_for_log(expected)

    # A burst typed in one go in one window arrives everywhere in the order it was sent.
    burst = [f"burst {number}" for number in range(1, 6)]
    windows[0].type_messages(*burst)
    expected += burst
    for window in windows:
        window.wait_for_log(expected)

    # A last message from another window: any duplicate of the burst, which would reach a
    # socket before this message, is in the logs by the time it has arrived.
    windows[1].type_message("last")
    expected.append("last")
    for window in windows:
        window.wait_for_log(expected)


@pytest.mark.compat
@pytest.mark.redis
@pytest.mark.parametrize("layer", REDIS_LAYERS)
def test_compat_smoke_message_reaches_the_other_window_in_the_room(
    layer: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    """The quick same-room check that `nox -s compat` runs in every version cell."""
    (server,) = live_chat(layer)
    room = unique_room("room")
    first, second = browser.open_room(server, room), browser.open_room(server, room)
    first.type_message("hello")
    second.wait_for_log(["hello"])
    second.type_message("hello back")
    first.wait_for_log(["hello", "hello back"])
    second.wait_for_log(["hello", "hello back"])


@pytest.mark.heavy_on_layers("valkey", "sqlite", consumer=("sync",))
@pytest.mark.parametrize("consumer", CONSUMERS)
def test_message_stays_in_its_room_both_ways(
    layer: str, consumer: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    """Absence is only shown after a later message in the same window has arrived (the
    positive control): a message leaked from the other room, posted and delivered to its
    own room before that one was posted, would have reached the window first."""
    (server,) = live_chat(layer, consumer)
    # The names differ only in letter case: to the URL, Channels groups and Redis keys
    # they are different rooms, so folding case anywhere would show up as a leak.
    room_a = unique_room("room")
    room_b = room_a.upper()
    a1, a2 = browser.open_room(server, room_a), browser.open_room(server, room_a)
    b1, b2 = browser.open_room(server, room_b), browser.open_room(server, room_b)

    a1.type_message("for room A")
    a1.wait_for_log(["for room A"])
    a2.wait_for_log(["for room A"])

    # A to B: room B's windows receive room B's message, and only that.
    b1.type_message("for room B")
    b1.wait_for_log(["for room B"])
    b2.wait_for_log(["for room B"])

    # B to A: room A's windows receive room A's next message, and not room B's.
    a2.type_message("for room A again")
    a1.wait_for_log(["for room A", "for room A again"])
    a2.wait_for_log(["for room A", "for room A again"])


# None of these is markup to the page: room.html appends messages to a <textarea>'s
# value. The onerror handlers set XSS_FLAG, which must stay unset.
XSS_FLAG = "chatMessageRanScript"
IMG_PAYLOAD = '<img src=x onerror="window.{flag} = true">'
TYPED_MESSAGES = [
    "Grüße aus Köln, naïve café — 你好，世界 — привет — שלום — ½ ≠ ¼",  # noqa: RUF001 (Chinese comma)
    'He said "hi", she said \'bye\' & left \\ a backslash, `ticks` and {"message": 1}',
    IMG_PAYLOAD.format(flag=XSS_FLAG),
    f'</textarea><img src=x onerror="window.{XSS_FLAG} = true"><textarea>',
    f"<script>window.{XSS_FLAG} = true</script><b>not bold</b> &amp; &lt;",
    "   spaces kept at both ends   ",
]
# ChromeDriver types only the Basic Multilingual Plane; these are pasted instead.
PASTED_MESSAGES = ["emoji beyond the BMP: 🎉👩‍💻🇩🇪 and a lone ☃"]


def test_message_text_arrives_literally_and_runs_no_script(
    layer: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    (server,) = live_chat(layer)
    room = unique_room("room")
    sender, receiver = browser.open_room(server, room), browser.open_room(server, room)

    sender.type_messages(*TYPED_MESSAGES)
    for message in PASTED_MESSAGES:
        sender.paste_message_and_click_send(message)
    expected = TYPED_MESSAGES + PASTED_MESSAGES
    sender.wait_for_log(expected)
    receiver.wait_for_log(expected)

    # Positive control: the same markup, parsed as HTML into this page, does run its
    # handler (the image fails to load from this server). It is added after the chat
    # messages arrived, so had they been parsed as HTML, theirs would have run first.
    control_flag = "controlPayloadRanScript"
    for window in (sender, receiver):
        window.insert_html(IMG_PAYLOAD.format(flag=control_flag))
    for window in (sender, receiver):
        window.wait_for_script_flag(control_flag)
        assert window.script_flag(XSS_FLAG) is None, f"{window}: a chat message ran script"
