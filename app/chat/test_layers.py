"""Where a layer does something other than the contract asks: each test asserts what the
layer really does, with the numbers the README's "Layers" section quotes. If a new release
fixes one, its test fails, and the README must change with it.

The consumer tests (test_consumers.py) hold the rest: room names a layer refuses
(LAYER_REFUSES_ROOM) and the message size NATS refuses (LAYER_MESSAGE_LIMITS). These tests
go below the chat, to the layer's own API, where a race has to be placed exactly to be
shown every time; the servers are real.
"""

import asyncio
import json
import signal
import subprocess
import time
import uuid
from typing import NamedTuple

import psutil
import pytest
import websockets

from harness import ChatServer
from harness.live import (
    channels_lite_in_process,
    channels_postgres_in_process,
    close_channel_layer,
    wait_for_layer_round_trip,
)
from mysite import environment

WAIT_SECONDS = 10  # generous for a loaded CI machine; a passing wait returns at once


def unique_group(label: str) -> str:
    return f"chat_{label}_{uuid.uuid4().hex[:12]}"


async def wait_for(condition, describe, timeout: float = WAIT_SECONDS) -> None:
    """Poll an async or plain condition until true; at the deadline, fail saying what was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)  # polling a server-side state; the deadline bounds it
    raise AssertionError(f"after waiting {timeout} s: {describe()}")


def collect(layer, channel: str, into: list[str]) -> asyncio.Task:
    """Receive on ``channel`` forever, appending each message's text to ``into``."""

    async def receive_forever() -> None:
        while True:
            into.append((await layer.receive(channel))["message"])

    return asyncio.create_task(receive_forever())


def message(text: str) -> dict:
    return {"type": "chat.message", "message": text}


class StalledRoom(NamedTuple):
    """Two processes' layers: in ``process`` a channel that never reads (``stalled``) and
    a ``reader`` share the busy room, a ``bystander`` is alone in the quiet room, and the
    quiet room has a member ``elsewhere``, in ``other_process``. ``got`` fills as the three
    that read receive; ``tasks`` are their receive loops."""

    busy_room: str
    quiet_room: str
    stalled: str
    reader: str
    bystander: str
    elsewhere: str
    got: dict[str, list[str]]
    tasks: list[asyncio.Task]


async def stalled_room(process, other_process) -> StalledRoom:
    busy_room, quiet_room = unique_group("busy"), unique_group("quiet")
    stalled, reader = await process.new_channel(), await process.new_channel()
    bystander, elsewhere = await process.new_channel(), await other_process.new_channel()
    for channel in (stalled, reader):
        await process.group_add(busy_room, channel)
    await process.group_add(quiet_room, bystander)
    await other_process.group_add(quiet_room, elsewhere)
    got: dict[str, list[str]] = {reader: [], bystander: [], elsewhere: []}
    tasks = [collect(layer, channel, got[channel]) for layer, channel in (
        (process, reader), (process, bystander), (other_process, elsewhere))]  # fmt: skip
    return StalledRoom(busy_room, quiet_room, stalled, reader, bystander, elsewhere, got, tasks)


# --- PostgreSQL (channels-postgres) ------------------------------------------------------


@pytest.fixture
def postgres_layers(backend_for, settings, django_db_blocker):
    """``make()`` -> a new PostgresChannelLayer on the session's PostgreSQL, as another
    server process would have: its own LISTEN session and queues. Each connects under an
    application_name of its own, so that its LISTEN sessions can be told from others'."""
    env = {"CHANNEL_LAYER": "postgres", **backend_for("postgres").env}
    channel_layers = environment.channel_layers(env)
    with channels_postgres_in_process(settings, django_db_blocker, channel_layers):
        from channels_postgres.core import PostgresChannelLayer

        config = channel_layers["default"]["CONFIG"]

        def make() -> PostgresChannelLayer:
            name = f"chat-test-{uuid.uuid4().hex[:12]}"
            return PostgresChannelLayer(**config, OPTIONS={"application_name": name})

        yield make


