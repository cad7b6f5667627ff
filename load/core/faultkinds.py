"""The fault kinds (``bench --fault KIND``), each one object: what it does, what it refuses,
how it is injected, what it records beyond the common fields, and how the report shows it.

``KINDS`` maps each name to its kind, in the order the CLI lists them; load/core/plan.py
derives ``FAULT_KINDS``, ``REDIS_FAULTS`` and ``BACKEND_FAULTS`` from it. The machinery
that asks the kinds lives by the process that runs it:

* load/commands/inject.py (``python -m load bench``): ``check_fault`` asks each kind's
  ``refusal``; ``FaultInjector`` calls its ``inject`` at ``at_s`` and the mend it returned
  ``for_s`` seconds later;
* load/inlocust/slow_reader.py (inside Locust): the sockets of a kind that
  ``stops_reading`` stop reading in the fault's window;
* load/core/faults.py (pure): the accounting, whose ``fault_record`` adds the kind's own
  fields (``recorded``); load/reporting/report.py's ``fault_line`` and
  studies/faults/fault_table.py show them (``report_parts``, ``table_notes``).

Pure: no import of gevent, Locust, the harness or load.commands, and none of
load/core/plan.py either (plan.py imports this module). A kind only calls methods on the
objects handed to it (the LiveStack, the harness's service of a layer).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # types only, never imported at run time
    from load.core.faults import InjectorLog, RssReadings
    from load.core.plan import Fault
    from load.reporting.record import Stack

Mend = Callable[[], None]
Record = Mapping[str, Any]
Rows = Sequence[Mapping[str, Any]]
REDIS_LAYERS = ("redis", "redis-pubsub")


class NothingToBreak(Exception):
    """The fault's target was not there to break (a server that had already exited)."""


def require_running(what: str, process: Any) -> None:
    """NothingToBreak unless ``process`` (a Popen) is running: signalling a process that
    has exited does nothing, and the run would then be recorded as if it had a fault."""
    code = None if process is None else process.poll()
    if process is None or code is not None:
        raise NothingToBreak(f"{what} had already exited (code {code}) before the fault")


def window_seconds(fault: Fault) -> range:
    """The timeline seconds that overlap the fault window."""
    return range(math.floor(fault.at_s), math.ceil(fault.end_s))


class FaultKind:
    """One kind of fault. A subclass sets ``name`` and ``description`` (what happens at
    ``at_s``, and then at ``at_s + for_s``) and overrides what applies to it."""

    name: ClassVar[str]
    description: ClassVar[str]
    acts_on_redis: ClassVar[bool] = False  # so only on the Redis layers (REDIS_FAULTS)
    # Breaks the server behind the layer, so only where the harness started it
    # (BACKEND_FAULTS).
    breaks_backend: ClassVar[bool] = False
    needs_sentinels: ClassVar[bool] = False  # bench starts Redis under Sentinel for it
    stops_reading: ClassVar[bool] = False  # the Locust side acts: some sockets stop reading

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        """Why this fault cannot apply to ``stack`` (one line), or None. ``service`` is the
        harness's ``service_of(stack.layer)`` (None: the layer has no server behind it);
        ``environ`` holds the layers' URL variables."""
        return None

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        """Break the services of ``live`` (a LiveStack) now; returns what mends them.
        Raises NothingToBreak when the target is not running."""
        raise NotImplementedError

    def recorded(
        self,
        fault: Fault,
        rows: Rows,
        *,
        counters: Mapping[str, int],
        log: InjectorLog | None,
        rss: RssReadings,
    ) -> dict[str, Any]:
        """The fields of the run's ``fault`` object beyond the common ones."""
        return {}

    def report_parts(self, record: Record) -> list[str]:
        """This kind's parts of the report's one line on the fault (report.fault_line)."""
        return []

    def table_notes(self, record: Record) -> list[str]:
        """What the faults table (studies/faults/fault_table.py) notes under it, per run."""
        return []


def _not_redis(name: str, stack: Stack) -> str | None:
    if stack.layer in REDIS_LAYERS:
        return None
    return f"--fault {name} acts on Redis: use --layers redis,redis-pubsub (not {stack.layer})"


def _not_the_harness_server(name: str, service: Any, environ: Mapping[str, str]) -> str | None:
    """The layer's URL variable names a server the harness did not start: not to break."""
    if not (service and environ.get(service.url_variable, "").strip()):
        return None
    return (
        f"--fault {name} breaks only servers the harness starts, and "
        f"{service.url_variable} names your own: unset it to let bench start one"
    )


