"""The pytest plugin: the layers, one real backend server per kind for the session, and
live chat servers per layer (the root conftest.py loads it, as ``pytest_plugins``).

Start-up itself lives in chat.py and harness/backends.py, the shared types in harness/live.py; these
fixtures only scope them. In CI (``CI`` set) a missing system dependency fails the test;
locally it skips with what to install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from harness import (
    LAYERS,
    Backend,
    MissingExecutable,
    RedisServer,
    interrupt_on_termination,
    layer_backend,
)
from harness.live import Backends, LiveChat, LiveServers, layer_param, missing_dependency


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy",
        action="store_true",
        help="also run the tests marked heavy (they measure load for minutes: `nox -s heavy`)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the heavy tests out unless --heavy is given. They check measurements at and
    past a capacity, which takes minutes of load on a 2-core machine: they belong with the
    benchmark (`nox -s heavy`, nightly in the workflow), not in the default command, which
    must stay within about 12 minutes. Deselected, not skipped: nothing is missing.

    First, the runs a test's ``heavy_on_layers`` mark names become ``heavy`` too: every
    layer multiplies every layer-parametrized test, so
    ``@pytest.mark.heavy_on_layers("valkey", "sqlite", scenario=("churn",))`` keeps those
    layers' churn runs for `nox -s heavy` (without keyword arguments: every run of those
    layers; several such marks add up). tryfirst: before ``-m`` selects by marks, so ``-m
    heavy`` finds them."""
    for item in items:
        params = getattr(item, "callspec", None)
        if params is None:
            continue
        for mark in item.iter_markers("heavy_on_layers"):  # a test may carry several
            if params.params.get("layer") in mark.args and all(
                params.params.get(name) in values for name, values in mark.kwargs.items()
            ):
                item.add_marker(pytest.mark.heavy)
    if config.getoption("--heavy"):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (``kill``, ``timeout``, a cancelled CI job) and SIGHUP end the session the way
    Ctrl-C does: pytest then tears down every fixture, so the session's servers stop and
    their directories go. Left to the default action, the signal would end pytest at once
    and leave them all running. Pytest reports the session as interrupted (exit status 2)."""
    interrupt_on_termination()


@pytest.fixture(scope="session")
def _backends() -> Iterator[Backends]:
    backends = Backends()
    yield backends
    backends.close()


@pytest.fixture(scope="session")
def backend_for(_backends: Backends):
    """``backend_for(layer)`` -> the session's Backend for that layer: its server started on
    first use (or $REDIS_URL, $POSTGRES_URL, $RABBITMQ_URL, $NATS_URL, $VALKEY_URL when
    set); for the SQLite layer a throw-away file (or $SQLITE_LAYER_PATH)."""

    def get(layer: str) -> Backend:
        try:
            return _backends.get(layer)
        except MissingExecutable as error:
            missing_dependency(str(error))

    return get


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``layer`` once per channel layer, unless it parametrizes
    ``layer`` itself."""
    if "layer" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "layer" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.parametrize("layer", [layer_param(name) for name in LAYERS], indirect=True)


@pytest.fixture
def layer(request: pytest.FixtureRequest) -> str:
    """Each channel layer in turn (ids are the layer names). Each carries the mark of the
    server it needs (``redis``, ``postgres``, ``rabbitmq``, ``nats``, ``valkey``; the SQLite
    layer ``sqlite``), so for example ``-m "not rabbitmq"`` leaves RabbitMQ out and
    ``-m "not redis"`` keeps no Redis layer."""
    return request.param


@pytest.fixture
def backend(layer: str, backend_for) -> Backend:
    """The session's Backend for ``layer`` (``Backend.env`` is empty for InMemory)."""
    return backend_for(layer)


@pytest.fixture(scope="session")
def redis_url(backend_for) -> str:
    """URL of a real Redis: $REDIS_URL if set, else a redis-server started for the session."""
    return backend_for("redis").env["REDIS_URL"]


@pytest.fixture
def layer_redis_url(layer: str, backend: Backend) -> str | None:
    """The Redis URL ``layer`` needs, or None for the other layers."""
    return backend.env.get("REDIS_URL")


@pytest.fixture(scope="session")
def _live_servers(backend_for, tmp_path_factory) -> Iterator[LiveServers]:
    live = LiveServers(backend_for, tmp_path_factory.mktemp("chat-servers"))
    yield live
    live.stop_all()


@pytest.fixture
def live_chat(request: pytest.FixtureRequest, _live_servers: LiveServers) -> Iterator[LiveChat]:
    """``live_chat(layer, consumer="async", count=1, asgi="daphne", workers=1)`` -> running
    servers (``asgi``: any of ASGI_SERVERS; ``workers``: Gunicorn's, behind one port);
    ``live_chat.own(layer, backend=...)`` -> a server of this test alone.

    Servers are shared across the session (start-up costs about a second each); when
    the test fails, the server log lines written during it are printed with the failure.
    """
    chat = LiveChat(_live_servers)
    try:
        yield chat
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for server, text in chat.logs_during_test():
                print(
                    f"\n--- {server.asgi} {server.netloc} {server.env} log during the test "
                    f"({server.log_path}) ---\n{text}"
                )
    finally:
        chat.stop_own()


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone, to stop (``shutdown``) and start again on its
    port (``start_again``). Never the session's Redis or $REDIS_URL: the session's chat
    servers share those, and a restart leaves stale connections in their pools."""
    try:
        server = RedisServer.start()
    except MissingExecutable as error:
        missing_dependency(str(error))
    with server:
        yield server


@pytest.fixture
def restartable_backend(layer: str) -> Iterator[Backend]:
    """A throw-away server for ``layer`` for this test alone (``Backend.server``), to stop
    (``shutdown``) and start again on its port (``start_again``); never the session's
    servers or a URL variable's, for the reason ``restartable_redis`` gives."""
    with contextlib.ExitStack() as stack:
        try:
            backend = stack.enter_context(layer_backend(layer, throwaway=True))
        except MissingExecutable as error:
            missing_dependency(str(error))
        yield backend


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
