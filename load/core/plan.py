"""One run as a value: its shape, its timing and its targets (no Locust import).

The CLI builds a ``Plan`` once. It reaches Locust as command-line options (``locust_args``),
defined once in ``OPTIONS`` for both the CLI and Locust's own parser (so the web UI shows
the same options with the same defaults), and Locust rebuilds the identical value with
``plan_from_options``. The run record and the report read the same value.

Timing of a run, from the test start (when Locust starts its users)::

    | connect_s | settle_s  | duration_s         | drain_s  |
    connect     send, not    send, measured:      wait for   close
                measured     counted, latency     deliveries
                (warm-up)    and loss

The timeline's second 0 is the start of sending.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from load.core.faultkinds import KINDS
from load.core.logins import HTTP_LOGIN_S, LOGINS
from load.core.scenarios import DEFAULTS, SCENARIOS, default_rooms

SECOND_NS = 1_000_000_000
DEFAULT_DURATION_S = 20.0
DEFAULT_DRAIN_S = 2.0
# A socket the server closed (or that broke) was a member until the client noticed, firmly
# until this long before: a close is seen within a round trip and the client's loop lag,
# not within the drain. Measured and reasoned in load/README.md, "How the counting works".
DEFAULT_CLOSE_GRACE_S = 0.1
# Users connect at this many per second: fast enough for a short warm-up, slow enough that
# Daphne's listen backlog (50) does not overflow, which would show up as 1 s SYN retries in
# connect_ms rather than as what a handshake costs.
SPAWN_RATE = 100.0
# After the last user has been started, its handshake gets this long before sending starts.
CONNECT_SLACK_S = 0.5


# The fault kinds' names (each kind is one object in load/core/faultkinds.py).
FAULT_KINDS = tuple(KINDS)
# The faults that act on Redis, so only on the Redis layers.
REDIS_FAULTS = tuple(name for name, kind in KINDS.items() if kind.acts_on_redis)
# The faults that act on the server behind the layer, so only where the harness started it.
BACKEND_FAULTS = tuple(name for name, kind in KINDS.items() if kind.breaks_backend)
DEFAULT_FAULT_AT_S = 5.0
DEFAULT_FAULT_FOR_S = 3.0
DEFAULT_SLOW_SHARE = 0.1


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of ``ws://HOST:PORT`` (brackets removed from an IPv6 host)."""
    parts = urlsplit(target)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"target must look like ws://HOST:PORT, got {target!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"target has a bad port: {target!r}") from None
    return parts.hostname, port


def new_run_id() -> str:
    """A short id that makes this run's room names unique on a shared server."""
    return secrets.token_hex(3)


@dataclass(frozen=True)
class Shape:
    """What another client replays: ``users`` sockets spread round robin over ``rooms``
    rooms, each sending ``rate`` messages per second."""

    users: int
    rooms: int
    rate: float

    def room_sizes(self) -> list[int]:
        base, extra = divmod(self.users, self.rooms)
        return [base + 1] * extra + [base] * (self.rooms - extra)

    @property
    def messages_per_s(self) -> float:
        return self.users * self.rate

    @property
    def deliveries_per_s(self) -> float:
        """Offered deliveries per second: every message reaches every member of its room,
        the sender included."""
        return self.rate * sum(size * size for size in self.room_sizes())


@dataclass(frozen=True)
class Fault:
    """A fault the harness injects into a run: ``kind`` at ``at_s`` seconds from the start
    of sending, for ``for_s`` seconds; ``slow_share`` of the sockets for slow-reader."""

    kind: str
    at_s: float = DEFAULT_FAULT_AT_S
    for_s: float = DEFAULT_FAULT_FOR_S
    slow_share: float = DEFAULT_SLOW_SHARE

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}: use one of {', '.join(FAULT_KINDS)}")
        if not 0 < self.slow_share <= 1:
            raise ValueError(f"--slow-share {self.slow_share:g} must be more than 0, at most 1")

    @property
    def end_s(self) -> float:
        return self.at_s + self.for_s


