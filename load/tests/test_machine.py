"""The machine's side of a record, on synthetic readings (no servers, no subprocesses):
``other_cpu_cores`` and ``steal_cores`` arithmetic, the busy-step rule, the speed index's
work, and ``harness.packages``. (The same with a real CPU burner: test_contended.py.)"""

from __future__ import annotations

from collections import namedtuple

import pytest

from harness.live import missing_dependency
from load.commands.machine import rounds_per_second
from load.commands.sampling import MachineSample, busy_seconds, machine_usage
from load.core.search import BUSY_OTHER_CORES, is_busy
from load.core.stats import SECOND_NS
from load.reporting.record import PACKAGES, harness_info

# psutil.cpu_times() on Linux: user and nice already include guest and guest_nice.
LinuxTimes = namedtuple(
    "LinuxTimes",
    "user nice system idle iowait irq softirq steal guest guest_nice",
)
# ... and on a system that reports no steal (macOS has only these).
PlainTimes = namedtuple("PlainTimes", "user nice system idle")


def sample(at_s: float, busy_s: float, harness_s: float, steal_s: float | None = 0.0):
    return MachineSample(round(at_s * SECOND_NS), busy_s, steal_s, harness_s)


def test_busy_time_counts_guest_time_once_and_leaves_out_idle_and_steal() -> None:
    times = LinuxTimes(user=10.0, nice=1.0, system=3.0, idle=100.0, iowait=5.0, irq=0.5,
                       softirq=0.5, steal=2.0, guest=4.0, guest_nice=1.0)  # fmt: skip
    assert busy_seconds(times) == (15.0, 2.0)
    assert busy_seconds(PlainTimes(user=10.0, nice=1.0, system=3.0, idle=100.0)) == (14.0, None)


def test_other_cores_is_the_machines_busy_cpu_less_the_harnesss_per_wall_second() -> None:
    # Over 2 s the machine was busy 3.0 CPU-seconds, 1.0 of them the harness's: the rest,
    # 2.0 CPU-seconds in 2 s, is one core of other work; 0.2 s of steal is 0.1 of a core.
    samples = [sample(0, 100.0, 10.0, 5.0), sample(1, 101.0, 10.4, 5.1),
               sample(2, 103.0, 11.0, 5.2)]  # fmt: skip
    assert machine_usage(samples, 0, 2 * SECOND_NS) == (1.0, 0.1)


def test_only_the_samples_inside_the_window_count() -> None:
    # A burst of other work before the window (0 to 1 s) is not the window's.
    samples = [sample(0, 100.0, 10.0), sample(1, 102.0, 10.0), sample(1.5, 102.1, 10.05),
               sample(3, 102.4, 10.2), sample(4, 110.0, 10.2)]  # fmt: skip
    other, steal = machine_usage(samples, 1 * SECOND_NS, 3 * SECOND_NS)
    # from 1 s to 3 s: 0.4 CPU-seconds busy, 0.2 of them the harness's
    assert (other, steal) == (0.1, 0.0)


def test_unknown_is_none_never_zero() -> None:
    one = [sample(1, 100.0, 10.0)]
    assert machine_usage(one, 0, 2 * SECOND_NS) == (None, None)
    too_short = [sample(1, 100.0, 10.0), sample(1.2, 100.1, 10.0)]
    assert machine_usage(too_short, 0, 2 * SECOND_NS) == (None, None)
    no_steal = [sample(0, 100.0, 10.0, None), sample(1, 101.0, 10.0, None)]
    assert machine_usage(no_steal, 0, SECOND_NS) == (1.0, None)


def test_a_harness_reading_a_tick_ahead_of_the_machines_is_not_negative_work() -> None:
    samples = [sample(0, 100.0, 10.0), sample(1, 100.50, 10.51)]
    assert machine_usage(samples, 0, SECOND_NS) == (0.0, 0.0)


def test_a_step_is_busy_only_past_the_threshold_and_unknown_is_not_busy() -> None:
    assert is_busy({"other_cpu_cores": BUSY_OTHER_CORES + 0.01})
    assert not is_busy({"other_cpu_cores": BUSY_OTHER_CORES})
    assert not is_busy({"other_cpu_cores": None})


def test_the_hypervisors_steal_makes_a_step_busy_too() -> None:
    # 15 % of a 2-CPU machine's time stolen is 0.3 of a core taken from the stack.
    assert is_busy({"other_cpu_cores": 0.0, "steal_share": 0.15}, cpus=2)
    assert not is_busy({"other_cpu_cores": 0.0, "steal_share": 0.1}, cpus=2)
    # Together: 0.15 of a core of other work and 0.06 of 2 CPUs stolen (0.12) is 0.27.
    assert is_busy({"other_cpu_cores": 0.15, "steal_share": 0.06}, cpus=2)
    assert is_busy({"other_cpu_cores": None, "steal_share": 0.2}, cpus=2)
    assert not is_busy({"other_cpu_cores": None, "steal_share": None}, cpus=2)


def test_the_calibration_is_a_positive_rate() -> None:
    assert rounds_per_second(rounds=500, chunks=5) > 0


@pytest.mark.parametrize("name", PACKAGES)
def test_every_listed_package_resolves_here(name: str) -> None:
    version = harness_info()["packages"][name]
    if version is None:
        missing_dependency(f"{name} is listed in harness.packages but is not installed")
    assert version[0].isdigit()
