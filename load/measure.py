"""Measure one plan: Locust drives it while the servers' CPU and memory are sampled; the
result is one run record."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from load.locust_run import run_locust
from load.plan import Plan
from load.record import ServerUsage, Stack, run_record
from load.sampling import ServerSampler
from load.stack import LiveStack


def measure(plan: Plan, run_dir: Path, *, stack: Stack, live: LiveStack | None) -> dict[str, Any]:
    """Run ``plan`` (against ``live``'s servers when given, else its own targets)."""
    if live is not None:
        plan = plan.with_targets(live.targets)
    sampler = ServerSampler(live.processes) if live is not None else None
    with sampler or contextlib.nullcontext():
        tally = run_locust(plan, run_dir)
    usage = ServerUsage()
    if sampler is not None:
        window = tally.window
        first = window.second(sampler.samples[0].at_ns)
        last = window.second(sampler.samples[-1].at_ns)
        usage = ServerUsage(
            cpu_s=sampler.cpu_between(window.measure_from_ns, window.until_ns),
            rss_peak_mb=sampler.rss_peak_mb(),
            rss_before_mb=sampler.rss_at(sampler.samples[0].at_ns),
            per_second=sampler.per_second(window, range(first, last + 1)),
        )
    record = run_record(plan, tally, stack, usage)
    record["locust_files"] = str(run_dir)
    return record
