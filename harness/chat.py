"""The chat itself as a real ASGI server process (Daphne, Uvicorn, Hypercorn, Granian, or
Gunicorn with its own ASGI worker or Uvicorn's) on a free loopback port, on any layer; and
``serve``, behind ``python services.py serve`` (nox -s serve).

    with layer_backend("postgres") as backend:              # $POSTGRES_URL or a throw-away one
        with ChatServer.start(layer="postgres", backend=backend, asgi="uvicorn") as chat:
            print(chat.ws_url, chat.description)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from harness.backends import (
    APP_DIR,
    LAYERS,
    ROOT,
    Backend,
    environment,
    file_variable_of,
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
    "ASGI",
    "ASGI_SERVERS",
    "CONSUMERS",
    "GUNICORN_SERVERS",
    "UVICORN_WEBSOCKETS",
    "AsgiServer",
    "ChatServer",
    "chat_environment",
    "chat_servers",
    "check_consumer",
    "describe",
    "negotiated_deflate",
    "serve",
    "server_command",
]

CONSUMERS = environment.CONSUMERS
# Uvicorn's WebSocket implementation, chosen rather than left to --ws auto: the
# Sans-I/O protocol of the websockets library, which is what `auto` picks in uvicorn
# 0.35+ when websockets is installed (as uvicorn[standard] does), so it is what most
# Uvicorn users run. Naming it keeps a measurement from changing silently when packages
# do. The older `websockets` choice is the library's legacy API, deprecated since
# websockets 14; `wsproto` is pure Python and the least used of the three.
UVICORN_WEBSOCKETS = "websockets-sansio"


@dataclass(frozen=True)
class AsgiServer:
    """One way of serving the chat, as ``--asgi`` names it: what server_command runs and
    what ChatServer.description reports it is made of."""

    name: str
    package: str  # the distribution whose version is the server's
    websocket: str  # the WebSocket implementation it speaks
    websocket_package: str  # the distribution that provides it
    # The event loop its workers run: "asyncio", "uvloop", or "auto" (Uvicorn's rule:
    # uvloop when it can be imported, else asyncio).
    loop: str
    loop_note: str = ""
    # Gunicorn: an arbiter process forks ``workers`` worker processes that all accept on
    # one port, and replaces a worker that dies. ``--servers N`` is N such workers.
    arbiter: bool = False
    # What else it runs through, for its description (gunicorn-uvicorn: the worker class's
    # package and Uvicorn itself).
    through: tuple[str, ...] = ()
    # The line each worker logs once it accepts connections (arbiter servers).
    worker_ready: str = ""


ASGI = {
    server.name: server
    for server in (
        # Daphne runs Twisted on its asyncio reactor, over a plain asyncio loop.
        AsgiServer(
            "daphne", "daphne", "autobahn", "autobahn", "asyncio", "under Twisted's asyncioreactor"
        ),
        AsgiServer("uvicorn", "uvicorn", UVICORN_WEBSOCKETS, "websockets", "auto", "--loop auto"),
        # Hypercorn's default worker class; it speaks WebSocket through wsproto.
        AsgiServer("hypercorn", "hypercorn", "wsproto", "wsproto", "asyncio", "-k asyncio"),
        # Granian's WebSocket is Rust (tokio-tungstenite, built into its extension: 0.30.0
        # in granian 2.8.9), so its version is Granian's. Its --loop auto takes rloop, then
        # uvloop, then asyncio, whichever is installed first: named, so that installing
        # rloop cannot change a measurement.
        AsgiServer("granian", "granian", "tungstenite", "granian", "uvloop", "--loop uvloop"),
        # Gunicorn 24+'s own ASGI worker, with its own WebSocket code (gunicorn/asgi/).
        AsgiServer(
            "gunicorn-asgi",
            "gunicorn",
            "gunicorn",
            "gunicorn",
            "uvloop",
            "--asgi-loop uvloop",
            arbiter=True,
            worker_ready="ASGI server listening on",
        ),
        # uvicorn_worker.UvicornWorker takes none of Uvicorn's options: its --ws is auto
        # (websockets-sansio with uvicorn 0.35+, test_asgi_servers.py checks it), its
        # --loop auto, its lifespan auto.
        AsgiServer(
            "gunicorn-uvicorn",
            "gunicorn",
            UVICORN_WEBSOCKETS,
            "websockets",
            "auto",
            "Uvicorn's --loop auto",
            arbiter=True,
            through=("uvicorn-worker", "uvicorn"),
            worker_ready="Application startup complete.",
        ),
    )
}
ASGI_SERVERS = tuple(ASGI)
GUNICORN_SERVERS = tuple(name for name, server in ASGI.items() if server.arbiter)
# The room the permessage-deflate probe opens a socket in (and leaves at once).
PROBE_ROOM = "harness-probe"
# "[2026-12-06 09:08:28 +0000] [25253] [INFO] ASGI server listening on ...": Gunicorn's
# log format, which both worker classes log through.
_GUNICORN_LINE = re.compile(r"^\[[^\]]*\] \[(\d+)\] \[[A-Z]+\] (.*)$", re.MULTILINE)


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
    # Without it the app would use its default file in the temporary directory, which
    # every run on the machine would share.
    file_variable = file_variable_of(layer)
    if file_variable is not None and not env.get(file_variable):
        raise ServiceError(f"layer {layer!r} needs {file_variable} (start a layer_backend)")
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


def event_loop(server: AsgiServer) -> str:
    """The event loop ``server``'s workers run here: its named loop, or for "auto" what
    Uvicorn's auto_loop_factory picks (uvloop when it can be imported)."""
    if server.loop != "auto":
        return server.loop
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def negotiated_deflate(extensions: str | None) -> str | None:
    """The parameters of permessage-deflate in a Sec-WebSocket-Extensions answer ("" when
    it came without any), or None when the server did not agree to it."""
    for offer in (extensions or "").split(","):
        name, *parameters = (part.strip() for part in offer.split(";"))
        if name.lower() == "permessage-deflate":
            return ", ".join(parameter for parameter in parameters if parameter)
    return None