@dataclass(frozen=True)
class Plan:
    """One run, identical in the CLI, in every Locust process, in the record and report."""

    scenario: str
    shape: Shape
    targets: tuple[str, ...]  # ws://HOST:PORT of each server; users are spread across them
    duration_s: float = DEFAULT_DURATION_S  # the measured send window
    settle_s: float = 0.0  # sending before the measured window: the server warms up
    drain_s: float = DEFAULT_DRAIN_S  # after sending, before closing; also each socket's grace
    close_grace_s: float = DEFAULT_CLOSE_GRACE_S  # the grace of a socket the server closed
    connect_s: float = 0.0  # from the test start to the first send: every user connects
    message_bytes: int = 0  # pad each chat message to about this many bytes (0: no padding)
    processes: int = 1  # Locust load processes on this machine
    run_id: str = field(default_factory=new_run_id)
    fault: Fault | None = None  # injected by `bench` (load/commands/inject.py)
    login: str = "none"  # none, http or sessions (load/core/logins.py)
    accounts: str = ""  # the accounts file logged-in users read (load/core/logins.py)
    connect_rate: float = SPAWN_RATE  # users connecting per second (Locust's spawn rate)
    deflate: bool = False  # the client offers permessage-deflate, as browsers do

    @property
    def users(self) -> int:
        return self.shape.users

    @property
    def rooms(self) -> int:
        return self.shape.rooms

    @property
    def rate(self) -> float:
        return self.shape.rate

    @property
    def spawn_rate(self) -> float:
        return min(float(self.users), self.connect_rate)

    @property
    def send_s(self) -> float:
        """Seconds of sending: the settle period and the measured window."""
        return self.settle_s + self.duration_s

    @property
    def total_s(self) -> float:
        return self.connect_s + self.send_s + self.drain_s

    def room_name(self, index: int) -> str:
        """Room ``index`` (0 ≤ index < rooms). Isolation uses names that differ only in a
        last character (x-1, x-1., x-1_), so a server that normalises or prefix-matches
        group names shows up as leaks."""
        if self.scenario == "isolation":
            return f"{self.run_id}-{index // 3}{('', '.', '_')[index % 3]}"
        return f"{self.run_id}-{index}"

    def room_of_user(self, user_index: int, session: int = 0) -> str:
        # churn moves a user to the next room each session, so groups keep changing
        return self.room_name((user_index + session) % self.rooms)

    def target_of_user(self, user_index: int) -> str:
        # Members of one room (user_index = room, room + rooms, ...) land on different
        # servers, so cross-server delivery through the layer is always exercised.
        return self.targets[(user_index // self.rooms) % len(self.targets)]

    def with_shape(self, shape: Shape) -> Plan:
        """The same run at another shape, with a fresh run id and the connect time it needs."""
        return build_plan(
            self.scenario,
            shape,
            self.targets,
            duration_s=self.duration_s,
            settle_s=self.settle_s,
            drain_s=self.drain_s,
            close_grace_s=self.close_grace_s,
            message_bytes=self.message_bytes,
            processes=self.processes,
            fault=self.fault,
            login=self.login,
            accounts=self.accounts,
            connect_rate=self.connect_rate,
            deflate=self.deflate,
        )

    def with_targets(self, targets: Sequence[str]) -> Plan:
        return replace(self, targets=tuple(targets))

    def again(self) -> Plan:
        """The same plan with a fresh run id: its rooms are new."""
        return replace(self, run_id=new_run_id())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def locust_args(self) -> list[str]:
        """The options that make Locust's side rebuild this plan (``plan_from_options``),
        plus Locust's own user count, spawn rate and host."""
        args = ["-u", str(self.users), "-r", repr(self.spawn_rate), "--host", self.targets[0]]
        for option in OPTIONS:
            value = option.read(self)
            if option.locust and value is not None:  # None: not part of this run
                args += [option.flag, option.format(value)]
        return args


def build_plan(
    scenario: str,
    shape: Shape,
    targets: Sequence[str],
    *,
    duration_s: float = DEFAULT_DURATION_S,
    settle_s: float = 0.0,
    drain_s: float = DEFAULT_DRAIN_S,
    close_grace_s: float = DEFAULT_CLOSE_GRACE_S,
    message_bytes: int = 0,
    processes: int = 1,
    run_id: str | None = None,
    fault: Fault | None = None,
    login: str = "none",
    accounts: str = "",
    connect_rate: float = SPAWN_RATE,
    deflate: bool = False,
) -> Plan:
    """A plan whose connect time fits its users (churn connects while it sends) and, with
    ``login="http"``, their logins."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    if shape.rooms > shape.users:
        raise ValueError(
            f"--rooms {shape.rooms} is more than --users {shape.users}: rooms would be empty"
        )
    if scenario == "idle":
        shape = replace(shape, rate=0.0)
    elif shape.rate <= 0:
        raise ValueError(f"--rate must be more than 0 for the {scenario} scenario")
    if fault is not None:
        if fault.end_s >= settle_s + duration_s:
            raise ValueError(
                f"--fault-at {fault.at_s:g} + --fault-for {fault.for_s:g} must end before "
                f"sending does ({settle_s + duration_s:g} s): the recovery is part of the run"
            )
        if scenario not in ("fanout", "isolation"):
            raise ValueError(f"--fault needs users that stay (fanout or isolation), not {scenario}")
    if login not in LOGINS:
        raise ValueError(f"unknown --login {login!r}: use one of {', '.join(LOGINS)}")
    spawn_rate = min(float(shape.users), connect_rate)
    connect_s = 0.0 if scenario == "churn" else round(shape.users / spawn_rate + CONNECT_SLACK_S, 2)
    if login == "http" and scenario != "churn":
        connect_s = round(connect_s + shape.users * HTTP_LOGIN_S, 2)
    return Plan(
        scenario=scenario,
        shape=shape,
        targets=tuple(targets),
        duration_s=duration_s,
        settle_s=settle_s,
        drain_s=drain_s,
        close_grace_s=close_grace_s,
        connect_s=connect_s,
        message_bytes=message_bytes,
        processes=processes,
        run_id=run_id or new_run_id(),
        fault=fault,
        login=login,
        accounts=accounts,
        connect_rate=connect_rate,
        deflate=deflate,
    )


def default_shape(
    scenario: str, users: int | None = None, rooms: int | None = None, rate: float | None = None
) -> Shape:
    """The scenario's default shape, with whatever the user gave instead."""
    defaults = DEFAULTS[scenario]
    users = users or defaults["users"]
    return Shape(
        users=users,
        rooms=rooms or default_rooms(scenario, users),
        rate=defaults["rate"] if rate is None else rate,
    )


# ---------------------------------------------------------------- option values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number ≥ 0")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def fault_kind(text: str) -> str:
    if text not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(FAULT_KINDS)})"
        )
    return text


