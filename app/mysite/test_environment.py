"""The environment variables of the contract: what each builds, and that a bad value stops
start-up with one line naming the variable (no traceback), under manage.py and Daphne."""

import asyncio
import json
import os
import subprocess
import sys
import urllib.request

import pytest
import websockets
from websockets.typing import Origin

from harness import APP_DIR, UVICORN_WEBSOCKETS, ChatServer, ServiceError
from harness.live import layer_param
from mysite import environment


def test_defaults_are_inmemory_async_and_65536_characters():
    assert environment.channel_layers({}) == {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    assert environment.chat_consumer({}) == "async"
    assert environment.max_message_chars({}) == 65536


@pytest.mark.parametrize(
    "layer, backend",
    [
        ("redis", "channels_redis.core.RedisChannelLayer"),
        ("redis-pubsub", "channels_redis.pubsub.RedisPubSubChannelLayer"),
    ],
)
def test_redis_layers_use_redis_url_and_merge_layer_config(layer, backend):
    layers = environment.channel_layers(
        {
            "CHANNEL_LAYER": layer,
            "REDIS_URL": "redis://127.0.0.1:7000/3",
            "CHANNEL_LAYER_CONFIG": '{"capacity": 500, "expiry": 5}',
        }
    )
    assert layers["default"] == {
        "BACKEND": backend,
        "CONFIG": {
            "hosts": [{"address": "redis://127.0.0.1:7000/3", **environment.REDIS_POOL_OPTIONS}],
            "capacity": 500,
            "expiry": 5,
        },
    }


def test_redis_url_defaults_to_local_redis_and_config_may_replace_hosts():
    layers = environment.channel_layers({"CHANNEL_LAYER": "redis"})
    (host,) = layers["default"]["CONFIG"]["hosts"]
    assert host["address"] == "redis://127.0.0.1:6379/0"
    layers = environment.channel_layers(
        {"CHANNEL_LAYER": "redis", "CHANNEL_LAYER_CONFIG": '{"hosts": ["redis://h:1/0"]}'}
    )
    assert layers["default"]["CONFIG"] == {"hosts": ["redis://h:1/0"]}


def test_redis_pool_keeps_pre_redis_py_8_behaviour():
    """redis-py 8 would cap the pool at 100 connections and time reads out after 5 s, as
    long as channels-redis's blocking receive; see environment.REDIS_POOL_OPTIONS."""
    (host,) = environment.channel_layers({"CHANNEL_LAYER": "redis"})["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] is None
    assert host["max_connections"] >= 1000


def test_valkey_layer_reads_valkey_url_with_the_pool_options_of_redis_py_8():
    """valkey-py 6 reads with a 5 s timeout by default, as long as channels-valkey's
    blocking receive, like redis-py 8 (see environment.VALKEY_POOL_OPTIONS)."""
    layers = environment.channel_layers(
        {
            "CHANNEL_LAYER": "valkey",
            "VALKEY_URL": "valkey://kv.example:6380/2",
            "CHANNEL_LAYER_CONFIG": '{"capacity": 50}',
        }
    )
    assert layers["default"] == {
        "BACKEND": "channels_valkey.core.ValkeyChannelLayer",
        "CONFIG": {
            "hosts": [{"address": "valkey://kv.example:6380/2", **environment.VALKEY_POOL_OPTIONS}],
            "capacity": 50,
        },
    }
    (host,) = layers["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] is None and host["max_connections"] >= 1000
    # No database: the layer needs none.
    assert environment.channels_postgres_database(layers) is None
    assert environment.channels_lite_database(layers, {}) is None


def test_sqlite_layer_names_its_django_database_and_reads_sqlite_layer_path(tmp_path):
    path = tmp_path / "layer.sqlite3"
    env = {"CHANNEL_LAYER": "sqlite", "SQLITE_LAYER_PATH": str(path)}
    layers = environment.channel_layers({**env, "CHANNEL_LAYER_CONFIG": '{"expiry": 10}'})
    assert layers["default"] == {
        "BACKEND": "channels_lite.layers.aio.AIOSQLiteChannelLayer",
        "CONFIG": {"database": environment.CHANNELS_LITE_ALIAS, "expiry": 10},
    }
    # settings.py adds the alias that CONFIG names, with the file as its NAME and no
    # OPTIONS (the layer's own pragmas then apply: WAL, a 30 s busy timeout).
    assert environment.channels_lite_database(layers, env) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
    }
    unset = environment.channels_lite_database(layers, {"CHANNEL_LAYER": "sqlite"})
    assert unset is not None and unset["NAME"] == environment.DEFAULT_SQLITE_LAYER_PATH


def test_postgres_layer_reads_postgres_url_as_a_django_database():
    layers = environment.channel_layers(
        {
            "CHANNEL_LAYER": "postgres",
            "POSTGRES_URL": "postgresql://chat:s%40cret@db.example:6543/chat_db",
            "CHANNEL_LAYER_CONFIG": '{"expiry": 30}',
        }
    )
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chat_db",
        "USER": "chat",
        "PASSWORD": "s@cret",
        "HOST": "db.example",
        "PORT": "6543",
        "TIME_ZONE": None,
    }
    assert layers["default"] == {
        "BACKEND": "channels_postgres.core.PostgresChannelLayer",
        "CONFIG": {**database, "expiry": 30},
    }
    # settings.py gives the same database to the ORM under channels-postgres's alias.
    assert environment.channels_postgres_database(layers) == database


def test_rabbitmq_and_nats_layers_read_their_url_variables():
    rabbitmq = environment.channel_layers(
        {"CHANNEL_LAYER": "rabbitmq", "RABBITMQ_URL": "amqp://u:p@mq.example:5673/chat"}
    )
    assert rabbitmq["default"] == {
        "BACKEND": "channels_rabbitmq.core.RabbitmqChannelLayer",
        "CONFIG": {"host": "amqp://u:p@mq.example:5673/chat"},
    }
    nats = environment.channel_layers(
        {"CHANNEL_LAYER": "nats", "NATS_URL": "nats://bus.example:4223"}
    )
    assert nats["default"] == {
        "BACKEND": "channels_nats.NatsChannelLayer",
        "CONFIG": {"servers": ["nats://bus.example:4223"]},
    }


@pytest.mark.parametrize(
    "layer, config",
    [
        ("postgres", {"HOST": "127.0.0.1", "PORT": "5432", "NAME": "postgres"}),
        ("rabbitmq", {"host": "amqp://guest:guest@127.0.0.1:5672"}),
        ("nats", {"servers": ["nats://127.0.0.1:4222"]}),
        (
            "valkey",
            {
                "hosts": [
                    {"address": "valkey://127.0.0.1:6379/0", **environment.VALKEY_POOL_OPTIONS}
                ]
            },
        ),
    ],
)
def test_url_variables_default_to_the_servers_default_port_on_loopback(layer, config):
    (default,) = environment.channel_layers({"CHANNEL_LAYER": layer}).values()
    assert config.items() <= default["CONFIG"].items()


def test_only_the_postgres_and_sqlite_layers_add_a_database():
    for layer in environment.LAYERS:
        layers = environment.channel_layers({"CHANNEL_LAYER": layer})
        assert (environment.channels_postgres_database(layers) is not None) == (layer == "postgres")
        assert (environment.channels_lite_database(layers, {}) is not None) == (layer == "sqlite")


def test_a_dotted_path_selects_any_layer_class_with_its_config():
    layers = environment.channel_layers(
        {
            "CHANNEL_LAYER": "channels.layers.InMemoryChannelLayer",
            "CHANNEL_LAYER_CONFIG": '{"capacity": 7}',
        }
    )
    assert layers["default"] == {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": 7},
    }


BAD_ENVIRONMENTS = {
    "unknown-layer": ({"CHANNEL_LAYER": "kafka"}, "CHANNEL_LAYER='kafka'", "inmemory, redis"),
    "unimportable-layer": (
        {"CHANNEL_LAYER": "nowhere.Layer"},
        "CHANNEL_LAYER='nowhere.Layer'",
        "cannot import",
    ),
    "config-not-json": ({"CHANNEL_LAYER_CONFIG": "{capacity: 1}"}, "CHANNEL_LAYER_CONFIG", "JSON"),
    "config-not-object": ({"CHANNEL_LAYER_CONFIG": "[1]"}, "CHANNEL_LAYER_CONFIG", "object"),
    "redis-url-not-redis": (
        {"CHANNEL_LAYER": "redis", "REDIS_URL": "http://127.0.0.1:6379"},
        "REDIS_URL",
        "redis://",
    ),
    "postgres-url-not-postgres": (
        {"CHANNEL_LAYER": "postgres", "POSTGRES_URL": "mysql://u:p@127.0.0.1/chat"},
        "POSTGRES_URL='mysql://u:***@127.0.0.1/chat'",  # the password is not shown
        "postgresql://",
    ),
    "postgres-url-without-database": (
        {"CHANNEL_LAYER": "postgres", "POSTGRES_URL": "postgresql://u@127.0.0.1:5432"},
        "POSTGRES_URL",
        "names no database",
    ),
    "rabbitmq-url-not-amqp": (
        {"CHANNEL_LAYER": "rabbitmq", "RABBITMQ_URL": "rabbitmq://127.0.0.1"},
        "RABBITMQ_URL",
        "amqp://",
    ),
    "rabbitmq-url-bad-port": (
        {"CHANNEL_LAYER": "rabbitmq", "RABBITMQ_URL": "amqp://127.0.0.1:amqp"},
        "RABBITMQ_URL",
        "port",
    ),
    "nats-url-not-nats": (
        {"CHANNEL_LAYER": "nats", "NATS_URL": "127.0.0.1:4222"},
        "NATS_URL",
        "nats://",
    ),
    "nats-url-without-host": (
        {"CHANNEL_LAYER": "nats", "NATS_URL": "nats://:4222"},
        "NATS_URL",
        "no host",
    ),
    "valkey-url-not-valkey": (
        {"CHANNEL_LAYER": "valkey", "VALKEY_URL": "http://127.0.0.1:6379"},
        "VALKEY_URL",
        "valkey://",
    ),
    "sqlite-path-in-no-folder": (
        {"CHANNEL_LAYER": "sqlite", "SQLITE_LAYER_PATH": "/nonexistent/layer.sqlite3"},
        "SQLITE_LAYER_PATH='/nonexistent/layer.sqlite3'",
        "does not exist",
    ),
    "sqlite-path-is-a-folder": (
        {"CHANNEL_LAYER": "sqlite", "SQLITE_LAYER_PATH": "/tmp"},
        "SQLITE_LAYER_PATH='/tmp'",
        "is a folder",
    ),
    "unknown-consumer": ({"CHAT_CONSUMER": "threaded"}, "CHAT_CONSUMER='threaded'", "async, sync"),
    "consumer-not-importable": (
        {"CHAT_CONSUMER": "nowhere.Consumer"},
        "CHAT_CONSUMER='nowhere.Consumer'",
        "cannot import nowhere",
    ),
    "limit-not-a-number": ({"CHAT_MAX_MESSAGE_CHARS": "lots"}, "CHAT_MAX_MESSAGE_CHARS", "whole"),
    "limit-zero": ({"CHAT_MAX_MESSAGE_CHARS": "0"}, "CHAT_MAX_MESSAGE_CHARS='0'", "positive"),
}


@pytest.mark.parametrize(
    "variables, names, allowed", BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys()
)
def test_bad_value_stops_manage_py_with_one_line(variables, names, allowed):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=APP_DIR,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and allowed in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_bad_value_stops_daphne_with_one_line(tmp_path):
    with pytest.raises(ServiceError) as raised:
        ChatServer.start(env={"CHAT_CONSUMER": "threaded"}, log_dir=tmp_path)
    assert "CHAT_CONSUMER='threaded'" in str(raised.value)
    log = next(tmp_path.glob("daphne-*.log")).read_text()
    assert "Traceback" not in log
    assert log.strip().splitlines() == [str(raised.value).split(": ", 1)[1].rsplit(" (log:", 1)[0]]


async def say_hello(server: ChatServer) -> dict:
    async with websockets.connect(
        f"{server.ws_url}/ws/chat/lobby/", origin=Origin(server.url), open_timeout=10
    ) as socket:
        await socket.send(json.dumps({"message": "hello"}))
        return json.loads(await asyncio.wait_for(socket.recv(), timeout=10))


@pytest.mark.parametrize("via", ["daphne", "runserver"])
def test_daphne_and_runserver_both_serve_the_chat(tmp_path, via):
    with ChatServer.start(via=via, log_dir=tmp_path) as server:
        with urllib.request.urlopen(f"{server.url}/chat/lobby/", timeout=10) as page:
            assert 'id="chat-log"' in page.read().decode()
        assert asyncio.run(say_hello(server)) == {"message": "hello"}


@pytest.mark.parametrize("layer", [layer_param(name) for name in environment.LAYERS])
def test_uvicorn_serves_the_chat(live_chat, layer):
    """Uvicorn beside Daphne, with the WebSocket implementation chosen in harness/chat.py,
    on every layer: a logged-in sender's message carries its name, an anonymous sender's
    frame is the tutorial's, byte for byte."""
    (server,) = live_chat(layer, asgi="uvicorn")
    assert server.asgi == "uvicorn" and server.websocket == UVICORN_WEBSOCKETS
    assert f"WebSocket: {UVICORN_WEBSOCKETS}" in server.description

    with urllib.request.urlopen(f"{server.url}/chat/lobby/", timeout=10) as page:
        assert 'id="chat-log"' in page.read().decode()
    name, session = next(iter(live_chat.accounts.sessions.items()))

    async def round_trip() -> tuple[list[dict], list[str]]:
        room_url = f"{server.ws_url}/ws/chat/uvicorn_{layer}/"
        cookie = {"Cookie": f"sessionid={session}"}
        async with (
            websockets.connect(
                room_url, origin=Origin(server.url), open_timeout=10, additional_headers=cookie
            ) as sender,
            websockets.connect(room_url, origin=Origin(server.url), open_timeout=10) as listener,
        ):
            await sender.send(json.dumps({"message": "served by uvicorn"}))
            named = [
                json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
                for socket in (sender, listener)
            ]
            await listener.send(json.dumps({"message": "anonymous"}))
            anonymous = [
                str(await asyncio.wait_for(socket.recv(), timeout=10))
                for socket in (sender, listener)
            ]
            return named, anonymous

    named, anonymous = asyncio.run(round_trip())
    assert named == [{"message": "served by uvicorn", "user": name}] * 2
    assert anonymous == ['{"message": "anonymous"}'] * 2
    assert "Uvicorn running on" in server.log_text()


@pytest.mark.parametrize("room", ["ünïcode", "x" * 95])
def test_live_server_refuses_bad_room_names_with_403_not_500(live_chat, room):
    (server,) = live_chat("inmemory")

    async def handshake() -> int:
        try:
            async with websockets.connect(
                f"{server.ws_url}/ws/chat/{room}/", origin=Origin(server.url), open_timeout=10
            ):
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(handshake()) == 403
    # Positive control: the same server accepts a good name.
    assert asyncio.run(say_hello(server)) == {"message": "hello"}


# Longer than the 5 s read timeout of redis-py 8 and valkey-py 6.
IDLE_SECONDS = 6.5


async def idle_then_talk(server: ChatServer) -> list[dict]:
    """Two sockets in a room idle past the read timeout (the idle time is the thing
    tested, not a wait), then one talks: what each of them receives."""
    room_url = f"{server.ws_url}/ws/chat/idle_{server.port}/"
    async with (
        websockets.connect(room_url, origin=Origin(server.url), open_timeout=10) as sender,
        websockets.connect(room_url, origin=Origin(server.url), open_timeout=10) as listener,
    ):
        await asyncio.sleep(IDLE_SECONDS)
        await sender.send(json.dumps({"message": "still there?"}))
        return [
            json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
            for socket in (sender, listener)
        ]


@pytest.mark.redis
@pytest.mark.compat
def test_sockets_idle_past_redis_read_timeout_stay_open(live_chat):
    """redis-py 8 defaults to a 5 s read timeout, which kills RedisChannelLayer consumers
    idle for 5 s (see environment.REDIS_POOL_OPTIONS). Idle past it on both Redis layers at
    once, then talk."""

    async def both_layers() -> list[list[dict]]:
        servers = [live_chat(layer)[0] for layer in ("redis", "redis-pubsub")]
        return await asyncio.gather(*(idle_then_talk(server) for server in servers))

    for received in asyncio.run(both_layers()):
        assert received == [{"message": "still there?"}] * 2


@pytest.mark.valkey
@pytest.mark.compat
def test_sockets_idle_past_valkey_read_timeout_stay_open(live_chat):
    """valkey-py 6's asyncio connections read with a 5 s timeout by default too, and
    channels-valkey's receive blocks for 5 s in BZPOPMIN, as channels-redis's does: without
    environment.VALKEY_POOL_OPTIONS every socket idle for 5 s closes with 1011."""
    (server,) = live_chat("valkey")
    assert asyncio.run(idle_then_talk(server)) == [{"message": "still there?"}] * 2
