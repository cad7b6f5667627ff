"""``python -m load run|bench|capacity``: parse the command line, build the plan, run it,
write summary.json and report.html. Bad input is one line and exit status 2; a run that
cannot produce a result (or a fault run whose fault never fired) is one line and exit
status 1; a capacity that fell more than ``--max-drop`` below ``--baseline``, or a replayed
capacity that no longer holds, is exit status 3. Ctrl-C, SIGTERM and SIGHUP stop every
server, backend and Locust process the command started, remove their temporary
directories, and exit with 128 + the signal's number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect
from websockets.typing import Origin

from harness import (
    ASGI_SERVERS,
    LAYERS,
    check_consumer,
    interrupt_on_termination,
    interrupted_status,
)
from load.commands import inject, replay
from load.commands.bench import bench
from load.commands.capacity import (
    VARY,
    SearchSettings,
    add_efficiency,
    median_entries,
    read_baseline,
    regressions,
    search_description,
    search_stack,
    unmatched_baseline,
)
from load.commands.locust_run import LocustError
from load.commands.machine import MachineLog
from load.commands.measure import measure
from load.commands.progress import watcher
from load.commands.remote import (
    DEFAULT_MASTER_PORT,
    RemoteWorkers,
    master_address,
    port_number,
    worker_command,
)
from load.commands.stack import StackError
from load.core import faults
from load.core.logins import read_accounts
from load.core.plan import (
    Plan,
    add_fault_options,
    add_named_options,
    add_options,
    new_run_id,
    plan_from_options,
    positive_float,
    positive_int,
    split_target,
    target_url,
)
from load.core.search import DEFAULT_MAX_STEPS, Objective
from load.reporting import report
from load.reporting.record import Stack, harness_info

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REGRESSION = 3
# A capacity step: a short warm-up, then a short measured window (many steps fit in minutes).
CAPACITY_STEP = {"duration": 3.0, "settle": 2.0, "drain": 2.0}
DEFAULT_LAYERS = ("inmemory", "redis", "redis-pubsub")


class HarnessError(Exception):
    """A one-line reason the harness could not produce a result."""


class BadInput(HarnessError):
    """Flags that do not fit together (exit status 2, like a bad flag)."""


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line on stderr (no usage dump, no traceback), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _choices(allowed: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [value for value in values if value not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(repr(u) for u in unknown) or repr(text)}: use a "
                f"comma-separated subset of {','.join(allowed)}"
            )
        return list(dict.fromkeys(values))

    return parse


def _consumer(text: str) -> str:
    try:
        return check_consumer(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from async, sync, or the dotted path of a "
            "consumer class)"
        ) from None


def _server_counts(text: str) -> list[int]:
    counts = [positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError(f"{text!r} is not a server count such as 1 or 1,2")
    return list(dict.fromkeys(counts))


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1, e.g. 0.2")
    return value


def _layer_config(text: str) -> str:
    try:
        if not isinstance(json.loads(text), dict):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a JSON object: give e.g. '{{\"capacity\": 1000}}'"
        ) from None
    return text


def _stack_options(sub: argparse.ArgumentParser, *, several_servers: bool) -> None:
    sub.add_argument(
        "--layers",
        type=_choices(LAYERS, "layer"),
        default=None,
        help=f"comma-separated layers (default {','.join(DEFAULT_LAYERS)}, or inmemory alone "
        f"when there is no Redis to start); any of {','.join(LAYERS)}",
    )
    sub.add_argument(
        "--servers",
        type=_server_counts if several_servers else positive_int,
        default=[1] if several_servers else 1,
        help="server processes per layer sharing one backend, users spread across them; "
        "for gunicorn-asgi and gunicorn-uvicorn, worker processes behind one port "
        "(not inmemory: its groups live inside one process)"
        + (" ; a list such as 1,2 searches each count" if several_servers else "")
        + " (default 1)",
    )
    sub.add_argument(
        "--consumer",
        type=_consumer,
        default="async",
        help="the tutorial's async (part 3) or sync (part 2) consumer (default async), or "
        "the dotted path of a consumer class from this checkout (a study's variant)",
    )
    sub.add_argument(
        "--asgi",
        type=_choices(ASGI_SERVERS, "ASGI server"),
        default=["daphne"],
        help=f"comma-separated ASGI servers to compare, of {','.join(ASGI_SERVERS)} "
        "(default daphne)",
    )
    sub.add_argument(
        "--layer-config",
        type=_layer_config,
        default=None,
        metavar="JSON",
        help="CHANNEL_LAYER_CONFIG for the layers other than inmemory, e.g. "
        "'{\"capacity\": 1000}'; $REDIS_URL in it is the backend's URL",
    )


def objective_text(objective: Objective) -> str:
    """``p99 ≤ 100 ms, no loss, no errors`` and the socket search's limits when set."""
    parts = [f"p99 ≤ {objective.p99_ms:g} ms", "no loss", "no errors"]
    if objective.connect_p99_ms is not None:
        parts.append(f"handshake p99 ≤ {objective.connect_p99_ms:g} ms")
    if objective.max_server_mb is not None:
        parts.append(f"server memory ≤ {objective.max_server_mb:g} MB")
    return ", ".join(parts)


