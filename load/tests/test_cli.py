"""The command line: bad input and unreachable targets are one clear line, exit non-zero,
and write nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import free_port
from load.tests.helpers import run_load

pytestmark = pytest.mark.load


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--target", "ws://127.0.0.1:1", "--users", "0"], "'0' must be at least 1"),
        (["run", "--target", "http://x:1"], "target must look like ws://HOST:PORT"),
        (["run"], "--target"),
        (["run", "--target", "ws://127.0.0.1:1", "--scenario", "storm"], "invalid choice"),
        (["run", "--target", "ws://127.0.0.1:1", "--rate", "fast"], "'fast' is not a number"),
        (["run", "--target", "ws://127.0.0.1:1", "--duration", "0"], "must be more than 0"),
        (["run", "--target", "ws://127.0.0.1:1", "--message-bytes", "-5"], "must be 0 or more"),
        (["bench", "--layers", "inmemory,kafka"], "unknown layer 'kafka'"),
        (["bench", "--consumer", "threads"], "invalid choice"),
        (["bench", "--asgi", "daphne,tornado"], "unknown ASGI server 'tornado'"),
        (["bench", "--layer-config", "[1]"], "is not a JSON object"),
        (["bench", "--fault", "disk-full"], "invalid choice: 'disk-full'"),
        (["bench", "--fault", "redis-stall", "--layers", "inmemory"], "acts on Redis"),
        (["bench", "--fault", "server-kill", "--layers", "redis"], "--servers 2 or more"),
        (["bench", "--fault", "backend-restart", "--layers", "inmemory"], "inmemory has none"),
        (["bench", "--fault", "backend-restart", "--layers", "sqlite"], "sqlite has none"),
        (["bench", "--fault", "slow-reader", "--slow-share", "2"], "at most 1"),
        (["bench", "--fault", "redis-restart", "--duration", "5"], "must end before sending"),
        (["run", "--target", "ws://127.0.0.1:1", "--fault", "slow-reader"], "unrecognized"),
        (["capacity", "--slo-p99-ms", "0"], "must be more than 0"),
        (["capacity", "--vary", "speed"], "invalid choice"),
        (["capacity", "--max-drop", "1.5"], "must be between 0 and 1"),
        (["capacity", "--resolution", "1"], "must be between 0 and 1"),
        (["capacity", "--servers", "1,0"], "'0' must be at least 1"),
        (["run", "--target", "ws://127.0.0.1:1", "--workers", "2"], "go together"),
        (
            [
                "run",
                "--target",
                "ws://127.0.0.1:1",
                "--workers",
                "2",
                "--master-bind",
                "127.0.0.1",
                "--processes",
                "2",
            ],
            "exclude each other",
        ),
        (["run", "--target", "ws://127.0.0.1:1", "--master-port", "0"], "not between 1"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    finished = run_load(*args, "--out", str(out)) if args[0] != "fly" else run_load(*args)
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert needle in lines[0]
    assert "Traceback" not in finished.stderr
    assert not out.exists()


BASELINES = {
    "bench.json": '{"runs": []}',
    "not-json.json": "capacity: high",
    "no-layer.json": '{"capacity": [{"servers": 1, "deliveries_per_s": 10}]}',
}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["run", "--target", "ws://127.0.0.1:1", "--users", "3", "--rooms", "5"],
            "rooms would be empty",
        ),
        (
            ["capacity", "--users", "3", "--rooms", "5", "--layers", "inmemory"],
            "rooms would be empty",
        ),
        (
            ["capacity", "--scenario", "idle"],
            "search how many sockets a server holds with --vary users",
        ),
        (["bench", "--servers", "2", "--layers", "inmemory,redis"], "lives inside one process"),
        (["capacity", "--servers", "2", "--layers", "inmemory"], "lives inside one process"),
        # Two Gunicorn workers behind one port would be two InMemory layers too.
        (
            ["capacity", "--servers", "2", "--layers", "inmemory", "--asgi", "gunicorn-asgi"],
            "(or Gunicorn workers) would never see each other's messages",
        ),
        (["capacity", "--baseline", "missing.json"], "cannot read the baseline"),
        (["capacity", "--baseline", "not-json.json"], "is not JSON"),
        (["capacity", "--baseline", "bench.json"], "has no capacity entries"),
        (["capacity", "--baseline", "no-layer.json"], "before capacity entries carried"),
    ],
)
def test_flags_that_do_not_fit_together_are_one_line_and_status_2(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    """Refused before anything starts: no server, no search, nothing written."""
    for name, content in BASELINES.items():
        (tmp_path / name).write_text(content)
    if "--baseline" in args:
        args = [*args[:-1], str(tmp_path / args[-1])]
    out = tmp_path / "out"
    finished = run_load(*args, "--out", str(out))
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert needle in lines[0]
    assert finished.stdout == ""
    assert not out.exists()


def test_unreachable_target_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    target = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    finished = run_load("run", "--target", target, "--duration", "1", "--out", str(out))
    assert finished.returncode == 1
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert f"cannot open a chat WebSocket on {target}" in lines[0]
    assert "refused" in lines[0].lower()
    assert finished.stdout == ""
    assert not out.exists()


def test_help_explains_every_flag() -> None:
    for command, flags in (
        ("run", ("--target", "--scenario", "--users", "--rooms", "--rate", "--duration", "--out")),
        ("bench", ("--layers", "--servers", "--consumer", "--scenario", "--users", "--out")),
        (
            "capacity",
            (
                "--layers",
                "--servers",
                "--consumer",
                "--asgi",
                "--slo-p99-ms",
                "--vary",
                "--repeat",
                "--baseline",
                "--max-drop",
                "--max-steps",
                "--resolution",
                "--settle",
                "--message-bytes",
            ),
        ),
        ("replay", ("OLD/summary.json", "--out", "--repeat")),
    ):
        finished = run_load(command, "--help")
        assert finished.returncode == 0
        for flag in flags:
            assert flag in finished.stdout


@pytest.mark.usefixtures("load_dependencies")
def test_bench_without_redis_measures_inmemory_and_says_what_to_install(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # A PATH without redis-server (but with this Python, which is called by path).
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environ["PATH"] = str(tmp_path)
    finished = run_load(
        "bench", "--users", "4", "--rooms", "2", "--duration", "1", "--drain", "1",
        "--out", str(out), env=environ,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "sudo apt-get install redis-server" in finished.stdout
    assert [run["layer"] for run in finished.summary(out)["runs"]] == ["inmemory"]


@pytest.mark.parametrize(
    ("master", "needle"),
    [(":5557", "has no host"), ("host:port", "is not a port number"), ("[::1", "HOST[:PORT]")],
)
def test_a_bad_master_address_is_one_line(master: str, needle: str) -> None:
    finished = run_load("worker", "--master", master)
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], finished.stderr


def test_master_addresses() -> None:
    from load.commands.remote import master_address

    assert master_address("10.0.0.5") == ("10.0.0.5", 5557)
    assert master_address("10.0.0.5:6000") == ("10.0.0.5", 6000)
    assert master_address("[::1]:6000") == ("::1", 6000)
    assert master_address("::1") == ("::1", 5557)
