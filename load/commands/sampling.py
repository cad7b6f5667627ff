"""CPU time and memory sampled in a thread while a run goes on: the servers under test
(``ServerSampler``) and the whole machine (``MachineSampler``: how busy it was with work
the harness did not start).

Readings come from psutil (``services.ProcessStats`` for the servers). A value that could
not be read is None, never 0, and so is any figure computed from it.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from harness import ProcessStats
from load.core.stats import SECOND_NS, Window

SAMPLE_PERIOD_S = 0.2


@dataclass(frozen=True)
class Sample:
    at_ns: int
    cpu_s: float | None  # CPU seconds used so far by every server process seen, summed
    rss_mb: float | None  # resident memory of the servers running now, summed


class _PeriodicSampler:
    """``with sampler:`` calls ``sample()`` at once, every ``period_s`` in a thread, and
    once more at the end."""

    def __init__(self, period_s: float, name: str) -> None:
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def sample(self) -> object:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


class ServerSampler(_PeriodicSampler):
    """Samples the processes ``processes()`` returns (it may change: a server restarted
    after a kill is a new process; the CPU of the old one stays counted)."""

    def __init__(
        self, processes: Callable[[], Sequence[ProcessStats]], period_s: float = SAMPLE_PERIOD_S
    ) -> None:
        super().__init__(period_s, "server-sampler")
        self._processes = processes
        self._cpu_by_pid: dict[int, float] = {}
        self.samples: list[Sample] = []

    def sample(self) -> Sample:
        rss_total: float | None = 0.0
        cpu_known = True
        for stats in self._processes():
            cpu, rss = stats.cpu_seconds(), stats.rss_mb()
            if cpu is not None:
                self._cpu_by_pid[stats.pid] = cpu
            elif stats.pid not in self._cpu_by_pid:
                cpu_known = False
            rss_total = None if rss is None or rss_total is None else rss_total + rss
        cpu_total = sum(self._cpu_by_pid.values()) if cpu_known and self._cpu_by_pid else None
        sample = Sample(time.time_ns(), cpu_total, rss_total)
        self.samples.append(sample)
        return sample

    # ------------------------------------------------------------ reading the samples

    def cpu_at(self, at_ns: int) -> float | None:
        """CPU seconds used by ``at_ns``, interpolated between the samples around it."""
        known = [(s.at_ns, s.cpu_s) for s in self.samples if s.cpu_s is not None]
        if not known or not known[0][0] <= at_ns <= known[-1][0]:
            return None
        times = [sample_ns for sample_ns, _ in known]
        after = bisect.bisect_left(times, at_ns)  # the first sample at or after at_ns
        if times[after] == at_ns:
            return known[after][1]
        (before_ns, before_cpu_s), (after_ns, after_cpu_s) = known[after - 1], known[after]
        share = (at_ns - before_ns) / (after_ns - before_ns)
        return before_cpu_s + share * (after_cpu_s - before_cpu_s)

    def cpu_between(self, start_ns: int, end_ns: int) -> float | None:
        start, end = self.cpu_at(start_ns), self.cpu_at(end_ns)
        return None if start is None or end is None else round(end - start, 3)

    def rss_peak_mb(self, start_ns: int | None = None, end_ns: int | None = None) -> float | None:
        values = [
            s.rss_mb
            for s in self.samples
            if (start_ns is None or s.at_ns >= start_ns) and (end_ns is None or s.at_ns <= end_ns)
        ]
        readings = [v for v in values if v is not None]
        if not values or len(readings) < len(values):  # a sample without a reading
            return None
        return round(max(readings), 1)

    def rss_at(self, at_ns: int) -> float | None:
        """The last memory reading at or before ``at_ns``."""
        earlier = [s for s in self.samples if s.at_ns <= at_ns]
        last = earlier[-1].rss_mb if earlier else None
        return None if last is None else round(last, 1)

    def per_second(
        self, window: Window, seconds: Sequence[int]
    ) -> dict[int, dict[str, float | None]]:
        """For each timeline second: the servers' CPU share of one core and peak memory."""
        rows: dict[int, dict[str, float | None]] = {}
        for second in seconds:
            start = window.start_ns + second * SECOND_NS
            cpu = self.cpu_between(start, start + SECOND_NS)
            rows[second] = {
                "server_cpu": None if cpu is None else round(cpu, 3),
                "server_rss_mb": self.rss_peak_mb(start, start + SECOND_NS),
            }
        return rows