# The socket search's handshake objective: a page that takes a second to connect is broken.
IDLE_CONNECT_P99_MS = 1000.0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m load",
        description="Load the Channels tutorial chat with Locust and measure delivery exactly: "
        "latency of every delivery, sent/expected/delivered/lost/duplicated/leaked.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def shared(sub: argparse.ArgumentParser) -> None:
        add_options(sub, for_locust=False)
        sub.add_argument(
            "--out",
            type=Path,
            default=None,
            metavar="DIR",
            help="directory for summary.json, report.html and Locust's CSV/HTML "
            "(default results/<command>-<time>)",
        )

    run = commands.add_parser(
        "run",
        help="one scenario against a running server",
        description="Run one scenario against any server speaking the tutorial protocol.",
    )
    run.add_argument(
        "--target",
        type=target_url,
        required=True,
        metavar="ws://HOST:PORT",
        help="the chat server (its /ws/chat/<room>/ endpoint is used)",
    )
    shared(run)
    add_named_options(run, ("--accounts",))
    run.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="generate the load on N Locust workers started elsewhere with `python -m load "
        "worker --master THIS_HOST[:PORT]`; waits for all N (up to 5 min), times each "
        "worker's clock against this one and corrects it (not with --processes)",
    )
    run.add_argument(
        "--master-bind",
        default=None,
        metavar="HOST",
        help="with --workers: the address workers connect to (e.g. 0.0.0.0, or this "
        "machine's address on the load network)",
    )
    run.add_argument(
        "--master-port",
        type=port_number,
        default=DEFAULT_MASTER_PORT,
        metavar="P",
        help=f"with --workers: the port workers connect to (default {DEFAULT_MASTER_PORT})",
    )

    worker = commands.add_parser(
        "worker",
        help="a load worker for `run --workers N` on another machine",
        description="Start a Locust worker with this harness's users and connect it to a "
        "master started with `python -m load run ... --workers N --master-bind HOST`. The "
        "master hands it the plan, its share of the users and its clock correction.",
    )
    worker.add_argument(
        "--master",
        type=master_address,
        required=True,
        metavar="HOST[:PORT]",
        help=f"the master's address (port default {DEFAULT_MASTER_PORT})",
    )

    bench_parser = commands.add_parser(
        "bench",
        help="start the servers, run one scenario on each layer, compare",
        description="Start each layer's backend and chat servers (harness/), run the same "
        "scenario against each, write summary.json, report.html and a comparison table.",
    )
    shared(bench_parser)
    _stack_options(bench_parser, several_servers=False)
    bench_parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="runs per layer; the table then also shows medians (default 1)",
    )
    add_fault_options(bench_parser)

    capacity = commands.add_parser(
        "capacity",
        help="search how much load each layer holds within the objective",
        description="For each layer (and server count, ASGI server), raise the offered load "
        "step by step until the objective breaks (p99 above --slo-p99-ms, any loss, any "
        "error, or a saturated load generator), then narrow down. Each step has its own "
        f"warm-up (--settle, default {CAPACITY_STEP['settle']:g} s) and measured window "
        f"(--duration, default {CAPACITY_STEP['duration']:g} s); --users/--rooms/--rate "
        "give the starting shape.",
    )
    shared(capacity)
    capacity.set_defaults(**CAPACITY_STEP)
    _stack_options(capacity, several_servers=True)
    capacity.add_argument(
        "--slo-p99-ms",
        type=positive_float,
        default=100.0,
        metavar="MS",
        help="the objective's p99 delivery latency (default 100)",
    )
    capacity.add_argument(
        "--vary",
        choices=VARY,
        default="rate",
        help="rate: raise messages per user per second, room shape fixed; users: raise "
        "sockets (whole rooms of the same size) at a fixed rate (default rate)",
    )
    capacity.add_argument(
        "--slo-connect-p99-ms",
        type=positive_float,
        default=None,
        metavar="MS",
        help="also break the objective when the handshake p99 passes this (default: not for "
        f"rate searches; {IDLE_CONNECT_P99_MS:g} for the socket search, --scenario idle)",
    )
    capacity.add_argument(
        "--max-server-mb",
        type=positive_float,
        default=None,
        metavar="MB",
        help="also break the objective when the chat servers' memory (RSS) passes this "
        "(default: no limit)",
    )
    capacity.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="searches per stack; the capacity reported is their median (default 1)",
    )
    capacity.add_argument(
        "--ramp-steps",
        type=positive_int,
        default=8,
        help="at most this many doubling steps; if all pass, limited_by is max (default 8)",
    )
    capacity.add_argument(
        "--max-steps",
        type=positive_int,
        default=DEFAULT_MAX_STEPS,
        help="at most this many measured steps per search, confirmations included; a search "
        f"that reaches it reports limited_by steps (default {DEFAULT_MAX_STEPS})",
    )
    capacity.add_argument(
        "--resolution",
        type=_fraction,
        default=SearchSettings.resolution,
        metavar="FRACTION",
        help="narrow until the highest passing and the lowest failing step are within this "
        "share of each other; 0.2 saves a step per search but lets two searches that "
        "disagree on one marginal step lie 19 %% apart "
        f"(default {SearchSettings.resolution:g})",
    )
    capacity.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="OLD/summary.json",
        help="an earlier capacity summary: exit with status 3 when a stack's capacity fell "
        "more than --max-drop below it",
    )
    capacity.add_argument(
        "--max-drop",
        type=_fraction,
        default=0.2,
        metavar="FRACTION",
        help="largest accepted fall below --baseline (default 0.2)",
    )

    replay_parser = commands.add_parser(
        "replay",
        help="measure each capacity of an earlier capacity summary again: does it hold?",
        description="For each capacity entry of an earlier `python -m load capacity`, start "
        "the same stack, run the shape that held with the same scenario, message size and "
        "timing, and judge it with the same objective. Exit status 0 when every entry "
        "holds, 3 when one does not.",
    )
    replay_parser.add_argument(
        "summary", type=Path, metavar="OLD/summary.json", help="the capacity summary to replay"
    )
    replay_parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory for summary.json, report.html and Locust's files "
        "(default results/replay-<time>)",
    )
    replay_parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="runs per entry; an entry holds when more than half of them held, and its "
        "figures are their medians (default 1)",
    )
    return parser