def describe(
    server: AsgiServer,
    versions: Mapping[str, str],
    *,
    workers: int = 1,
    loop: str,
    deflate: str,
) -> str:
    """The server_software line: the server and version (a Gunicorn shape also names its
    worker's packages and its worker count), its WebSocket implementation and version,
    its event loop, and what came of offering permessage-deflate (``deflate``: "yes",
    "yes (parameters)", "no" or "unknown")."""
    own = f"{server.package} {versions[server.package]}"
    if server.arbiter:
        through = " and ".join(f"{name} {versions[name]}" for name in server.through)
        through = f" with {through}" if through else ""
        plural = "s" if workers != 1 else ""
        head = f"{server.name}: {own}{through}, {workers} worker{plural}"
    else:
        head = own
    loop_text = loop if loop == "asyncio" else f"{loop} {versions.get(loop, 'unknown')}"
    if server.loop_note:
        loop_text += f", {server.loop_note}"
    return (
        f"{head} (WebSocket: {server.websocket}, {server.websocket_package} "
        f"{versions[server.websocket_package]}; event loop: {loop_text}; "
        f"permessage-deflate: {deflate})"
    )


def deflate_answer(extensions: str | None) -> str:
    """What came of offering permessage-deflate, from the Sec-WebSocket-Extensions answer:
    yes, yes with its parameters in brackets, or no."""
    parameters = negotiated_deflate(extensions)
    if parameters is None:
        return "no"
    return f"yes ({parameters})" if parameters else "yes"


