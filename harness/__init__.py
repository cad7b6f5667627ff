"""The real services the tests and the load harness run on, started and stopped here.

Everything binds to loopback on a free port, in a temporary directory, with every wait
bounded, and stops at the end (also on SIGTERM). One module per idea:

* ``processes``: launching, waiting for and stopping a process; free ports; signals.
* ``backends``: the layers' servers (Redis, Sentinel, PostgreSQL, RabbitMQ, NATS,
  Valkey) as throw-away processes, and ``layer_backend``: a layer's URL variable or such a
  server (for the SQLite layer: its file).
* ``chat``: the chat as a process of one of six ways of serving it (``ASGI_SERVERS``:
  Daphne, Uvicorn, Hypercorn, Granian, Gunicorn's ASGI worker, Gunicorn with Uvicorn's
  worker) (``ChatServer``), and ``serve``.
* ``accounts``: logged-in users in a throw-away database (``make_accounts``).
* ``login``: logging in over HTTP as a browser does, standard library only (``HttpBrowser``).
* ``identity``: whether each HTTP answer reaches its own user (``check_identity``).
* ``live``: what the tests hold while a server runs (``LiveChat``, ``LiveServers``).
* ``pytest_plugin``: the fixtures (``live_chat``, ``backend``, ``redis_url`` ...).

The names below are the ones callers use; ``live`` and ``pytest_plugin`` import pytest
and are imported by name.
"""

from harness.accounts import ACCOUNT_PASSWORD, Accounts, make_accounts, username
from harness.backends import (
    APP_DIR,
    LAYERS,
    REDIS_LAYERS,
    ROOT,
    SERVER_CLASSES,
    Backend,
    BackendServer,
    NatsServer,
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    SentinelServer,
    ValkeyServer,
    file_variable_of,
    layer_backend,
    redis_ping,
    service_of,
)
from harness.chat import (
    ASGI,
    ASGI_SERVERS,
    CONSUMERS,
    GUNICORN_SERVERS,
    UVICORN_WEBSOCKETS,
    AsgiServer,
    ChatServer,
    chat_environment,
    chat_servers,
    check_consumer,
    server_command,
)
from harness.identity import IdentityReport, check_identity, page_user
from harness.processes import (
    DEBIAN_PACKAGES,
    LOOPBACK,
    MissingExecutable,
    ProcessStats,
    ServiceError,
    apt_hint,
    find_executable,
    free_port,
    interrupt_on_termination,
    interrupted_status,
    kill_process_group,
    last_line,
    launch,
    run_as,
    stop_process,
    wait_until,
)

__all__ = [
    "ACCOUNT_PASSWORD",
    "APP_DIR",
    "ASGI",
    "ASGI_SERVERS",
    "CONSUMERS",
    "DEBIAN_PACKAGES",
    "GUNICORN_SERVERS",
    "LAYERS",
    "LOOPBACK",
    "REDIS_LAYERS",
    "ROOT",
    "SERVER_CLASSES",
    "UVICORN_WEBSOCKETS",
    "Accounts",
    "AsgiServer",
    "Backend",
    "BackendServer",
    "ChatServer",
    "IdentityReport",
    "MissingExecutable",
    "NatsServer",
    "PostgresServer",
    "ProcessStats",
    "RabbitMQServer",
    "RedisServer",
    "SentinelServer",
    "ServiceError",
    "ValkeyServer",
    "apt_hint",
    "chat_environment",
    "chat_servers",
    "check_consumer",
    "check_identity",
    "file_variable_of",
    "find_executable",
    "free_port",
    "interrupt_on_termination",
    "interrupted_status",
    "kill_process_group",
    "last_line",
    "launch",
    "layer_backend",
    "make_accounts",
    "page_user",
    "redis_ping",
    "run_as",
    "server_command",
    "service_of",
    "stop_process",
    "username",
    "wait_until",
]
