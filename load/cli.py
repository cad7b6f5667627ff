"""``python -m load run`` and ``python -m load bench``: drive Locust headless, write
summary.json (the contract's schema), Locust's CSV/HTML per run and report.html.

Locust runs in a subprocess: it monkey-patches the standard library with gevent at import,
which must not happen in this process (nor in pytest).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from load import report
from load.scenarios import (
    CLOSE_TIMEOUT_S,
    DEFAULT_DRAIN_S,
    DEFAULT_DURATION_S,
    DEFAULTS,
    SCENARIOS,
    default_rooms,
    new_run_id,
)
from load.wire import Connection, WireError, split_target
from services import LAYERS, ProcessStats, RedisServer, ServiceError, chat_servers

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "django",
    "channels",
    "channels-redis",
    "redis",
    "daphne",
    "locust",
    "gevent",
    "websockets",
)
# Locust gets this long beyond send + drain + close before its own --run-time stops it;
# normally it ends as soon as every process has reported.
LOCUST_SLACK_S = 20.0


class HarnessError(Exception):
    """A one-line reason the harness could not produce a result."""


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line on stderr (no usage dump, no traceback), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number ≥ 0")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _layers(text: str) -> list[str]:
    layers = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise argparse.ArgumentTypeError(
            f"unknown layer {', '.join(unknown) or text!r}: use a comma-separated subset of "
            f"{','.join(LAYERS)}"
        )
    return layers


def _target(text: str) -> str:
    try:
        split_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    scenario_help = "; ".join(
        f"{name}: {d['users']} users, "
        f"{'users/2' if d['rooms'] is None else d['rooms']} rooms, {d['rate']:g} msg/s"
        for name, d in DEFAULTS.items()
    )
    parser = OneLineParser(
        prog="python -m load",
        description="Load the Channels tutorial chat with Locust and measure delivery "
        "exactly: latency of every delivery, sent/expected/delivered/lost/duplicated/leaked.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def shared(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--scenario",
            choices=SCENARIOS,
            default="fanout",
            help="fanout: rooms of users all sending; isolation: many small "
            "rooms, any cross-room delivery is a leak; churn: users connect, "
            "send, leave, repeat; idle: open sockets only, server memory per "
            "socket (default fanout)",
        )
        sub.add_argument(
            "--users",
            type=_positive_int,
            help=f"simultaneous users (sockets); defaults: {scenario_help}",
        )
        sub.add_argument(
            "--rooms", type=_positive_int, help="rooms the users are spread over (round robin)"
        )
        sub.add_argument(
            "--rate",
            type=_non_negative_float,
            metavar="MSGS_PER_USER_PER_S",
            help="messages each user sends per second, randomly phased",
        )
        sub.add_argument(
            "--duration",
            type=_positive_float,
            default=DEFAULT_DURATION_S,
            metavar="SECONDS",
            help="seconds of sending (idle: of holding "
            f"sockets open) per run (default {DEFAULT_DURATION_S:g})",
        )
        sub.add_argument(
            "--drain",
            type=_non_negative_float,
            default=DEFAULT_DRAIN_S,
            metavar="SECONDS",
            help="after sending stops, wait this long for "
            "deliveries before closing; a delivery later than this counts as "
            f"lost (default {DEFAULT_DRAIN_S:g})",
        )
        sub.add_argument(
            "--processes",
            type=_positive_int,
            default=1,
            help="Locust load processes (>1: a master and N workers; counts "
            "stay exact) (default 1)",
        )
        sub.add_argument(
            "--out",
            type=Path,
            default=None,
            metavar="DIR",
            help="directory for summary.json, report.html and Locust's CSV/"
            "HTML (default results/<command>-<time>)",
        )

    run = commands.add_parser(
        "run",
        help="one scenario against a running server",
        description="Run one scenario against any server speaking the tutorial protocol.",
    )
    run.add_argument(
        "--target",
        type=_target,
        required=True,
        metavar="ws://HOST:PORT",
        help="the chat server (its /ws/chat/<room>/ endpoint is used)",
    )
    shared(run)
    bench = commands.add_parser(
        "bench",
        help="start Redis and Daphne, run the scenario on each layer, compare",
        description="Start redis-server and Daphne (services.py), run the same scenario "
        "against each layer, write summary.json, report.html and a comparison table.",
    )
    shared(bench)
    bench.add_argument(
        "--layers",
        type=_layers,
        default=None,
        help=f"comma-separated layers to compare (default {','.join(LAYERS)}; "
        "inmemory alone when there is no REDIS_URL and no redis-server to start)",
    )
    bench.add_argument(
        "--servers",
        type=_positive_int,
        default=1,
        help="Daphne processes per layer sharing one Redis, users spread "
        "across them (Redis layers only) (default 1)",
    )
    bench.add_argument(
        "--consumer",
        choices=("async", "sync"),
        default="async",
        help="the tutorial's async (part 3) or sync (part 2) consumer",
    )
    bench.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        help="runs per layer; the table then also shows medians (default 1)",
    )
    bench.add_argument(
        "--layer-config",
        default="",
        metavar="JSON",
        help="CHANNEL_LAYER_CONFIG for the Redis layers, e.g. '{\"capacity\": 1000}'",
    )
    return parser


def resolve_shape(args: argparse.Namespace) -> dict[str, Any]:
    """Users, rooms and rate with the scenario's defaults filled in."""
    defaults = DEFAULTS[args.scenario]
    users = args.users or defaults["users"]
    rooms = args.rooms or default_rooms(args.scenario, users)
    rate = defaults["rate"] if args.rate is None else args.rate
    if args.scenario == "idle":
        rate = 0.0
    elif rate <= 0:
        raise HarnessError(f"--rate must be more than 0 for the {args.scenario} scenario")
    if rooms > users:
        raise HarnessError(f"--rooms {rooms} is more than --users {users}: rooms would be empty")
    return {"users": users, "rooms": rooms, "rate": rate}