def default_layers(say) -> list[str]:
    """The three main layers where Redis can be had ($REDIS_URL or a redis-server to start),
    else InMemory alone, saying what to install: the quick start must run on a bare machine."""
    if os.environ.get("REDIS_URL") or shutil.which("redis-server"):
        return list(DEFAULT_LAYERS)
    say(
        "no REDIS_URL and no redis-server, so InMemory only; to compare the Redis layers "
        "install redis-server (sudo apt-get install redis-server)"
    )
    return ["inmemory"]


def stacks_of(args: argparse.Namespace, say) -> list[Stack]:
    layers = args.layers or default_layers(say)
    counts = args.servers if isinstance(args.servers, list) else [args.servers]
    if "inmemory" in layers and 1 not in counts:
        raise BadInput(
            f"--servers {counts[0]} with the inmemory layer: InMemoryChannelLayer lives "
            "inside one process, so users on different servers (or Gunicorn workers) would "
            "never see each other's messages; leave inmemory out of --layers (e.g. --layers "
            f"redis,redis-pubsub), or give --servers 1,{counts[0]}"
        )
    if "inmemory" in layers and max(counts) > 1:
        say("inmemory is measured with one server only: its groups live inside one process")
    stacks = []
    for asgi in args.asgi:
        for count in counts:
            for layer in layers:
                if layer == "inmemory" and count > 1:
                    continue
                config = args.layer_config if layer != "inmemory" else None
                stacks.append(Stack(layer, count, args.consumer, asgi, config))
    return stacks


