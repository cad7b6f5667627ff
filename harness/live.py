"""What the tests share besides fixtures: the rule for a missing system dependency, the
session's backends (one server per kind), and live chat servers kept for the session.

The fixtures that hand these out are in pytest_plugin.py; tests import the types from here
(never from a conftest).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import pytest
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect
from websockets.typing import Origin

from harness import (
    ASGI_SERVERS,
    Accounts,
    Backend,
    ChatServer,
    ServiceError,
    file_variable_of,
    layer_backend,
    make_accounts,
    service_of,
)
from harness.backends import environment

# The mark each layer's tests carry, named after the server it needs, so that
# `-m "not rabbitmq"` leaves out exactly the tests that would start RabbitMQ.
SERVICE_MARKS = {name: getattr(pytest.mark, name) for name in environment.SERVICES}
# The SQLite layer needs no server; its mark lets `-m "not sqlite"` leave it out all the same.
FILE_LAYER_MARKS = {"sqlite": pytest.mark.sqlite}


def layer_param(layer: str) -> pytest.ParameterSet:
    """``layer`` as a pytest parameter (id: the layer name) with its server's marks."""
    service = service_of(layer)
    mark = SERVICE_MARKS[service.name] if service else FILE_LAYER_MARKS.get(layer)
    return pytest.param(layer, id=layer, marks=mark or ())


# The ASGI servers every test that takes ``asgi`` runs on by default; the others only with
# --heavy (nightly). harness/tests/test_asgi_servers.py and load/tests/test_scenarios.py
# check every server's WebSocket side in the default run.
DEFAULT_ASGI = ("daphne", "uvicorn")


def asgi_params() -> list[pytest.ParameterSet]:
    """Each of ASGI_SERVERS as a pytest parameter (id: its name); those beyond
    DEFAULT_ASGI marked heavy, to keep the default run's minutes."""
    return [
        pytest.param(asgi, id=asgi, marks=() if asgi in DEFAULT_ASGI else pytest.mark.heavy)
        for asgi in ASGI_SERVERS
    ]


def missing_dependency(reason: str) -> NoReturn:
    """Fail in CI, where every dependency must be present; skip locally, saying what to install."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it; see .ci/run)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def channels_postgres_in_process(
    settings: Any, django_db_blocker: Any, channel_layers: Mapping[str, Any]
) -> Iterator[None]:
    """In the test process, what settings.py does at start-up when ``channel_layers`` is
    channels-postgres: its app installed (importing the layer imports its models) and its
    database alias (its group_discard goes through the Django ORM). ``settings`` and
    ``django_db_blocker`` are pytest-django's fixtures: database access is blocked outside
    django_db tests, and this is the layer's own database, not a test database."""
    database = environment.channels_postgres_database(channel_layers)
    if database is None:
        yield
        return
    from django.db import connections

    alias = environment.CHANNELS_POSTGRES_ALIAS
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "channels_postgres"]
    # connections.settings is the configured DATABASES; add the alias with Django's defaults.
    connections.settings[alias] = connections.configure_settings(
        {"default": {}, alias: dict(database)}
    )[alias]
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        del connections.settings[alias]


@contextlib.contextmanager
def channels_lite_in_process(
    settings: Any, channel_layers: Mapping[str, Any], backend_env: Mapping[str, str]
) -> Iterator[None]:
    """In the test process, what settings.py does at start-up when ``channel_layers`` is
    channels-lite: its database alias, naming the layer's file (``backend_env``'s
    SQLITE_LAYER_PATH). The aiosqlite layer reads only that entry of DATABASES (its path),
    through its own connections, never Django's, so no Django database is opened."""
    database = environment.channels_lite_database(channel_layers, backend_env)
    if database is None:
        yield
        return
    alias = environment.CHANNELS_LITE_ALIAS
    # settings.DATABASES is the dict Django's connections were configured from; the layer
    # looks its alias up there when it is built.
    settings.DATABASES[alias] = database
    try:
        yield
    finally:
        del settings.DATABASES[alias]


# channels-lite's close() cancels each of its polling tasks once and then waits for them.
# On Python 3.11 that one cancellation can be lost: asyncio.wait_for swallows a cancel
# that arrives just as the future it waits for completes (CPython gh-86296, fixed in
# 3.12), and aiosqlitepool awaits through wait_for on every query, so the task polls on and
# close() waits for ever. It hung two full test runs in a test's teardown (2026-12-05 and
# 2026-12-06), the main thread idle in close() with the pool's threads alive. So the
# tests cancel those tasks again until they end, for at most CLOSE_ROUNDS rounds.
CLOSE_ROUNDS = 20
CLOSE_ROUND_S = 0.5


