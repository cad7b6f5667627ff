"""Consumer tests: WebsocketCommunicator through the real routing (mysite.asgi.application),
for both consumers, on every channel layer (each against its real server: Redis,
PostgreSQL, RabbitMQ, NATS, Valkey; SQLite against the session's throw-away file).

The tests marked ``compat`` are the quick core that every cell of `nox -s compat` runs.

Absence is never shown by waiting alone: each isolation check is followed by a positive
control whose message must arrive first, so a leaked message would be seen before it.

Where a layer does something other than the contract asks, the test asserts what it does
(``LAYER_REFUSES_ROOM`` below) and the README's "Layers" section says why.
"""

import asyncio
import importlib
import json
import logging
import uuid

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from harness.live import (
    channels_lite_in_process,
    channels_postgres_in_process,
    close_channel_layer,
)
from mysite import environment

# Django's test environment sets ALLOWED_HOSTS to ["testserver"], so that is the page's origin.
SAME_ORIGIN = (b"origin", b"http://testserver")
RECEIVE_TIMEOUT = 5  # seconds; generous for a loaded CI machine, only hit on failure
LAYER_READY_TIMEOUT = 10  # seconds, see layer_round_trip


@pytest.fixture(params=["async", "sync"])
def consumer(request, settings):
    settings.CHAT_CONSUMER = request.param
    return request.param


async def layer_round_trip(application) -> None:
    """Return once a message posted in a room of its own has come back through the layer.

    channels-postgres starts listening for its notifications when a process's first
    consumer starts receiving; a message sent before that is lost, and consumers that
    start receiving together each start a listener, which delivers every message once per
    listener (README, "Layers"; test_layers.py asserts both). This lets the first
    consumer start the one listener before a test's own members join. On the other
    layers the first round trip succeeds at once. Bounded: the posts repeat only until
    one comes back or LAYER_READY_TIMEOUT passes."""
    room = unique_room("ready")
    communicator = await join(application, room)
    for _ in range(int(LAYER_READY_TIMEOUT / 0.05)):
        await post(communicator, "ready?")
        if not await communicator.receive_nothing(timeout=0.05):
            break
    else:
        raise AssertionError(f"no message came back through the layer in {LAYER_READY_TIMEOUT} s")
    await leave(communicator)


@pytest.fixture
async def application(settings, layer, backend, consumer, django_db_blocker):
    """The project's ASGI application for this layer and consumer, as Daphne would load it."""
    env = {"CHANNEL_LAYER": layer, **backend.env}
    if layer in environment.PREFIXED_LAYERS:
        # A prefix of their own keeps these tests' keys apart from live servers sharing the
        # session's Redis (or Valkey).
        env["CHANNEL_LAYER_CONFIG"] = json.dumps(
            {"prefix": f"consumer-tests-{uuid.uuid4().hex[:8]}"}
        )
    settings.CHANNEL_LAYERS = environment.channel_layers(env)

    with (
        channels_postgres_in_process(settings, django_db_blocker, settings.CHANNEL_LAYERS),
        channels_lite_in_process(settings, settings.CHANNEL_LAYERS, backend.env),
    ):
        # chat.routing picks the consumer class at import time, as the project does at start-up.
        import chat.routing
        import mysite.asgi

        importlib.reload(chat.routing)
        importlib.reload(mysite.asgi)
        await layer_round_trip(mysite.asgi.application)
        yield mysite.asgi.application
        channel_layer = get_channel_layer()
        if layer == "inmemory" or layer in environment.PREFIXED_LAYERS:
            await channel_layer.flush()  # this process's groups; Redis: this test's prefix
        elif hasattr(channel_layer, "close"):
            # RabbitMQ's and NATS's connections belong to this test's event loop, and so do
            # channels-lite's pool and polling tasks.
            await close_channel_layer(channel_layer)
        # channels-postgres's and channels-lite's flush() empty their tables, the live
        # servers' groups with them; this test's rooms are its own, so its rows are simply
        # left behind.


@pytest.fixture
def alice():
    """A logged-in user, alice, never saved: the consumer reads only her username. (Not
    through pytest-django's django_user_model, which brings the ``db`` fixture: run before
    it, a test holding the test database left the tutorial's ChannelsLiveServerTestCase
    with no working socket.)"""
    from django.contrib.auth.models import User

    return User(username="alice")


@pytest.fixture
def chat_warnings(caplog):
    """WARNING records of the chat logger (it does not propagate to the root logger)."""
    chat_logger = logging.getLogger("chat")
    chat_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="chat")
    yield lambda: [r for r in caplog.records if r.name.startswith("chat")]
    chat_logger.removeHandler(caplog.handler)


def unique_room(label: str = "room") -> str:
    return f"{label}_{uuid.uuid4().hex[:12]}"


async def join(application, room: str, origin=SAME_ORIGIN, user=None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers=[origin])
    if user is not None:
        # What AuthMiddlewareStack puts there from a session cookie (it keeps a user it
        # finds in the scope); the cookie's path is the live tests' (load, e2e).
        communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=RECEIVE_TIMEOUT)
    assert connected, f"handshake to room {room!r} was refused"
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict:
    return await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT)


