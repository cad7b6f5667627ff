"""Shared pytest fixtures: a real Redis, live Daphne servers per layer, and the layer list.

Start-up itself lives in services.py; these fixtures only scope it. In CI (``CI`` set) a
missing system dependency fails the test; locally it skips with what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from services import LAYERS, REDIS_LAYERS, DaphneServer, RedisServer, ServiceError


def missing_dependency(reason: str) -> None:
    """Fail in CI, where every dependency must be present; skip locally, saying what to install."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it; see .ci/run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: $REDIS_URL if set, else a redis-server started for the session."""
    existing = os.environ.get("REDIS_URL")
    if existing:
        yield existing
        return
    try:
        server = RedisServer.start()
    except ServiceError as error:
        missing_dependency(str(error))
    yield server.url
    server.stop()


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.redis if name in REDIS_LAYERS else ())
        for name in LAYERS
    ]
)
def layer(request: pytest.FixtureRequest) -> str:
    """Each channel layer in turn: inmemory, redis, redis-pubsub (ids are the layer names);
    the Redis ones carry the ``redis`` mark, so ``-m "not redis"`` runs InMemory alone."""
    return request.param


@pytest.fixture
def layer_redis_url(request: pytest.FixtureRequest, layer: str) -> str | None:
    """The Redis URL ``layer`` needs, or None for InMemory (so InMemory needs no Redis)."""
    if layer in REDIS_LAYERS:
        return request.getfixturevalue("redis_url")
    return None


class LiveServers:
    """Daphne servers started on demand and kept for the session, one list per (layer,
    consumer), all Redis layers sharing the session's Redis: ``count=2`` hands out the
    server ``count=1`` does and starts just one more."""

    def __init__(self, request: pytest.FixtureRequest, tmp_dir) -> None:
        self._request = request
        self._tmp_dir = tmp_dir
        self._started: dict[tuple[str, str], list[DaphneServer]] = {}

    def get(self, layer: str, consumer: str = "async", count: int = 1) -> list[DaphneServer]:
        servers = self._started.setdefault((layer, consumer), [])
        if len(servers) < count:
            redis_url = None
            if layer in REDIS_LAYERS:
                redis_url = self._request.getfixturevalue("redis_url")
            while len(servers) < count:  # any started before a failure are stopped at the end
                servers.append(
                    DaphneServer.start(
                        layer=layer,
                        consumer=consumer,
                        redis_url=redis_url,
                        log_dir=self._tmp_dir / f"{layer}-{consumer}",
                    )
                )
        return servers[:count]

    def stop_all(self) -> None:
        servers = [server for started in self._started.values() for server in started]
        # Each takes a fraction of a second to shut down; wait for them together.
        with ThreadPoolExecutor() as pool:
            list(pool.map(DaphneServer.stop, servers))
        self._started.clear()


@pytest.fixture(scope="session")
def _live_servers(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[LiveServers]:
    live = LiveServers(request, tmp_path_factory.mktemp("daphne"))
    yield live
    live.stop_all()


class LiveChat:
    """What the ``live_chat`` fixture gives a test: call it for running servers; it keeps
    where each server's log stood when the test first got it, for failure reports."""

    def __init__(self, live_servers: LiveServers) -> None:
        self._live_servers = live_servers
        self._log_offsets: dict[int, tuple[DaphneServer, int]] = {}

    def __call__(self, layer: str, consumer: str = "async", count: int = 1) -> list[DaphneServer]:
        servers = self._live_servers.get(layer, consumer, count)
        for server in servers:
            self._log_offsets.setdefault(id(server), (server, server.log_path.stat().st_size))
        return servers

    def logs_during_test(self) -> list[tuple[DaphneServer, str]]:
        """Each server this test used, with the log lines written since it got it."""
        logs = []
        for server, offset in self._log_offsets.values():
            with server.log_path.open("rb") as log:
                log.seek(offset)
                logs.append((server, log.read().decode(errors="replace")))
        return logs


@pytest.fixture
def live_chat(request: pytest.FixtureRequest, _live_servers: LiveServers) -> Iterator[LiveChat]:
    """``live_chat(layer, consumer="async", count=1)`` -> running Daphne servers.

    Servers are shared across the session (start-up costs about a second each); when
    the test fails, the server log lines written during it are printed with the failure.
    """
    chat = LiveChat(_live_servers)
    yield chat
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for server, text in chat.logs_during_test():
            print(
                f"\n--- daphne {server.netloc} {server.env} log during the test "
                f"({server.log_path}) ---\n{text}"
            )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
