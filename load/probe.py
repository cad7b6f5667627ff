"""An independent, minimal asyncio client, for checking the harness's figures.

    python -m load.probe --target ws://127.0.0.1:8000 --users 10 --rate 1 --duration 12
    python -m load.probe --target ws://127.0.0.1:8000 --users 100 --rooms 10 --rate 3

It shares nothing with the Locust side (``websockets`` instead of ``load.inlocust.wire``, asyncio
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
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.typing import Origin


class Room:
    """What the members of one room sent and received (measured messages only, except
    ``received_in_window``)."""

    def __init__(self, name: str, members: int) -> None:
        self.name = name
        self.members = members
        self.sent = 0
        self.seen: set[tuple[int, str]] = set()  # (member, message id), every message
        self.delivered = 0  # first copies of messages sent in the measured window
        self.received_in_window = 0  # first copies that arrived in the measured window
        self.duplicates = 0


@dataclass(frozen=True)
class Window:
    """Wall-clock ns: sending from ``send_from``; messages sent in [measure_from, until)
    are measured; sockets read until ``leave_at``."""

    send_from: int
    measure_from: int
    until: int
    leave_at: int

    def measured(self, ns: int) -> bool:
        return self.measure_from <= ns < self.until


async def _member(
    target: str, room: Room, index: int, samples: list[float], window: Window, rate: float
) -> None:
    host = target.removeprefix("ws://")
    async with websockets.connect(
        f"{target}/ws/chat/{room.name}/", origin=Origin(f"http://{host}"), compression=None
    ) as socket:

        async def receive() -> None:
            async for frame in socket:
                received_ns = time.time_ns()
                parts = json.loads(frame).get("message", "").split("|")
                if len(parts) != 3 or parts[0] != "probe":
                    continue
                if (index, parts[1]) in room.seen:
                    room.duplicates += 1
                    continue
                room.seen.add((index, parts[1]))
                if window.measured(received_ns):
                    room.received_in_window += 1
                send_ns = int(parts[2])
                if window.measured(send_ns):
                    room.delivered += 1
                    samples.append((received_ns - send_ns) / 1e6)

        receiver = asyncio.create_task(receive())
        rng = random.Random()
        moment = window.send_from / 1e9 + rng.uniform(0, 1 / rate)
        sent = 0
        while moment < window.until / 1e9:
            await asyncio.sleep(max(0.0, moment - time.time()))
            send_ns = time.time_ns()
            message = f"probe|{index}.{sent}|{send_ns}"
            await socket.send(json.dumps({"message": message}))
            sent += 1
            room.sent += window.measured(send_ns)
            moment += rng.uniform(0.5, 1.5) / rate
        await asyncio.sleep(max(0.0, window.leave_at / 1e9 - time.time()))
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
    settle: float = 0.0,
) -> dict[str, Any]:
    """Load and measure ``rooms`` rooms of ``users`` sockets in all; counts and latency
    percentiles (ms) of the messages sent in the measured window (``settle`` s after
    sending starts, for ``duration`` s)."""
    prefix = f"probe-{secrets.token_hex(3)}"
    room_list = [
        Room(f"{prefix}-{r}", len(range(r, users, rooms))) for r in range(min(rooms, users))
    ]
    samples: list[float] = []
    send_from = time.time_ns() + round(warmup * 1e9)
    measure_from = send_from + round(settle * 1e9)
    until = measure_from + round(duration * 1e9)
    window = Window(send_from, measure_from, until, until + round(drain * 1e9))
    await asyncio.gather(
        *(_member(target, room_list[i % len(room_list)], i, samples, window, rate)
          for i in range(users))
    )  # fmt: skip
    ordered = sorted(samples)
    sent = sum(room.sent for room in room_list)
    expected = sum(room.sent * room.members for room in room_list)
    delivered = sum(room.delivered for room in room_list)
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
        "received_per_s": round(sum(r.received_in_window for r in room_list) / duration, 1),
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
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds of sending before the measured window")  # fmt: skip
    parser.add_argument("--drain", type=float, default=1.0, help="seconds after sending")
    args = parser.parse_args(argv)
    result = asyncio.run(
        probe(args.target.rstrip("/"), args.users, args.rate, args.duration, args.warmup,
              args.drain, rooms=args.rooms, settle=args.settle)
    )  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
