"""Read the chat's run-time choices from the environment (see README, "Choosing the layer").

Each reader raises ``ConfigurationError`` with one line that names the variable, what was
wrong and what is allowed; ``settings.py`` turns that into a clean exit at start-up.

``LAYERS`` is the one list of channel layers: the harness (harness/, the fixtures, the
benchmark) reads it from here, never the other way round.
"""

import importlib.util
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Service:
    """A server a channel layer talks to, and the variable that says where it is."""

    name: str
    title: str
    url_variable: str
    default_url: str
    schemes: tuple[str, ...]
    url_form: str  # shown when the URL is wrong

    def url(self, environ: Mapping[str, str]) -> str:
        return environ.get(self.url_variable, "").strip() or self.default_url


@dataclass(frozen=True)
class Layer:
    """One value of CHANNEL_LAYER."""

    backend: str  # dotted path of the channel layer class
    # None: no server; the layer lives inside one process, or (file_variable) in a file
    service: Service | None
    package: str | None  # what to pip install for it
    # Checked with find_spec rather than imported: importing channels_postgres needs
    # Django's app registry, which is not ready while settings.py runs.
    modules: tuple[str, ...] = ()
    # A layer without a server that keeps its messages in a file every process of one
    # machine opens (channels-lite's SQLite): the variable that names the file.
    file_variable: str | None = None


REDIS = Service(
    name="redis",
    title="Redis",
    url_variable="REDIS_URL",
    default_url="redis://127.0.0.1:6379/0",
    schemes=("redis", "rediss", "unix"),
    url_form="redis://HOST:PORT/DB or rediss://HOST:PORT/DB",
)
POSTGRES = Service(
    name="postgres",
    title="PostgreSQL",
    url_variable="POSTGRES_URL",
    # What the official postgres image started with POSTGRES_PASSWORD=postgres answers.
    default_url="postgresql://postgres:postgres@127.0.0.1:5432/postgres",
    schemes=("postgresql", "postgres"),
    url_form="postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
)
RABBITMQ = Service(
    name="rabbitmq",
    title="RabbitMQ",
    url_variable="RABBITMQ_URL",
    # RabbitMQ's built-in guest user may log in from loopback only; no path: the default vhost.
    default_url="amqp://guest:guest@127.0.0.1:5672",
    schemes=("amqp", "amqps"),
    url_form="amqp://USER:PASSWORD@HOST:PORT or amqp://USER:PASSWORD@HOST:PORT/VHOST",
)
NATS = Service(
    name="nats",
    title="NATS",
    url_variable="NATS_URL",
    default_url="nats://127.0.0.1:4222",
    schemes=("nats", "tls"),
    url_form="nats://HOST:PORT or tls://HOST:PORT",
)
# Valkey speaks Redis's protocol (it is a fork of Redis 7.2), but channels-valkey's Lua
# scripts call ``server.call``, which only Valkey 8 knows: a Redis cannot stand in for it
# (chat/test_layers.py). The harness runs a real valkey-server (harness/backends.py).
VALKEY = Service(
    name="valkey",
    title="Valkey",
    url_variable="VALKEY_URL",
    default_url="valkey://127.0.0.1:6379/0",
    # valkey-py reads redis:// URLs as well as its own valkey:// ones.
    schemes=("valkey", "valkeys", "redis", "rediss", "unix"),
    url_form="valkey://HOST:PORT/DB or valkeys://HOST:PORT/DB",
)
SERVICES = {service.name: service for service in (REDIS, POSTGRES, RABBITMQ, NATS, VALKEY)}
# Where channels-lite's SQLite file is: SQLITE_LAYER_PATH, else this file, in the system's
# temporary directory so that every server process of one machine finds the same one.
# (The harness never uses it: it makes a throw-away file for each stack and session.)
SQLITE_LAYER_PATH = "SQLITE_LAYER_PATH"
DEFAULT_SQLITE_LAYER_PATH = Path(tempfile.gettempdir()) / "chat-channel-layer.sqlite3"