async def listen_sessions(layer, *, of) -> int:
    """How many sessions of layer ``of`` are LISTENing for channels-postgres's
    notifications (asked through ``layer``'s pool)."""
    pool = await layer.django_db.get_db_pool(layer.db_params)
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND query = 'LISTEN channels_postgres_messages;'",
            (of.db_params["application_name"],),
        )
        (count,) = await cursor.fetchone()
        return count


async def listens(layer, *, of, count: int) -> bool:
    return await listen_sessions(layer, of=of) == count


@pytest.mark.postgres
async def test_postgres_receivers_that_start_together_get_every_message_twice(
    postgres_layers,
):
    """Each receive() that finds no listener running yet starts one (an asyncio.Event
    guards it, set only once the listener has connected), so consumers that start
    receiving together, as the first sockets after a server starts do, start one
    LISTEN session each, and every message of that process arrives once per session."""
    layer, sender = postgres_layers(), postgres_layers()
    group = unique_group("twice")
    first, second = await layer.new_channel(), await layer.new_channel()
    for channel in (first, second):
        await layer.group_add(group, channel)
    got: dict[str, list[str]] = {first: [], second: []}

    tasks = [collect(layer, channel, got[channel]) for channel in (first, second)]
    # Both listeners, not just the first, are LISTENing before anything is sent.
    await wait_for(lambda: listens(sender, of=layer, count=2), lambda: "expected 2 LISTEN sessions")
    for text in ("one", "two", "last"):
        await sender.group_send(group, message(text))

    expected = ["one", "one", "two", "two", "last", "last"]
    for channel in (first, second):
        await wait_for(lambda c=channel: len(got[c]) >= len(expected), lambda: f"got {got}")
        assert got[channel] == expected

    # Positive control: in a process whose first receiver starts alone, its one listener
    # delivers each message once.
    alone, sender_2 = postgres_layers(), postgres_layers()
    control_group = unique_group("once")
    early, late = await alone.new_channel(), await alone.new_channel()
    for channel in (early, late):
        await alone.group_add(control_group, channel)
    control: dict[str, list[str]] = {early: [], late: []}
    tasks.append(collect(alone, early, control[early]))
    await wait_for(lambda: listens(sender_2, of=alone, count=1), lambda: "no LISTEN session")
    tasks.append(collect(alone, late, control[late]))
    for text in ("one", "two", "last"):
        await sender_2.group_send(control_group, message(text))
    for channel in (early, late):
        await wait_for(lambda c=channel: "last" in control[c], lambda: f"got {control}")
        assert control[channel] == ["one", "two", "last"]
    for task in tasks:
        task.cancel()


@pytest.mark.postgres
async def test_postgres_message_sent_while_a_process_starts_listening_is_lost(
    postgres_layers, monkeypatch
):
    """A process's listener first takes the messages already queued in the table, then
    connects and LISTENs. A message inserted between the two is in neither: its NOTIFY
    went to nobody, and it stays in the table until it expires. A live server shows this
    as its first socket missing a message sent right after the handshake (the harness
    waits for a round trip before using a server, see live.wait_for_layer_round_trip).

    The gap lasts one connection set-up (a few milliseconds here). To land in it every
    time, the message is sent from inside the first step, once it has returned."""
    from channels_postgres.db import DatabaseLayer

    layer, sender = postgres_layers(), postgres_layers()
    group = unique_group("gap")
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    take_queued = DatabaseLayer.retrieve_non_expired_queued_messages
    sent_in_the_gap = asyncio.Event()

    async def take_queued_then_send(database_layer):
        rows = await take_queued(database_layer)
        if not sent_in_the_gap.is_set():
            await sender.group_send(group, message("sent in the gap"))
            sent_in_the_gap.set()
        return rows

    monkeypatch.setattr(
        DatabaseLayer, "retrieve_non_expired_queued_messages", take_queued_then_send
    )
    got: list[str] = []
    task = collect(layer, channel, got)
    await wait_for(lambda: listens(sender, of=layer, count=1), lambda: "no LISTEN session")
    assert sent_in_the_gap.is_set()

    await sender.group_send(group, message("sent once listening"))
    await wait_for(lambda: got, lambda: "nothing arrived")
    # Had the first message been delivered, it would have come first.
    assert got == ["sent once listening"]
    pool = await sender.django_db.get_db_pool(sender.db_params)
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM channels_postgres_message "
            "WHERE channel = %s AND position(%s IN message) > 0",
            (channel, b"sent in the gap"),
        )
        assert await cursor.fetchone() == (1,), "the lost message is still in the table"
    task.cancel()