def login_mode(text: str) -> str:
    if text not in LOGINS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(LOGINS)})"
        )
    return text


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from on, off)")
    return text == "on"


def share(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction, at most 1 (e.g. 0.1)")
    return value


def scenario_name(text: str) -> str:
    if text not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(SCENARIOS)})"
        )
    return text


def target_url(text: str) -> str:
    try:
        split_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.rstrip("/")


def target_list(text: str) -> tuple[str, ...]:
    targets = tuple(target_url(part.strip()) for part in text.split(",") if part.strip())
    if not targets:
        raise argparse.ArgumentTypeError("give at least one ws://HOST:PORT target")
    return targets


@dataclass(frozen=True)
class Option:
    """One option of a run, defined once for the CLI and for Locust's parser."""

    flag: str
    parse: Callable[[str], Any]
    help: str
    read: Callable[[Plan], Any]  # the plan's value, for locust_args
    default: Any = None  # None: the scenario's default (see default_shape)
    metavar: str | None = None
    cli: bool = True  # offered by `python -m load run/bench/capacity`
    locust: bool = True  # passed to Locust (and shown in its web UI)
    format: Callable[[Any], str] = str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _scenario_help() -> str:
    return "; ".join(
        f"{name}: {d['users']} users, "
        f"{'users/2' if d['rooms'] is None else d['rooms']} rooms, {d['rate']:g} msg/s"
        for name, d in DEFAULTS.items()
    )