def _stop_backend(live: Any) -> Mend:
    server = live.backend.server
    require_running(f"{server.service} server on port {server.port}", server.process)
    server.shutdown()
    return lambda: server.start_again()


class RedisRestart(FaultKind):
    name = "redis-restart"
    description = (
        "redis-server stops (SIGTERM; with no persistence configured that is SHUTDOWN "
        "NOSAVE); it starts again on its port."
    )
    acts_on_redis = True
    breaks_backend = True

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        return _not_the_harness_server(self.name, service, environ) or _not_redis(self.name, stack)

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        return _stop_backend(live)


class RedisStall(FaultKind):
    name = "redis-stall"
    description = "SIGSTOP to redis-server, its connections stay open and nothing answers; SIGCONT."
    acts_on_redis = True
    breaks_backend = True

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        return _not_the_harness_server(self.name, service, environ) or _not_redis(self.name, stack)

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        redis = live.backend.server
        require_running(f"redis-server on port {redis.port}", redis.process)
        redis.pause()
        return redis.resume


class ServerKill(FaultKind):
    name = "server-kill"
    description = (
        "SIGKILL to the first chat server (its whole process group); it starts again on its "
        "port. Under Gunicorn (gunicorn-asgi, gunicorn-uvicorn: the workers behind one port) "
        "SIGKILL to its oldest worker, which the arbiter replaces by itself at once; the "
        "mend waits until every worker serves again."
    )

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        if stack.layer == "inmemory" or stack.servers >= 2:
            return None
        return (
            f"--fault server-kill on {stack.layer} needs --servers 2 or more, so that the "
            "users of the other server (Gunicorn: worker) keep chatting across the layer"
        )

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        server = live.servers[0]
        require_running(f"{server.asgi} on port {server.port}", server.process)
        if server.server.arbiter:
            # A Gunicorn worker's crash, the arbiter's own business: it forks a new one at
            # once, so --fault-for does not keep it away. Killing the arbiter instead would
            # be the same crash as a Daphne's, of every worker at once.
            killed = server.kill_worker()
            return lambda: server.wait_for_workers(replaced=killed)
        server.kill()
        return lambda: server.start_again()


class SlowReader(FaultKind):
    name = "slow-reader"
    description = "``slow_share`` of the sockets stop reading (the Locust side); they read again."
    stops_reading = True

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        # The Locust side stops reading (load/inlocust/slow_reader.py); nothing to do to
        # the services.
        return lambda: None

    def recorded(
        self,
        fault: Fault,
        rows: Rows,
        *,
        counters: Mapping[str, int],
        log: InjectorLog | None,
        rss: RssReadings,
    ) -> dict[str, Any]:
        return {"slow_reader": self.findings(fault, rows, counters, rss)}

    @staticmethod
    def findings(
        fault: Fault, rows: Rows, counters: Mapping[str, int], rss: RssReadings
    ) -> dict[str, Any]:
        """Server growth per slow socket, and whether everyone else was delayed: the p50
        of a second's deliveries is a normal reader's while slow readers are under half."""
        # Here, not at the top: stats imports plan, which imports this module.
        from load.core.stats import median_of_known

        slow = counters.get("slow_sockets", 0)
        inside = set(window_seconds(fault))
        before = [row["p50_ms"] for row in rows if row["t_s"] < fault.at_s and row.get("p50_ms")]
        during = [row["p50_ms"] for row in rows if row["t_s"] in inside and row.get("p50_ms")]
        growth = None if rss.peak is None or rss.before is None else round(rss.peak - rss.before, 1)
        return {
            "slow_sockets": slow,
            "server_rss_growth_mb": growth,
            "server_kb_per_slow_socket": (
                round(growth * 1024 / slow, 1) if growth is not None and slow else None
            ),
            "kernel_buffer_kb_per_socket": (
                None if rss.buffer_bytes is None else round(rss.buffer_bytes / 1024)
            ),
            "buffers_full_after_s": rss.buffers_full_s,
            "server_rss_growth_mb_per_s": rss.growth_mb_per_s,
            "p50_ms_before": median_of_known(before, 3),
            "p50_ms_in_window": median_of_known(during, 3),
        }

    def report_parts(self, record: Record) -> list[str]:
        slow = record.get("slow_reader")
        if not slow:
            return []
        return [
            f"{slow['slow_sockets']} slow sockets, +{slow['server_rss_growth_mb']} MiB "
            f"({slow['server_kb_per_slow_socket']} KiB each), "
            + _growth_part(slow)
            + f"p50 {slow['p50_ms_before']} → {slow['p50_ms_in_window']} ms"
        ]

    def table_notes(self, record: Record) -> list[str]:
        slow = record.get("slow_reader")
        if not slow:
            return []
        return [
            f"{slow['slow_sockets']} slow, +{slow['server_rss_growth_mb']} MiB "
            f"({slow['server_kb_per_slow_socket']} KiB/slow socket), p50 "
            f"{slow['p50_ms_before']} -> {slow['p50_ms_in_window']} ms"
        ]