async def handshake_status(server, room: str) -> int:
    """The HTTP status of a WebSocket handshake to ``room`` (101: accepted)."""
    try:
        async with websockets.connect(
            f"{server.ws_url}/ws/chat/{room}/", origin=server.url, open_timeout=10
        ) as socket:
            await socket.send(json.dumps({"message": "hi"}))
            assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {"message": "hi"}
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


# What a live server answers for room names Channels allows and these layers cannot use
# (see LAYER_REFUSES_ROOM in test_consumers.py): the layer raises in group_add, before the
# consumer accepts or closes, and the server answers 500 with a traceback in its log,
# where the contract asks for a working room (and never a 500).
REFUSED_ROOMS = {
    # "asgi:group:" + "chat_" + room must fit channels-postgres's varchar(100)
    "postgres": {"x" * 84: 101, "x" * 85: 500, "x" * 94: 500},
    # NATS subjects have no empty tokens
    "nats": {"a.b": 101, "a..b": 500, "room.": 500},
}


@pytest.mark.parametrize(
    "layer",
    [pytest.param(name, marks=getattr(pytest.mark, name)) for name in REFUSED_ROOMS],
)
def test_live_server_answers_500_for_rooms_the_layer_cannot_use(live_chat, layer):
    (server,) = live_chat(layer)

    async def statuses() -> dict[str, int]:
        return {room: await handshake_status(server, room) for room in REFUSED_ROOMS[layer]}

    assert asyncio.run(statuses()) == REFUSED_ROOMS[layer]


# --- RabbitMQ (channels-rabbitmq) --------------------------------------------------------


@pytest.mark.rabbitmq
async def test_rabbitmq_capacity_is_per_process_so_one_stalled_channel_holds_up_the_rest(
    backend_for,
):
    """channels-rabbitmq gives each process one queue. It takes at most local_capacity
    (100) messages from it that are not yet delivered to every local member, and
    RabbitMQ holds at most remote_capacity (100) more; past those group_send drops
    the message (a WARNING, no error). So in one process a channel that stops reading
    holds up every other channel there after 100 messages, whatever their group, and
    after 200 new messages are lost. (channels-redis counts capacity per channel.)"""
    from channels_rabbitmq.core import RabbitmqChannelLayer

    url = backend_for("rabbitmq").env["RABBITMQ_URL"]
    process, other_process = RabbitmqChannelLayer(host=url), RabbitmqChannelLayer(host=url)
    room = await stalled_room(process, other_process)
    busy_room, quiet_room, stalled, reader, bystander, elsewhere, got, tasks = room

    sent = [f"busy {number}" for number in range(250)]
    for text in sent[:150]:
        await other_process.group_send(busy_room, message(text))
    await wait_for(lambda: len(got[reader]) >= 100, lambda: f"reader got {len(got[reader])}")
    await other_process.group_send(quiet_room, message("quiet"))
    # The other process got it; this one, holding 100 messages the stalled channel has
    # not taken, did not: "quiet" waits in RabbitMQ behind 50 busy ones.
    await wait_for(lambda: got[elsewhere], lambda: "the other process got nothing")
    assert got[reader] == sent[:100]
    assert got[bystander] == []

    # RabbitMQ now queues 51 for this process; of 100 more it keeps 49 and drops 51.
    for text in sent[150:]:
        await other_process.group_send(busy_room, message(text))
    # The stalled channel reads at last, and everything held comes through: 199 busy
    # messages (the 100 taken and 99 of the 100 queued; "quiet" took the last place).
    stalled_got: list[str] = []
    tasks.append(collect(process, stalled, stalled_got))
    await wait_for(lambda: len(stalled_got) >= 199, lambda: f"stalled got {len(stalled_got)}")
    await wait_for(lambda: got[bystander], lambda: "the bystander never got its message")
    # Sent once the queue has room again; when it arrives, nothing older is on its way.
    await process.group_send(busy_room, message("after"))
    for received in (got[reader], stalled_got):
        await wait_for(lambda r=received: "after" in r, lambda r=received: f"got {r[-3:]}")
        assert received == [*sent[:199], "after"]
    assert got[bystander] == ["quiet"]
    for task in tasks:
        task.cancel()
    await process.close()
    await other_process.close()