async def post(communicator: WebsocketCommunicator, message: str) -> None:
    await communicator.send_json_to({"message": message})


async def leave(*communicators: WebsocketCommunicator) -> None:
    for communicator in communicators:
        await communicator.disconnect()


# --- delivery -------------------------------------------------------------------------


@pytest.mark.compat
async def test_message_reaches_every_member_of_the_room_sender_included(application):
    room = unique_room()
    members = [await join(application, room) for _ in range(3)]

    await post(members[0], "hello, room")

    for member in members:
        assert await receive(member) == {"message": "hello, room"}
    for member in members:
        assert await member.receive_nothing(timeout=0.05), "a member got a second frame"
    await leave(*members)


@pytest.mark.compat
async def test_messages_arrive_in_the_order_sent(application):
    room = unique_room()
    sender, listener = await join(application, room), await join(application, room)

    for number in range(5):
        await post(sender, f"message {number}")

    for member in (sender, listener):
        received = [(await receive(member))["message"] for _ in range(5)]
        assert received == [f"message {number}" for number in range(5)]
    await leave(sender, listener)


async def test_a_logged_in_senders_message_names_the_sender(application, alice):
    """Not in the tutorial: every member sees who wrote a logged-in sender's message; an
    anonymous sender's frame stays the tutorial's, byte for byte."""
    room = unique_room()
    sender = await join(application, room, user=alice)
    anonymous = await join(application, room)

    await post(sender, "hello")
    for communicator in (sender, anonymous):
        assert await receive(communicator) == {"message": "hello", "user": "alice"}
    await post(anonymous, "hi")
    for communicator in (sender, anonymous):
        frame = await communicator.receive_from(timeout=RECEIVE_TIMEOUT)
        assert frame == '{"message": "hi"}'
    await leave(sender, anonymous)


@pytest.mark.compat
async def test_message_stays_in_its_room(application):
    room_1, room_2 = unique_room("one"), unique_room("two")
    alice, bob = await join(application, room_1), await join(application, room_1)
    carol = await join(application, room_2)

    await post(alice, "for room one")
    assert await receive(alice) == {"message": "for room one"}
    assert await receive(bob) == {"message": "for room one"}

    # Positive control in the other room. "for room one" was delivered to room one
    # before this was sent, so had it leaked into carol's channel it would come first.
    await post(carol, "for room two")
    assert await receive(carol) == {"message": "for room two"}
    for member in (alice, bob):
        assert await member.receive_nothing(timeout=0.05), "room two's message leaked"
    await leave(alice, bob, carol)


async def test_member_who_left_gets_nothing_and_others_still_do(application):
    room = unique_room()
    stayer, leaver = await join(application, room), await join(application, room)
    await leave(leaver)

    await post(stayer, "after you left")

    assert await receive(stayer) == {"message": "after you left"}
    await leave(stayer)


# --- bad input: error to the sender alone, socket open, nothing broadcast, one WARNING --

BAD_FRAMES = {
    "not-json": ({"text_data": "hello"}, "not JSON"),
    "json-list": ({"text_data": '["message", "hi"]'}, "not a JSON object"),
    "json-string": ({"text_data": '"hi"'}, "not a JSON object"),
    "no-message-key": ({"text_data": '{"text": "hi"}'}, 'no "message"'),
    "message-is-number": ({"text_data": '{"message": 5}'}, "must be a string"),
    "message-is-null": ({"text_data": '{"message": null}'}, "must be a string"),
    "message-is-object": ({"text_data": '{"message": {"a": 1}}'}, "must be a string"),
    "binary": ({"bytes_data": b'{"message": "hi"}'}, "binary"),
    "too-long": ({"text_data": json.dumps({"message": "x" * 11})}, "the limit is 10"),
}


