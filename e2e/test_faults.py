"""What a person sees in the room page when the layer's server restarts: Redis on both
Redis layers, then RabbitMQ, NATS and PostgreSQL (at the end of this file).

Two windows chat in a room on a Daphne server of the test's own, over a redis-server of
the test's own (the session's servers must never meet a restarted Redis), which is stopped
(``shutdown``) and started again on the same port (``start_again``). What each layer does,
found by experiment with channels-redis 4.3.0, redis-py 8.1.0 and Daphne 4.2.3 and
asserted here (README, difference 9; studies/faults_browser/README.md):

- ``redis`` (RedisChannelLayer): every consumer waits for its messages in a blocking
  BZPOPMIN, which fails as soon as Redis goes away; the exception ends the consumer and
  Daphne closes each socket with 1011. While Redis is down every new handshake fails
  (HTTP 500: group_add cannot connect). channels-redis does reconnect by itself: once
  Redis is back, new sockets work (the first command on a connection that was pooled
  before the restart may still fail once, with another 500).
- ``redis-pubsub`` (RedisPubSubChannelLayer): the sockets stay open. The layer's receive
  task logs "Unexpected exception in receive task" and tries again every second, and
  redis-py subscribes again to every channel when it reconnects, so the windows keep
  receiving. But the first message sent after the restart goes out on the publishing
  connection Redis closed: group_send raises, that sender's consumer ends (1011) and the
  message reaches nobody, without a word to anyone. The next message goes through.

The tutorial's page is dead after its socket closes, so a person reloads it; this page
reconnects by itself (0.5 s doubling to 8 s, jittered) and says so in ``#chat-status``.
"""

from __future__ import annotations

import json
import re

import pytest

from e2e.browser import Browser, ChatWindow, UniqueRoom, wait_until
from harness import REDIS_LAYERS, Backend, ChatServer, RedisServer
from harness.live import LiveChat, layer_param

pytestmark = pytest.mark.browser

# Daphne closes a socket whose application raised with 1011 (internal error).
CLOSED_BY_SERVER_ERROR = 1011
# What channels-redis's pub/sub receive task logs each time its connection fails.
PUBSUB_RECEIVE_FAILED = "Unexpected exception in receive task"


def attempt(status: str) -> int:
    """The attempt number in a status such as "reconnecting… (attempt 3)", else 0."""
    found = re.search(r"\(attempt (\d+)\)", status)
    return int(found.group(1)) if found else 0


def open_two_windows_that_chat(
    layer: str, redis: RedisServer, live_chat: LiveChat, browser: Browser, room: str
) -> tuple[ChatServer, ChatWindow, ChatWindow]:
    """A server of this test's own on ``redis``, two windows in ``room``, and the positive
    control: a message reaches both before any fault."""
    server = live_chat.own(layer, backend=Backend(layer, {"REDIS_URL": redis.url}, redis))
    return (server, *open_windows_that_chat(server, browser, room))


def stop_redis_and_see_what_the_page_shows(
    layer: str, redis: RedisServer, server: ChatServer, windows: tuple[ChatWindow, ...]
) -> None:
    """Stop Redis, and wait (bounded) until the fault has reached the server and pages."""
    log_offset = server.log_path.stat().st_size
    redis.shutdown()
    if layer == "redis":
        # Every consumer's blocking receive fails: each socket closes, and the page keeps
        # trying; its next handshake fails too while Redis is down.
        for window in windows:
            assert window.wait_for_watched_socket_close() == CLOSED_BY_SERVER_ERROR
        for window in windows:
            wait_until(
                window.driver,
                lambda _, window=window: attempt(window.status()) >= 2,
                lambda window=window: f"{window}: no second attempt: {window.status()!r}",
            )
            assert window.status().startswith("reconnecting… (attempt ")
    else:
        # The pub/sub receive task notices; the sockets stay open and the page is calm.
        wait_until(
            windows[0].driver,
            lambda _: PUBSUB_RECEIVE_FAILED in server.log_text()[log_offset:],
            lambda: f"the server never logged {PUBSUB_RECEIVE_FAILED!r}",
        )
        for window in windows:
            assert window.uses_watched_socket()
            assert window.watched_socket_closes() == []
            assert window.status() == "connected"


