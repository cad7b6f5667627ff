"""The harness's side of a fault (``python -m load bench --fault KIND``): refusing a fault
that cannot apply to a stack, and breaking and mending the services the harness started.

``check_fault`` asks the kind (load/core/faultkinds.py) about each stack; ``FaultInjector``
is a thread that waits for the run's start of sending (announced by the Locust side,
load/inlocust/slow_reader.py's ``announce_start``), then has the kind break the services
of the LiveStack at ``at_s`` and mends them ``for_s`` seconds later. What it did is its
``InjectorLog``, which the accounting (load/core/faults.py) turns into the record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness import service_of
from load.core.faultkinds import KINDS
from load.core.faults import InjectorLog
from load.core.plan import SECOND_NS, Fault, Plan

if TYPE_CHECKING:
    from load.commands.stack import LiveStack
    from load.reporting.record import Stack

# The harness waits this long past the plan's connect time for Locust to announce the
# start of sending (Locust's own start-up, a busy machine).
START_WAIT_S = 60.0
START_POLL_S = 0.05


def check_fault(
    fault: Fault, stacks: Iterable[Stack], environ: Mapping[str, str] | None = None
) -> None:
    """ValueError (one line) when ``fault`` cannot apply to one of ``stacks``: a Redis
    fault on another layer, a backend fault where there is no backend or where the layer's
    URL variable in ``environ`` (default: this process's) points at a server the harness
    did not start and must not break."""
    environ = os.environ if environ is None else environ
    kind = KINDS[fault.kind]
    for stack in stacks:
        assert stack.layer is not None  # a stack the harness starts names its layer
        refusal = kind.refusal(stack, service_of(stack.layer), environ)
        if refusal is not None:
            raise ValueError(refusal)


class FaultInjector:
    """``with FaultInjector(fault, plan, live, start_path):`` around the Locust run: a
    thread waits for the start of sending, sleeps until ``at_s``, breaks, sleeps
    ``for_s``, mends. On exit the service is mended whatever happened (a run that ended
    early must not leave Redis stopped)."""

    def __init__(self, fault: Fault, plan: Plan, live: LiveStack, start_path: Path) -> None:
        self.fault = fault
        self.plan = plan
        self.live = live
        self.start_path = start_path
        self.log = InjectorLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._mend: Callable[[], None] | None = None

    def __enter__(self) -> FaultInjector:
        self.start_path.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._mend is not None:  # the run ended inside the fault window
            self._do_mend()

    def sending_starts_ns(self) -> int | None:
        """Wall-clock ns of the start of sending, once Locust announced its test start."""
        deadline = time.monotonic() + self.plan.connect_s + START_WAIT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                test_start_ns = int(self.start_path.read_text())
            except (OSError, ValueError):
                time.sleep(START_POLL_S)  # polling for Locust's file; the deadline bounds it
                continue
            return test_start_ns + round(self.plan.connect_s * SECOND_NS)
        return None

    def _wait_until_ns(self, at_ns: int) -> bool:
        """Sleep until ``at_ns``; False when the run ended first."""
        return not self._stop.wait(max(0.0, (at_ns - time.time_ns()) / 1e9))

    def _run(self) -> None:
        try:
            start_ns = self.sending_starts_ns()
            if start_ns is None:
                self.log.error = "Locust never announced the start of sending"
                return
            at_ns = start_ns + round(self.fault.at_s * SECOND_NS)
            if not self._wait_until_ns(at_ns):
                self.log.error = "the run ended before the fault's time"
                return
            self.log.began_ns = time.time_ns()
            self._mend = self._break()
            self.log.events.append(("broken", time.time_ns()))
            if self._wait_until_ns(at_ns + round(self.fault.for_s * SECOND_NS)):
                self._do_mend()
        except Exception as error:  # reported in the record: a broken injector is a result
            self.log.error = f"{type(error).__name__}: {error}"

    def _do_mend(self) -> None:
        mend, self._mend = self._mend, None
        if mend is None:
            return
        started = time.monotonic()
        try:
            mend()
        except Exception as error:
            self.log.error = f"mending failed: {type(error).__name__}: {error}"
        self.log.mend_s = round(time.monotonic() - started, 3)
        self.log.ended_ns = time.time_ns()
        self.log.events.append(("mended", self.log.ended_ns))

    def _break(self) -> Callable[[], None] | None:
        """Inject the fault (the kind knows how); returns what mends it."""
        return KINDS[self.fault.kind].inject(self.live, self.log)
