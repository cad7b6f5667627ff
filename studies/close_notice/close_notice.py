"""How long after a server closes a socket the harness notices: the measurement behind
``--close-grace`` (load/README.md, "How the counting works").

The misbehaving test server (load/tests/misbehaving_server.py) closes chosen sockets of a
``python -m load run`` and times each close handshake: from sending the close frame until
the client's reply (which the client sends in the same hub callback in which it notices
the close) has come back and the connection is closed. That is the client's noticing
plus at most one more one-way trip: an upper bound of the close-to-notice time. This
prints, for a light and a heavier load, those times (p50, p95, max) with the client's
loop lag and the deliveries' latency, for each of ``--repeat`` runs.

    flock /tmp/harness-heavy.lock python -m studies.close_notice.close_notice --repeat 3
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


def one_run(users: str, rooms: str, rate: str, duration: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        with MisbehavingServer(RULES) as server:
            args = ("--users", users, "--rooms", rooms, "--rate", rate, "--duration", duration)
            finished = run_load("run", "--target", server.target, *args, "--out", str(out))
        if finished.returncode != 0:
            raise SystemExit(finished.stderr.strip().splitlines()[-1])
        (record,) = json.loads((out / "summary.json").read_text())["runs"]
    delays = sorted(server.acts.close_handshakes_ms)
    return {
        "closes": server.acts.closed,
        "handshake_p50_ms": round(statistics.median(delays), 2) if delays else None,
        "handshake_p95_ms": round(delays[max(0, round(0.95 * len(delays)) - 1)], 2)
        if delays
        else None,
        "handshake_max_ms": round(delays[-1], 2) if delays else None,
        "client_loop_lag_ms": record["client_loop_lag_ms"],
        "delivered_per_s": record["delivered_per_s"],
        "latency_ms": {k: record["latency_ms"][k] for k in ("p50", "p99", "max")},
        "dropped": server.acts.dropped,
        "lost": record["lost"],
        "unconfirmed": record["unconfirmed"],
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