LAYERS = {
    "inmemory": Layer("channels.layers.InMemoryChannelLayer", None, None),
    "redis": Layer(
        "channels_redis.core.RedisChannelLayer",
        REDIS,
        "channels-redis",
        ("channels_redis", "redis"),
    ),
    "redis-pubsub": Layer(
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        REDIS,
        "channels-redis",
        ("channels_redis", "redis"),
    ),
    "postgres": Layer(
        "channels_postgres.core.PostgresChannelLayer",
        POSTGRES,
        "channels-postgres",
        ("channels_postgres", "psycopg", "psycopg_pool"),
    ),
    "rabbitmq": Layer(
        "channels_rabbitmq.core.RabbitmqChannelLayer",
        RABBITMQ,
        "channels-rabbitmq",
        ("channels_rabbitmq", "carehare"),
    ),
    "nats": Layer(
        "channels_nats.NatsChannelLayer", NATS, "channels-nats", ("channels_nats", "nats")
    ),
    # channels-valkey's core layer (a fork of channels-redis's RedisChannelLayer), on
    # valkey-py (a fork of redis-py); its pub/sub and Sentinel variants are not wired.
    "valkey": Layer(
        "channels_valkey.core.ValkeyChannelLayer",
        VALKEY,
        "channels-valkey",
        ("channels_valkey", "valkey", "msgpack"),
    ),
    # channels-lite's aiosqlite layer (the [aio] extra); its other layer,
    # SQLiteChannelLayer, goes through the Django ORM instead.
    "sqlite": Layer(
        "channels_lite.layers.aio.AIOSQLiteChannelLayer",
        None,
        "channels-lite[aio]",
        ("channels_lite", "aiosqlite", "aiosqlitepool", "msgspec"),
        file_variable=SQLITE_LAYER_PATH,
    ),
}
LAYER_BACKENDS = {name: layer.backend for name, layer in LAYERS.items()}
REDIS_LAYERS = tuple(name for name, layer in LAYERS.items() if layer.service is REDIS)
# The layers whose CONFIG takes a key ``prefix`` and whose flush() deletes only the keys
# under it: channels-redis's two and channels-valkey's, which share its code.
PREFIXED_LAYERS = (*REDIS_LAYERS, "valkey")
DEFAULT_REDIS_URL = REDIS.default_url
# redis-py 8 changed two defaults of the connection pool that channels-redis builds from
# a host URL: at most 100 connections (past about 100 sockets per server, handshakes fail
# with MaxConnectionsError) and a 5 s read timeout (as long as channels-redis's 5 s
# blocking receive, so a reply a little late kills the consumer and closes its socket).
# Give the pool what redis-py 5 to 7 did: no read timeout, and a connection limit far above
# what one server process uses but well below Redis's own 10,000 clients. A connect
# timeout keeps an unreachable Redis from hanging a handshake forever.
REDIS_POOL_OPTIONS = {"max_connections": 1000, "socket_timeout": None, "socket_connect_timeout": 5}
# channels-valkey builds its pool the same way, with valkey-py 6, whose asyncio connections
# read with a 5 s timeout by default as redis-py 8's do (its pool has no connection limit,
# as redis-py 7's had none): without these, every socket idle for 5 s is closed
# (test_environment.py's idle tests show it).
VALKEY_POOL_OPTIONS = REDIS_POOL_OPTIONS
# channels-postgres reaches its tables through the Django ORM under this database alias
# (its DatabaseLayer's default ``using``), and through psycopg with the layer's CONFIG.
CHANNELS_POSTGRES_ALIAS = "channels_postgres"
# channels-lite finds its SQLite file through a Django database alias (its CONFIG's
# ``database``): the file's path under this alias, its tables from its migrations.
CHANNELS_LITE_ALIAS = "channels_lite"
CONSUMERS = ("async", "sync")
DEFAULT_MAX_MESSAGE_CHARS = 65536


class ConfigurationError(Exception):
    """A variable holds a value the chat cannot run with."""