# --- Valkey (channels-valkey) ------------------------------------------------------------


def valkey_layer(url: str):
    """A ValkeyChannelLayer on ``url``, configured as the app configures it, with a key
    prefix of its own (the session's server is shared with the live servers)."""
    from channels_valkey.core import ValkeyChannelLayer

    host = {"address": url, **environment.VALKEY_POOL_OPTIONS}
    return ValkeyChannelLayer(hosts=[host], prefix=f"layer-tests-{uuid.uuid4().hex[:8]}")


@pytest.mark.valkey
@pytest.mark.redis
async def test_valkey_layer_needs_valkey_a_redis_server_cannot_stand_in(backend_for):
    """channels-valkey 0.3.0's Lua scripts (group_send's, and the clean-up that each
    receive runs first) call ``server.call``, the name Valkey 8 added beside
    ``redis.call``. Redis has no ``server``, so on a redis-server (7.0.15 here) every
    group_send and every receive raises; plain commands (group_add, send) still work.
    That is why the harness runs a real valkey-server (harness/backends.py)."""
    from valkey.exceptions import ResponseError

    on_redis = valkey_layer(backend_for("redis").env["REDIS_URL"])
    on_valkey = valkey_layer(backend_for("valkey").env["VALKEY_URL"])
    group = unique_group("lua")
    channels = {}
    for layer in (on_redis, on_valkey):
        channels[layer] = await layer.new_channel()
        await layer.group_add(group, channels[layer])
        await layer.send(channels[layer], message("direct"))  # no Lua: works on both

    no_server = "Script attempted to access nonexistent global variable 'server'"
    with pytest.raises(ResponseError, match=no_server):
        await on_redis.group_send(group, message("to the group"))
    with pytest.raises(ResponseError, match=no_server):
        await on_redis.receive(channels[on_redis])
    # Positive control: the same calls on Valkey.
    await on_valkey.group_send(group, message("to the group"))
    received = [(await on_valkey.receive(channels[on_valkey]))["message"] for _ in range(2)]
    assert received == ["direct", "to the group"]
    await on_redis.close_pools()
    await on_valkey.flush()  # this test's prefix only; closes its pools


# --- SQLite (channels-lite) --------------------------------------------------------------


@pytest.fixture
async def sqlite_layers(backend_for, settings):
    """``make()`` -> a new AIOSQLiteChannelLayer on the session's SQLite file, as another
    server process would have: its own client prefix, polling task and pool. Closed at
    the end (their polling tasks belong to this test's event loop)."""
    backend = backend_for("sqlite")
    channel_layers = environment.channel_layers({"CHANNEL_LAYER": "sqlite", **backend.env})
    made = []
    with channels_lite_in_process(settings, channel_layers, backend.env):
        from channels_lite.layers.aio import AIOSQLiteChannelLayer

        config = channel_layers["default"]["CONFIG"]

        def make(**overrides: object) -> AIOSQLiteChannelLayer:
            made.append(AIOSQLiteChannelLayer(**config, **overrides))
            return made[-1]

        yield make
        for layer in made:
            await close_channel_layer(layer)


# channels-lite's aiosqlite layer keeps at most this many connections per event loop (its
# pool_size), and waits this long for one (aiosqlitepool's acquisition timeout).
SQLITE_POOL_SIZE = 10
SQLITE_ACQUISITION_TIMEOUT_S = 30


