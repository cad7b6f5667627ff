"""CPU time and memory of the servers under test, sampled in a thread while a run goes on.

Readings come from ``services.ProcessStats`` (psutil). A value that could not be read is
None, never 0, and so is any figure computed from it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from load.stats import SECOND_NS, Window
from services import ProcessStats

SAMPLE_PERIOD_S = 0.2


@dataclass(frozen=True)
class Sample:
    at_ns: int
    cpu_s: float | None  # CPU seconds used so far by every server process seen, summed
    rss_mb: float | None  # resident memory of the servers running now, summed


class ServerSampler:
    """Samples the processes ``processes()`` returns (it may change: a server restarted
    after a kill is a new process; the CPU of the old one stays counted)."""

    def __init__(
        self, processes: Callable[[], Sequence[ProcessStats]], period_s: float = SAMPLE_PERIOD_S
    ) -> None:
        self._processes = processes
        self._period_s = period_s
        self._cpu_by_pid: dict[int, float] = {}
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="server-sampler", daemon=True)

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

    def _loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self.sample()

    def __enter__(self) -> ServerSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    # ------------------------------------------------------------ reading the samples

    def cpu_at(self, at_ns: int) -> float | None:
        """CPU seconds used by ``at_ns``, interpolated between the samples around it."""
        known = [s for s in self.samples if s.cpu_s is not None]
        if not known or not known[0].at_ns <= at_ns <= known[-1].at_ns:
            return None
        times = [s.at_ns for s in known]
        after = bisect.bisect_left(times, at_ns)  # the first sample at or after at_ns
        if times[after] == at_ns:
            return known[after].cpu_s
        before = known[after - 1]
        share = (at_ns - before.at_ns) / (known[after].at_ns - before.at_ns)
        return before.cpu_s + share * (known[after].cpu_s - before.cpu_s)

    def cpu_between(self, start_ns: int, end_ns: int) -> float | None:
        start, end = self.cpu_at(start_ns), self.cpu_at(end_ns)
        return None if start is None or end is None else round(end - start, 3)

    def rss_peak_mb(self, start_ns: int | None = None, end_ns: int | None = None) -> float | None:
        values = [
            s.rss_mb
            for s in self.samples
            if (start_ns is None or s.at_ns >= start_ns) and (end_ns is None or s.at_ns <= end_ns)
        ]
        if not values or any(v is None for v in values):
            return None
        return round(max(values), 1)

    def rss_at(self, at_ns: int) -> float | None:
        """The last memory reading at or before ``at_ns``."""
        earlier = [s for s in self.samples if s.at_ns <= at_ns]
        return None if not earlier or earlier[-1].rss_mb is None else round(earlier[-1].rss_mb, 1)

    def per_second(self, window: Window, seconds: Sequence[int]) -> dict[int, dict[str, float]]:
        """For each timeline second: the servers' CPU share of one core and peak memory."""
        rows: dict[int, dict[str, float]] = {}
        for second in seconds:
            start = window.start_ns + second * SECOND_NS
            cpu = self.cpu_between(start, start + SECOND_NS)
            rows[second] = {
                "server_cpu": None if cpu is None else round(cpu, 3),
                "server_rss_mb": self.rss_peak_mb(start, start + SECOND_NS),
            }
        return rows