# ---------------------------------------------------------------- the whole machine

# psutil.cpu_times() fields that are not busy time of this machine: idle and waiting, time
# the hypervisor gave to another guest (steal), and Linux's guest times, which the kernel
# already counts inside user and nice (counting them again would double them).
NOT_BUSY = ("idle", "iowait", "steal", "guest", "guest_nice")
# Fewer seconds than this between the first and last sample inside a window: too short a
# span to say anything (two readings 10 ms ticks apart would swing wildly).
MIN_SPAN_S = 0.5


@dataclass(frozen=True)
class MachineSample:
    at_ns: int
    busy_s: float  # CPU seconds the whole machine spent busy since boot, every core summed
    steal_s: float | None  # seconds stolen by the hypervisor since boot; None: not reported
    harness_s: float  # CPU seconds used so far by the processes the harness started


def busy_seconds(times: Any) -> tuple[float, float | None]:
    """(busy, steal) CPU seconds of a ``psutil.cpu_times()`` reading, every core summed."""
    fields = times._asdict()
    busy = sum(value for name, value in fields.items() if name not in NOT_BUSY)
    return busy, fields.get("steal")


def machine_usage(
    samples: Sequence[MachineSample], start_ns: int, end_ns: int
) -> tuple[float | None, float | None]:
    """(other_cpu_cores, steal_cores) between ``start_ns`` and ``end_ns``: the mean CPU, in
    cores, that processes the harness did not start used, and the mean steal, over the
    widest span of samples inside the window. None when fewer than two samples span at
    least MIN_SPAN_S, and steal None when the kernel does not report it."""
    inside = [s for s in samples if start_ns <= s.at_ns <= end_ns]
    if len(inside) < 2 or (inside[-1].at_ns - inside[0].at_ns) / SECOND_NS < MIN_SPAN_S:
        return None, None
    first, last = inside[0], inside[-1]
    wall_s = (last.at_ns - first.at_ns) / SECOND_NS
    other_s = (last.busy_s - first.busy_s) - (last.harness_s - first.harness_s)
    # The machine's counters and each process's are read a few microseconds apart and
    # move in 10 ms ticks: on a quiet machine the difference can come out slightly below 0.
    other = round(max(0.0, other_s) / wall_s, 3)
    if first.steal_s is None or last.steal_s is None:
        return other, None
    return other, round((last.steal_s - first.steal_s) / wall_s, 3)


class MachineSampler(_PeriodicSampler):
    """Samples the machine's busy CPU and the CPU of every process the harness started:
    this process (alone: under pytest its other children are not the harness's) and each
    process ``roots()`` names with all its descendants (servers, backends, Locust). The
    CPU of a process that exited stays counted up to its last sample."""

    def __init__(
        self, roots: Callable[[], Iterable[int]], period_s: float = SAMPLE_PERIOD_S
    ) -> None:
        super().__init__(period_s, "machine-sampler")
        self._roots = roots
        self._own = psutil.Process(os.getpid())
        # keyed by (pid, start time): a pid the kernel reuses is another process
        self._cpu_by_process: dict[tuple[int, float], float] = {}
        self.samples: list[MachineSample] = []

    def _harness_processes(self) -> list[psutil.Process]:
        found = {self._own.pid: self._own}
        for pid in tuple(self._roots()):
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for process in (root, *root.children(recursive=True)):
                    found.setdefault(process.pid, process)
        return list(found.values())

    def sample(self) -> MachineSample:
        for process in self._harness_processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self._cpu_by_process[process.pid, process.create_time()] = times.user + times.system
        busy, steal = busy_seconds(psutil.cpu_times())
        sample = MachineSample(time.time_ns(), busy, steal, sum(self._cpu_by_process.values()))
        self.samples.append(sample)
        return sample

    def usage(self, window: Window) -> tuple[float | None, float | None]:
        """(other_cpu_cores, steal_cores) over ``window``'s measured part."""
        return machine_usage(self.samples, window.measure_from_ns, window.until_ns)
