"""An independent, minimal asyncio client for cross-checking the harness's latency.

    python -m load.probe --target ws://127.0.0.1:8000 --users 10 --rate 1 --duration 12

It shares nothing with the Locust side (``websockets`` instead of ``load.wire``, asyncio
instead of gevent, plain sorted samples instead of histograms): one room of ``--users``
sockets, each sending ``--rate`` messages/s at random phases after ``--warmup`` s; every
delivery's send→receipt time is a sample. Prints one JSON object (p50/p90/p99 in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from typing import Any

import websockets


async def _member(
    target: str,
    room: str,
    index: int,
    samples: list[float],
    send_from: float,
    send_until: float,
    leave_at: float,
    rate: float,
) -> int:
    host = target.removeprefix("ws://")
    async with websockets.connect(
        f"{target}/ws/chat/{room}/", origin=f"http://{host}", compression=None
    ) as socket:

        async def receive() -> None:
            async for frame in socket:
                received_ns = time.time_ns()
                text = json.loads(frame).get("message", "")
                parts = text.split("|")
                if len(parts) == 3 and parts[0] == "probe":
                    samples.append((received_ns - int(parts[2])) / 1e6)

        receiver = asyncio.create_task(receive())
        rng = random.Random()
        moment = send_from + rng.uniform(0, 1 / rate)
        sent = 0
        while moment < send_until:
            await asyncio.sleep(max(0.0, moment - time.time()))
            await socket.send(json.dumps({"message": f"probe|{index}.{sent}|{time.time_ns()}"}))
            sent += 1
            moment += rng.uniform(0.5, 1.5) / rate
        await asyncio.sleep(max(0.0, leave_at - time.time()))
        receiver.cancel()
        return sent


async def probe(
    target: str, users: int, rate: float, duration: float, warmup: float, drain: float
) -> dict[str, Any]:
    """Measure one room of ``users`` sockets; return counts and latency percentiles (ms)."""
    room = f"probe-{secrets.token_hex(3)}"
    samples: list[float] = []
    start = time.time()
    send_from, send_until = start + warmup, start + warmup + duration
    sent = await asyncio.gather(
        *(
            _member(target, room, i, samples, send_from, send_until, send_until + drain, rate)
            for i in range(users)
        )
    )
    ordered = sorted(samples)

    def pick(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None

    return {
        "sent": sum(sent),
        "expected": sum(sent) * users,
        "delivered": len(samples),
        "latency_ms": {
            "p50": round(statistics.median(ordered), 3) if ordered else None,
            "p90": pick(0.9),
            "p99": pick(0.99),
            "max": round(ordered[-1], 3) if ordered else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.probe", description=__doc__)
    parser.add_argument("--target", required=True, help="ws://HOST:PORT")
    parser.add_argument("--users", type=int, default=10, help="sockets in the probe's room")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per user per s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before sending")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds after sending")
    args = parser.parse_args(argv)
    result = asyncio.run(
        probe(
            args.target.rstrip("/"), args.users, args.rate, args.duration, args.warmup, args.drain
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
