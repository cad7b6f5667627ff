"""A machine speed index: how fast this machine runs a fixed piece of pure Python, taken
before and after each stack, so that capacities from two machines can be compared as a
ratio to it (``harness.machine`` in summary.json).

The work is the kind an asyncio chat server's own Python does per message: small dicts
keyed by strings, f-strings, joins and splits, int parsing. It is deterministic (the same
operations every time; ``ROUNDS`` of them take about a second on the README's machine).

It runs in a fresh subprocess, one thread: the harness process holds the tallies of every
run so far, and the garbage collector's cost grows with that heap, so the same work timed
in-process would slow down over a long search for reasons that are not the machine's.
``python -m load.commands.machine`` prints one reading.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

ROUNDS = 20_000
# The rounds are timed in CHUNKS slices and the median slice counts, so that a moment in
# which the scheduler ran something else does not decide the figure.
CHUNKS = 5
CALIBRATION_TIMEOUT_S = 60.0


def _one_round(seed: int) -> int:
    counts: dict[str, int] = {}
    for i in range(100):
        key = f"room-{(seed + i) % 37}"
        counts[key] = counts.get(key, 0) + i
    text = ",".join(f"{key}={value}" for key, value in counts.items())
    return sum(int(part.partition("=")[2]) for part in text.split(",")) & 0xFFFF


def rounds_per_second(rounds: int = ROUNDS, chunks: int = CHUNKS) -> float:
    """Calibration rounds per second in this process (the median of ``chunks`` slices)."""
    per_chunk = rounds // chunks
    checksum = 0
    slices = []
    for chunk in range(chunks):
        started = time.perf_counter()
        for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
            checksum ^= _one_round(seed)
        slices.append(time.perf_counter() - started)
    if checksum < 0:  # never: keeps the work's result alive
        raise AssertionError
    return per_chunk / statistics.median(slices)


def speed_index() -> float | None:
    """Calibration rounds per second in a fresh subprocess; None if it could not run."""
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "load.commands.machine"],
            capture_output=True,
            text=True,
            timeout=CALIBRATION_TIMEOUT_S,
            check=False,
        )
        return round(json.loads(finished.stdout)["rounds_per_s"], 1)
    except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError, OSError):
        return None


class MachineLog:
    """``harness.machine``: each stack's speed index before and after it ran, and their
    median as the run's ``speed_index``. ``record`` is updated in place."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {
            "speed_index": None,
            "unit": "calibration rounds per second (load/commands/machine.py); higher is faster",
            "runs": [],
        }

    @contextlib.contextmanager
    def around(self, stack: str) -> Iterator[None]:
        """``with log.around(label):`` runs the calibration before and after the block."""
        run = {"stack": stack, "before": speed_index(), "after": None}
        self.record["runs"].append(run)
        yield
        run["after"] = speed_index()
        readings = [
            value
            for entry in self.record["runs"]
            for value in (entry["before"], entry["after"])
            if value is not None
        ]
        self.record["speed_index"] = round(statistics.median(readings), 1) if readings else None


if __name__ == "__main__":
    print(json.dumps({"rounds_per_s": rounds_per_second()}))
