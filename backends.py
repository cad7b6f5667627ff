"""The servers behind the channel layers: Redis, PostgreSQL, RabbitMQ and NATS.

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
it is set ($REDIS_URL, $POSTGRES_URL, $RABBITMQ_URL, $NATS_URL), else a throw-away server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from processes import (
    LOOPBACK,
    MissingExecutable,
    ServiceError,
    apt_hint,
    find_executable,
    free_port,
    last_line,
    launch,
    run_as,
    stop_process,
    wait_until,
)

ROOT = Path(__file__).resolve().parent
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

    def start_again(self, *, timeout: float | None = None) -> None:
        """Start the server again on the same port and directory after ``shutdown``."""
        if self.running:
            raise ServiceError(f"{self.service} server on port {self.port} is still running")
        self.launch(timeout or self.default_timeout)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
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


SERVER_CLASSES: dict[str, type[BackendServer]] = {
    "redis": RedisServer,
    "postgres": PostgresServer,
    "rabbitmq": RabbitMQServer,
    "nats": NatsServer,
}
LAYERS = tuple(environment.LAYERS)
REDIS_LAYERS = environment.REDIS_LAYERS


@dataclass(frozen=True)
class Backend:
    """What a layer runs on: ``env`` holds the URL variable the app needs (empty for
    InMemory); ``server`` is the throw-away server started for it, or None when the
    user's own URL variable is used (or the layer needs none)."""

    layer: str
    env: dict[str, str]
    server: BackendServer | None = None

    @property
    def url(self) -> str | None:
        return next(iter(self.env.values()), None)


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
def layer_backend(layer: str, *, url: str | None = None) -> Iterator[Backend]:
    """The backend ``layer`` runs on, for the duration of the ``with`` block.

    ``url`` (or else the layer's URL variable in the environment: $REDIS_URL,
    $POSTGRES_URL, $RABBITMQ_URL, $NATS_URL) when given; otherwise a throw-away server,
    stopped on exit. PostgreSQL gets channels-postgres's tables either way."""
    service = service_of(layer)
    if service is None:
        yield Backend(layer, {})
        return
    existing = url or os.environ.get(service.url_variable, "").strip()
    if existing:
        backend = Backend(layer, {service.url_variable: existing})
        _prepare_database(backend)
        yield backend
        return
    with SERVER_CLASSES[service.name].start() as server:
        backend = Backend(layer, {service.url_variable: server.url}, server)
        _prepare_database(backend)
        yield backend


def _prepare_database(backend: Backend, timeout: float = 120.0) -> None:
    """channels-postgres keeps groups and messages in tables its migrations create."""
    if service_of(backend.layer) is not environment.POSTGRES:
        return
    command = [
        sys.executable, "manage.py", "migrate", "channels_postgres",
        "--database", environment.CHANNELS_POSTGRES_ALIAS, "--no-input", "--verbosity", "0",
    ]  # fmt: skip
    try:
        finished = subprocess.run(
            command,
            cwd=APP_DIR,
            env={**os.environ, "CHANNEL_LAYER": "postgres", **backend.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(f"migrating channels_postgres took over {timeout:.0f} s") from None
    if finished.returncode != 0:
        lines = (finished.stderr or finished.stdout).strip().splitlines() or ["no output"]
        raise ServiceError(f"migrating channels_postgres failed: {lines[-1]}")
