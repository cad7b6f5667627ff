"""One short real fault run per kind: ``python -m load bench --fault KIND`` breaks the
services it started and the record says what the layer did. Each test asserts the
behaviour README.md's "Faults" section documents; if a layer starts to behave otherwise,
the test fails.

Small and short (about 10 s of sending each): the benchmark's own fault runs are longer.
The default run keeps a Redis restart on both Redis layers, a killed server and a fault
that never fired; the runs of one layer's particular behaviour (a NATS, RabbitMQ or
PostgreSQL restart, a stall, a failover, a slow reader) are ``heavy`` (``nox -s heavy``,
nightly), to keep the default command within about 12 minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from harness import (
    GUNICORN_SERVERS,
    SERVER_CLASSES,
    MissingExecutable,
    SentinelServer,
    service_of,
    wait_until,
)
from harness.live import layer_param, missing_dependency
from load.core.faultkinds import KINDS
from load.core.faults import InjectorLog
from load.tests.helpers import ROOT, read_summary, run_load
from mysite.environment import SERVICES

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

USERS = 20
SHAPE = ["--users", str(USERS), "--rooms", "4", "--rate", "2", "--duration", "8", "--drain", "2"]
# fault_run's fault starts 2 s into sending and lasts 2 s unless a test says otherwise;
# the 4 s after it are the recovery.
# After Redis comes back, the chat must work again (every user connected, every message
# delivered for a whole second) within this many seconds on both Redis layers.
RECOVER_WITHIN_S = 3.0
# A 3 s stall of RedisChannelLayer loses at most this share of the run's deliveries.
STALL_LOSS_SHARE = 0.10
OTHERS_P50_MS = 100.0
# A reader that does not read, sent about 1 MB/s: once the kernel's buffers are full the
# server grows by about that much per second (README); at least this much counts.
SLOW_GROWTH_MB_PER_S = 0.3


def lost_after_recovery(record: dict) -> list[dict]:
    """The timeline seconds, from the recovery on, whose messages did not all arrive."""
    recovered_at = record["fault"]["recovered_at_s"]
    assert recovered_at is not None, record["timeline"]
    return [row for row in record["timeline"] if row["t_s"] >= recovered_at and row["lost"]]


def fault_run(
    tmp_path: Path, kind: str, *args: str, window: tuple[float, float] = (2.0, 2.0)
) -> dict:
    """The one run record of ``bench --fault kind`` with ``args``, the fault at
    ``window[0]`` seconds for ``window[1]``."""
    layers = args[args.index("--layers") + 1].split(",")
    for layer in layers:
        service = service_of(layer)
        try:
            if service is not None:
                SERVER_CLASSES[service.name].find_executables()
            if kind == "redis-failover":
                SentinelServer.find_executables()
        except MissingExecutable as error:
            missing_dependency(str(error))
    out = tmp_path / "out"
    # A fault breaks only servers the bench starts itself, never one a URL variable names
    # (CI's Redis service container, for one).
    urls = {service.url_variable for service in SERVICES.values()}
    env = {name: value for name, value in os.environ.items() if name not in urls}
    finished = run_load(
        "bench", "--fault", kind, "--fault-at", str(window[0]), "--fault-for", str(window[1]),
        *SHAPE, *args, "--out", str(out), timeout=150, env=env,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    (record,) = finished.summary(out)["runs"]
    fault = record["fault"]
    assert fault["injected"] and fault["injector_error"] is None, fault
    assert (fault["kind"], fault["at_s"], fault["for_s"]) == (kind, *window)
    assert record["timeline"] and {"t_s", "sent", "delivered", "lost", "errors", "connected",
                                   "p99_ms"} <= set(record["timeline"][0])  # fmt: skip
    assert record["accounting_consistent"] and record["leaked"] == 0
    assert "fault" in (out / "report.html").read_text()
    return record


# RedisChannelLayer's run is heavy: the browser test of a Redis restart covers that layer
# in the default run, and the faults study counts what each restart loses.
@pytest.mark.redis
@pytest.mark.heavy_on_layers("redis")
@pytest.mark.parametrize("layer", ["redis", "redis-pubsub"])
def test_chat_works_again_soon_after_redis_restarts(layer: str, tmp_path: Path) -> None:
    record = fault_run(tmp_path, "redis-restart", "--layers", layer)
    fault = record["fault"]
    # The restart did something: every consumer's next Redis call failed and its socket
    # closed, and every dropped user came back.
    assert fault["sockets_dropped"] >= USERS, record["errors_by_kind"]
    assert fault["reconnects"] == fault["sockets_dropped"], fault
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    assert fault["time_to_recover_s"] <= RECOVER_WITHIN_S, record["timeline"]
    # Nothing sent from the recovery on is lost: every later second is whole.
    assert lost_after_recovery(record) == [], record["timeline"]


@pytest.mark.heavy
@pytest.mark.parametrize("layer", [layer_param("valkey")])
def test_a_valkey_restart_does_what_a_redis_restart_does(layer: str, tmp_path: Path) -> None:
    """channels-valkey is channels-redis's core layer on valkey-py: a restart of its
    valkey-server drops every socket as redis-restart does on RedisChannelLayer (each
    consumer's blocking BZPOPMIN fails), handshakes fail while it is down, and the chat is
    whole again within the same time, losing nothing sent after that."""
    record = fault_run(tmp_path, "backend-restart", "--layers", layer)
    fault = record["fault"]
    assert record["backend_software"] == "valkey-server 8.1.8", record["backend_software"]
    assert fault["sockets_dropped"] >= USERS, record["errors_by_kind"]
    assert fault["reconnects"] == fault["sockets_dropped"], fault
    assert record["errors_by_kind"].get("handshake_rejected", 0) > 0, record["errors_by_kind"]
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    assert fault["time_to_recover_s"] <= RECOVER_WITHIN_S, record["timeline"]
    assert lost_after_recovery(record) == [], record["timeline"]


@pytest.mark.heavy
@pytest.mark.parametrize("layer", [layer_param("nats")])
def test_a_nats_restart_keeps_every_socket_and_delivers_late(layer: str, tmp_path: Path) -> None:
    record = fault_run(tmp_path, "backend-restart", "--layers", layer)
    fault = record["fault"]
    assert fault["sockets_dropped"] == 0 and record["errors"] == 0, record["errors_by_kind"]
    # nats-py holds what is published while it reconnects: nothing is lost but a message
    # or two in flight at the shutdown (each reaches a room of 5).
    assert fault["lost_outside_window"] == 0 and fault["lost_in_window"] <= 10, fault
    assert fault["time_to_recover_s"] == 0.0, record["timeline"]
    # ... and delivers it once it has reconnected (nats-py tries every 2 s): late.
    assert record["latency_ms"]["max"] >= 1000
    assert fault["time_to_steady_s"] is not None, record["timeline"]


@pytest.mark.heavy
@pytest.mark.parametrize("layer", [layer_param("rabbitmq")])
def test_a_rabbitmq_restart_keeps_every_socket_and_drops_the_backlog_silently(
    layer: str, tmp_path: Path
) -> None:
    # Long enough for RabbitMQ to start again (about 6 s), reconnect and settle.
    record = fault_run(tmp_path, "backend-restart", "--layers", layer, "--duration", "16")
    fault = record["fault"]
    assert fault["sockets_dropped"] == 0 and record["errors"] == 0, record["errors_by_kind"]
    # The senders' consumers hold their messages while the broker is away, up to the
    # layer's per-process capacity; past it every group_send is dropped with a WARNING in
    # the server log and nothing on any socket. The held ones arrive late.
    assert fault["lost_outside_window"] > 0, record["timeline"]
    assert record["latency_ms"]["max"] >= 1000
    assert fault["time_to_steady_s"] is not None, record["timeline"]
    assert fault["mend_s"] is not None


@pytest.mark.heavy
@pytest.mark.parametrize("layer", [layer_param("postgres")])
def test_after_postgres_restarts_the_chat_server_never_delivers_again(
    layer: str, tmp_path: Path
) -> None:
    record = fault_run(tmp_path, "backend-restart", "--layers", layer)
    fault = record["fault"]
    assert fault["time_to_recover_s"] is None, record["timeline"]
    # From the end of the window on, every message is lost, while every user is connected
    # (the few sockets that dropped reconnected) and no error says so.
    after = [row for row in record["timeline"] if row["t_s"] >= 4 and row["sent"]]
    assert after and all(row["delivered"] == 0 and row["lost"] > 0 for row in after), after
    assert after[-1]["connected"] == 20 and after[-1]["errors"] == 0, after
    assert fault["reconnects"] == fault["sockets_dropped"] < 20


@pytest.mark.heavy
@pytest.mark.redis
def test_a_stalled_redis_delays_but_keeps_the_sockets(tmp_path: Path) -> None:
    # 3 s, as in the README's table: in a 2 s stall nothing was lost (3 runs of 3).
    record = fault_run(tmp_path, "redis-stall", "--layers", "redis", window=(2.0, 3.0))
    fault = record["fault"]
    assert fault["sockets_dropped"] == 0 and record["errors"] == 0, record["errors_by_kind"]
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    # The messages of the stall arrive after it: the worst latency is about the stall.
    assert record["latency_ms"]["max"] >= 1000
    # ... but RedisChannelLayer loses some of them without a word (3.5 to 4.7 % of the
    # deliveries in 3 runs of the README's shape, all sent in the stall's last second or
    # the one after it): some, never most, and nothing once the chat is whole again.
    assert 0 < record["lost"] <= STALL_LOSS_SHARE * record["expected"], record["timeline"]
    assert fault["lost_in_window"] > 0, record["timeline"]
    assert fault["time_to_recover_s"] <= RECOVER_WITHIN_S, record["timeline"]
    assert lost_after_recovery(record) == [], record["timeline"]


@pytest.mark.redis
def test_a_killed_server_drops_its_sockets_and_the_other_server_keeps_chatting(
    tmp_path: Path,
) -> None:
    record = fault_run(tmp_path, "server-kill", "--layers", "redis-pubsub", "--servers", "2")
    fault = record["fault"]
    # Half of the users were on the killed server (a few may drop twice while it comes
    # back); every drop was followed by a reconnect.
    assert fault["sockets_dropped"] >= 10, record["errors_by_kind"]
    assert fault["reconnects"] == fault["sockets_dropped"]
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    during = [row for row in record["timeline"] if row["t_s"] in (2, 3)]
    assert all(row["delivered"] > 0 for row in during)  # the other server's users chatted


@pytest.mark.redis
@pytest.mark.parametrize("asgi", GUNICORN_SERVERS)
def test_server_kill_under_gunicorn_kills_one_worker_and_the_mend_waits_for_the_new_one(
    asgi: str, live_chat, backend_for
) -> None:
    """The kind's own step on a real Gunicorn with two workers (no load): the arbiter
    stays, its oldest worker dies, the mend returns once a new worker serves."""
    server = live_chat.own("redis", backend=backend_for("redis"), asgi=asgi, workers=2)
    arbiter, (oldest, other) = server.pid, server.worker_pids()
    mend = KINDS["server-kill"].inject(SimpleNamespace(servers=[server]), InjectorLog())
    assert server.process.poll() is None and oldest not in server.worker_pids()
    mend()
    workers = server.worker_pids()
    assert server.pid == arbiter and len(workers) == 2 and other in workers
    assert oldest not in workers and server.workers_ready() and server.serves_index()


@pytest.mark.heavy
@pytest.mark.redis
@pytest.mark.parametrize("asgi", GUNICORN_SERVERS)
def test_a_killed_gunicorn_worker_drops_only_its_sockets_and_they_come_back_at_once(
    asgi: str, tmp_path: Path
) -> None:
    """--servers 2 under Gunicorn is two workers behind one port: the fault kills one.
    Its users reconnect at once, to the other worker (each worker has a socket of its own
    on the port, and the kernel leaves a closed one out), so no reconnect fails and the
    chat is whole again by the end of the window; nothing is lost."""
    record = fault_run(
        tmp_path, "server-kill", "--layers", "redis-pubsub", "--servers", "2", "--asgi", asgi
    )
    fault = record["fault"]
    assert 0 < fault["sockets_dropped"] < USERS, record["errors_by_kind"]
    assert fault["reconnects"] == fault["sockets_dropped"]
    assert fault["reconnect_failures"] == 0, record["errors_by_kind"]
    assert fault["time_to_recover_s"] is not None and fault["time_to_recover_s"] <= 1.0
    assert record["lost"] == 0
    assert record["server_software"].startswith(f"{asgi}: gunicorn ")


@pytest.mark.heavy
def test_a_slow_reader_is_kept_and_the_server_holds_its_backlog(tmp_path: Path) -> None:
    # One room of 5 at 50 msg/s of 4 kB, one of whom stops reading for 9 s: it is sent
    # about 1 MB/s, so the kernel's buffers for it (tcp_wmem's maximum, 4 MiB here, and
    # its 128 KiB receive buffer) are full after about 4 s, and the server holds the rest.
    record = fault_run(
        tmp_path, "slow-reader", "--layers", "inmemory", "--users", "5", "--rooms", "1",
        "--rate", "50", "--slow-share", "0.2", "--message-bytes", "4000", "--duration", "12",
        window=(1.0, 9.0),
    )  # fmt: skip
    fault = record["fault"]
    slow = fault["slow_reader"]
    assert slow["slow_sockets"] == 1
    assert fault["sockets_dropped"] == 0  # the server never sheds the reader
    assert record["lost"] == 0  # nor drops what it owes it
    assert record["latency_ms"]["max"] >= 5000  # the backlog arrives when it reads again
    assert slow["p50_ms_in_window"] < OTHERS_P50_MS, slow  # the others are not delayed
    # Past the kernel's buffers the server's own memory grows for as long as the reader
    # does not read: nothing bounds it.
    assert slow["buffers_full_after_s"] is not None and slow["buffers_full_after_s"] < 6, slow
    assert slow["server_rss_growth_mb_per_s"] >= SLOW_GROWTH_MB_PER_S, slow


@pytest.mark.heavy
@pytest.mark.redis
def test_after_a_failover_chat_works_again(tmp_path: Path) -> None:
    record = fault_run(tmp_path, "redis-failover", "--layers", "redis")
    fault = record["fault"]
    assert fault["failover_s"] is not None and fault["failover_s"] < 10
    # Killing the primary drops every socket (the consumers' Redis calls fail); handshakes
    # are refused until the promotion, then every user comes back ...
    assert fault["sockets_dropped"] >= USERS, record["errors_by_kind"]
    assert fault["reconnects"] == fault["sockets_dropped"], fault
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    assert fault["time_to_recover_s"] <= RECOVER_WITHIN_S, record["timeline"]
    # ... and nothing sent on the new primary is lost.
    assert lost_after_recovery(record) == [], record["timeline"]


def test_a_fault_whose_server_had_already_gone_is_an_error(tmp_path: Path) -> None:
    """A real injection failure: the test kills the bench's Daphne itself (SIGKILL, a
    crash) as soon as Locust announces the start, seconds before the bench's own
    server-kill is due. Signalling a process that has gone would do nothing, and the run
    would read as a fault's result; instead the record says the fault never fired and
    why, the report's row is red with it, and the bench exits 1."""
    out = tmp_path / "out"
    stderr_path = tmp_path / "bench.stderr"
    command = [
        sys.executable, "-m", "load", "bench", "--fault", "server-kill", "--layers", "inmemory",
        "--users", "4", "--rooms", "1", "--rate", "1", "--duration", "5", "--drain", "1",
        "--fault-at", "3", "--fault-for", "1", "--out", str(out),
    ]  # fmt: skip
    with stderr_path.open("w") as stderr:
        bench = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, text=True
        )
    try:
        start = out / "runs" / "inmemory-fanout" / "chatload-result.json.start"
        wait_until(
            start.exists, timeout=60, process=bench, what="the bench's Locust", log=stderr_path
        )
        (daphne,) = [
            child
            for child in psutil.Process(bench.pid).children(recursive=True)
            if "mysite.asgi:application" in " ".join(child.cmdline())
        ]
        daphne.send_signal(signal.SIGKILL)
        returncode = bench.wait(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
    stderr_lines = stderr_path.read_text().splitlines()
    assert returncode == 1, stderr_lines
    (line,) = [line for line in stderr_lines if "error" in line]
    assert "1 of 1 runs have no fault result" in line and "never fired" in line, line
    assert not any("Traceback" in line for line in stderr_lines), stderr_lines
    (record,) = read_summary(out)["runs"]
    fault = record["fault"]
    assert fault["injected"] is False, fault
    assert "had already exited" in fault["injector_error"], fault
    report = (out / "report.html").read_text()
    # The run's problem row (red) says it in words.
    assert "⚠ the server-kill fault never fired: NothingToBreak: daphne on port" in report