async def close_channel_layer(channel_layer: Any) -> None:
    """``await channel_layer.close()``, except that a channels-lite layer whose polling
    task lost its cancellation is cancelled again (bounded); AssertionError if it still
    has not closed after CLOSE_ROUNDS x CLOSE_ROUND_S seconds."""
    closing = asyncio.ensure_future(channel_layer.close())
    for _ in range(CLOSE_ROUNDS):
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_ROUND_S)
        if done:
            closing.result()
            return
        for task in list(getattr(channel_layer, "_polling_tasks", {}).values()):
            task.cancel()
    closing.cancel()
    raise AssertionError(
        f"{type(channel_layer).__name__}.close() did not finish in "
        f"{CLOSE_ROUNDS * CLOSE_ROUND_S:g} s, its polling tasks cancelled {CLOSE_ROUNDS} times"
    )


class Backends:
    """One backend per kind of server for the whole session, started on first use with
    ``layer_backend`` (so $REDIS_URL and the like are honoured); both Redis layers share
    one Redis (channels-redis's core layer keeps keys, its pub/sub layer uses Redis's
    pub/sub channels, so the two never meet); the valkey layer has a valkey-server of its
    own. The SQLite layer gets one throw-away file for the session. A backend that failed
    to start is not tried again: its error is re-raised."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._started: dict[str, Backend] = {}
        self._failed: dict[str, ServiceError] = {}

    def get(self, layer: str) -> Backend:
        service = service_of(layer)
        if service is not None:
            key = service.name
        elif file_variable_of(layer) is not None:
            key = layer
        else:
            return Backend(layer, {})
        if key in self._failed:
            raise self._failed[key]
        if key not in self._started:
            try:
                self._started[key] = self._stack.enter_context(layer_backend(layer))
            except ServiceError as error:
                self._failed[key] = error
                raise
        return dataclasses.replace(self._started[key], layer=layer)

    def close(self) -> None:
        self._stack.close()


# How long a new server may take before a WebSocket message makes the round trip through
# its layer. Generous: channels-postgres connects its LISTEN session on the first socket.
LAYER_READY_SECONDS = 15.0


def wait_for_layer_round_trip(server: ChatServer, timeout: float = LAYER_READY_SECONDS) -> None:
    """Wait until a message posted on ``server`` comes back through its channel layer.

    The chat answers HTTP before its layer is ready everywhere: channels-postgres starts
    listening for notifications only when a process's first consumer starts receiving,
    and a message sent before that is lost (README, "Layers"; chat/test_layers.py shows
    it). Tests of other properties must not race that, so a live server is handed out
    once one message has made the round trip. The posts repeat, because until then they
    may vanish; the deadline bounds it and the error says what was seen."""
    room = f"harness-ready-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + timeout
    posted = 0
    try:
        with connect(
            f"{server.ws_url}/ws/chat/{room}/", origin=Origin(server.url), open_timeout=timeout
        ) as socket:
            while time.monotonic() < deadline:
                socket.send(json.dumps({"message": "ready?"}))
                posted += 1
                with contextlib.suppress(TimeoutError):
                    socket.recv(timeout=0.25)
                    return
    except (OSError, WebSocketException) as error:
        raise ServiceError(
            f"{server.asgi} on {server.netloc} ({server.env['CHANNEL_LAYER']}): the "
            f"readiness socket failed: {error!r} (log: {server.log_path})"
        ) from None
    raise ServiceError(
        f"{server.asgi} on {server.netloc} ({server.env['CHANNEL_LAYER']}): none of "
        f"{posted} messages posted came back through the layer within {timeout:.0f} s "
        f"(log: {server.log_path})"
    )


# Users in the session's database, each with a session (harness/accounts.py): enough for
# the logged-in load tests' sockets.
LIVE_ACCOUNTS = 200


class LiveServers:
    """Chat servers started on demand and kept for the session, one list per (layer,
    consumer, ASGI server, Gunicorn workers), all servers of a layer sharing the session's
    backend: ``count=2`` hands out the server ``count=1`` does and starts just one more.
    Every server shares one database of ``accounts`` (made on first use), for logged-in
    tests."""

    def __init__(self, backend_for: Callable[[str], Backend | None], tmp_dir: Path) -> None:
        self._backend_for = backend_for
        self._tmp_dir = tmp_dir
        self._started: dict[tuple[str, str, str, int], list[ChatServer]] = {}
        self._accounts: Accounts | None = None

    @property
    def accounts(self) -> Accounts:
        if self._accounts is None:
            self._accounts = make_accounts(
                self._tmp_dir / "accounts", users=LIVE_ACCOUNTS, sessions=True
            )
            self._accounts.write(self.accounts_file)
        return self._accounts

    @property
    def accounts_file(self) -> Path:
        """The accounts as ``python -m load run --accounts`` reads them."""
        return self._tmp_dir / "accounts" / "accounts.json"

    def get(
        self,
        layer: str,
        consumer: str = "async",
        count: int = 1,
        asgi: str = "daphne",
        workers: int = 1,
    ) -> list[ChatServer]:
        servers = self._started.setdefault((layer, consumer, asgi, workers), [])
        if len(servers) < count:
            backend = self._backend_for(layer)
            while len(servers) < count:  # those started before a failure stop at the end
                servers.append(self.start(layer, consumer, asgi, backend=backend, workers=workers))
        return servers[:count]

    def start(
        self,
        layer: str,
        consumer: str,
        asgi: str,
        *,
        backend: Backend | None,
        log_name: str = "",
        workers: int = 1,
    ) -> ChatServer:
        """One more server on ``backend``, not kept: handed out once a message has made
        the round trip through its layer."""
        shape = f"-x{workers}" if workers != 1 else ""
        server = ChatServer.start(
            layer=layer,
            consumer=consumer,
            asgi=asgi,
            backend=backend,
            env=self.accounts.env,
            log_dir=self._tmp_dir / f"{layer}-{consumer}-{asgi}{shape}{log_name}",
            workers=workers,
        )
        try:
            wait_for_layer_round_trip(server)
        except BaseException:
            server.stop()
            raise
        return server

    def stop_all(self) -> None:
        servers = [server for started in self._started.values() for server in started]
        # Each takes a fraction of a second to shut down; wait for them together.
        with ThreadPoolExecutor() as pool:
            list(pool.map(ChatServer.stop, servers))
        self._started.clear()


class LiveChat:
    """What the ``live_chat`` fixture gives a test: call it for running servers; it keeps
    where each server's log stood when the test first got it, for failure reports."""

    def __init__(self, live_servers: LiveServers) -> None:
        self._live_servers = live_servers
        self._log_offsets: dict[int, tuple[ChatServer, int]] = {}
        self._own: list[ChatServer] = []

    def __call__(
        self,
        layer: str,
        consumer: str = "async",
        count: int = 1,
        asgi: str = "daphne",
        workers: int = 1,
    ) -> list[ChatServer]:
        """``count`` servers of ``asgi`` on ``layer``, kept for the session; ``workers``
        is the number of Gunicorn workers behind each one's port (gunicorn-* only)."""
        servers = self._live_servers.get(layer, consumer, count, asgi, workers)
        for server in servers:
            self._log_offsets.setdefault(id(server), (server, server.log_path.stat().st_size))
        return servers

    @property
    def accounts(self) -> Accounts:
        """The users every live server knows (LIVE_ACCOUNTS of them, each with a session)."""
        return self._live_servers.accounts

    @property
    def accounts_file(self) -> Path:
        return self._live_servers.accounts_file

    def own(
        self,
        layer: str,
        *,
        backend: Backend,
        consumer: str = "async",
        asgi: str = "daphne",
        workers: int = 1,
    ) -> ChatServer:
        """A server for this test alone, on ``backend`` (a Redis the test restarts, say,
        which the session's servers must never see; or a server whose worker the test
        kills), stopped by ``stop_own`` when the test ends; its log is reported like the
        shared servers'."""
        server = self._live_servers.start(
            layer, consumer, asgi, backend=backend, log_name="-own", workers=workers
        )
        self._own.append(server)
        self._log_offsets[id(server)] = (server, 0)
        return server

    def stop_own(self) -> None:
        own, self._own = self._own, []
        for server in own:
            server.stop()

    def logs_during_test(self) -> list[tuple[ChatServer, str]]:
        """Each server this test used, with the log lines written since it got it."""
        logs = []
        for server, offset in self._log_offsets.values():
            with server.log_path.open("rb") as log:
                log.seek(offset)
                logs.append((server, log.read().decode(errors="replace")))
        return logs