class ChatServer:
    """The chat served by one of ASGI_SERVERS (Daphne by default, the tutorial's), in a
    subprocess on loopback. A Gunicorn shape is one arbiter process with ``workers``
    worker processes behind its one port."""

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
        workers: int = 1,
        log_start: int = 0,
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
        self.server = ASGI[asgi]
        self.workers = workers
        self.websocket = self.server.websocket
        # Where this process's part of the log begins (the log goes on across restarts),
        # for the lines its workers write once they serve.
        self._log_start = log_start
        # The Sec-WebSocket-Extensions answer to an offer of permessage-deflate, once
        # probed (the software does not change when the server is started again).
        self._extensions: str | None = None
        self._deflate: str | None = None

    @property
    def description(self) -> str:
        """Which server, with versions: its WebSocket implementation, event loop, and
        whether it agrees to permessage-deflate (probed once, while it runs)."""
        versions = {
            name: _package_version(name)
            for name in (
                self.server.package,
                self.server.websocket_package,
                *self.server.through,
                "uvloop",
            )
        }
        return describe(
            self.server,
            versions,
            workers=self.workers,
            loop=event_loop(self.server),
            deflate=self.permessage_deflate,
        )

    @property
    def permessage_deflate(self) -> str:
        """Whether the server agrees to permessage-deflate with a client that offers it, as
        browsers and the websockets library do by default: "yes (its parameters)" or
        "no"; "unknown" when it could not be asked (not running)."""
        if self._deflate is None:
            try:
                self._extensions = self.probe_extensions()
            except (OSError, ServiceError):
                return "unknown"
            self._deflate = deflate_answer(self._extensions)
        return self._deflate

    def probe_extensions(self, timeout: float = 10.0) -> str | None:
        """Open a chat socket, offering permessage-deflate, and return the server's
        Sec-WebSocket-Extensions answer (None: it agreed to no extension)."""
        # Imported here: websockets comes with the test extras and uvicorn[standard], and
        # nothing else in this module needs it.
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect
        from websockets.typing import Origin

        if self.process.poll() is not None:
            raise ServiceError(f"{self.asgi} on port {self.port} is not running")
        url = f"{self.ws_url}/ws/chat/{PROBE_ROOM}/"
        try:
            with connect(
                url, origin=Origin(self.url), open_timeout=timeout, close_timeout=2
            ) as socket:
                assert socket.response is not None  # set once the handshake is done
                return socket.response.headers.get("Sec-WebSocket-Extensions")
        except WebSocketException as error:
            raise ServiceError(f"{self.asgi} on port {self.port}: {error}") from None

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
        workers: int = 1,
    ) -> ChatServer:
        """Start the chat and return once it serves its index page (and, under Gunicorn,
        once every worker accepts connections).

        ``asgi`` names the server (ASGI_SERVERS; server_command gives each one's command
        line); ``via="runserver"`` runs ``manage.py runserver`` instead, which Daphne
        takes over. ``workers`` is the number of Gunicorn workers behind the one port.
        ``backend`` says where the layer's server is.
        """
        check_workers(asgi, workers, layer)
        command = server_command(
            asgi, host, port := port or free_port(host), via=via, workers=workers
        )
        chat_env = chat_environment(
            layer=layer,
            consumer=consumer,
            backend_env=backend.env if backend is not None else None,
            extra=env,
        )
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"chat-{asgi}-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{asgi}-{port}.log"
        log_start = log_path.stat().st_size if log_path.exists() else 0
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
            workers=workers,
            log_start=log_start,
        )
        try:
            server._wait_serving(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_serving(self, timeout: float) -> None:
        wait_until(
            lambda: self.serves_index() and self.workers_ready(),
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
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
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

    # ------------------------------------------------------------ Gunicorn's workers

    def worker_pids(self) -> list[int]:
        """The Gunicorn workers alive now, oldest first (an exited worker the arbiter has
        not reaped yet is left out); [] for the other servers, whose own process serves
        (Hypercorn's and Granian's single worker is theirs to manage, not the harness's)."""
        if not self.server.arbiter:
            return []
        try:
            children = psutil.Process(self.pid).children()
        except psutil.Error:
            return []
        alive = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append((child.create_time(), child.pid))
        return [pid for _, pid in sorted(alive)]

    def _ready_worker_pids(self) -> set[int]:
        """The workers that logged ``worker_ready`` since this arbiter was started."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        marker = self.server.worker_ready
        return {int(match[1]) for match in _GUNICORN_LINE.finditer(text) if marker in match[2]}

    def workers_ready(self, *, excluding: int | None = None) -> bool:
        """True when all ``workers`` Gunicorn workers are alive and each has said it
        serves (``excluding`` a worker that was killed); always True for the others."""
        if not self.server.arbiter:
            return True
        pids = self.worker_pids()
        return (
            len(pids) == self.workers
            and excluding not in pids
            and set(pids) <= self._ready_worker_pids()
        )

    def kill_worker(self, *, timeout: float = 10.0) -> int:
        """SIGKILL the oldest Gunicorn worker (a worker's crash) and return its pid once
        it has died; the arbiter starts a new one by itself."""
        pids = self.worker_pids()
        if not pids:
            raise ServiceError(f"{self.asgi} on port {self.port} has no worker to kill")
        killed = pids[0]
        with contextlib.suppress(ProcessLookupError):
            os.kill(killed, signal.SIGKILL)
        # The signal is delivered asynchronously: until the kernel has ended the process,
        # it would still be listed as a worker.
        wait_until(
            lambda: killed not in self.worker_pids(),
            timeout=timeout,
            process=self.process,
            what=f"{self.asgi} on port {self.port}: worker {killed} after SIGKILL",
            log=self.log_path,
        )
        return killed

    def wait_for_workers(self, *, replaced: int | None = None, timeout: float = 30.0) -> None:
        """Wait until every Gunicorn worker serves again, ``replaced`` (a killed worker)
        no longer among them; at once for the other servers."""
        wait_until(
            lambda: self.workers_ready(excluding=replaced),
            timeout=timeout,
            process=self.process,
            what=f"{self.asgi} on port {self.port}: {self.workers} workers",
            log=self.log_path,
        )

    # ------------------------------------------------------------ what it uses

    def stats(self) -> ProcessStats:
        """CPU and memory of the server's whole process tree: Gunicorn's arbiter and its
        workers, Granian's and Hypercorn's main process and their worker process."""
        return ProcessStats(self.pid, with_children=True)

    def process_stats(self) -> list[ProcessStats]:
        """The server's processes now, each on its own: a sampler that keys them by pid
        keeps the CPU of a worker that was killed and replaced (in a tree's sum it would
        vanish with the worker). An exited child not yet reaped is left out."""
        stats = [ProcessStats(self.pid)]
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return stats
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    stats.append(ProcessStats(child.pid))
        return stats

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # Daphne waits up to 10 s for application instances on SIGTERM; a sync consumer
        # that refused its handshake just before can hold it that long, and Gunicorn's
        # workers wait up to 30 s for open sockets: do not wait it out (stop_process
        # kills the whole process group after 5 s).
        stop_process(self.process, stop_signal=signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: it dies at once, without closing
        its sockets (a crash; under Gunicorn, of the arbiter and every worker)."""
        kill_process_group(self.process)
        self.process.wait(timeout=10)

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        workers = f" x{self.workers}" if self.server.arbiter else ""
        return f"<ChatServer {self.asgi}{workers} {self.url} layer {self.env.get('CHANNEL_LAYER')}>"


def check_workers(asgi: str, workers: int, layer: str) -> None:
    """ServiceError (one line) unless ``workers`` Gunicorn workers fit ``asgi`` and
    ``layer``: the other servers run one process each here (start several servers
    instead), and InMemory's groups live inside one worker."""
    if asgi not in ASGI:
        raise ServiceError(f"unknown ASGI server {asgi!r}: use one of {', '.join(ASGI_SERVERS)}")
    if workers < 1:
        raise ServiceError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return
    if not ASGI[asgi].arbiter:
        raise ServiceError(
            f"{asgi} is started as one process here: start {workers} servers instead "
            f"(several workers behind one port are for {' and '.join(GUNICORN_SERVERS)})"
        )
    if layer == "inmemory":
        raise ServiceError(
            f"{workers} {asgi} workers on the inmemory layer: InMemoryChannelLayer lives "
            "inside one process, so each worker would have rooms of its own; use a layer "
            "with a server (e.g. redis) or 1 worker"
        )


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_command(
    asgi: str, host: str, port: int, *, via: str | None = None, workers: int = 1
) -> list[str]:
    """The command, run from app/, that serves the chat with ``asgi`` on host:port
    (``workers``: Gunicorn's worker processes behind that port)."""
    if asgi not in ASGI_SERVERS:
        raise ServiceError(f"unknown ASGI server {asgi!r}: use one of {', '.join(ASGI_SERVERS)}")
    if via not in (None, asgi, "runserver"):
        raise ServiceError(f"unknown way to serve {via!r}: use {asgi} or runserver")
    if workers != 1 and not ASGI[asgi].arbiter:
        raise ServiceError(f"{asgi} takes no workers here: workers=1, or gunicorn-*")
    application = "mysite.asgi:application"
    if via == "runserver":
        if asgi != "daphne":
            raise ServiceError("runserver serves with Daphne only: use asgi='daphne'")
        return [sys.executable, "manage.py", "runserver", "--noreload", _bind(host, port)]
    if asgi == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", application,
            "--host", host, "--port", str(port),
            "--ws", UVICORN_WEBSOCKETS,
            # Channels' ProtocolTypeRouter has no lifespan handler; off says so up front
            # instead of an "unsupported" line in every log.
            "--lifespan", "off",
        ]  # fmt: skip
    if asgi == "hypercorn":
        # Hypercorn has no switch for lifespan: every start logs one warning that the
        # application's lifespan failed (docs/guide.md, "Serving"). Its default of one
        # worker is a process of its own beside the main one, as users run it.
        return [
            sys.executable, "-m", "hypercorn", "--bind", _bind(host, port),
            "--worker-class", "asyncio", application,
        ]  # fmt: skip
    if asgi == "granian":
        return [
            sys.executable, "-m", "granian", "--interface",
            # asginl: ASGI without lifespan. Plain "asgi" runs lifespan and logs that
            # Channels' router refused it ("ASGI Lifespan errored") at every start.
            "asginl",
            "--host", host, "--port", str(port), "--loop", "uvloop", application,
        ]  # fmt: skip
    if asgi in GUNICORN_SERVERS:
        worker = (
            ["--worker-class", "asgi", "--asgi-loop", "uvloop", "--asgi-lifespan", "off"]
            if asgi == "gunicorn-asgi"
            else ["--worker-class", "uvicorn_worker.UvicornWorker"]
        )
        return [
            sys.executable, "-m", "gunicorn", "--bind", _bind(host, port),
            "--workers", str(workers), *worker,
            # Each worker binds a socket of its own with SO_REUSEPORT, and the kernel
            # spreads new connections over them by a hash of their addresses. Without it
            # the workers share the arbiter's one socket and whichever worker the scheduler
            # wakes first takes the next connection: 30 chat sockets opened one after
            # another alternated between two workers in most tries here, but once 29 and
            # once 28 of 30 went to one of them. A hash does not depend on the scheduler,
            # so "2 workers" is two workers' worth in every run (docs/guide.md, "Serving").
            "--reuse-port",
            # Gunicorn 25.1+ opens a control socket by default, at one fixed path
            # ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl) for every arbiter
            # of the user; the harness runs several and writes nothing to $HOME.
            "--no-control-socket",
            application,
        ]  # fmt: skip
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), application]


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
    workers: int = 1,
) -> Iterator[list[ChatServer]]:
    """Start ``servers`` chat servers on one layer, sharing one backend (``backend``, or
    one started with ``layer_backend``), and stop them all on exit; ``workers`` is each
    Gunicorn server's number of workers.

    Several InMemory servers are allowed: each has rooms of its own, which is what the
    browser suite shows. Several InMemory workers of one Gunicorn are not (check_workers):
    behind one port, a user could not even tell which rooms they share."""
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
                    workers=workers,
                )
            )
            for _ in range(servers)
        ]
        yield started


