"""One room across two Daphne processes: a browser window on each server, same room.

A deployment runs several server processes; the channel layer is what carries a room's
messages between them. Every layer with a server of its own does (Redis, PostgreSQL,
RabbitMQ, NATS, Valkey), and so does the SQLite layer, whose file every server of one
machine opens; InMemory does not, by design.

And the page in a real browser on each ASGI server added beside Daphne and Uvicorn
(harness/tests/test_asgi_servers.py checks their contract with a WebSocket client).
"""

from __future__ import annotations

import pytest

from e2e.browser import Browser, UniqueRoom
from harness import ASGI_SERVERS, LAYERS
from harness.live import LiveChat, layer_param

pytestmark = pytest.mark.browser

SHARED_LAYERS = [layer for layer in LAYERS if layer != "inmemory"]


@pytest.mark.parametrize("layer", [layer_param(layer) for layer in SHARED_LAYERS])
def test_two_servers_sharing_a_backend_deliver_each_others_messages(
    layer: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    first_server, second_server = live_chat(layer, count=2)
    assert first_server.pid != second_server.pid
    room = unique_room("room")
    on_first = browser.open_room(first_server, room)
    on_second = browser.open_room(second_server, room)

    on_first.type_message("posted through server 1")
    on_first.wait_for_log(["posted through server 1"])
    on_second.wait_for_log(["posted through server 1"])

    on_second.type_message("posted through server 2")
    on_first.wait_for_log(["posted through server 1", "posted through server 2"])
    on_second.wait_for_log(["posted through server 1", "posted through server 2"])


def test_two_servers_on_the_inmemory_layer_do_not_share_a_room(
    live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    """Expected behaviour, not a bug: InMemoryChannelLayer keeps its groups in the memory
    of one process, so each server has a room of that name of its own. That is why it is
    for development and tests, and a deployment with several processes needs a layer with
    a server (Redis, PostgreSQL, RabbitMQ or NATS).

    Positive control: each window still receives its own messages, so both sockets are
    open and in their server's room; the same steps on the other layers (the test above)
    do carry each message to the other server."""
    first_server, second_server = live_chat("inmemory", count=2)
    assert first_server.pid != second_server.pid
    room = unique_room("room")
    on_first = browser.open_room(first_server, room)
    on_second = browser.open_room(second_server, room)

    on_first.type_message("posted through server 1")
    on_first.wait_for_log(["posted through server 1"])

    on_second.type_message("posted through server 2")
    on_second.wait_for_log(["posted through server 2"])  # and not server 1's message

    on_first.type_message("posted through server 1 again")
    on_first.wait_for_log(["posted through server 1", "posted through server 1 again"])


@pytest.mark.parametrize(
    "asgi", [asgi for asgi in ASGI_SERVERS if asgi not in ("daphne", "uvicorn")]
)
def test_two_windows_in_one_room_on_each_asgi_server(
    asgi: str, live_chat: LiveChat, browser: Browser, unique_room: UniqueRoom
) -> None:
    (server,) = live_chat("inmemory", asgi=asgi)
    room = unique_room("room")
    first = browser.open_room(server, room)
    second = browser.open_room(server, room)

    first.type_message(f"posted through {asgi}")
    first.wait_for_log([f"posted through {asgi}"])
    second.wait_for_log([f"posted through {asgi}"])

    second.type_message("and back")
    first.wait_for_log([f"posted through {asgi}", "and back"])
    second.wait_for_log([f"posted through {asgi}", "and back"])
