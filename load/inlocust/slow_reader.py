"""The Locust side of a fault (runs inside Locust, gevent-patched): announcing the start
of sending to the harness, and the sockets that stop reading during a slow-reader fault.

``announce_start`` writes the test's start beside the results file, where the harness's
``FaultInjector`` (load/commands/inject.py) waits for it; ``slow_window`` says which users'
sockets stop reading and when, for a kind that ``stops_reading`` (load/core/faultkinds.py);
``shrink_receive_buffer`` and ``read_slowly`` make them stop. What the kernel holds for such
a socket is reckoned in load/core/faults.py, which the accounting shares.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from load.core.faultkinds import KINDS
from load.core.faults import SLOW_READER_RCVBUF, start_file
from load.core.plan import SECOND_NS, Plan

if TYPE_CHECKING:
    from load.core.clock import Clock
    from load.core.stats import Window


def announce_start(results_file: str, test_start_ns: int) -> None:
    """Locust's master (or only process): tell the harness when the test started."""
    if results_file:
        start_file(Path(results_file)).write_text(str(test_start_ns))


def slow_window(plan: Plan, window: Window, user_index: int) -> tuple[int, int] | None:
    """(from_ns, until_ns) when this user's socket stops reading, or None. The slow
    sockets are spread evenly over the rooms: counted room by room, every
    ``1 / slow_share``-th member is slow."""
    fault = plan.fault
    if fault is None or not KINDS[fault.kind].stops_reading:
        return None
    per_room = math.ceil(plan.users / plan.rooms)
    room, member = user_index % plan.rooms, user_index // plan.rooms
    place = room * per_room + member
    if int((place + 1) * fault.slow_share) <= int(place * fault.slow_share):
        return None
    start = window.start_ns + round(fault.at_s * SECOND_NS)
    return start, start + round(fault.for_s * SECOND_NS)


def shrink_receive_buffer(sock: Any) -> None:
    """Cap a slow reader's kernel receive buffer (this also turns off its autotuning)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_RCVBUF)


def read_slowly(
    handler: Callable[[bytes, int], None], from_ns: int, until_ns: int, *, clock: Clock
) -> Callable[[bytes, int], None]:
    """The receive callback of a slow reader: the first frame that arrives in
    [from_ns, until_ns) (on ``clock``, the users') blocks the receive loop until
    ``until_ns``, so the socket is not read and the server's buffers fill, as with a
    browser that stopped reading. (Frames read in the same ``recv`` as that one keep their
    earlier receipt time.)"""
    import gevent  # here, not at the top: unit tests import slow_window without gevent

    def on_text(payload: bytes, recv_ns: int) -> None:
        now_ns = clock.time_ns()
        if from_ns <= now_ns < until_ns:
            gevent.sleep((until_ns - now_ns) / 1e9)
        handler(payload, recv_ns)

    return on_text
