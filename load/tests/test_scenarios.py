"""Short real runs: each scenario on each of the eight layers delivers everything and leaks
nothing (or does what the README says the layer does instead);
the counters stay exact with several Locust processes; 200+ sockets per Redis layer; a
fanout on each ASGI server besides Daphne and Uvicorn (Gunicorn's with two workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import ASGI_SERVERS, GUNICORN_SERVERS
from load.core.scenarios import SCENARIOS
from load.tests.helpers import run_load

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

# Small and short: the point is correctness, not load (benchmarks measure load).
SMOKE_SHAPES = {
    "fanout": ["--users", "12", "--rooms", "3", "--rate", "2"],
    "isolation": ["--users", "24", "--rate", "2"],
    "churn": ["--users", "10", "--rooms", "2", "--rate", "2", "--duration", "5"],
    "idle": ["--users", "30"],
}


def run_against(server_url: str, out: Path, *args: str) -> dict:
    finished = run_load("run", "--target", server_url, "--out", str(out), *args)
    assert finished.returncode == 0, finished.stderr
    summary = finished.summary(out)
    assert (out / "report.html").exists()
    assert (out / "locust" / "locust_stats.csv").exists()
    assert (out / "locust" / "locust.html").exists()
    return summary


def assert_clean(run: dict) -> None:
    """Everything expected arrived once, in the right room, without errors."""
    assert run["errors"] == 0, run["errors_by_kind"]
    assert run["leaked"] == 0
    assert run["misattributed"] == 0
    assert run["duplicated"] == 0
    assert run["lost"] == 0
    assert run["delivered"] == run["expected"]
    assert run["delivery_ratio"] == 1.0
    assert run["latency_samples"] == run["delivered"]
    assert run["accounting_consistent"]


# Each layer adds four runs of 5 to 10 s. The default run keeps fanout (the scenario with
# logged-in users) and isolation (leaks) on every layer but the two newest, whose
# isolation is in the consumer tests, and idle and churn where they test something the
# consumer tests do not (holding sockets on InMemory and Redis; churn on InMemory and on
# RedisChannelLayer, whose groups expire); the rest run in `nox -s heavy`.
@pytest.mark.heavy_on_layers("valkey", "sqlite", scenario=("isolation", "churn", "idle"))
@pytest.mark.heavy_on_layers("redis-pubsub", "postgres", "rabbitmq", "nats", scenario=("idle",))
@pytest.mark.heavy_on_layers("redis-pubsub", "postgres", "rabbitmq", "nats", scenario=("churn",))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_delivers_everything_without_leaks(
    layer: str, scenario: str, live_chat, tmp_path: Path
) -> None:
    (server,) = live_chat(layer)
    # fanout's users log in (sessions written in bulk), so that every layer's frames are
    # checked for their sender's name too (misattributed, in assert_clean).
    login = ["--login", "sessions", "--accounts", str(live_chat.accounts_file)]
    summary = run_against(
        server.ws_url,
        tmp_path,
        "--scenario",
        scenario,
        "--duration",
        "2",
        "--drain",
        "2",
        *SMOKE_SHAPES[scenario],
        *(login if scenario == "fanout" else []),
    )
    (run,) = summary["runs"]
    assert run["scenario"] == scenario
    assert run["login"] == ("sessions" if scenario == "fanout" else "none")
    if (layer, scenario) == ("nats", "isolation"):
        # A third of the isolation rooms end in "." (x-1.), which NATS cannot take as a
        # subject token: their handshakes fail (README, "Layers"); the rest stay exact.
        refused_users = 8  # rooms 1, 4, 7, 10 of 12, two users each
        assert set(run["errors_by_kind"]) == {"handshake_rejected"}, run["errors_by_kind"]
        assert run["connects"] == 24 - refused_users
        assert_clean({**run, "errors": 0})
    else:
        assert_clean(run)
    assert run["server_cpu_s"] is None  # run cannot know the server's process
    if scenario == "idle":
        assert run["sent"] == 0 and run["connects"] == 30
    else:
        assert run["sent"] > 0
        assert run["expected"] >= run["sent"]
    if scenario == "fanout":
        # Everyone joined during the warm-up and stayed: each message is expected at
        # exactly the 4 members of its room, none ambiguously.
        assert run["ambiguous"] == 0
        assert run["expected"] == run["sent"] * 4
    if scenario == "churn":
        assert run["connects"] > 10  # users came back for more sessions


def test_counts_stay_exact_with_two_locust_processes(live_chat, tmp_path: Path) -> None:
    (server,) = live_chat("inmemory")
    summary = run_against(
        server.ws_url,
        tmp_path,
        "--processes",
        "2",
        "--users",
        "20",
        "--rooms",
        "4",
        "--rate",
        "2",
        "--duration",
        "2",
        "--drain",
        "2",
    )
    (run,) = summary["runs"]
    assert run["client_processes"] == 2  # two workers each reported a tally
    assert_clean(run)
    assert run["ambiguous"] == 0
    # rooms of 5 whose members are split between the two processes
    assert run["expected"] == run["sent"] * 5
    assert run["connects"] == 20


@pytest.mark.compat
@pytest.mark.redis
@pytest.mark.parametrize("layer", ["redis", "redis-pubsub"], indirect=True)
def test_two_hundred_sockets_on_a_redis_layer(layer: str, live_chat, tmp_path: Path) -> None:
    (server,) = live_chat(layer)
    summary = run_against(
        server.ws_url,
        tmp_path,
        "--users",
        "200",
        "--rooms",
        "20",
        "--rate",
        "0.5",
        "--duration",
        "3",
        "--drain",
        # 200 handshakes and their deliveries on a shared 2-core CI runner: a generous
        # drain, so that a late delivery is counted as delivered rather than lost.
        "3",
    )
    (run,) = summary["runs"]
    assert run["connects"] == 200
    assert_clean(run)


# One run per added server: Hypercorn and Granian on InMemory; each Gunicorn shape with two
# workers on Redis, so that a room's members sit in two processes (the kernel spreads the
# sockets: harness/tests/test_asgi_servers.py). Daphne runs every scenario above.
SERVER_RUNS = [
    pytest.param("inmemory", asgi, 1, id=f"{asgi}-inmemory")
    for asgi in ASGI_SERVERS
    if asgi not in ("daphne", "uvicorn", *GUNICORN_SERVERS)
] + [
    pytest.param("redis", asgi, 2, id=f"{asgi}-redis-x2", marks=pytest.mark.redis)
    for asgi in GUNICORN_SERVERS
]


@pytest.mark.parametrize(("where", "asgi", "workers"), SERVER_RUNS)
def test_every_asgi_server_delivers_a_fanout_exactly(
    where: str, asgi: str, workers: int, live_chat, tmp_path: Path
) -> None:
    (server,) = live_chat(where, asgi=asgi, workers=workers)
    summary = run_against(
        server.ws_url, tmp_path, "--scenario", "fanout", "--duration", "1", "--drain", "2",
        *SMOKE_SHAPES["fanout"], "--login", "sessions", "--accounts", str(live_chat.accounts_file),
    )  # fmt: skip
    (run,) = summary["runs"]
    assert_clean(run)  # misattributed 0: every frame named its logged-in sender
    assert run["connects"] == 12 and run["ambiguous"] == 0
    assert run["sent"] > 0 and run["expected"] == run["sent"] * 4  # rooms of 4, all stayed