@pytest.mark.sqlite
async def test_sqlite_ten_group_sends_at_once_wait_for_each_other(sqlite_layers):
    """group_send holds one of the pool's connections while it takes another for each
    member's capacity check. So 10 group_sends at once in one process (pool_size 10) hold
    every connection and each waits for one more: none of them finishes until the pool's
    acquisition timeout (30 s) makes them raise PoolConnectionAcquireTimeoutError. A
    server's polling task waits for a connection too, so the server delivers nothing
    meanwhile: 100 users sending 1 message/s each got 196 deliveries of 10,130 (guide,
    "Layers"). Nine at once finish, and so do ten with ``enforce_capacity`` off (no check,
    no second connection)."""
    sender, other_process, receiver = sqlite_layers(), sqlite_layers(), sqlite_layers()
    group = unique_group("pool")
    channel = await receiver.new_channel()
    await receiver.group_add(group, channel)
    got: list[str] = []
    tasks = [collect(receiver, channel, got)]

    at_once = [f"at once {number}" for number in range(SQLITE_POOL_SIZE)]
    sends = [asyncio.create_task(sender.group_send(group, message(text))) for text in at_once]
    # Positive control: sent after them, through another process's pool, it arrives.
    await other_process.group_send(group, message("from elsewhere"))
    await wait_for(lambda: "from elsewhere" in got, lambda: f"got {got}")
    assert not any(send.done() for send in sends)  # each takes milliseconds when it can run
    assert got == ["from elsewhere"]
    for send in sends:
        send.cancel()  # rather than wait SQLITE_ACQUISITION_TIMEOUT_S for their errors

    for count, overrides in (
        (SQLITE_POOL_SIZE - 1, {}),
        (SQLITE_POOL_SIZE, {"enforce_capacity": False}),
    ):
        layer = sqlite_layers(**overrides)
        texts = [f"{count} at once {overrides} {number}" for number in range(count)]
        await asyncio.wait_for(
            asyncio.gather(*(layer.group_send(group, message(text)) for text in texts)),
            WAIT_SECONDS,
        )
        await wait_for(lambda t=texts: set(t) <= set(got), lambda: f"got {got[-3:]}")
    for task in tasks:
        task.cancel()


@pytest.mark.sqlite
async def test_sqlite_capacity_counts_every_undelivered_message_of_a_process(sqlite_layers):
    """channels-lite checks a channel's capacity (100) against the undelivered rows of
    its process, every channel of it together: a process-specific channel's rows are
    stored under the process's prefix. So with 100 rows of a server waiting in the file
    (its consumers have not started receiving, or its polling task lags behind, as under
    load), group_send skips that server's members silently, whatever their room: two
    members of one room get 50 messages each, not 100, and a message for another room on
    the same server is lost. (channels-redis counts per channel.)"""
    process, other_process = sqlite_layers(), sqlite_layers()
    busy_room, quiet_room = unique_group("busy"), unique_group("quiet")
    first, second = await process.new_channel(), await process.new_channel()
    bystander = await process.new_channel()
    for channel in (first, second):
        await process.group_add(busy_room, channel)
    await process.group_add(quiet_room, bystander)

    # Nothing receives in ``process`` yet, so its rows wait in the file.
    sent = [f"busy {number}" for number in range(80)]
    for text in sent:
        await other_process.group_send(busy_room, message(text))
    await other_process.group_send(quiet_room, message("quiet"))

    got: dict[str, list[str]] = {first: [], second: [], bystander: []}
    tasks = [collect(process, channel, got[channel]) for channel in got]
    for channel in (first, second):
        await wait_for(lambda c=channel: len(got[c]) >= 50, lambda: f"got {got}")
    # Room again: these reach everyone, and anything older on its way would come first.
    await other_process.group_send(busy_room, message("after"))
    await other_process.group_send(quiet_room, message("after"))
    for channel in got:
        await wait_for(lambda c=channel: "after" in got[c], lambda: f"got {got}")
    assert got[first] == got[second] == [*sent[:50], "after"]
    assert got[bystander] == ["after"]
    for task in tasks:
        task.cancel()


