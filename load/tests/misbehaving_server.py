"""A tutorial-protocol chat server that misbehaves on purpose, for the positive controls
of the counting (load/tests/test_misbehaving_server.py).

It speaks the tutorial's wire protocol (``ws://HOST/ws/chat/<room>/``; a client sends
``{"message": s}``; the server sends ``{"message": s}``, formatted as the tutorial
consumer formats it, to every socket in the room, the sender included) and, by the rules
of a ``Misbehaviour``, drops, duplicates or leaks chosen deliveries and closes a receiver's
socket a chosen time after dropping a delivery to it. ``Acts`` records exactly what it did,
so a test can compare the harness's counts with the truth.

The rules count the load-test messages the server relays (1, 2, 3, ... in the order it
reads them) and act on one delivery of the messages they pick: the first member of the
room other than the sender (dropped, or sent twice), or the first member of the next room
(the message is also sent there: a leak). One message gets at most one act: a drop first,
then a duplicate, then a leak. A socket the server is closing gets nothing more, while
what it still sends is relayed to the others as usual (the client did not know yet).

It runs its own asyncio loop in a thread: ``with MisbehavingServer(rules) as server:``
serves on 127.0.0.1 at ``server.port`` until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from load.core.codec import parse_text

ROOM_PATH = re.compile(r"/ws/chat/([^/]+)/")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Misbehaviour:
    """Which relayed load-test messages to misbehave on (0: never)."""

    drop_every: int = 0  # drop one delivery of every Nth message
    duplicate_every: int = 0  # send one delivery of every Nth message twice
    leak_every: int = 0  # also send every Nth message to a socket of another room
    close_after_drop_every: int = 0  # close the receiver of every Kth drop ...
    close_delay_s: float = 0.2  # ... this long after dropping


@dataclass
class Acts:
    """What the server did (every count exact)."""

    relayed: int = 0  # load-test messages read and relayed
    dropped: int = 0  # deliveries left out (those before a close included)
    duplicated: int = 0  # second copies sent
    leaked: int = 0  # copies sent into another room
    closed: int = 0  # sockets the server closed
    dropped_before_close: int = 0  # drops whose receiver the server then closed
    relayed_after_close: int = 0  # messages a closing socket still sent, relayed
    closes: list[tuple[str, int]] = field(default_factory=list)  # (room, close ns)
    # From sending each close frame until the client's close reply had come and the TCP
    # connection was closed: at most a round trip more than the client took to notice.
    close_handshakes_ms: list[float] = field(default_factory=list)


@dataclass(eq=False)
class Member:
    """One socket in a room."""

    connection: ServerConnection
    room: str
    closing: bool = False  # the server closed it: nothing more is sent to it
    close_pending: bool = False  # a close is scheduled after a drop


class MisbehavingServer:
    """The server, in a thread of its own; ``acts`` is safe to read after the block."""

    def __init__(self, rules: Misbehaviour) -> None:
        self.rules = rules
        self.acts = Acts()
        self.rooms: dict[str, list[Member]] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="misbehaving-server", daemon=True)
        self._error: BaseException | None = None
        self._closing: set[asyncio.Future[None]] = set()

    def __enter__(self) -> MisbehavingServer:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the misbehaving server did not start: {self._error}")
        return self

    def __exit__(self, *_exc: object) -> None:
        loop = self._loop
        if loop is not None:
            assert self._server is not None  # __enter__ returned: it serves
            loop.call_soon_threadsafe(self._server.close)
        self._thread.join(STOP_TIMEOUT_S)

    @property
    def target(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by __enter__
            self._error = error
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with serve(self._handle, "127.0.0.1", 0, ping_interval=None) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await server.wait_closed()

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # a handler runs after the handshake
        match = ROOM_PATH.fullmatch(connection.request.path)
        if match is None:
            await connection.close(1008, "not a chat room")
            return
        member = Member(connection, match[1])
        self.rooms.setdefault(member.room, []).append(member)
        try:
            async for text in connection:
                await self._relay(member, text)
        except ConnectionClosed:
            pass
        finally:
            self.rooms[member.room].remove(member)

    async def _relay(self, sender: Member, text: str | bytes) -> None:
        try:
            message = json.loads(text)["message"]
        except (ValueError, KeyError, TypeError):
            return
        payload = json.dumps({"message": message})  # the tutorial consumer's format
        receivers = [m for m in self.rooms.get(sender.room, []) if not m.closing]
        if parse_text(message) is None:
            await self._send_all(receivers, payload)
            return
        acts, rules = self.acts, self.rules
        acts.relayed += 1
        if sender.closing:
            acts.relayed_after_close += 1
        number = acts.relayed
        # Never a socket about to be closed: what it misses then is in doubt, not lost.
        chosen = next((m for m in receivers if m is not sender and not m.close_pending), None)
        if chosen is not None and _picks(rules.drop_every, number):
            receivers.remove(chosen)
            acts.dropped += 1
            if _picks(rules.close_after_drop_every, acts.dropped) and not chosen.close_pending:
                chosen.close_pending = True
                acts.dropped_before_close += 1
                assert self._loop is not None  # set by _serve, which relays
                self._loop.call_later(rules.close_delay_s, self._close, chosen)
        elif chosen is not None and _picks(rules.duplicate_every, number):
            if await _send(chosen, payload):
                acts.duplicated += 1
        elif _picks(rules.leak_every, number):
            other = self._member_of_another_room(sender.room)
            if other is not None and await _send(other, payload):
                acts.leaked += 1
        await self._send_all(receivers, payload)

    async def _send_all(self, receivers: list[Member], payload: str) -> None:
        for receiver in receivers:
            await _send(receiver, payload)

    def _member_of_another_room(self, room: str) -> Member | None:
        names = sorted(self.rooms)
        for name in names[names.index(room) + 1 :] + names[: names.index(room)]:
            for member in self.rooms[name]:
                if not member.closing and not member.close_pending:
                    return member
        return None

    def _close(self, member: Member) -> None:
        """Close ``member``'s socket now: from here on it gets nothing."""
        if member.closing or member not in self.rooms.get(member.room, []):
            return
        member.closing = True
        self.acts.closed += 1
        self.acts.closes.append((member.room, time.time_ns()))
        # Kept until done: the loop holds tasks only weakly.
        task = asyncio.ensure_future(self._close_handshake(member))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_handshake(self, member: Member) -> None:
        started = time.perf_counter()
        await member.connection.close(1011, "closed on purpose")
        self.acts.close_handshakes_ms.append((time.perf_counter() - started) * 1000)


def _picks(every: int, number: int) -> bool:
    return every > 0 and number % every == 0


async def _send(member: Member, payload: str) -> bool:
    """Send unless the socket is closing or gone; True if sent."""
    if member.closing:
        return False
    with contextlib.suppress(ConnectionClosed):
        await member.connection.send(payload)
        return True
    return False


def acts_dict(acts: Acts) -> dict[str, Any]:
    """The record as plain data (for a failing assertion's message)."""
    lists = ("closes", "close_handshakes_ms")
    return {k: v for k, v in vars(acts).items() if k not in lists} | {
        name: len(getattr(acts, name)) for name in lists
    }
