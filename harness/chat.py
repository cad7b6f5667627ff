"""The chat itself as a real ASGI server process (Daphne or Uvicorn) on a free loopback
port, on any layer; and ``serve``, behind ``python services.py serve`` (nox -s serve).

    with layer_backend("postgres") as backend:              # $POSTGRES_URL or a throw-away one
        with ChatServer.start(layer="postgres", backend=backend, asgi="uvicorn") as chat:
            print(chat.ws_url, chat.description)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from harness.backends import (
    APP_DIR,
    LAYERS,
    ROOT,
    Backend,
    environment,
    layer_backend,
    service_of,
)
from harness.processes import (
    LOOPBACK,
    ProcessStats,
    ServiceError,
    free_port,
    interrupt_on_termination,
    kill_process_group,
    launch,
    stop_process,
    wait_until,
)

__all__ = [
    "ASGI_SERVERS",
    "CONSUMERS",
    "UVICORN_WEBSOCKETS",
    "ChatServer",
    "chat_environment",
    "chat_servers",
    "check_consumer",
    "serve",
    "server_command",
]

CONSUMERS = environment.CONSUMERS
ASGI_SERVERS = ("daphne", "uvicorn")
# Uvicorn's WebSocket implementation, chosen rather than left to --ws auto: the
# Sans-I/O protocol of the websockets library, which is what `auto` picks in uvicorn
# 0.35+ when websockets is installed (as uvicorn[standard] does), so it is what most
# Uvicorn users run. Naming it keeps a measurement from changing silently when packages
# do. The older `websockets` choice is the library's legacy API, deprecated since
# websockets 14; `wsproto` is pure Python and the least used of the three.
UVICORN_WEBSOCKETS = "websockets-sansio"
# What each way of serving speaks WebSocket with, and the package that provides it.
WEBSOCKET_PACKAGES = {"autobahn": "autobahn", "websockets-sansio": "websockets"}


def chat_environment(
    *,
    layer: str = "inmemory",
    consumer: str = "async",
    backend_env: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment variables that make the app run a layer and consumer against a
    backend (``Backend.env``: the layer's URL variable)."""
    env = {"CHANNEL_LAYER": layer, "CHAT_CONSUMER": consumer, **(backend_env or {})}
    if "." in consumer:
        # A consumer given as a dotted path (a study's variant) is imported by the server,
        # which runs from app/: it resolves from the checkout's root, as a project's would.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra or {})
    service = service_of(layer)
    if service is not None and not env.get(service.url_variable):
        raise ServiceError(f"layer {layer!r} needs {service.url_variable} (start a layer_backend)")
    return env


def check_consumer(name: str) -> str:
    """``name`` when the chat takes it as CHAT_CONSUMER (async, sync or the dotted path of
    a consumer class), else ValueError with the app's own one-line reason."""
    try:
        return environment.chat_consumer({"CHAT_CONSUMER": name})
    except environment.ConfigurationError as error:
        raise ValueError(str(error)) from None


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class ChatServer:
    """The chat served by Daphne (the default, and the tutorial's) or Uvicorn, in a
    subprocess on loopback."""

    def __init__(
        self,
        process: subprocess.Popen,
        *,
        host: str,
        port: int,
        log_path: Path,
        env: dict[str, str],
        asgi: str,
        command: list[str] | None = None,
        process_env: dict[str, str] | None = None,
    ) -> None:
        self.process = process
        # How it was started, for start_again (None: built by hand, cannot restart).
        self.command = command
        self.process_env = process_env
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = env
        self.asgi = asgi
        # Daphne speaks WebSocket through Autobahn; Uvicorn through the one named here.
        self.websocket = UVICORN_WEBSOCKETS if asgi == "uvicorn" else "autobahn"

    @property
    def description(self) -> str:
        """Which server and WebSocket implementation, with versions, for reports."""
        websocket_package = WEBSOCKET_PACKAGES[self.websocket]
        return (
            f"{self.asgi} {_package_version(self.asgi)} "
            f"(WebSocket: {self.websocket}, {websocket_package} "
            f"{_package_version(websocket_package)})"
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.netloc}"

    @classmethod
    def start(
        cls,
        *,
        layer: str = "inmemory",
        consumer: str = "async",
        asgi: str = "daphne",
        backend: Backend | None = None,
        env: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        port: int | None = None,
        log_dir: Path | None = None,
        timeout: float = 30.0,
        via: str | None = None,
    ) -> ChatServer:
        """Start the chat and return once it serves its index page.

        ``asgi="daphne"`` runs ``daphne mysite.asgi:application`` (what the tutorial
        deploys), ``asgi="uvicorn"`` runs ``uvicorn mysite.asgi:application``;
        ``via="runserver"`` runs ``manage.py runserver`` instead, which Daphne takes over.
        ``backend`` says where the layer's server is.
        """
        command = server_command(asgi, host, port := port or free_port(host), via=via)
        chat_env = chat_environment(
            layer=layer,
            consumer=consumer,
            backend_env=backend.env if backend is not None else None,
            extra=env,
        )
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"chat-{asgi}-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{asgi}-{port}.log"
        process_env = {**os.environ, "PYTHONUNBUFFERED": "1", **chat_env}
        process = launch(command, log_path=log_path, cwd=APP_DIR, env=process_env)
        server = cls(
            process,
            host=host,
            port=port,
            log_path=log_path,
            env=chat_env,
            asgi=asgi,
            command=command,
            process_env=process_env,
        )
        try:
            server._wait_serving(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_serving(self, timeout: float) -> None:
        wait_until(
            self.serves_index,
            timeout=timeout,
            process=self.process,
            what=f"{self.asgi} ({self.env.get('CHANNEL_LAYER')}) on port {self.port}",
            log=self.log_path,
        )

    def start_again(self, *, timeout: float = 30.0) -> None:
        """Start the same server again on the same port after ``kill`` or ``stop`` (a
        process manager restarting a crashed Daphne); its log goes on in the same file."""
        if self.process.poll() is None:
            raise ServiceError(f"{self.asgi} on port {self.port} is still running")
        if self.command is None:
            raise ServiceError("this ChatServer was not started by ChatServer.start")
        self.process = launch(
            self.command, log_path=self.log_path, cwd=APP_DIR, env=self.process_env
        )
        try:
            self._wait_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def serves_index(self) -> bool:
        """True when GET /chat/ answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/chat/", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stats(self) -> ProcessStats:
        return ProcessStats(self.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # Daphne waits up to 10 s for application instances on SIGTERM; a sync consumer
        # that refused its handshake just before can hold it that long, so do not wait
        # it out (stop_process kills after 5 s).
        stop_process(self.process, stop_signal=signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, without closing its sockets (a crash)."""
        kill_process_group(self.process)
        self.process.wait(timeout=10)

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ChatServer {self.asgi} {self.url} layer {self.env.get('CHANNEL_LAYER')}>"


def server_command(asgi: str, host: str, port: int, *, via: str | None = None) -> list[str]:
    """The command, run from app/, that serves the chat with ``asgi`` on host:port."""
    if asgi not in ASGI_SERVERS:
        raise ServiceError(f"unknown ASGI server {asgi!r}: use one of {', '.join(ASGI_SERVERS)}")
    if via not in (None, asgi, "runserver"):
        raise ServiceError(f"unknown way to serve {via!r}: use {asgi} or runserver")
    if via == "runserver":
        if asgi != "daphne":
            raise ServiceError("runserver serves with Daphne only: use asgi='daphne'")
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return [sys.executable, "manage.py", "runserver", "--noreload", address]
    if asgi == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "mysite.asgi:application",
            "--host", host, "--port", str(port),
            "--ws", UVICORN_WEBSOCKETS,
            # Channels' ProtocolTypeRouter has no lifespan handler; off says so up front
            # instead of an "unsupported" line in every log.
            "--lifespan", "off",
        ]  # fmt: skip
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "mysite.asgi:application"]