@pytest.mark.parametrize("layer", [layer_param(layer) for layer in REDIS_LAYERS])
def test_after_a_redis_restart_the_room_page_reconnects_and_chat_flows_again(
    layer: str,
    restartable_redis: RedisServer,
    live_chat: LiveChat,
    browser: Browser,
    unique_room: UniqueRoom,
) -> None:
    redis = restartable_redis
    server, first, second = open_two_windows_that_chat(
        layer, redis, live_chat, browser, unique_room("room")
    )

    stop_redis_and_see_what_the_page_shows(layer, redis, server, (first, second))
    redis.start_again()

    if layer == "redis-pubsub":
        # The first message after the restart is lost, and its sender's socket closes.
        first.type_message("lost: sent first after the restart")
        assert first.wait_for_watched_socket_close() == CLOSED_BY_SERVER_ERROR
    for window in (first, second):
        window.wait_for_status("connected")
    # On redis both pages reconnected; on redis-pubsub only the sender's did.
    assert not first.uses_watched_socket()
    assert second.uses_watched_socket() == (layer == "redis-pubsub")
    if layer == "redis-pubsub":
        assert second.watched_socket_closes() == []

    # Chat flows again both ways; the log kept what was said before the restart, and
    # the lost message (sent before these) would have arrived first.
    first.type_message("after the restart")
    for window in (first, second):
        window.wait_for_log(["before the restart", "after the restart"])
    second.type_message("back from window 2")
    for window in (first, second):
        window.wait_for_log(["before the restart", "after the restart", "back from window 2"])


@pytest.mark.parametrize("layer", [layer_param(layer) for layer in REDIS_LAYERS])
def test_after_a_redis_restart_a_reload_empties_the_log_and_chat_flows_again(
    layer: str,
    restartable_redis: RedisServer,
    live_chat: LiveChat,
    browser: Browser,
    unique_room: UniqueRoom,
) -> None:
    """The comparison: what a person with the tutorial's page does, reload. It works,
    but the log starts empty (the app keeps no history), and on redis-pubsub the first
    message after the restart is lost all the same."""
    redis = restartable_redis
    server, first, second = open_two_windows_that_chat(
        layer, redis, live_chat, browser, unique_room("room")
    )

    stop_redis_and_see_what_the_page_shows(layer, redis, server, (first, second))
    redis.start_again()
    for window in (first, second):
        window.reload()
    for window in (first, second):
        window.wait_for_status("connected")
        assert window.log() == []
        window.watch_socket()

    if layer == "redis-pubsub":
        first.type_message("lost: sent first after the restart")
        assert first.wait_for_watched_socket_close() == CLOSED_BY_SERVER_ERROR
        first.wait_for_status("connected")

    first.type_message("after the reload")
    for window in (first, second):
        window.wait_for_log(["after the reload"])
    second.type_message("back from window 2")
    for window in (first, second):
        window.wait_for_log(["after the reload", "back from window 2"])


# ------------------------------------------------------------- the other layers' servers
#
# What each layer did when its own server restarted, found with `bench --fault
# backend-restart` (README, "Faults") and asserted here in the browser; channels-rabbitmq
# 4.0.1 on RabbitMQ 3.10.8, channels-nats 0.6.1 on nats-server 2.9.10, channels-postgres
# 1.1.4 on PostgreSQL 15.18, Daphne 4.2.3:
#
# - rabbitmq, nats: the layer reconnects by itself and the sockets stay open. A message
#   sent while the server is away is held (in the sender's consumer, or nats-py's pending
#   buffer) and arrives once it is back: late, not lost.
# - postgres: the process's LISTEN session dies with the server and nothing starts it
#   again, so the process never receives another message. Its idle sockets stay open and
#   the page says "connected"; the first use of each pooled connection that the restart
#   closed fails (the socket closes with 1011, a handshake gets HTTP 500). A server process
#   started after the restart chats normally.


@pytest.mark.parametrize("layer", [layer_param(layer) for layer in ("rabbitmq", "nats")])
def test_a_broker_restart_keeps_the_sockets_and_delivers_what_was_sent_meanwhile(
    layer: str,
    restartable_backend: Backend,
    live_chat: LiveChat,
    browser: Browser,
    unique_room: UniqueRoom,
) -> None:
    broker = restartable_backend.server
    server = live_chat.own(layer, backend=restartable_backend)
    first, second = open_windows_that_chat(server, browser, unique_room("room"))

    broker.shutdown()
    first.type_message("sent while the broker was away")
    broker.start_again()

    for window in (first, second):
        window.wait_for_log(["before the restart", "sent while the broker was away"])
    second.type_message("after the restart")
    for window in (first, second):
        window.wait_for_log(
            ["before the restart", "sent while the broker was away", "after the restart"]
        )
        assert window.uses_watched_socket() and window.watched_socket_closes() == []
        assert window.status() == "connected"


