"""The servers under test for one Stack: its backend and its ASGI server processes, all
started through harness/ and stopped on exit."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import redis

from harness import (
    ASGI,
    Backend,
    ChatServer,
    ProcessStats,
    RedisServer,
    ServiceError,
    layer_backend,
    make_accounts,
)
from load.core.plan import Plan
from load.reporting.record import Stack

# "Idle": under this share of a core, for this long; checked this often, this long at most.
IDLE_CPU_SHARE = 0.05
IDLE_FOR_S = 0.6
IDLE_POLL_S = 0.2
IDLE_TIMEOUT_S = 20.0
# FLUSHALL of a throw-away Redis holding one step's leftovers takes milliseconds.
FLUSH_TIMEOUT_S = 10.0


def accounts_for(plan: Plan) -> int:
    """How many users a stack needs for ``plan``: one per load user when they log in (a
    capacity search that adds users shares them out again: load/core/logins.py)."""
    return plan.users if plan.login != "none" else 0


class StackError(Exception):
    """A server of the stack could not be started; the text is one line."""


class LiveStack:
    """``with LiveStack(stack, log_dir) as live:`` the stack's servers run; ``live.targets``
    are their ws:// URLs. ``settle_down`` waits out an overloaded step's backlog;
    ``restart_servers`` gives fresh server processes on the same backend, and
    ``start_afresh`` also empties the backend when the stack started it.

    With ``accounts=N`` the servers share a throw-away database of N users, each with a
    session (harness/accounts.py); ``accounts_file`` is what ``--accounts`` reads."""

    def __init__(
        self, stack: Stack, log_dir: Path, *, sentinel: bool = False, accounts: int = 0
    ) -> None:
        self.stack = stack
        self.log_dir = log_dir
        self.sentinel = sentinel  # the Redis layers through Redis Sentinel (redis-failover)
        self.accounts = accounts
        self.accounts_file: Path | None = None
        self.servers: list[ChatServer] = []
        self._exit = contextlib.ExitStack()
        self.backend: Backend | None = None
        self._server_env: dict[str, str] = {}

    def __enter__(self) -> LiveStack:
        try:
            # A stack the harness starts names its layer (cli.stacks_of, replay._stack_of).
            assert self.stack.layer is not None
            self.backend = self._exit.enter_context(
                layer_backend(self.stack.layer, sentinel=self.sentinel)
            )
            if self.accounts:
                self._make_accounts()
            self.start_servers()
        except ServiceError as error:
            self.__exit__(None, None, None)
            raise StackError(str(error)) from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_servers()
        self._exit.close()

    def _make_accounts(self) -> None:
        # Not in the results folder: thousands of session rows are no result.
        folder = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="accounts-")))
        accounts = make_accounts(folder, users=self.accounts, sessions=True)
        self._server_env = accounts.env
        self.accounts_file = accounts.write(folder / "accounts.json")

    @property
    def targets(self) -> list[str]:
        return [server.ws_url for server in self.servers]

    def layer_env(self) -> dict[str, str]:
        if not self.stack.layer_config:
            return {}
        config = self.stack.layer_config
        assert self.backend is not None  # set on __enter__, before any server starts
        for name, value in self.backend.env.items():
            config = config.replace(f"${name}", value)
        # A backend that brings a config of its own (Sentinel's hosts) keeps it unless the
        # user's config says otherwise.
        own = json.loads(self.backend.env.get("CHANNEL_LAYER_CONFIG", "{}"))
        return {"CHANNEL_LAYER_CONFIG": json.dumps({**own, **json.loads(config)})}

    def start_servers(self) -> None:
        """``stack.servers`` server processes, each on its own port; under Gunicorn one
        arbiter with ``stack.servers`` workers behind one port (what "N servers" means
        to a Gunicorn user), so ``targets`` is that one port."""
        # A stack the harness starts names all three (cli.stacks_of, replay._stack_of).
        assert self.stack.layer is not None
        assert self.stack.consumer is not None and self.stack.asgi is not None
        arbiter = ASGI[self.stack.asgi].arbiter
        count, workers = (1, self.stack.servers) if arbiter else (self.stack.servers, 1)
        try:
            for _ in range(count):
                self.servers.append(
                    ChatServer.start(
                        layer=self.stack.layer,
                        consumer=self.stack.consumer,
                        asgi=self.stack.asgi,
                        backend=self.backend,
                        env={**self.layer_env(), **self._server_env},
                        log_dir=self.log_dir,
                        workers=workers,
                    )
                )
        except ServiceError as error:
            raise StackError(str(error)) from None

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    def restart_servers(self) -> None:
        self.stop_servers()
        self.start_servers()

    def start_afresh(self) -> None:
        """Fresh server processes on an emptied backend, as at the first step.

        Every capacity step starts here because an overloaded step leaves state behind that
        slows the next one: InMemory keeps each closed socket's full channel (up to 100
        messages) until its messages expire after 60 s, and scans every channel on each
        receive and group_send; channels_redis keeps a dead channel's messages in Redis
        until they expire, and channels-lite its rows in the SQLite file. Measured on one
        InMemory Daphne, eight overload runs back to back fell from 1,252 to 196
        deliveries/s, so a search's earlier failures decided its later steps. Only a Redis
        (or Valkey) or an SQLite file this stack started is emptied, never one given by URL
        or SQLITE_LAYER_PATH."""
        self.stop_servers()
        self._flush_own_redis()
        self._empty_own_sqlite_file()
        self.start_servers()

    def _empty_own_sqlite_file(self) -> None:
        """The SQLite layer's rows, in the throw-away file this stack made (its servers are
        stopped, so nothing holds a lock on it)."""
        path = self.backend.layer_file if self.backend is not None else None
        if path is None:
            return
        try:
            # closing: sqlite3's own context manager ends the transaction, not the connection
            with (
                contextlib.closing(sqlite3.connect(path, timeout=FLUSH_TIMEOUT_S)) as database,
                database,
            ):
                database.execute("DELETE FROM channels_lite_event")
                database.execute("DELETE FROM channels_lite_groupmembership")
        except sqlite3.Error as error:
            message = f"emptying the stack's own SQLite file {path} failed: {error}"
            raise StackError(message) from None

    def _flush_own_redis(self) -> None:
        server = self.backend.server if self.backend is not None else None
        if (
            self.backend is None  # then server is None too
            or not isinstance(server, RedisServer)
            or self.backend.sentinels is not None
        ):
            return
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=FLUSH_TIMEOUT_S)
        try:
            client.flushall()
        except redis.RedisError as error:
            message = f"emptying the stack's own Redis at {server.url} failed: {error}"
            raise StackError(message) from None
        finally:
            client.close()

    def settle_down(self, *, timeout_s: float = IDLE_TIMEOUT_S) -> bool:
        """After an overloaded step: wait until the servers have worked off their backlog
        (each uses under IDLE_CPU_SHARE of a core for IDLE_FOR_S), so that it cannot spill
        into the next step; restart them if that takes longer than ``timeout_s``. Keeping
        the warm processes avoids measuring a cold start instead of the load. True if they
        went idle by themselves."""
        deadline = time.monotonic() + timeout_s
        previous = self._cpu_total()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(IDLE_POLL_S)  # sampling CPU time; the deadline bounds it
            current = self._cpu_total()
            if previous is None or current is None:
                break
            # One allowance per serving process: Gunicorn's workers count, not its arbiter.
            if current - previous > IDLE_CPU_SHARE * IDLE_POLL_S * self.stack.servers:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= IDLE_FOR_S:
                return True
            previous = current
        self.restart_servers()
        return False

    def _cpu_total(self) -> float | None:
        readings = [stats.cpu_seconds() for stats in self.processes()]
        known = [r for r in readings if r is not None]
        return None if len(known) < len(readings) else sum(known)

    def processes(self) -> list[ProcessStats]:
        """Every process of every server, each on its own (ChatServer.process_stats): the
        samplers key them by pid, so a killed Gunicorn worker's CPU stays counted after the
        arbiter replaced it, and the replacement's is added."""
        return [stats for server in self.servers for stats in server.process_stats()]

    def backend_processes(self) -> list[ProcessStats]:
        """The layer's own server (redis-server, postgres, ...) when this stack started
        it; nothing for InMemory or a server given by URL."""
        server = self.backend.server if self.backend is not None else None
        if server is None or not server.running:
            return []
        assert server.pid is not None  # a running server has a process
        return [ProcessStats(server.pid, with_children=True)]

    @property
    def description(self) -> str | None:
        return self.servers[0].description if self.servers else None

    @property
    def backend_description(self) -> str | None:
        """What the layer ran on (``Backend.software``), for the run records."""
        return self.backend.software if self.backend is not None else None