def base_plan(args: argparse.Namespace, targets: Sequence[str]) -> Plan:
    try:
        return plan_from_options(args, users=args.users, targets=targets)
    except ValueError as error:  # flags that do not fit together, e.g. more rooms than users
        raise BadInput(str(error)) from None


def default_out(command: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{command}-{stamp}"


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def write_outputs(out: Path, summary: dict[str, Any]) -> None:
    write_summary(out, summary)
    (out / "report.html").write_text(report.html_report(summary))


def say(line: str) -> None:
    print(line, flush=True)


def check_target(target: str) -> None:
    """Fail fast, in one line, if ``target`` does not accept a chat WebSocket. The check
    uses the websockets library's blocking client: the harness's own client runs only
    under Locust's gevent, never in this process."""
    host, port = split_target(target)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"ws://{netloc}/ws/chat/{new_run_id()}-preflight/"
    try:
        # The Origin matches the host, as AllowedHostsOriginValidator requires.
        with connect(url, origin=Origin(f"http://{netloc}"), open_timeout=5, close_timeout=2):
            pass
    except (OSError, WebSocketException) as error:
        raise HarnessError(f"cannot open a chat WebSocket on {target}: {error}") from None


def remote_workers(args: argparse.Namespace) -> RemoteWorkers | None:
    if args.workers is None:
        return None
    say(
        f"waiting for {args.workers} worker(s) on {args.master_bind}:{args.master_port}: "
        f"start each with `python -m load worker --master HOST:{args.master_port}`"
    )
    return RemoteWorkers(args.workers, args.master_bind, args.master_port)


def check_accounts(plan: Plan) -> None:
    """``run --login`` needs an accounts file that holds what the login needs."""
    if plan.login == "none":
        return
    if not plan.accounts:
        raise BadInput(
            f"--login {plan.login} needs --accounts FILE: the users to log in as on that "
            "server (bench and capacity make their own)"
        )
    try:
        read_accounts(plan.accounts, plan.login)
    except ValueError as error:
        raise BadInput(str(error)) from None


def command_run(args: argparse.Namespace) -> int:
    plan = base_plan(args, [args.target])
    check_accounts(plan)
    check_target(args.target)
    out = args.out or default_out("run")
    harness = harness_info()
    remote = remote_workers(args)
    with tempfile.TemporaryDirectory(prefix="chatload-") as scratch:
        # Locust writes into a scratch directory first: nothing lands in --out unless the
        # run produced a result.
        run_dir = Path(scratch) / "locust"
        record = measure(plan, run_dir, stack=Stack(), live=None, remote=remote, progress=watcher())
        if "clock_workers" in record:
            harness["workers"] = record["clock_workers"]
            harness["latency_accuracy_ms"] = record["latency_accuracy_ms"]
            harness["latency_trust"] = record["latency_trust"]
        record["locust_files"] = "locust/"
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / "locust", ignore_errors=True)
        shutil.move(run_dir, out / "locust")
    summary: dict[str, Any] = {"harness": harness, "runs": [record]}
    write_outputs(out, summary)
    say(report.table(summary["runs"]))
    say(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    return 0


def command_bench(args: argparse.Namespace) -> int:
    stacks = stacks_of(args, say)
    if args.fault is None:
        plan = base_plan(args, ["ws://127.0.0.1:1"])  # the real targets come with each stack
    else:
        try:
            plan = plan_from_options(args, users=args.users, targets=["ws://127.0.0.1:1"])
            assert plan.fault is not None  # --fault was given
            inject.check_fault(plan.fault, stacks)
        except ValueError as error:
            raise BadInput(str(error)) from None
    out = args.out or default_out("bench")
    machine = MachineLog()
    summary: dict[str, Any] = {"harness": {**harness_info(), "machine": machine.record}, "runs": []}

    def keep(record: dict[str, Any]) -> None:
        summary["runs"].append(record)
        write_summary(out, summary)  # keep what is done if a later stack fails
        for problem in report.problems(record):
            say(f"  ! {problem}")

    bench(
        plan,
        stacks,
        repeat=args.repeat,
        out=out,
        on_record=keep,
        say=say,
        progress=watcher,
        machine=machine,
    )
    write_outputs(out, summary)
    say(report.table(summary["runs"]))
    if args.repeat > 1:
        summary["medians"] = report.medians(summary["runs"])
        say(f"\nmedians of {args.repeat} runs:")
        say(report.medians_table(summary["medians"]))
        write_outputs(out, summary)
    say(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    return fault_status(summary["runs"])


def fault_status(runs: Sequence[dict[str, Any]]) -> int:
    """EXIT_FAILED, with one line on stderr, when a run's fault never fired (or its
    injector failed): the bench was asked for a fault's result and has none for that run,
    as when a run cannot produce a result at all. 0 otherwise."""
    failed = [(run, faults.failure(run.get("fault"))) for run in runs]
    failed = [(run, reason) for run, reason in failed if reason]
    if not failed:
        return 0
    run, reason = failed[0]
    print(
        f"python -m load bench: error: {len(failed)} of {len(runs)} runs have no fault "
        f"result ({run['layer']} {run.get('asgi') or 'daphne'}: {reason}); their figures "
        "are left out of the medians",
        file=sys.stderr,
    )
    return EXIT_FAILED


def command_capacity(args: argparse.Namespace) -> int:
    if args.scenario == "idle" and args.vary != "users":
        raise BadInput(
            "--scenario idle sends nothing, so it has no delivery capacity: search how many "
            "sockets a server holds with --vary users, or search with fanout, isolation or "
            "churn"
        )
    baseline = None
    if args.baseline is not None:
        try:  # read it first: a bad baseline must not cost a five-minute search
            baseline = read_baseline(args.baseline)
        except ValueError as error:
            raise BadInput(str(error)) from None
    stacks = stacks_of(args, say)
    plan = base_plan(args, ["ws://127.0.0.1:1"])
    settings = SearchSettings(
        Objective(
            p99_ms=args.slo_p99_ms,
            connect_p99_ms=args.slo_connect_p99_ms
            or (IDLE_CONNECT_P99_MS if args.scenario == "idle" else None),
            max_server_mb=args.max_server_mb,
        ),
        vary=args.vary,
        ramp_steps=args.ramp_steps,
        max_steps=args.max_steps,
        resolution=args.resolution,
    )
    if baseline is not None:
        planned = [search_description(stack, plan, settings) for stack in stacks]
        mismatch = unmatched_baseline(baseline, planned)
        if mismatch is not None:
            raise BadInput(f"--baseline {args.baseline}: {mismatch}")
    out = args.out or default_out("capacity")
    machine = MachineLog()
    summary: dict[str, Any] = {
        "harness": {**harness_info(), "machine": machine.record},
        "runs": [],
        "capacity": [],
    }
    versions = summary["harness"]["packages"]

    def keep(record: dict[str, Any]) -> None:
        summary["runs"].append(record)
        write_summary(out, summary)  # keep what is done if a later step fails

    entries = []
    for number in range(1, args.repeat + 1):
        for stack in stacks:
            label = stack.label + (f"-{number}" if args.repeat > 1 else "")
            say(f"{label}: searching ({args.vary}, objective {objective_text(settings.objective)})")
            _records, entry = search_stack(
                stack,
                plan,
                settings,
                out=out,
                label=label,
                on_record=keep,
                say=say,
                progress=watcher,
                machine=machine,
            )
            entry["versions"] = dict(versions)  # what a replay compares its own with
            entries.append(entry)
            say(report.capacity_line(entry))
    summary["capacity"] = median_entries(entries)
    summary["capacity_repeats"] = entries
    summary["common_load"] = add_efficiency(summary["capacity"], summary["runs"], settings)
    write_outputs(out, summary)
    say("")
    say(report.capacity_table(summary["capacity"]))
    say(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    if baseline is not None:
        problems, notes = regressions(summary["capacity"], baseline, args.max_drop)
        for line in notes:
            say(f"baseline: {line}")
        for line in problems:
            print(f"python -m load capacity: regression: {line}", file=sys.stderr)
        if problems:
            return EXIT_REGRESSION
    return 0


def command_replay(args: argparse.Namespace) -> int:
    try:
        replays, notes = replay.read_replays(args.summary)
    except ValueError as error:
        raise BadInput(str(error)) from None
    out = args.out or default_out("replay")
    summary: dict[str, Any] = {
        "harness": harness_info(),
        "replayed": str(args.summary),
        "runs": [],
        "replay": [],
    }

    def keep(record: dict[str, Any]) -> None:
        summary["runs"].append(record)
        write_summary(out, summary)  # keep what is done if a later entry fails

    for line in notes:
        say(line)
    for item in replays:
        say(f"{item.label}: replaying {item.plan.users} users in {item.plan.rooms} rooms at "
            f"{item.plan.rate:g} msg/s each, {args.repeat} run(s)")  # fmt: skip
        summary["replay"].append(
            replay.replay(
                item,
                versions=summary["harness"]["packages"],
                repeat=args.repeat,
                out=out,
                on_record=keep,
                say=say,
                progress=watcher,
            )
        )
    write_outputs(out, summary)
    say("")
    for entry in summary["replay"]:
        say(replay.verdict_line(entry))
    say(f"wrote {out / 'summary.json'} and {out / 'report.html'}")
    return 0 if all(entry["held"] for entry in summary["replay"]) else EXIT_REGRESSION


def command_worker(args: argparse.Namespace) -> int:
    host, port = args.master
    say(f"worker: connecting to the master at {host}:{port}")
    # Locust takes over this process: its log is the worker's output.
    command = worker_command(host, port)
    os.execv(command[0], command)
    return EXIT_FAILED  # not reached


COMMANDS = {
    "run": command_run,
    "bench": command_bench,
    "capacity": command_capacity,
    "replay": command_replay,
    "worker": command_worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m load``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and (args.workers is None) != (args.master_bind is None):
        parser.error("--workers N and --master-bind HOST go together")
    if args.command == "run" and args.workers is not None and args.processes > 1:
        parser.error("--workers and --processes exclude each other: remote workers only")
    interrupt_on_termination()
    try:
        return COMMANDS[args.command](args)
    except (HarnessError, LocustError, StackError) as error:
        print(f"python -m load {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(error, BadInput) else EXIT_FAILED
    except KeyboardInterrupt as interruption:  # Ctrl-C, SIGTERM, SIGHUP: all stopped by now
        by = str(interruption) or "Ctrl-C"
        print(f"python -m load {args.command}: interrupted by {by}", file=sys.stderr)
        return interrupted_status(interruption)