@pytest.mark.parametrize("layer", [layer_param("postgres")])
def test_after_a_postgres_restart_a_server_never_hears_its_rooms_again(
    layer: str,
    restartable_backend: Backend,
    live_chat: LiveChat,
    browser: Browser,
    unique_room: UniqueRoom,
) -> None:
    """The old server's windows never get the new server's message. Absence is proven by
    a later arrival on the same socket, as elsewhere; but nothing from the room can be the
    later arrival here (the old server never hears its rooms again: that is the finding),
    so it is a frame the old server sends by itself: the ``{"error": ...}`` reply to a
    frame that is not JSON, sent through that same socket after the new server's message
    has reached its own window. That reply needs no layer and no database, so it comes
    back. PostgreSQL notifies every listener at once, before the new server can pass the
    message on: an old server still listening would have had it in hand before the bad
    frame was even sent, and written it to the socket first, so on that one ordered
    socket it would have arrived before the reply."""
    postgres = restartable_backend.server
    room = unique_room("room")
    before = live_chat.own(layer, backend=restartable_backend)
    first, second = open_windows_that_chat(before, browser, room)
    for window in (first, second):
        record_frames(window)

    postgres.shutdown()
    postgres.start_again()
    # The positive control: a server started after the restart chats in the same room.
    after = live_chat.own(layer, backend=restartable_backend)
    third = browser.open_room(after, room)
    assert third.wait_for_status("connected") == "connected"
    third.type_message("from the new server")
    third.wait_for_log(["from the new server"])

    # The old server's windows did not get it, and nothing tells them: the socket is open
    # and the page says it is connected.
    for window in (first, second):
        send_raw_frame(window, NOT_JSON)
    for window in (first, second):
        frames = [json.loads(frame) for frame in wait_for_error_reply(window)]
        assert [sorted(frame) for frame in frames] == [["error"]], frames  # nothing before it
        assert window.log() == ["before the restart"]
        assert window.uses_watched_socket() and window.watched_socket_closes() == []
        assert window.status() == "connected"
    # What the old page sends goes out on a pooled database connection that the restart
    # closed: the consumer raises and the socket closes with 1011.
    first.type_message("from the old server")
    assert first.wait_for_watched_socket_close() == CLOSED_BY_SERVER_ERROR


# A frame the consumer refuses: its sender alone gets {"error": ...} (no layer involved).
NOT_JSON = "not json"


def record_frames(window: ChatWindow) -> None:
    """From now on, keep every frame the watched socket receives, in order."""
    window.focus()
    window.driver.execute_script(
        "window.watchedFrames = []; window.watchedSocket.addEventListener("
        "'message', (e) => window.watchedFrames.push(e.data));"
    )


def send_raw_frame(window: ChatWindow, text: str) -> None:
    """Send ``text`` as it is through the watched socket (the page would wrap it in JSON)."""
    window.focus()
    window.driver.execute_script("window.watchedSocket.send(arguments[0]);", text)


def wait_for_error_reply(window: ChatWindow) -> list[str]:
    """Wait until an ``{"error": ...}`` frame has reached the watched socket; return every
    frame it received since ``record_frames``, in order."""
    script = "return window.watchedFrames;"

    def replied(driver: object) -> tuple[list[str]] | None:
        frames = window.driver.execute_script(script)
        return (frames,) if any('"error"' in frame for frame in frames) else None

    window.focus()
    (frames,) = wait_until(
        window.driver,
        replied,
        lambda: f"{window}: no error reply; frames: {window.driver.execute_script(script)!r}",
    )
    return frames


def open_windows_that_chat(
    server: ChatServer, browser: Browser, room: str
) -> tuple[ChatWindow, ChatWindow]:
    """Two windows in ``room`` on ``server``, and the positive control: a message reaches
    both before any fault. Their sockets are watched from then on."""
    first, second = browser.open_room(server, room), browser.open_room(server, room)
    for window in (first, second):
        assert window.wait_for_status("connected") == "connected"
    first.type_message("before the restart")
    for window in (first, second):
        window.wait_for_log(["before the restart"])
        window.watch_socket()
    return first, second
