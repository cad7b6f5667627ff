"""Start and stop the real services the chat runs on: redis-server and Daphne.

This is the one place that knows how: the pytest fixtures (conftest.py), the load
benchmark (``python -m load bench``) and the nox sessions all come through here.
Everything binds to loopback, on a free port, and every wait is bounded in time.

    with RedisServer.start() as redis:
        with DaphneServer.start(layer="redis", redis_url=redis.url) as chat:
            print(chat.ws_url)

``python services.py serve --layer redis`` serves the chat in the foreground (nox -s serve).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
APP_DIR = ROOT / "app"
LOOPBACK = "127.0.0.1"
LAYERS = ("inmemory", "redis", "redis-pubsub")
REDIS_LAYERS = ("redis", "redis-pubsub")
CONSUMERS = ("async", "sync")

# Debian/Ubuntu package that provides each executable the tests and benchmark run.
DEBIAN_PACKAGES = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}


class ServiceError(RuntimeError):
    """A service could not be found, started or reached; the text is one line."""


def find_executable(name: str) -> str:
    """Path of a system executable, or ServiceError saying which package to install."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        raise ServiceError(
            f"{name} not found on PATH: install it with `sudo apt-get install {package}`"
        )
    return path


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the caller binds it soon after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_until(ready, *, timeout: float, process: subprocess.Popen, what: str, log: Path) -> None:
    """Poll ``ready()`` until true; fail early if the process dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(
                f"{what} exited with code {process.returncode} while starting: "
                f"{_last_line(log)} (log: {log})"
            )
        if ready():
            return
        time.sleep(delay)  # polling a port that is not open yet; the deadline bounds it
        delay = min(delay * 2, 0.2)
    raise ServiceError(f"{what} was not ready within {timeout:.0f} s (log: {log})")


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    # Daphne waits up to 10 s for application instances on SIGTERM; a sync consumer
    # that refused its handshake just before can hold it that long, so do not wait it out.
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class ProcessStats:
    """CPU time and memory of a running process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        """User plus system CPU seconds used so far, or None where /proc is absent."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float | None:
        """Resident memory in MiB, or None where /proc is absent."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


