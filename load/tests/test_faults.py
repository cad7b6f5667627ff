"""One short real fault run per kind: ``python -m load bench --fault KIND`` breaks the
services it started and the record says what the layer did. Each test asserts the
behaviour README.md's "Faults" section documents; if a layer starts to behave otherwise,
the test fails.

Small and short (about 10 s of sending each): the benchmark's own fault runs are longer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backends import SERVER_CLASSES, SentinelServer, service_of
from live import layer_param, missing_dependency
from load.tests.helpers import run_load
from mysite.environment import SERVICES
from processes import MissingExecutable

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

SHAPE = ["--users", "20", "--rooms", "4", "--rate", "2", "--duration", "8", "--drain", "2"]
# The fault starts 2 s into sending and lasts 2 s; the 4 s after it are the recovery.
WINDOW = ["--fault-at", "2", "--fault-for", "2"]
# After Redis comes back, the chat must work again (every user connected, every message
# delivered for a whole second) within this many seconds on both Redis layers.
RECOVER_WITHIN_S = 3.0
# Two slow readers, each with about 2 MB sent to it while it does not read.
SLOW_GROWTH_MB = 20.0
OTHERS_P50_MS = 100.0


def fault_run(tmp_path: Path, kind: str, *args: str) -> dict:
    """The one run record of ``bench --fault kind`` with ``args``."""
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
        "bench", "--fault", kind, *WINDOW, *SHAPE, *args, "--out", str(out), timeout=150, env=env
    )
    assert finished.returncode == 0, finished.stderr
    (record,) = finished.summary(out)["runs"]
    fault = record["fault"]
    assert fault["injected"] and fault["injector_error"] is None, fault
    assert (fault["kind"], fault["at_s"], fault["for_s"]) == (kind, 2.0, 2.0)
    assert record["timeline"] and {"t_s", "sent", "delivered", "lost", "errors", "connected",
                                   "p99_ms"} <= set(record["timeline"][0])  # fmt: skip
    assert record["accounting_consistent"] and record["leaked"] == 0
    assert "fault" in (out / "report.html").read_text()
    return record


@pytest.mark.redis
@pytest.mark.parametrize("layer", ["redis", "redis-pubsub"])
def test_chat_works_again_soon_after_redis_restarts(layer: str, tmp_path: Path) -> None:
    record = fault_run(tmp_path, "redis-restart", "--layers", layer)
    fault = record["fault"]
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    assert fault["time_to_recover_s"] <= RECOVER_WITHIN_S, record["timeline"]
    # Nothing sent long after the restart is lost.
    assert fault["lost_in_window"] > 0 or fault["sockets_dropped"] > 0


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


@pytest.mark.redis
def test_a_stalled_redis_delays_but_keeps_the_sockets(tmp_path: Path) -> None:
    record = fault_run(tmp_path, "redis-stall", "--layers", "redis")
    fault = record["fault"]
    assert fault["sockets_dropped"] == 0, record["errors_by_kind"]
    assert fault["time_to_recover_s"] is not None, record["timeline"]
    # The messages of the stall arrive after it: the worst latency is about the stall.
    assert record["latency_ms"]["max"] >= 1000


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


def test_a_slow_reader_is_kept_and_gets_its_backlog_late(tmp_path: Path) -> None:
    # One room of 10, two of whom stop reading; each is sent 10 x 2 x 50 kB/s.
    record = fault_run(
        tmp_path, "slow-reader", "--layers", "inmemory", "--users", "10", "--rooms", "1",
        "--slow-share", "0.2", "--message-bytes", "50000",
    )  # fmt: skip
    fault = record["fault"]
    slow = fault["slow_reader"]
    assert slow["slow_sockets"] == 2
    assert fault["sockets_dropped"] == 0  # the server never sheds the reader
    assert record["lost"] == 0  # nor drops what it owes it
    assert record["latency_ms"]["max"] >= 1500  # the backlog arrives when it reads again
    assert slow["p50_ms_in_window"] < OTHERS_P50_MS, slow  # the others are not delayed
    # About 2 MB per slow reader fits in the kernel's socket buffers (tcp_wmem max 4 MiB),
    # so Daphne itself barely grows at this size.
    assert slow["server_rss_growth_mb"] < SLOW_GROWTH_MB, fault


@pytest.mark.redis
def test_after_a_failover_chat_works_again(tmp_path: Path) -> None:
    record = fault_run(tmp_path, "redis-failover", "--layers", "redis")
    fault = record["fault"]
    assert fault["failover_s"] is not None and fault["failover_s"] < 10
    assert fault["time_to_recover_s"] is not None, record["timeline"]
