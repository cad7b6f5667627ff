"""What each scenario does: rooms, who joins which, when to send (no Locust import).

Times are wall-clock nanoseconds (``time.time_ns``), shared by every process on the host,
so send times from one process compare with join times from another.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import asdict, dataclass
from typing import Any

SCENARIOS = ("fanout", "isolation", "churn", "idle")

# Per scenario: default users, rooms (None: derived from users) and messages/user/s.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fanout": {"users": 100, "rooms": 10, "rate": 1.0},
    "isolation": {"users": 100, "rooms": None, "rate": 1.0},  # rooms: users // 2
    "churn": {"users": 50, "rooms": 5, "rate": 1.0},
    "idle": {"users": 500, "rooms": 1, "rate": 0.0},
}
DEFAULT_DURATION_S = 20.0
DEFAULT_DRAIN_S = 2.0
# How long a closing socket waits for the server's close frame before dropping TCP.
CLOSE_TIMEOUT_S = 3.0
# A churn session: connect, send for this long, linger for the drain, close, reconnect.
CHURN_STAY_S = (1.0, 3.0)


def new_run_id() -> str:
    """A short id that makes this run's room names unique on a shared server."""
    return secrets.token_hex(3)


def default_rooms(scenario: str, users: int) -> int:
    rooms = DEFAULTS[scenario]["rooms"]
    return max(1, users // 2) if rooms is None else rooms


@dataclass(frozen=True)
class Plan:
    """One run's shape, identical in every load process."""

    scenario: str
    run_id: str
    rooms: int
    rate: float  # messages per user per second
    duration_s: float  # the send window
    warmup_s: float  # from the test start to the send window: everyone connects
    drain_s: float  # after the send window, before closing; also each socket's grace
    targets: tuple[str, ...]  # ws://HOST:PORT of each server; users are spread across them

    def room_name(self, index: int) -> str:
        """Room ``index`` (0 ≤ index < rooms). Isolation uses names that differ only in a
        last character (x-1, x-1., x-1_), so a server that normalises or prefix-matches
        group names shows up as leaks."""
        if self.scenario == "isolation":
            return f"{self.run_id}-{index // 3}{('', '.', '_')[index % 3]}"
        return f"{self.run_id}-{index}"

    def room_of_user(self, user_index: int, session: int = 0) -> str:
        # churn moves a user to the next room each session, so groups keep changing
        return self.room_name((user_index + session) % self.rooms)

    def target_of_user(self, user_index: int) -> str:
        # Members of one room (user_index = room, room + rooms, ...) land on different
        # servers, so cross-server delivery through the layer is always exercised.
        return self.targets[(user_index // self.rooms) % len(self.targets)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def send_times(start_s: float, stop_s: float, rate: float, rng: random.Random) -> list[float]:
    """Send instants in [start_s, stop_s): a random first phase, then intervals of
    1/rate ± 50 % so users never fire in lockstep (mean rate stays ``rate``)."""
    if rate <= 0:
        return []
    interval = 1.0 / rate
    times = []
    moment = start_s + rng.uniform(0, interval)
    while moment < stop_s and len(times) < 10_000_000:
        times.append(moment)
        moment += interval * rng.uniform(0.5, 1.5)
    return times