@contextlib.contextmanager
def chat_servers(
    layer: str = "inmemory",
    *,
    servers: int = 1,
    consumer: str = "async",
    asgi: str = "daphne",
    backend: Backend | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[list[ChatServer]]:
    """Start ``servers`` chat servers on one layer, sharing one backend (``backend``, or
    one started with ``layer_backend``), and stop them all on exit.

    Several InMemory servers are allowed: each has rooms of its own, which is what the
    browser suite shows."""
    service_of(layer)  # an unknown layer fails here, before anything starts
    if servers < 1:
        raise ServiceError(f"servers must be at least 1, got {servers}")
    with contextlib.ExitStack() as stack:
        if backend is None:
            backend = stack.enter_context(layer_backend(layer))
        started = [
            stack.enter_context(
                ChatServer.start(
                    layer=layer,
                    consumer=consumer,
                    asgi=asgi,
                    backend=backend,
                    env=env,
                    log_dir=log_dir,
                )
            )
            for _ in range(servers)
        ]
        yield started


def _describe_backend(backend: Backend) -> str:
    if backend.server is not None:
        server = backend.server
        return f"a throw-away {server.service} server at {backend.url} (log: {server.log_path})"
    if backend.env:
        (variable,) = backend.env
        return f"${variable}"
    return "no server: the layer lives in the chat's process"


def serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python services.py serve",
        description="Serve the chat on one layer until Ctrl-C. A layer that needs a server "
        "(Redis, PostgreSQL, RabbitMQ, NATS) uses its URL variable (REDIS_URL, POSTGRES_URL, "
        "RABBITMQ_URL, NATS_URL) when set, else a throw-away server started for the session.",
    )
    parser.add_argument("command", choices=["serve"])
    parser.add_argument(
        "--layer",
        default=os.environ.get("CHANNEL_LAYER", "inmemory"),
        help=f"{', '.join(LAYERS)} or a dotted path (default inmemory)",
    )
    parser.add_argument("--consumer", choices=CONSUMERS, default="async")
    parser.add_argument(
        "--asgi", choices=ASGI_SERVERS, default="daphne", help="ASGI server (default daphne)"
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    args = parser.parse_args(argv)
    try:
        service_of(args.layer)
    except ServiceError as error:
        parser.error(str(error))
    # A plain `kill` (SIGTERM, or SIGHUP) must stop the throw-away backend too, as Ctrl-C does.
    interrupt_on_termination()
    try:
        with layer_backend(args.layer) as backend:
            env = {
                **os.environ,
                **chat_environment(
                    layer=args.layer, consumer=args.consumer, backend_env=backend.env
                ),
            }
            print(
                f"Starting the chat on http://{args.host}:{args.port}/chat/ with {args.asgi} "
                f"(layer {args.layer} on {_describe_backend(backend)}, consumer "
                f"{args.consumer}); Ctrl-C stops it.",
                flush=True,
            )
            command = server_command(args.asgi, args.host, args.port)
            return subprocess.call(command, cwd=APP_DIR, env=env)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP; the chat server and backend are stopped
        return 0