def channel_layers(environ: Mapping[str, str]) -> dict[str, Any]:
    """Build ``CHANNEL_LAYERS`` from CHANNEL_LAYER, CHANNEL_LAYER_CONFIG and the URL
    variable of the layer's server (REDIS_URL, POSTGRES_URL, RABBITMQ_URL, NATS_URL or
    VALKEY_URL), or SQLITE_LAYER_PATH for the SQLite layer."""
    name = environ.get("CHANNEL_LAYER", "inmemory").strip() or "inmemory"
    layer = LAYERS.get(name)
    if layer is not None:
        _require_modules(name, layer)
        backend = layer.backend
    elif "." in name:
        backend = name
        try:
            import_string(backend)
        except ImportError as error:
            raise ConfigurationError(
                f"CHANNEL_LAYER={name!r}: cannot import {backend}: {error}"
            ) from None
    else:
        raise ConfigurationError(
            f"CHANNEL_LAYER={name!r} is not a known layer: use one of "
            f"{', '.join(LAYERS)} or a dotted path to a channel layer class"
        )

    config: dict[str, Any] = {}
    if layer is not None and layer.service is not None:
        config = _service_config(layer.service, environ)
    elif layer is not None and layer.file_variable is not None:
        sqlite_layer_path(environ)  # a bad path stops start-up here, with one line
        config = {"database": CHANNELS_LITE_ALIAS}
    config.update(_layer_config_overrides(environ.get("CHANNEL_LAYER_CONFIG", "")))
    layer_settings: dict[str, Any] = {"BACKEND": backend}
    if config:
        layer_settings["CONFIG"] = config
    return {"default": layer_settings}


def _require_modules(name: str, layer: Layer) -> None:
    for module in layer.modules:
        if importlib.util.find_spec(module) is None:
            raise ConfigurationError(
                f"CHANNEL_LAYER={name!r}: cannot import {module} (pip install {layer.package})"
            )


def _service_config(service: Service, environ: Mapping[str, str]) -> dict[str, Any]:
    """The layer CONFIG that points the layer at its server."""
    url = service.url(environ)
    parts = _parse_url(service, url)
    if service is REDIS:
        return {"hosts": [{"address": url, **REDIS_POOL_OPTIONS}]}
    if service is POSTGRES:
        # channels-postgres takes a Django DATABASES entry as its CONFIG.
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(parts.port or 5432),
            # The layer builds a Django DatabaseWrapper from this dict, which reads
            # TIME_ZONE when USE_TZ is on. Without it the constructor raises KeyError,
            # which Channels' get_channel_layer() turns into None: consumers then fail
            # with "'NoneType' object has no attribute 'group_add'".
            "TIME_ZONE": None,
        }
    if service is RABBITMQ:
        return {"host": url}
    if service is VALKEY:
        return {"hosts": [{"address": url, **VALKEY_POOL_OPTIONS}]}
    return {"servers": [url]}