def _describe_backend(backend: Backend) -> str:
    if backend.server is not None:
        server = backend.server
        return (
            f"a throw-away {server.service} server at {backend.url} ({server.software()}; "
            f"log: {server.log_path})"
        )
    if backend.layer_file is not None:
        return f"a throw-away SQLite file {backend.layer_file}, no server"
    if backend.env:
        (variable,) = backend.env
        return f"${variable}"
    return "no server: the layer lives in the chat's process"


def serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python services.py serve",
        description="Serve the chat on one layer until Ctrl-C. A layer that needs a server "
        "(Redis, PostgreSQL, RabbitMQ, NATS, Valkey) uses its URL variable (REDIS_URL, "
        "POSTGRES_URL, RABBITMQ_URL, NATS_URL, VALKEY_URL) when set, else a throw-away server "
        "started for the session; the SQLite layer uses SQLITE_LAYER_PATH, else a throw-away "
        "file.",
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
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"worker processes behind the port, for {' and '.join(GUNICORN_SERVERS)} only "
        "(not with --layer inmemory: each worker would have rooms of its own) (default 1)",
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    args = parser.parse_args(argv)
    try:
        service_of(args.layer)
        check_workers(args.asgi, args.workers, args.layer)
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
                f"Starting the chat on http://{args.host}:{args.port}/chat/ with {args.asgi}"
                + (f" ({args.workers} workers)" if args.workers > 1 else "")
                + " "
                f"(layer {args.layer} on {_describe_backend(backend)}, consumer "
                f"{args.consumer}); Ctrl-C stops it.",
                flush=True,
            )
            command = server_command(args.asgi, args.host, args.port, workers=args.workers)
            return subprocess.call(command, cwd=APP_DIR, env=env)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP; the chat server and backend are stopped
        return 0
