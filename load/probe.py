"""An independent, minimal asyncio client, for checking the harness's figures.

    python -m load.probe --target ws://127.0.0.1:8000 --users 10 --rate 1 --duration 12
    python -m load.probe --target ws://127.0.0.1:8000 --users 100 --rooms 10 --rate 3

It shares nothing with the Locust side (``websockets`` instead of ``load.wire``, asyncio
instead of gevent, plain sorted samples instead of histograms, its own message format):
``--users`` sockets spread round robin over ``--rooms`` rooms, each sending ``--rate``
messages/s at random phases after ``--warmup`` s. Every delivery's send-to-receipt time
is a sample; every message is expected at every member of its room. Prints one JSON object
(counts, and p50/p90/p99/max in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from typing import Any

import websockets


class Room:
    """What the members of one room sent and received."""

    def __init__(self, name: str, members: int) -> None:
        self.name = name
        self.members = members
        self.sent = 0
        self.received: set[tuple[int, str]] = set()  # (member, message id)
        self.duplicates = 0


async def _member(
    target: str,
    room: Room,
    index: int,
    samples: list[float],
    send_from: float,
    send_until: float,
    leave_at: float,
    rate: float,
) -> None:
    host = target.removeprefix("ws://")
    async with websockets.connect(
        f"{target}/ws/chat/{room.name}/", origin=f"http://{host}", compression=None
    ) as socket:

        async def receive() -> None:
            async for frame in socket:
                received_ns = time.time_ns()
                parts = json.loads(frame).get("message", "").split("|")
                if len(parts) != 3 or parts[0] != "probe":
                    continue
                if (index, parts[1]) in room.received:
                    room.duplicates += 1
                    continue
                room.received.add((index, parts[1]))
                samples.append((received_ns - int(parts[2])) / 1e6)

        receiver = asyncio.create_task(receive())
        rng = random.Random()
        moment = send_from + rng.uniform(0, 1 / rate)
        sent = 0
        while moment < send_until:
            await asyncio.sleep(max(0.0, moment - time.time()))
            message = f"probe|{index}.{sent}|{time.time_ns()}"
            await socket.send(json.dumps({"message": message}))
            sent += 1
            moment += rng.uniform(0.5, 1.5) / rate
        room.sent += sent
        await asyncio.sleep(max(0.0, leave_at - time.time()))
        receiver.cancel()


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 3)


async def probe(
    target: str,
    users: int,
    rate: float,
    duration: float,
    warmup: float,
    drain: float,
    rooms: int = 1,
) -> dict[str, Any]:
    """Load and measure ``rooms`` rooms of ``users`` sockets in all; counts and latency
    percentiles (ms)."""
    prefix = f"probe-{secrets.token_hex(3)}"
    room_list = [
        Room(f"{prefix}-{r}", len(range(r, users, rooms))) for r in range(min(rooms, users))
    ]
    samples: list[float] = []
    start = time.time()
    send_from, send_until = start + warmup, start + warmup + duration
    await asyncio.gather(
        *(
            _member(target, room_list[i % len(room_list)], i, samples, send_from, send_until,
                    send_until + drain, rate)
            for i in range(users)
        )
    )  # fmt: skip
    ordered = sorted(samples)
    sent = sum(room.sent for room in room_list)
    expected = sum(room.sent * room.members for room in room_list)
    delivered = sum(len(room.received) for room in room_list)
    return {
        "users": users,
        "rooms": len(room_list),
        "rate_per_user": rate,
        "sent": sent,
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "duplicated": sum(room.duplicates for room in room_list),
        "delivered_per_s": round(delivered / duration, 1),
        "latency_ms": {
            "p50": _percentile(ordered, 0.5),
            "p90": _percentile(ordered, 0.9),
            "p99": _percentile(ordered, 0.99),
            "max": round(ordered[-1], 3) if ordered else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.probe", description=__doc__)
    parser.add_argument("--target", required=True, help="ws://HOST:PORT")
    parser.add_argument("--users", type=int, default=10, help="sockets in all")
    parser.add_argument("--rooms", type=int, default=1, help="rooms, users spread round robin")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per user per s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before sending")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds after sending")
    args = parser.parse_args(argv)
    result = asyncio.run(
        probe(args.target.rstrip("/"), args.users, args.rate, args.duration, args.warmup,
              args.drain, rooms=args.rooms)
    )  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
