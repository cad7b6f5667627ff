"""Measure one plan: Locust drives it while the servers' CPU and memory are sampled; the
result is one run record."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import replace
from pathlib import Path
from typing import Any

from load.commands.inject import FaultInjector
from load.commands.locust_run import read_clocks, results_path, run_locust
from load.commands.remote import RemoteWorkers
from load.commands.sampling import MachineSampler, ServerSampler
from load.commands.stack import LiveStack
from load.core import faults
from load.core.clock import trust_note
from load.core.plan import Plan, split_target
from load.core.stats import timeline
from load.reporting.record import ServerUsage, Stack, run_record


def measure(
    plan: Plan,
    run_dir: Path,
    *,
    stack: Stack,
    live: LiveStack | None,
    remote: RemoteWorkers | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run ``plan`` (against ``live``'s servers when given, else its own targets), with
    ``remote`` workers if given; ``progress`` watches it (see run_locust)."""
    locust_pids: list[int] = []
    if live is None:
        machine = MachineSampler(lambda: locust_pids)
        with machine:
            tally = run_locust(
                plan, run_dir, remote=remote, progress=progress, on_start=locust_pids.append
            )
        # A server on this machine is not the harness's, yet not "other" work either: its
        # CPU cannot be told apart, so the figure is unknown.
        other, steal = (None, None) if _served_here(plan) else machine.usage(tally.window)
        usage = ServerUsage(other_cpu_cores=other, steal_cores=steal)
        return with_clocks(run_record(plan, tally, stack, usage), read_clocks(run_dir))
    plan = plan.with_targets(live.targets)
    if plan.login != "none":
        # The users bench and capacity made for the stack (LiveStack's accounts).
        assert live.accounts_file is not None, "a logged-in plan on a stack without accounts"
        plan = replace(plan, accounts=str(live.accounts_file))
    stack = replace(stack, software=live.description, backend_software=live.backend_description)
    sampler = ServerSampler(live.processes)
    machine = MachineSampler(
        lambda: [
            *(stats.pid for stats in live.processes()),
            *(stats.pid for stats in live.backend_processes()),
            *locust_pids,
        ]
    )
    backend = ServerSampler(live.backend_processes) if live.backend_processes() else None
    injector = (
        FaultInjector(plan.fault, plan, live, faults.start_file(results_path(run_dir)))
        if plan.fault is not None
        else None
    )
    with (
        sampler,
        machine,
        backend or contextlib.nullcontext(),
        injector or contextlib.nullcontext(),
    ):
        tally = run_locust(
            plan, run_dir, remote=remote, progress=progress, on_start=locust_pids.append
        )
    window = tally.window
    other, steal = machine.usage(window)
    first = window.second(sampler.samples[0].at_ns)
    last = window.second(sampler.samples[-1].at_ns)
    usage = ServerUsage(
        cpu_s=sampler.cpu_between(window.measure_from_ns, window.until_ns),
        backend_cpu_s=(
            backend.cpu_between(window.measure_from_ns, window.until_ns) if backend else None
        ),
        rss_peak_mb=sampler.rss_peak_mb(),
        rss_before_mb=sampler.rss_at(sampler.samples[0].at_ns),
        per_second=sampler.per_second(window, range(first, last + 1)),
        other_cpu_cores=other,
        steal_cores=steal,
    )
    fault = None
    if plan.fault is not None:
        log = injector.log if injector is not None else None
        fault = faults.fault_record(
            plan.fault,
            timeline(tally),
            users=plan.users,
            counters=tally.counters,
            log=log,
            rss=faults.rss_readings(sampler, log, window, plan.fault, plan),
            server_logs=[server.log_text() for server in live.servers],
        )
    return with_clocks(run_record(plan, tally, stack, usage, fault), read_clocks(run_dir))


def _served_here(plan: Plan) -> bool:
    """Whether a target of ``plan`` is on this machine's loopback."""
    for target in plan.targets:
        host = split_target(target)[0]
        if host == "localhost":
            return True
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                return True
    return False


def with_clocks(record: dict[str, Any], clocks: dict[str, Any] | None) -> dict[str, Any]:
    """Remote workers: each one's clock (``clock_workers``, a worker never measured
    included, with a null offset and its ``clock_warning``), the bound on latency accuracy
    they imply (null when unknown), and a plain sentence when a clock was never measured
    or the bound exceeds the p50."""
    if clocks is None:
        return record
    bound = clocks["latency_accuracy_ms"]
    never_measured = [w["worker"] for w in clocks["workers"] if w["clock_offset_ms"] is None]
    record["clock_workers"] = clocks["workers"]
    record["latency_accuracy_ms"] = bound
    record["latency_trust"] = trust_note(
        bound, record["latency_ms"]["p50"], never_measured=never_measured
    )
    return record