@pytest.mark.parametrize("frame, reason", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_gets_an_error_and_loses_nothing(
    application, settings, chat_warnings, frame, reason
):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    room = unique_room()
    sender, other = await join(application, room), await join(application, room)

    await sender.send_to(**frame)

    error = await receive(sender)
    assert set(error) == {"error"} and reason in error["error"], error
    # The socket stays open and the room still works; the bad frame was never broadcast,
    # or it would reach the other member before this one.
    await post(sender, "still here")
    assert await receive(sender) == {"message": "still here"}
    assert await receive(other) == {"message": "still here"}
    assert await other.receive_nothing(timeout=0.05)

    warnings = [r for r in chat_warnings() if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None, "a rejected frame must not log a traceback"
    assert "\n" not in warnings[0].getMessage()
    await leave(sender, other)


async def test_message_exactly_at_the_limit_is_accepted(application, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    room = unique_room()
    sender = await join(application, room)

    await post(sender, "é" * 10)  # characters, not bytes

    assert await receive(sender) == {"message": "é" * 10}
    await leave(sender)


# The contract's longest message (CHAT_MAX_MESSAGE_CHARS, 65536 characters) in characters
# that take 4 bytes each in UTF-8: 262,144 bytes through the layer.
LONGEST_MESSAGE = "\U0001f600" * environment.DEFAULT_MAX_MESSAGE_CHARS
# With the limit raised, a message past a megabyte: 300,000 x 4 = 1,200,000 bytes.
OVER_A_MEGABYTE = "\U0001f600" * 300_000
# Bytes of a message a layer cannot carry, and the error its group_send raises then. NATS
# refuses frames over the server's max_payload, 1,048,576 bytes by default (README, "Layers").
LAYER_MESSAGE_LIMITS = {"nats": (1_048_576, "MessageTooLarge")}


async def test_the_longest_message_reaches_every_member(application):
    room = unique_room()
    sender, listener = await join(application, room), await join(application, room)

    await post(sender, LONGEST_MESSAGE)

    for member in (sender, listener):
        assert await receive(member) == {"message": LONGEST_MESSAGE}
    await leave(sender, listener)


async def test_a_message_over_a_megabyte(application, settings, layer):
    """Past what the contract asks, where layers differ: all carry it but NATS."""
    settings.CHAT_MAX_MESSAGE_CHARS = len(OVER_A_MEGABYTE)
    room = unique_room()
    sender, listener = await join(application, room), await join(application, room)

    await post(sender, OVER_A_MEGABYTE)

    limit = LAYER_MESSAGE_LIMITS.get(layer)
    if limit is None:
        for member in (sender, listener):
            assert await receive(member) == {"message": OVER_A_MEGABYTE}
        await leave(sender, listener)
        return
    size, error = limit
    assert len(OVER_A_MEGABYTE.encode()) > size
    # group_send raises in the sender's consumer, which ends: a live server closes that
    # socket (1011) and logs the traceback. Nothing was broadcast, or the listener's
    # first frame would be that message rather than its own control.
    with pytest.raises(Exception) as raised:  # the layer's own error class, checked below
        await asyncio.wait_for(sender.future, RECEIVE_TIMEOUT)
    assert type(raised.value).__name__ == error, raised.value
    await post(listener, "control")
    assert await receive(listener) == {"message": "control"}
    await leave(listener)


# --- handshakes ------------------------------------------------------------------------

GOOD_ROOM_NAMES = {
    "word": "lobby",
    "punctuation": "room-1.2_3",
    "longest": "x" * 94,
    "double-dot": "a..b",
    "trailing-dot": "room.",
}
BAD_ROOM_NAMES = {"non-ascii": "ünïcode", "too-long": "x" * 95, "space": "a%20b", "colon": "a:b"}
# Valid group names that a layer cannot use (README, "Layers"): group_add raises the
# layer's own error, so the handshake fails (a live server answers HTTP 500, see
# test_layers.py) where the contract asks for a working room.
# - channels-postgres stores "asgi:group:<group>" in a varchar(100): the group
#   "chat_<room>" fits for rooms of up to 84 characters, not 94.
# - channels-nats publishes to the subject "channels.grp.<group>", and NATS subjects
#   have no empty tokens: no "..", no trailing ".".
LAYER_REFUSES_ROOM = {
    ("postgres", "longest"): "StringDataRightTruncation",
    ("nats", "double-dot"): "BadSubjectError",
    ("nats", "trailing-dot"): "BadSubjectError",
}


@pytest.mark.parametrize("name", GOOD_ROOM_NAMES)
async def test_room_names_that_are_group_names_are_accepted(application, layer, name):
    room = GOOD_ROOM_NAMES[name]
    refusal = LAYER_REFUSES_ROOM.get((layer, name))
    if refusal is not None:
        communicator = WebsocketCommunicator(
            application, f"/ws/chat/{room}/", headers=[SAME_ORIGIN]
        )
        await communicator.send_input({"type": "websocket.connect"})
        # The consumer raises before it accepts or closes. (communicator.connect() would
        # report that only after its whole timeout.) Were the room accepted instead, the
        # application would not finish and this would raise TimeoutError.
        with pytest.raises(Exception) as raised:  # the layer's own error class, checked below
            await asyncio.wait_for(communicator.future, RECEIVE_TIMEOUT)
        assert type(raised.value).__name__ == refusal, raised.value
        return
    communicator = await join(application, room)
    await post(communicator, "hi")
    assert await receive(communicator) == {"message": "hi"}
    await leave(communicator)


@pytest.mark.parametrize("room", BAD_ROOM_NAMES.values(), ids=BAD_ROOM_NAMES.keys())
async def test_room_names_that_cannot_be_group_names_are_refused(application, room):
    communicator = WebsocketCommunicator(application, f"/ws/chat/{room}/", headers=[SAME_ORIGIN])
    connected, _ = await communicator.connect(timeout=RECEIVE_TIMEOUT)
    assert not connected


async def test_cross_origin_handshake_is_refused(application):
    room = unique_room()
    foreign = WebsocketCommunicator(
        application, f"/ws/chat/{room}/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await foreign.connect(timeout=RECEIVE_TIMEOUT)
    assert not connected
    # Positive control: the same room from the page's own origin is accepted.
    await leave(await join(application, room))
