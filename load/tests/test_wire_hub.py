"""The client's gevent paths on a local socket pair (no server, no Locust): reading in the
hub (``HubReceiver``) and writing without blocking (``Connection._write``)."""

from __future__ import annotations

import struct

import gevent
import pytest
from gevent import socket as gsocket
from gevent.event import Event

from load.core.clock import Clock
from load.inlocust.wire import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Connection, FrameParser

WAIT_S = 5.0


def server_frame(payload: bytes, opcode: int = OP_TEXT, *, final: bool = True) -> bytes:
    """An unmasked frame, as a server sends it (minimal length encoding)."""
    first = (0x80 if final else 0) | opcode
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return bytes((first, 126)) + struct.pack("!H", length) + payload
    return bytes((first, 127)) + struct.pack("!Q", length) + payload


@pytest.fixture
def pair():
    """(client Connection, server-side gevent socket)."""
    client, server = gsocket.socketpair()
    connection = Connection(client, b"")
    yield connection, server
    connection.abort()
    server.close()


def received_by_server(server: gsocket.socket, count: int) -> list[tuple[int, bytes]]:
    """The first ``count`` client frames the server side reads (bounded by WAIT_S)."""
    parser = FrameParser()
    messages: list[tuple[int, bytes]] = []
    with gevent.Timeout(WAIT_S):
        while len(messages) < count:
            data = server.recv(1 << 20)
            assert data, "client closed early"
            messages += parser.feed(data)
    return messages


class Texts:
    """What ``on_text`` received; ``wait_for(n)`` returns once n have arrived."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.arrived = Event()

    def on_text(self, payload: bytes, recv_ns: int) -> None:
        self.payloads.append(payload)
        self.arrived.set()

    def wait_for(self, count: int) -> list[bytes]:
        with gevent.Timeout(WAIT_S):
            while len(self.payloads) < count:  # bounded by the timeout
                self.arrived.clear()
                self.arrived.wait()
        return self.payloads


def test_frames_reach_on_text_in_order_whatever_the_chunking(pair) -> None:
    connection, server = pair
    texts = Texts()
    receiver = connection.receive_in_hub(texts.on_text, clock=Clock())
    small, medium = b"a" * 10, b"b" * 300
    server.sendall(server_frame(small))
    assert texts.wait_for(1) == [small]  # alone in its recv: the fast path
    # 124 bytes with a (non-minimal) 16-bit length: 128 bytes on the wire whose second
    # byte, 126, equals the wire length - 2; it must not be read as a one-byte length.
    server.sendall(bytes((0x81, 126)) + struct.pack("!H", 124) + b"c" * 124)
    assert texts.wait_for(2)[1] == b"c" * 124
    fragmented = server_frame(b"xy", OP_TEXT, final=False) + server_frame(b"z", 0x0, final=True)
    stream = server_frame(medium) + fragmented + server_frame(b"\x01", 0x2)
    for i in range(0, len(stream), 7):
        server.sendall(stream[i : i + 7])
    server.sendall(server_frame(b"last"))
    assert texts.wait_for(6) == [small, b"c" * 124, medium, b"xyz", b"\x00binary", b"last"]
    assert not receiver.ready()


def test_ping_is_answered_and_a_server_close_ends_the_receiver(pair) -> None:
    connection, server = pair
    receiver = connection.receive_in_hub(lambda payload, recv_ns: None, clock=Clock())
    server.sendall(server_frame(b"hi", OP_PING))
    assert received_by_server(server, 1) == [(OP_PONG, b"hi")]
    server.sendall(server_frame(struct.pack("!H", 1001), OP_CLOSE))
    done = gevent.wait([receiver], timeout=WAIT_S)
    assert done == [receiver]
    assert receiver.value == "server_closed"
    assert received_by_server(server, 1) == [(OP_CLOSE, struct.pack("!H", 1001))]


def test_our_close_answered_is_closed_and_a_dropped_socket_is_eof(pair) -> None:
    connection, server = pair
    receiver = connection.receive_in_hub(lambda payload, recv_ns: None, clock=Clock())
    connection.start_close()
    assert received_by_server(server, 1) == [(OP_CLOSE, struct.pack("!H", 1000))]
    server.sendall(server_frame(struct.pack("!H", 1000), OP_CLOSE))
    receiver.join(timeout=WAIT_S)
    assert receiver.value == "closed"

    client, other = gsocket.socketpair()
    dropped = Connection(client, b"")
    receiver = dropped.receive_in_hub(lambda payload, recv_ns: None, clock=Clock())
    other.close()
    receiver.join(timeout=WAIT_S)
    assert receiver.value == "eof"
    dropped.abort()


def test_a_full_send_buffer_never_blocks_and_keeps_the_order(pair) -> None:
    connection, server = pair
    big = b"x" * 4_000_000  # far more than a socket buffer holds
    connection.send_payload(big)  # returns at once: the tail waits in the backlog
    assert connection.backlog
    connection.send_payload(b"after")
    messages = received_by_server(server, 2)
    assert messages == [(OP_TEXT, big), (OP_TEXT, b"after")]
    assert not connection.backlog