def _growth_part(slow: Mapping[str, Any]) -> str:
    """The servers' growth per second once the kernel's buffers were full, if measured."""
    if slow.get("server_rss_growth_mb_per_s") is None:
        return ""
    return (
        f"+{slow['server_rss_growth_mb_per_s']} MiB/s once the kernel's "
        f"{slow['kernel_buffer_kb_per_socket']} KiB per socket filled "
        f"({slow['buffers_full_after_s']} s in), "
    )


class RedisFailover(FaultKind):
    name = "redis-failover"
    description = (
        "SIGKILL to the primary that Sentinel manages, a replica is promoted; the old "
        "primary starts again (and Sentinel makes it a replica)."
    )
    acts_on_redis = True
    breaks_backend = True
    needs_sentinels = True
    FAILOVER_TIMEOUT_S: ClassVar[float] = 30.0

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        # No check of the layer's URL variable: it always starts a Sentinel set of its own.
        return _not_redis(self.name, stack)

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        sentinels = live.backend.sentinels
        killed = sentinels.kill_primary()
        started = time.monotonic()
        sentinels.wait_for_failover(killed, timeout=self.FAILOVER_TIMEOUT_S)
        log.failover_s = round(time.monotonic() - started, 3)  # kill to a promoted replica
        return lambda: killed.start_again()

    def recorded(
        self,
        fault: Fault,
        rows: Rows,
        *,
        counters: Mapping[str, int],
        log: InjectorLog | None,
        rss: RssReadings,
    ) -> dict[str, Any]:
        return {"failover_s": log.failover_s if log is not None else None}

    def report_parts(self, record: Record) -> list[str]:
        if record.get("failover_s") is None:
            return []
        return [f"failover {record['failover_s']:g} s"]

    def table_notes(self, record: Record) -> list[str]:
        if record.get("failover_s") is None:
            return []
        return [f"failover {record['failover_s']} s"]


class BackendRestart(FaultKind):
    name = "backend-restart"
    description = (
        "the layer's own server (redis-server, PostgreSQL, RabbitMQ, nats-server or "
        "valkey-server) stops "
        "cleanly; it starts again on its port with its data directory (``mend_s`` in the "
        "record: how long until it answered; RabbitMQ takes seconds)."
    )
    breaks_backend = True

    def refusal(self, stack: Stack, service: Any, environ: Mapping[str, str]) -> str | None:
        if service is None:
            # InMemory lives in the chat's process, the SQLite layer in a file.
            return (
                f"--fault backend-restart restarts the server behind the layer, and "
                f"{stack.layer} has none: use --layers "
                "redis,redis-pubsub,postgres,rabbitmq,nats,valkey"
            )
        return _not_the_harness_server(self.name, service, environ)

    def inject(self, live: Any, log: InjectorLog) -> Mend:
        return _stop_backend(live)

    def recorded(
        self,
        fault: Fault,
        rows: Rows,
        *,
        counters: Mapping[str, int],
        log: InjectorLog | None,
        rss: RssReadings,
    ) -> dict[str, Any]:
        # from the start of mending to the service answering
        return {"mend_s": log.mend_s if log is not None else None}

    def report_parts(self, record: Record) -> list[str]:
        if record.get("mend_s") is None:
            return []
        return [f"its server answered {record['mend_s']:g} s after the window"]


KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        RedisRestart(),
        RedisStall(),
        ServerKill(),
        SlowReader(),
        RedisFailover(),
        BackendRestart(),
    )
}
