"""How long after a server closes a socket the harness notices: the measurement behind
``--close-grace`` (load/README.md, "How the counting works").

The misbehaving test server (load/tests/misbehaving_server.py) closes chosen sockets and
records when, on the machine's clock; ``python -m load run`` against it records when each
of those sockets' membership ended (the client noticed), on the same clock. This prints,
for a light and a heavier load, the close-to-notice delay of every close (p50, p95, max)
and the client's loop lag, for each of ``--repeat`` runs.

    flock /tmp/harness-heavy.lock python -m load.experiments.close_notice --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from load.tests.helpers import run_load
from load.tests.misbehaving_server import MisbehavingServer, Misbehaviour

LOADS = {
    # users, rooms, msg/s per user: 128 and 1,600 offered deliveries/s
    "light": ("8", "2", "4"),
    "heavier": ("40", "10", "10"),
}
RULES = Misbehaviour(drop_every=25, close_after_drop_every=2, close_delay_s=0.2)


def delays_ms(acts_closes: list[tuple[str, int]], memberships: list[list[Any]]) -> list[float]:
    """For each server close, the first membership end in its room at or after it."""
    delays = []
    for room, close_ns in acts_closes:
        ends = [end for r, _join, _firm, end in memberships if r == room and end >= close_ns]
        if ends:
            delays.append((min(ends) - close_ns) / 1e6)
    return delays


def one_run(users: str, rooms: str, rate: str, duration: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        with MisbehavingServer(RULES) as server:
            args = ("--users", users, "--rooms", rooms, "--rate", rate, "--duration", duration)
            finished = run_load("run", "--target", server.target, *args, "--out", str(out))
        if finished.returncode != 0:
            raise SystemExit(finished.stderr.strip().splitlines()[-1])
        (record,) = json.loads((out / "summary.json").read_text())["runs"]
        tally = json.loads((out / "locust" / "chatload-result.json").read_text())["tally"]
    delays = sorted(delays_ms(server.acts.closes, tally["memberships"]))
    return {
        "closes": len(server.acts.closes),
        "matched": len(delays),
        "p50_ms": round(statistics.median(delays), 2) if delays else None,
        "p95_ms": round(delays[max(0, round(0.95 * len(delays)) - 1)], 2) if delays else None,
        "max_ms": round(delays[-1], 2) if delays else None,
        "loop_lag_ms": record["client_loop_lag_ms"],
        "delivered_per_s": record["delivered_per_s"],
        "latency_p99_ms": record["latency_ms"]["p99"],
        "lost": record["lost"],
        "unconfirmed": record["unconfirmed"],
        "dropped": server.acts.dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", default="8")
    args = parser.parse_args()
    for name, (users, rooms, rate) in LOADS.items():
        for number in range(args.repeat):
            print(name, number + 1, json.dumps(one_run(users, rooms, rate, args.duration)))


if __name__ == "__main__":
    main()