def harness_info() -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "packages": packages,
    }


def check_target(target: str) -> None:
    """Fail fast, in one line, if ``target`` does not accept a chat WebSocket."""
    try:
        connection = Connection.open(target, f"/ws/chat/{new_run_id()}-preflight/", timeout=5)
    except WireError as error:
        raise HarnessError(f"cannot open a chat WebSocket on {target}: {error}") from None
    connection.start_close()
    connection.sock.settimeout(2)
    connection.receive_loop(lambda payload, recv_ns: None)
    connection.abort()


def run_locust(
    *,
    targets: Sequence[str],
    scenario: str,
    shape: dict[str, Any],
    duration: float,
    drain: float,
    processes: int,
    run_dir: Path,
) -> dict[str, Any]:
    """One headless Locust run; returns the merged result its master wrote."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / "chatload-result.json"
    results_file.unlink(missing_ok=True)
    users = shape["users"]
    spawn_rate = max(1, min(users, 200))
    # Sending starts once everyone has had time to connect (churn starts connecting then).
    warmup = 0.0 if scenario == "churn" else round(users / spawn_rate + 1.0, 2)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        targets[0],
        "--targets",
        ",".join(targets),
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "--run-time",
        f"{int(warmup + duration + drain + CLOSE_TIMEOUT_S + LOCUST_SLACK_S)}s",
        "--stop-timeout",
        "0",
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--scenario",
        scenario,
        "--rooms",
        str(shape["rooms"]),
        "--rate",
        str(shape["rate"]),
        "--duration",
        str(duration),
        "--drain",
        str(drain),
        "--warmup",
        str(warmup),
        "--results-file",
        str(results_file),
        "--csv",
        str(run_dir / "locust"),
        "--html",
        str(run_dir / "locust.html"),
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    with (run_dir / "locust.log").open("wb") as log:
        finished = subprocess.run(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=warmup + duration + drain + 120,
        )
    if not results_file.exists():
        raise HarnessError(
            f"Locust exited with code {finished.returncode} without a result "
            f"(log: {run_dir / 'locust.log'})"
        )
    result = json.loads(results_file.read_text())
    results_file.unlink()
    return result


def run_record(
    result: dict[str, Any],
    *,
    layer: str | None,
    consumer: str | None,
    servers: int,
    targets: Sequence[str],
    scenario: str,
    shape: dict[str, Any],
    duration: float,
) -> dict[str, Any]:
    """One entry of summary.json's ``runs``, in the contract's key order."""
    summary = result["summary"]
    record: dict[str, Any] = {
        "layer": layer,
        "consumer": consumer,
        "servers": servers,
        "target": targets[0],
        "scenario": scenario,
        "users": shape["users"],
        "rooms": shape["rooms"],
        "rate_per_user": shape["rate"],
        "duration_s": duration,
    }
    record.update(summary)
    record["server_cpu_s"] = None
    record["server_rss_mb"] = None
    record["targets"] = list(targets)
    record["run_id"] = result["plan"]["run_id"]
    return record


class ServerSampler:
    """Peak resident memory of the servers, sampled from /proc while a run goes on."""

    def __init__(self, stats: Sequence[Any], period_s: float = 0.2) -> None:
        self.stats = stats
        self.period_s = period_s
        self.peak_mb = self.current_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def current_mb(self) -> float:
        return sum(s.rss_mb() or 0.0 for s in self.stats)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak_mb = max(self.peak_mb, self.current_mb())

    def __enter__(self) -> ServerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_mb = max(self.peak_mb, self.current_mb())


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.html").write_text(report.html_report(summary))


def default_out(command: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{command}-{stamp}"


def command_run(args: argparse.Namespace) -> int:
    shape = resolve_shape(args)
    check_target(args.target)
    out = args.out or default_out("run")
    harness = harness_info()
    with tempfile.TemporaryDirectory(prefix="chatload-") as scratch:
        # Locust writes into a scratch directory first: nothing lands in --out unless
        # the run produced a result.
        run_dir = Path(scratch) / "run"
        result = run_locust(
            targets=[args.target],
            scenario=args.scenario,
            shape=shape,
            duration=args.duration,
            drain=args.drain,
            processes=args.processes,
            run_dir=run_dir,
        )
        record = run_record(
            result,
            layer=None,
            consumer=None,
            servers=1,
            targets=[args.target],
            scenario=args.scenario,
            shape=shape,
            duration=args.duration,
        )
        record["locust_files"] = "locust/"
        summary = {"harness": harness, "runs": [record]}
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / "locust", ignore_errors=True)
        shutil.move(run_dir, out / "locust")
    write_outputs(out, summary)
    print(report.table(summary["runs"]))
    print(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    return 0


def default_layers() -> list[str]:
    """Every layer where Redis can be had ($REDIS_URL or a redis-server to start), else
    InMemory alone, saying what to install: the quick start must run on a bare machine."""
    if os.environ.get("REDIS_URL") or shutil.which("redis-server"):
        return list(LAYERS)
    print(
        "bench: no REDIS_URL and no redis-server, so InMemory only; to compare the Redis "
        "layers install redis-server (sudo apt-get install redis-server)",
        flush=True,
    )
    return ["inmemory"]


def command_bench(args: argparse.Namespace) -> int:
    if args.layers is None:
        args.layers = default_layers()
    shape = resolve_shape(args)
    if args.servers > 1 and "inmemory" in args.layers:
        raise HarnessError(
            f"--servers {args.servers} with the inmemory layer: InMemoryChannelLayer lives "
            "inside one process, so users on different Daphne servers would never see each "
            "other's messages; use --layers redis,redis-pubsub"
        )
    if args.layer_config:
        try:
            if not isinstance(json.loads(args.layer_config), dict):
                raise ValueError
        except ValueError:
            raise HarnessError(
                "--layer-config must be a JSON object, e.g. '{\"capacity\": 1000}'"
            ) from None
    out = args.out or default_out("bench")
    summary: dict[str, Any] = {"harness": harness_info(), "runs": []}
    with contextlib.ExitStack() as stack:
        redis_url = None
        if any(layer != "inmemory" for layer in args.layers):
            # One Redis for every Redis-layer run, so --layer-config can name its URL.
            redis_url = os.environ.get("REDIS_URL")
            if not redis_url:
                try:
                    redis_url = stack.enter_context(RedisServer.start()).url
                except ServiceError as error:
                    raise HarnessError(str(error)) from None
        for repeat, layer in itertools.product(range(args.repeat), args.layers):
            _bench_one(args, shape, layer, repeat, redis_url, out, summary)
    print(report.table(summary["runs"]))
    if args.repeat > 1:
        print("\nmedians of", args.repeat, "runs:")
        for row in report.medians(summary["runs"]):
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
        summary["medians"] = report.medians(summary["runs"])
        write_outputs(out, summary)
    print(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    return 0


def _bench_one(
    args: argparse.Namespace,
    shape: dict[str, Any],
    layer: str,
    repeat: int,
    redis_url: str | None,
    out: Path,
    summary: dict[str, Any],
) -> None:
    """One layer's run: start its servers, run Locust, add the record to ``summary``."""
    label = f"{layer}-{args.scenario}" + (f"-{repeat + 1}" if args.repeat > 1 else "")
    run_dir = out / "runs" / label
    env = None
    if args.layer_config and layer != "inmemory":
        env = {"CHANNEL_LAYER_CONFIG": args.layer_config.replace("$REDIS_URL", redis_url)}
    print(
        f"{label}: starting {args.servers} Daphne ({layer}, {args.consumer}) ...",
        flush=True,
    )
    try:
        with chat_servers(
            layer,
            servers=args.servers,
            consumer=args.consumer,
            redis_url=redis_url if layer != "inmemory" else None,
            env=env,
            log_dir=run_dir / "daphne",
        ) as servers:
            stats = [ProcessStats(s.pid) for s in servers]
            cpu_before = sum(s.cpu_seconds() or 0.0 for s in stats)
            with ServerSampler(stats) as sampler:
                baseline_mb = sampler.peak_mb
                result = run_locust(
                    targets=[s.ws_url for s in servers],
                    scenario=args.scenario,
                    shape=shape,
                    duration=args.duration,
                    drain=args.drain,
                    processes=args.processes,
                    run_dir=run_dir,
                )
            cpu_after = sum(s.cpu_seconds() or 0.0 for s in stats)
    except ServiceError as error:
        raise HarnessError(str(error)) from None
    record = run_record(
        result,
        layer=layer,
        consumer=args.consumer,
        servers=args.servers,
        targets=[s.ws_url for s in servers],
        scenario=args.scenario,
        shape=shape,
        duration=args.duration,
    )
    record["server_cpu_s"] = round(cpu_after - cpu_before, 3)
    record["server_rss_mb"] = round(sampler.peak_mb, 1)
    record["server_rss_baseline_mb"] = round(baseline_mb, 1)
    if args.scenario == "idle" and record["connects"]:
        record["server_kb_per_socket"] = round(
            (sampler.peak_mb - baseline_mb) * 1024 / record["connects"], 1
        )
    record["layer_config"] = args.layer_config or None
    record["locust_files"] = f"runs/{label}/"
    summary["runs"].append(record)
    write_outputs(out, summary)  # keep what is done if a later layer fails
    for problem in report.problems(record):
        print(f"  ! {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m load``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        return command_bench(args)
    except HarnessError as error:
        print(f"python -m load {args.command}: error: {error}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired:
        print(
            f"python -m load {args.command}: error: Locust did not finish in time", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print(f"python -m load {args.command}: interrupted", file=sys.stderr)
        return 130
