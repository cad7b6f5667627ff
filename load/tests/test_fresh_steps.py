"""Every capacity step starts from the state the first one had: fresh chat servers and,
where the stack started its own Redis (or Valkey, or SQLite file), an empty one
(LiveStack.start_afresh says why). A Redis given by URL, or a file by SQLITE_LAYER_PATH, is
never emptied. (The spread this removes is measured by the
benchmark studies/repeatability/repeatability.py, not here.)"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import redis

from harness import RedisServer
from load.commands.capacity import SearchSettings, search_stack
from load.commands.stack import LiveStack
from load.core.plan import Shape, build_plan
from load.core.search import Objective
from load.reporting.record import Stack

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]


def chat_stack(layer: str) -> Stack:
    return Stack(layer, servers=1, consumer="async", asgi="daphne")


def test_a_step_after_a_failing_step_runs_on_fresh_servers(tmp_path: Path) -> None:
    plan = build_plan("fanout", Shape(users=10, rooms=2, rate=2.0), ["ws://127.0.0.1:1"],
                      duration_s=1.0, settle_s=0.5, drain_s=0.5)  # fmt: skip
    # No latency meets a zero p99, so the first step fails and the second (its
    # confirmation) is measured right after a failing one.
    settings = SearchSettings(Objective(p99_ms=0.0), max_steps=2)
    records, _entry = search_stack(
        chat_stack("inmemory"), plan, settings, out=tmp_path, label="fresh",
        on_record=lambda record: None, say=lambda line: None,
    )  # fmt: skip
    assert [(r["phase"], r["passed"]) for r in records] == [("ramp", False), ("confirm", False)]
    first, second = (record["server_pids"] for record in records)
    assert len(first) == len(second) == 1
    assert first != second, "the step after a failing step ran on the same server process"
    assert all(record["delivered"] == record["expected"] > 0 for record in records)


def test_start_afresh_empties_the_stacks_own_redis(tmp_path: Path) -> None:
    with LiveStack(chat_stack("redis"), tmp_path) as live:
        assert live.backend is not None
        server = live.backend.server
        assert server is not None
        client = redis.Redis(host=server.host, port=server.port)
        client.set("left:by:an:earlier:step", "1")
        before = [s.pid for s in live.servers]
        live.start_afresh()
        assert client.dbsize() == 0
        assert [s.pid for s in live.servers] != before
        client.close()


def test_start_afresh_leaves_a_redis_given_by_url_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test's own redis-server stands for a server the user shares with others.
    with RedisServer.start() as users_redis:
        monkeypatch.setenv("REDIS_URL", users_redis.url)
        client = redis.Redis(host=users_redis.host, port=users_redis.port)
        client.set("someone:elses:data", "1")
        with LiveStack(chat_stack("redis"), tmp_path) as live:
            assert live.backend is not None
            assert live.backend.server is None  # the URL's server, not one of the stack's
            live.start_afresh()
        assert client.get("someone:elses:data") == b"1"
        client.close()


def waiting_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as database:
        return database.execute("SELECT count(*) FROM channels_lite_event").fetchone()[0]


def leave_a_row(path: Path) -> None:
    """A message row as channels-lite writes one, for a process that has gone."""
    with contextlib.closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "INSERT INTO channels_lite_event (created_at, expires_at, channel_name, data, "
            "delivered) VALUES ('2099-01-01 00:00:00.000000', '2099-01-01 00:01:00.000000', "
            "'specific.gone!', x'00', 0)"
        )


@pytest.mark.sqlite
def test_start_afresh_empties_the_stacks_own_sqlite_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SQLITE_LAYER_PATH", raising=False)
    with LiveStack(chat_stack("sqlite"), tmp_path / "own") as live:
        assert live.backend is not None and live.backend.layer_file is not None
        path = live.backend.layer_file
        leave_a_row(path)
        live.start_afresh()
        assert waiting_rows(path) == 0
    # A file given by SQLITE_LAYER_PATH (shared with others, say) keeps its rows.
    given = tmp_path / "given.sqlite3"
    monkeypatch.setenv("SQLITE_LAYER_PATH", str(given))
    with LiveStack(chat_stack("sqlite"), tmp_path / "given") as live:
        assert live.backend is not None and live.backend.layer_file is None
        leave_a_row(given)
        live.start_afresh()
        assert waiting_rows(given) == 1
