"""Read the chat's run-time choices from the environment (see README, "Choosing the layer").

Each reader raises ``ConfigurationError`` with one line that names the variable, what was
wrong and what is allowed; ``settings.py`` turns that into a clean exit at start-up.
"""

import json
from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

LAYER_BACKENDS = {
    "inmemory": "channels.layers.InMemoryChannelLayer",
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
REDIS_LAYERS = ("redis", "redis-pubsub")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# redis-py 8 changed two defaults of the connection pool that channels-redis builds from
# a host URL: at most 100 connections (past about 100 sockets per server, handshakes fail
# with MaxConnectionsError) and a 5 s read timeout (as long as channels-redis's 5 s
# blocking receive, so a reply a little late kills the consumer and closes its socket).
# Give the pool what redis-py 5 to 7 did: no read timeout, and a connection limit far above
# what one server process uses but well below Redis's own 10,000 clients. A connect
# timeout keeps an unreachable Redis from hanging a handshake forever.
REDIS_POOL_OPTIONS = {"max_connections": 1000, "socket_timeout": None, "socket_connect_timeout": 5}
CONSUMERS = ("async", "sync")
DEFAULT_MAX_MESSAGE_CHARS = 65536


class ConfigurationError(Exception):
    """A variable holds a value the chat cannot run with."""


def channel_layers(environ: Mapping[str, str]) -> dict[str, Any]:
    """Build ``CHANNEL_LAYERS`` from CHANNEL_LAYER, CHANNEL_LAYER_CONFIG and REDIS_URL."""
    layer = environ.get("CHANNEL_LAYER", "inmemory").strip() or "inmemory"
    if layer in LAYER_BACKENDS:
        backend = LAYER_BACKENDS[layer]
    elif "." in layer:
        backend = layer
    else:
        raise ConfigurationError(
            f"CHANNEL_LAYER={layer!r} is not a known layer: use one of "
            f"{', '.join(LAYER_BACKENDS)} or a dotted path to a channel layer class"
        )
    try:
        import_string(backend)
    except ImportError as error:
        hint = " (pip install channels-redis)" if layer in REDIS_LAYERS else ""
        raise ConfigurationError(
            f"CHANNEL_LAYER={layer!r}: cannot import {backend}: {error}{hint}"
        ) from None

    config: dict[str, Any] = {}
    if layer in REDIS_LAYERS:
        redis_url = environ.get("REDIS_URL", DEFAULT_REDIS_URL)
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"REDIS_URL={redis_url!r} is not a Redis URL: use redis://HOST:PORT/DB "
                "or rediss://HOST:PORT/DB"
            )
        config["hosts"] = [{"address": redis_url, **REDIS_POOL_OPTIONS}]
    config.update(_layer_config_overrides(environ.get("CHANNEL_LAYER_CONFIG", "")))
    layer_settings: dict[str, Any] = {"BACKEND": backend}
    if config:
        layer_settings["CONFIG"] = config
    return {"default": layer_settings}


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
    """``async`` (tutorial part 3, the default) or ``sync`` (tutorial part 2)."""
    consumer = environ.get("CHAT_CONSUMER", "async").strip() or "async"
    if consumer not in CONSUMERS:
        raise ConfigurationError(
            f"CHAT_CONSUMER={consumer!r} is not a consumer: use one of {', '.join(CONSUMERS)}"
        )
    return consumer


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