OPTIONS: tuple[Option, ...] = (
    Option(
        "--scenario",
        scenario_name,
        "fanout: rooms of users all sending; isolation: many small rooms whose names "
        "differ in one character, any cross-room delivery is a leak; churn: users "
        "connect, send, leave, repeat; idle: open sockets only (default fanout)",
        read=lambda plan: plan.scenario,
        default="fanout",
    ),
    Option(
        "--users",
        positive_int,
        f"simultaneous users (sockets); defaults: {_scenario_help()}",
        read=lambda plan: plan.users,
        locust=False,  # Locust's own -u
    ),
    Option(
        "--rooms",
        positive_int,
        "rooms the users are spread over, round robin",
        read=lambda plan: plan.rooms,
    ),
    Option(
        "--rate",
        non_negative_float,
        "messages each user sends per second, at a random phase with ±50 %% jittered gaps",
        read=lambda plan: plan.rate,
        metavar="MSGS_PER_USER_PER_S",
        format=repr,
    ),
    Option(
        "--duration",
        positive_float,
        "seconds of measured sending (idle: of holding sockets open) (default %(default)s)",
        read=lambda plan: plan.duration_s,
        default=DEFAULT_DURATION_S,
        metavar="SECONDS",
        format=repr,
    ),
    Option(
        "--settle",
        non_negative_float,
        "seconds of sending before the measured window, not counted: the server warms up "
        "(default %(default)s)",
        read=lambda plan: plan.settle_s,
        default=0.0,
        metavar="SECONDS",
        format=repr,
    ),
    Option(
        "--drain",
        non_negative_float,
        "after sending stops, wait this long for deliveries before closing; a delivery "
        "later than this counts as lost (default %(default)s)",
        read=lambda plan: plan.drain_s,
        default=DEFAULT_DRAIN_S,
        metavar="SECONDS",
        format=repr,
    ),
    Option(
        "--close-grace",
        non_negative_float,
        "a socket the server closed (or that broke) expected, without doubt, what was sent "
        "until this long before the client noticed; what was sent after is 'unconfirmed' "
        "if it never arrived. Raise it for workers far from the server (default %(default)s)",
        read=lambda plan: plan.close_grace_s,
        default=DEFAULT_CLOSE_GRACE_S,
        metavar="SECONDS",
        format=repr,
    ),
    Option(
        "--connect",
        non_negative_float,
        "seconds from the test start before anyone sends, so that every user has joined "
        "(default 0; python -m load sets it from the user count)",
        read=lambda plan: plan.connect_s,
        default=0.0,
        metavar="SECONDS",
        cli=False,
        format=repr,
    ),
    Option(
        "--message-bytes",
        non_negative_int,
        "pad each chat message to about N bytes (default 0: no padding, about 70 bytes)",
        read=lambda plan: plan.message_bytes,
        default=0,
        metavar="N",
    ),
    Option(
        "--login",
        login_mode,
        "none: anonymous users, the tutorial's frames; http: each user logs in through the "
        "login form first, as a browser does (about 0.3 s of server CPU each, so for up to a "
        "few hundred users); sessions: each connects with a session written into the "
        "database in bulk, for thousands. bench and capacity make the users; run needs "
        "--accounts (default none)",
        read=lambda plan: plan.login,
        default="none",
    ),
    Option(
        "--accounts",
        str,
        'with --login: a JSON file {"password": "...", "usernames": [...], "sessions": '
        '{"<username>": "<session key>"}} of the users to log in as (bench and capacity '
        "write their own)",
        read=lambda plan: plan.accounts or None,
        default="",
        metavar="FILE",
        cli=False,
    ),
    Option(
        "--connect-rate",
        positive_float,
        "users connecting per second (default %(default)s: Daphne's listen backlog of 50 "
        "overflows into 1 s SYN retries much faster; raise it for tens of thousands of "
        "sockets on a server with a longer backlog)",
        read=lambda plan: plan.connect_rate,
        default=SPAWN_RATE,
        metavar="PER_S",
        format=repr,
    ),
    Option(
        "--deflate",
        on_off,
        "on: the client offers permessage-deflate in its handshake, as browsers do, and "
        "the server decides (the record counts the sockets that negotiated it); off: it "
        "offers nothing, as before (default off)",
        read=lambda plan: "on" if plan.deflate else "off",
        default=False,
        metavar="on|off",
    ),
    Option(
        "--processes",
        positive_int,
        "Locust load processes on this machine (>1: a master and N workers; counts "
        "stay exact) (default 1)",
        read=lambda plan: plan.processes,
        default=1,
        locust=False,  # Locust's own --processes, added by the runner
    ),
    Option(
        "--run-id",
        str,
        "prefix of the room names (default: random per test)",
        read=lambda plan: plan.run_id,
        default="",
        cli=False,
    ),
    # The fault options: offered by `bench` alone (add_fault_options), read by Locust for
    # slow-reader (which sockets stop reading, and when).
    Option(
        "--fault",
        fault_kind,
        "inject a fault into the services bench started: redis-restart, redis-stall, "
        "server-kill, slow-reader, redis-failover, backend-restart (the layer's own "
        "server: Redis, PostgreSQL, RabbitMQ or NATS) (default: none)",
        read=lambda plan: plan.fault.kind if plan.fault else None,
        metavar="KIND",
        cli=False,
    ),
    Option(
        "--fault-at",
        non_negative_float,
        "seconds from the start of sending to the fault (default %(default)s)",
        read=lambda plan: plan.fault.at_s if plan.fault else None,
        default=DEFAULT_FAULT_AT_S,
        metavar="SECONDS",
        cli=False,
        format=repr,
    ),
    Option(
        "--fault-for",
        positive_float,
        "how long the fault lasts, in seconds (default %(default)s)",
        read=lambda plan: plan.fault.for_s if plan.fault else None,
        default=DEFAULT_FAULT_FOR_S,
        metavar="SECONDS",
        cli=False,
        format=repr,
    ),
    Option(
        "--slow-share",
        share,
        "slow-reader: the share of sockets that stop reading (default %(default)s)",
        read=lambda plan: plan.fault.slow_share if plan.fault else None,
        default=DEFAULT_SLOW_SHARE,
        metavar="FRACTION",
        cli=False,
        format=repr,
    ),
    Option(
        "--targets",
        target_list,
        "comma-separated ws://HOST:PORT servers, users spread across them (default: --host)",
        read=lambda plan: plan.targets,
        default="",
        cli=False,
        format=",".join,
    ),
)


