"""What each scenario does: its default shape and when users send (no Locust import).

Times are wall-clock seconds or nanoseconds (``time.time``), shared by every process on the
host, so send times from one process compare with join times from another.
"""

from __future__ import annotations

import random
from typing import Any

SCENARIOS = ("fanout", "isolation", "churn", "idle")

# Per scenario: default users, rooms (None: derived from users) and messages/user/s.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fanout": {"users": 100, "rooms": 10, "rate": 1.0},
    "isolation": {"users": 100, "rooms": None, "rate": 1.0},  # rooms: users // 2
    "churn": {"users": 50, "rooms": 5, "rate": 1.0},
    "idle": {"users": 500, "rooms": 1, "rate": 0.0},
}
# How long a closing socket waits for the server's close frame before dropping TCP.
CLOSE_TIMEOUT_S = 3.0
# A churn session: connect, send for this long, linger for the drain, close, reconnect.
CHURN_STAY_S = (1.0, 3.0)


def default_rooms(scenario: str, users: int) -> int:
    rooms = DEFAULTS[scenario]["rooms"]
    return max(1, users // 2) if rooms is None else rooms


def send_times(start_s: float, stop_s: float, rate: float, rng: random.Random) -> list[float]:
    """Send instants in [start_s, stop_s): a random first phase, then intervals of
    1/rate ± 50 % so users never fire in lockstep (mean rate stays ``rate``)."""
    if rate <= 0:
        return []
    interval = 1.0 / rate
    times: list[float] = []
    moment = start_s + rng.uniform(0, interval)
    while moment < stop_s and len(times) < 10_000_000:
        times.append(moment)
        moment += interval * rng.uniform(0.5, 1.5)
    return times