class RedisServer:
    """A throw-away redis-server: loopback only, no persistence, in its own directory."""

    def __init__(self, process: subprocess.Popen, port: int, workdir: Path, host: str) -> None:
        self.process = process
        self.port = port
        self.host = host
        self.workdir = workdir
        self.log_path = workdir / "redis.log"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/0"

    @classmethod
    def start(cls, *, host: str = LOOPBACK, timeout: float = 10.0) -> RedisServer:
        executable = find_executable("redis-server")
        workdir = Path(tempfile.mkdtemp(prefix="chat-redis-"))
        port = free_port(host)
        log = (workdir / "redis.log").open("wb")
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        server = cls(process, port, workdir, host)
        try:
            _wait_until(
                server.ping,
                timeout=timeout,
                process=process,
                what=f"redis-server on port {port}",
                log=server.log_path,
            )
        except BaseException:
            server.stop()
            raise
        return server

    def ping(self) -> bool:
        """True when the server answers PING with PONG."""
        return redis_ping(self.host, self.port)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Speak just enough RESP to ask a Redis server whether it is up."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def chat_environment(
    *,
    layer: str = "inmemory",
    consumer: str = "async",
    redis_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment variables that make the app run a given layer and consumer."""
    env = {"CHANNEL_LAYER": layer, "CHAT_CONSUMER": consumer}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    elif layer in REDIS_LAYERS:
        raise ServiceError(f"layer {layer!r} needs a redis_url")
    env.update(extra or {})
    return env


class DaphneServer:
    """``daphne mysite.asgi:application`` in a subprocess, serving the chat on loopback."""

    def __init__(
        self, process: subprocess.Popen, host: str, port: int, log_path: Path, env: dict[str, str]
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = env

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
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        port: int | None = None,
        log_dir: Path | None = None,
        timeout: float = 30.0,
        via: str = "daphne",
    ) -> DaphneServer:
        """Start Daphne and return once it serves the chat's index page.

        ``via="daphne"`` runs ``daphne mysite.asgi:application`` (what deployments run);
        ``via="runserver"`` runs ``manage.py runserver``, which Daphne takes over.
        """
        chat_env = chat_environment(layer=layer, consumer=consumer, redis_url=redis_url, extra=env)
        port = port or free_port(host)
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="chat-daphne-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"daphne-{port}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            _server_command(via, host, port),
            cwd=APP_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **chat_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        server = cls(process, host, port, log_path, chat_env)
        try:
            _wait_until(
                server.serves_index,
                timeout=timeout,
                process=process,
                what=f"daphne ({layer}, {consumer}) on port {port}",
                log=log_path,
            )
        except BaseException:
            server.stop()
            raise
        return server

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
        _stop_process(self.process)

    def __enter__(self) -> DaphneServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _server_command(via: str, host: str, port: int) -> list[str]:
    if via == "daphne":
        return [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            host,
            "-p",
            str(port),
            "mysite.asgi:application",
        ]
    if via == "runserver":
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return [sys.executable, "manage.py", "runserver", "--noreload", address]
    raise ServiceError(f"unknown way to serve {via!r}: use daphne or runserver")


@contextlib.contextmanager
def redis_for(layer: str, *, redis_url: str | None = None) -> Iterator[str | None]:
    """The Redis URL a layer should use: None for InMemory, the given or $REDIS_URL
    server if there is one, otherwise a fresh redis-server stopped on exit."""
    if layer not in REDIS_LAYERS:
        yield None
        return
    existing = redis_url or os.environ.get("REDIS_URL")
    if existing:
        yield existing
        return
    with RedisServer.start() as redis:
        yield redis.url


@contextlib.contextmanager
def chat_servers(
    layer: str = "inmemory",
    *,
    servers: int = 1,
    consumer: str = "async",
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[list[DaphneServer]]:
    """Start ``servers`` Daphne processes on one layer (sharing one Redis) and stop them on exit."""
    if layer not in LAYERS and "." not in layer:
        raise ServiceError(f"unknown layer {layer!r}: use one of {', '.join(LAYERS)}")
    if servers < 1:
        raise ServiceError(f"servers must be at least 1, got {servers}")
    with redis_for(layer, redis_url=redis_url) as url, contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                DaphneServer.start(
                    layer=layer, consumer=consumer, redis_url=url, env=env, log_dir=log_dir
                )
            )
            for _ in range(servers)
        ]
        yield started


def _serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python services.py serve",
        description="Serve the chat with Daphne on one layer until Ctrl-C; starts a "
        "throw-away redis-server for the Redis layers unless REDIS_URL is set.",
    )
    parser.add_argument("command", choices=["serve"])
    parser.add_argument(
        "--layer",
        default=os.environ.get("CHANNEL_LAYER", "inmemory"),
        help="inmemory (default), redis, redis-pubsub or a dotted path",
    )
    parser.add_argument("--consumer", choices=CONSUMERS, default="async")
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    args = parser.parse_args(argv)
    if args.layer not in LAYERS and "." not in args.layer:
        parser.error(
            f"unknown layer {args.layer!r}: use one of {', '.join(LAYERS)} or a dotted path"
        )
    try:
        with redis_for(args.layer) as redis_url:
            env = {
                **os.environ,
                **chat_environment(layer=args.layer, consumer=args.consumer, redis_url=redis_url),
            }
            print(
                f"Starting the chat on http://{args.host}:{args.port}/chat/ "
                f"(layer {args.layer}, consumer {args.consumer}); Ctrl-C stops it.",
                flush=True,
            )
            command = _server_command("daphne", args.host, args.port)
            with contextlib.suppress(KeyboardInterrupt):
                return subprocess.call(command, cwd=APP_DIR, env=env)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_serve())


# TEMPORARY: the shape the backends branch gives services.py, so load/ can use it now.
ASGI_SERVERS = ("daphne",)

class Backend:
    def __init__(self, env: dict[str, str], server: object | None) -> None:
        self.env = env
        self.server = server


@contextlib.contextmanager
def layer_backend(layer: str) -> Iterator[Backend]:
    with redis_for(layer) as url:
        yield Backend({"REDIS_URL": url} if url else {}, None)


class ChatServer(DaphneServer):
    @classmethod
    def start(  # type: ignore[override]
        cls,
        *,
        layer: str = "inmemory",
        consumer: str = "async",
        asgi: str = "daphne",
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> DaphneServer:
        env = dict(env or {})
        redis_url = env.pop("REDIS_URL", None)
        return DaphneServer.start(
            layer=layer, consumer=consumer, redis_url=redis_url, env=env, log_dir=log_dir
        )