def add_options(parser: Any, *, for_locust: bool) -> None:
    """Add the run options to an argparse (or Locust's configargparse) parser."""
    for option in OPTIONS:
        if not (option.locust if for_locust else option.cli):
            continue
        extra = {"include_in_web_ui": True} if for_locust else {}
        parser.add_argument(
            option.flag,
            # Locust's web UI hands form values over as strings, so Locust's side parses
            # them in plan_from_options instead.
            type=None if for_locust else option.parse,
            default=option.default,
            metavar=option.metavar,
            help=option.help,
            **extra,
        )


FAULT_FLAGS = ("--fault", "--fault-at", "--fault-for", "--slow-share")


def add_fault_options(parser: Any) -> None:
    """The fault options, for `python -m load bench` (defined once, in OPTIONS)."""
    add_named_options(parser, FAULT_FLAGS)


def add_named_options(parser: Any, flags: Sequence[str]) -> None:
    """Options of OPTIONS that only some commands offer (cli=False), by flag."""
    for option in OPTIONS:
        if option.flag in flags:
            parser.add_argument(
                option.flag,
                type=option.parse,
                default=option.default,
                metavar=option.metavar,
                help=option.help,
            )


def _value(options: Any, option: Option) -> Any:
    value = getattr(options, option.dest, option.default)
    if isinstance(value, str) and option.parse is not str:
        if value == "":
            return option.default
        try:
            return option.parse(value)
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"{option.flag}: {error}") from None
    return value


def plan_from_options(options: Any, *, users: int, targets: Sequence[str] | None = None) -> Plan:
    """The plan the options describe (either parser's namespace, or Locust's).

    Raises ValueError with a one-line reason.
    """
    values: Mapping[str, Any] = {option.dest: _value(options, option) for option in OPTIONS}
    scenario = values["scenario"]
    shape = default_shape(scenario, users, values["rooms"], values["rate"])
    fault = None
    if values["fault"]:
        fault = Fault(
            values["fault"], values["fault_at"], values["fault_for"], values["slow_share"]
        )
    run_targets = targets or values["targets"]
    if not run_targets:
        raise ValueError("give --host ws://HOST:PORT (or --targets)")
    plan = build_plan(
        scenario,
        shape,
        run_targets,
        duration_s=values["duration"],
        settle_s=values["settle"],
        drain_s=values["drain"],
        close_grace_s=values["close_grace"],
        message_bytes=values["message_bytes"],
        # Locust's own --processes shares the name: None when unset, -1 for "one per CPU".
        processes=values["processes"] if (values["processes"] or 0) > 0 else 1,
        run_id=values["run_id"] or None,
        fault=fault,
        login=values["login"],
        accounts=values["accounts"],
        connect_rate=values["connect_rate"],
        deflate=values["deflate"],
    )
    if values["connect"]:
        plan = replace(plan, connect_s=values["connect"])
    return plan
