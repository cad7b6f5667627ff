"""``python -m load bench``: the same plan on each stack, side by side, ``repeat`` times."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from load.commands.machine import MachineLog
from load.commands.measure import measure
from load.commands.stack import LiveStack, accounts_for
from load.core.faultkinds import KINDS
from load.core.plan import Plan
from load.reporting.record import Stack


def bench(
    plan: Plan,
    stacks: Sequence[Stack],
    *,
    repeat: int,
    out: Path,
    on_record: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
    progress: Callable[[str], Any] | None = None,
    machine: MachineLog | None = None,
) -> list[dict[str, Any]]:
    """One run per stack and repeat, each on fresh servers; ``on_record`` sees each record
    as soon as it exists (so a later failure keeps what is done). ``progress(label)``
    gives the live watcher of each run (load/commands/progress.py); ``machine`` takes the speed
    index before and after each run."""
    records = []
    for number in range(1, repeat + 1):
        for stack in stacks:
            label = f"{stack.label}-{plan.scenario}" + (f"-{number}" if repeat > 1 else "")
            run_dir = out / "runs" / label
            say(f"{label}: starting {stack.servers} {stack.asgi} ({stack.layer}, {stack.consumer})")
            sentinel = plan.fault is not None and KINDS[plan.fault.kind].needs_sentinels
            calibrated = machine.around(label) if machine else contextlib.nullcontext()
            with (
                calibrated,
                LiveStack(
                    stack, run_dir / "servers", sentinel=sentinel, accounts=accounts_for(plan)
                ) as live,
            ):
                record = measure(
                    plan.again(),
                    run_dir,
                    stack=stack,
                    live=live,
                    progress=progress(label) if progress else None,
                )
            record["locust_files"] = f"runs/{label}/"
            records.append(record)
            on_record(record)
    return records