def _parse_url(service: Service, url: str) -> SplitResult:
    """Split ``url``, or raise ConfigurationError naming the service's variable."""

    def wrong(reason: str) -> ConfigurationError:
        return ConfigurationError(
            f"{service.url_variable}={_redacted(url)!r} {reason}: use {service.url_form}"
        )

    parts = urlsplit(url)
    if parts.scheme not in service.schemes:
        raise wrong(f"is not a {service.title} URL")
    if parts.scheme == "unix":
        return parts
    try:
        parts.port  # noqa: B018 (a property that raises ValueError for a bad port)
    except ValueError:
        raise wrong("has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise wrong("names no host")
    if service is POSTGRES and not parts.path.strip("/"):
        raise wrong("names no database")
    if service is RABBITMQ and "/" in parts.path[1:]:
        raise wrong("has a '/' in its vhost (write it as %2F)")
    return parts


def _redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: error lines end up in logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def channels_postgres_database(layers: Mapping[str, Any]) -> dict[str, Any] | None:
    """The DATABASES entry channels-postgres needs under ``CHANNELS_POSTGRES_ALIAS``, or
    None when the default layer is not channels-postgres.

    It is the layer's own CONFIG without the layer's options (those are lower case, and
    PSYCOPG_OPTIONS), so the ORM and psycopg always reach the same database."""
    default = layers.get("default", {})
    if not default.get("BACKEND", "").startswith("channels_postgres."):
        return None
    config = default.get("CONFIG", {})
    return {
        key: value for key, value in config.items() if key.isupper() and key != "PSYCOPG_OPTIONS"
    }


def sqlite_layer_path(environ: Mapping[str, str]) -> Path:
    """channels-lite's SQLite file: SQLITE_LAYER_PATH, else DEFAULT_SQLITE_LAYER_PATH.

    Every server process of one machine must name the same file (that is how they share
    rooms), and its tables come from ``python manage.py migrate channels_lite --database
    channels_lite``; its folder must exist."""
    raw = environ.get(SQLITE_LAYER_PATH, "").strip()
    if not raw:
        return DEFAULT_SQLITE_LAYER_PATH
    path = Path(raw)
    if not path.parent.is_dir() or path.is_dir():
        where = (
            "is a folder" if path.is_dir() else f"the folder {str(path.parent)!r} does not exist"
        )
        raise ConfigurationError(
            f"{SQLITE_LAYER_PATH}={raw!r}: {where}: give the path of an SQLite file in an "
            "existing folder"
        )
    return path


def channels_lite_database(
    layers: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any] | None:
    """The DATABASES entry channels-lite needs under ``CHANNELS_LITE_ALIAS``, or None when
    the default layer is not channels-lite.

    Only ENGINE and NAME: the aiosqlite layer opens the file with pragmas of its own (WAL,
    a 30 s busy timeout) unless the entry has OPTIONS' init_command, which would replace
    them all."""
    default = layers.get("default", {})
    if not default.get("BACKEND", "").startswith("channels_lite."):
        return None
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_layer_path(environ)}


def _layer_config_overrides(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"CHANNEL_LAYER_CONFIG is not valid JSON ({error.msg} at position {error.pos}): "
            'give a JSON object such as {"capacity": 1000}'
        ) from None
    if not isinstance(overrides, dict):
        raise ConfigurationError(
            f"CHANNEL_LAYER_CONFIG must be a JSON object, got {type(overrides).__name__}: "
            'give an object such as {"capacity": 1000}'
        )
    return overrides


def chat_consumer(environ: Mapping[str, str]) -> str:
    """``async`` (tutorial part 3, the default) or ``sync`` (tutorial part 2), or the dotted
    path of a consumer class, as CHANNEL_LAYER takes one (chat/routing.py imports it)."""
    consumer = environ.get("CHAT_CONSUMER", "async").strip() or "async"
    if consumer in CONSUMERS:
        return consumer
    if not is_dotted_path(consumer):
        raise ConfigurationError(
            f"CHAT_CONSUMER={consumer!r} is not a consumer: use one of {', '.join(CONSUMERS)}"
            " or a dotted path to a consumer class"
        )
    module = consumer.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that does not exist
        found = False
    if not found:
        raise ConfigurationError(
            f"CHAT_CONSUMER={consumer!r}: cannot import {module} (is its folder on PYTHONPATH?)"
        )
    return consumer


def is_dotted_path(name: str) -> bool:
    """``package.module.Class``: at least two dot-separated Python identifiers."""
    parts = name.split(".")
    return len(parts) >= 2 and all(part.isidentifier() for part in parts)


def max_message_chars(environ: Mapping[str, str]) -> int:
    """The longest ``message`` accepted, in characters."""
    raw = environ.get("CHAT_MAX_MESSAGE_CHARS", str(DEFAULT_MAX_MESSAGE_CHARS)).strip()
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigurationError(
            f"CHAT_MAX_MESSAGE_CHARS={raw!r} is not a positive whole number of characters: "
            f"use for example {DEFAULT_MAX_MESSAGE_CHARS}"
        )
    return limit


def database_path(environ: Mapping[str, str], default: Path) -> Path:
    """The SQLite file of the users and their sessions: CHAT_DATABASE, else ``default``.

    Migrate it first (``python manage.py migrate``); its folder must exist."""
    raw = environ.get("CHAT_DATABASE", "").strip()
    if not raw:
        return default
    path = Path(raw)
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"CHAT_DATABASE={raw!r}: the folder {str(path.parent)!r} does not exist: "
            "give the path of an SQLite file in an existing folder"
        )
    return path