@pytest.mark.sqlite
async def test_sqlite_one_stalled_channel_holds_up_its_whole_process_then_loses(
    sqlite_layers,
):
    """One polling task per process moves the process's rows, one at a time and in order,
    into a buffer per channel of at most 100 messages; when a channel's buffer is full it
    waits. So a channel that stops reading holds up every other channel of its process
    once 100 messages wait for it, whatever their room, while the rows pile up in the
    file; past 100 rows (the capacity above) group_send skips the process's members, and
    those messages are lost. What was held arrives once the channel reads again."""
    # Polling every 10 ms rather than 100 ms, so that 100 messages one at a time take 1 s.
    process, other_process = sqlite_layers(polling_interval=0.01), sqlite_layers()
    room = await stalled_room(process, other_process)
    busy_room, quiet_room, stalled, reader, bystander, elsewhere, got, tasks = room

    # One at a time, each read before the next: the stalled channel's buffer fills up.
    sent = [f"busy {number}" for number in range(160)]
    for number, text in enumerate(sent[:100]):
        await other_process.group_send(busy_room, message(text))
        await wait_for(lambda n=number: len(got[reader]) > n, lambda: f"{len(got[reader])}")
    assert process.receive_buffer[stalled].full()

    # The next one stops the process's polling task: nothing more reaches the process.
    await other_process.group_send(busy_room, message(sent[100]))
    await other_process.group_send(quiet_room, message("quiet"))
    # The other process got "quiet"; this one, stuck behind the stalled channel, did not.
    await wait_for(lambda: got[elsewhere], lambda: "the other process got nothing")
    assert got[bystander] == []
    # The stalled channel's row of busy 100 came first (it joined first) and is held.
    assert len(got[reader]) == 100, len(got[reader])
    # Meanwhile the rows pile up in the file: the reader's busy 100, "quiet", then two
    # per message, 100 rows after busy 149.
    for text in sent[101:]:
        await other_process.group_send(busy_room, message(text))

    # The stalled channel reads at last: what was held comes through, the rest is lost.
    stalled_got: list[str] = []
    tasks.append(collect(process, stalled, stalled_got))
    await wait_for(lambda: len(stalled_got) >= 100, lambda: f"stalled got {len(stalled_got)}")
    # Sent once there is room again; when it arrives, nothing older is on its way.
    await other_process.group_send(busy_room, message("after"))
    await other_process.group_send(quiet_room, message("after"))
    for received in (got[reader], stalled_got, got[bystander]):
        await wait_for(lambda r=received: "after" in r, lambda r=received: f"got {r[-3:]}")
    assert got[bystander] == ["quiet", "after"]  # held, not lost
    assert got[reader] == stalled_got, (len(got[reader]), len(stalled_got))
    lost = len(sent) - len(stalled_got)
    assert 0 < lost < 60, (len(stalled_got), len(got[reader]))
    for task in tasks:
        task.cancel()


# How long the harness (and many a process manager) waits after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0


@pytest.mark.sqlite
def test_a_daphne_that_used_the_sqlite_layer_does_not_exit_on_sigterm(backend_for, tmp_path):
    """aiosqlite runs each connection in a thread that is not a daemon thread, and
    channels-lite keeps its pool of connections open for the life of the process (nothing
    closes the layer when Daphne stops). So once a socket has used the layer, Daphne stops
    serving on SIGTERM (or Ctrl-C) and then waits forever for those threads: it never exits,
    and a process manager ends it with SIGKILL after its grace period. Uvicorn exits: it
    ends by re-raising the signal, which does not wait for threads. The same Daphne on
    InMemory is the control."""
    stacks = {"daphne-sqlite": ("sqlite", "daphne"), "uvicorn-sqlite": ("sqlite", "uvicorn"),
              "daphne-inmemory": ("inmemory", "daphne")}  # fmt: skip
    servers = {}
    try:
        for name, (layer, asgi) in stacks.items():
            servers[name] = ChatServer.start(
                layer=layer, asgi=asgi, backend=backend_for(layer), log_dir=tmp_path / name
            )
            wait_for_layer_round_trip(servers[name])  # the layer has opened its connections
        for server in servers.values():
            server.process.send_signal(signal.SIGTERM)
        for name in ("daphne-inmemory", "uvicorn-sqlite"):
            servers[name].process.wait(timeout=STOP_GRACE_S)  # the controls exit
        daphne = servers["daphne-sqlite"]
        # The grace period is the thing tested: Daphne has stopped serving, and not exited.
        with pytest.raises(subprocess.TimeoutExpired):
            daphne.process.wait(timeout=STOP_GRACE_S)
        assert not daphne.serves_index()
        threads = {thread.id for thread in psutil.Process(daphne.pid).threads()}
        assert len(threads) >= 2, threads  # the main thread, waiting for aiosqlite's
    finally:
        for server in servers.values():
            server.kill()  # what a process manager does after its grace period
