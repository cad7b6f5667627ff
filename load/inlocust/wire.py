"""A lean WebSocket client (RFC 6455) on a plain socket, for the load generator.

It is deliberately small: one ``recv`` may carry many frames and all of them are parsed
from one buffer with the receipt time taken once, right after ``recv`` returns; masking
is one big-integer XOR (C speed) instead of a Python loop over bytes; TCP_NODELAY is set
so small frames are not held back by Nagle's algorithm.

Inside Locust the socket module is gevent's. There a socket is read by ``HubReceiver``:
a libev io watcher whose callback runs in the gevent hub, so a frame costs one ``recv``
and no greenlet switch (a greenlet per socket costs a switch pair, a second ``recv`` that
fails with EWOULDBLOCK and a watcher re-arm per wake-up: most of the client's CPU).
Frames are written with one non-blocking ``send``; only what does not fit goes to a
greenlet. Outside gevent (the CLI's pre-flight check) ``receive_loop`` reads, blocking.
Receipt times come from the ``clock.Clock`` the reader is handed: on a remote worker, the
master's clock.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

from load.core.plan import split_target

if TYPE_CHECKING:
    from load.core.clock import Clock

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WireError(Exception):
    """The connection failed or the peer broke the protocol; ``kind`` names the error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (RFC 6455 §5.3), in C via int."""
    length = len(payload)
    if length == 0:
        return b""
    repeated = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )


class MaskKeys:
    """Masking keys: 4-byte slices of an ``os.urandom`` block, one syscall per 1,024
    frames instead of one per frame (each key is still unpredictable, as RFC 6455 asks)."""

    __slots__ = ("block", "offset")

    BLOCK = 4096

    def __init__(self) -> None:
        self.block = b""
        self.offset = self.BLOCK

    def next(self) -> bytes:
        offset = self.offset
        if offset >= self.BLOCK:
            self.block = os.urandom(self.BLOCK)
            offset = 0
        self.offset = offset + 4
        return self.block[offset : offset + 4]


_MASK_KEYS = MaskKeys()


def encode_client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, masked client frame."""
    key = _MASK_KEYS.next()
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + mask_payload(payload, key)


# What a client offers, as browsers do: permessage-deflate, any server window.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: removed by the sender, put back here


class Inflater:
    """Decompresses one connection's permessage-deflate messages, keeping the server's
    sliding window from message to message unless it said ``server_no_context_takeover``."""

    __slots__ = ("fresh_each_message", "inflater")

    def __init__(self, *, fresh_each_message: bool) -> None:
        self.fresh_each_message = fresh_each_message
        self.inflater = zlib.decompressobj(-15)

    def __call__(self, payload: bytes) -> bytes:
        message = self.inflater.decompress(payload + DEFLATE_TAIL)
        if self.fresh_each_message:
            self.inflater = zlib.decompressobj(-15)
        return message


def negotiated_inflater(extensions: str) -> Inflater | None:
    """The Inflater for a handshake response's Sec-WebSocket-Extensions, or None when the
    server did not accept permessage-deflate."""
    for extension in extensions.split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        if name == "permessage-deflate":
            return Inflater(fresh_each_message="server_no_context_takeover" in params)
    return None


class FrameParser:
    """Splits a byte stream from the server into (opcode, payload) messages."""

    __slots__ = ("buffer", "fragment_compressed", "fragment_opcode", "fragments", "inflate")

    def __init__(self, initial: bytes = b"", *, inflate: Inflater | None = None) -> None:
        self.buffer = bytearray(initial)
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0
        self.fragment_compressed = False
        # permessage-deflate, when the handshake negotiated it: a message whose first
        # frame has RSV1 set is compressed (RFC 7692).
        self.inflate = inflate

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return every complete message now available."""
        buffer = self.buffer
        buffer += data
        messages: list[tuple[int, bytes]] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - offset < 4:
                    break
                length = (buffer[offset + 2] << 8) | buffer[offset + 3]
                header = 4
            elif length == 127:
                if end - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                header = 10
            masked = second & 0x80
            if masked:
                header += 4
            if end - offset < header + length:
                break
            payload = bytes(buffer[offset + header : offset + header + length])
            if masked:  # servers must not mask, but unmasking costs nothing to support
                key = bytes(buffer[offset + header - 4 : offset + header])
                payload = mask_payload(payload, key)
            offset += header + length
            opcode = first & 0x0F
            final = first & 0x80
            if opcode >= 0x8:  # control frames are never fragmented
                messages.append((opcode, payload))
            elif opcode == OP_CONT:
                self.fragments.append(payload)
                if final:
                    whole = b"".join(self.fragments)
                    if self.fragment_compressed and self.inflate is not None:
                        whole = self.inflate(whole)
                    messages.append((self.fragment_opcode, whole))
                    self.fragments = []
            elif final:
                if first & 0x40 and self.inflate is not None:
                    payload = self.inflate(payload)
                messages.append((opcode, payload))
            else:
                self.fragment_opcode = opcode
                self.fragment_compressed = bool(first & 0x40)
                self.fragments = [payload]
        del buffer[:offset]
        return messages


class Connection:
    """One client WebSocket: ``open`` does the handshake, ``receive_loop`` reads."""

    def __init__(
        self, sock: socket.socket, leftover: bytes, *, inflate: Inflater | None = None
    ) -> None:
        self.sock = sock
        self.parser = FrameParser(leftover, inflate=inflate)
        self.deflate = inflate is not None  # the handshake negotiated permessage-deflate
        self.close_sent = False
        self.close_received = False
        # gevent's socket wraps a real, non-blocking one: writing to that directly costs
        # one syscall instead of gevent's sendall layers. A plain socket has no wrapper.
        self.raw = getattr(sock, "_sock", None)
        self.backlog: list[bytes] = []  # frame tails waiting for a full send buffer
        self.receiver: HubReceiver | None = None

    @classmethod
    def open(
        cls,
        target: str,
        path: str,
        *,
        cookie: str | None = None,
        deflate: bool = False,
        timeout: float = 10.0,
    ) -> Connection:
        """Connect to ``target`` (ws://HOST:PORT) and complete the handshake for ``path``,
        sending ``cookie`` (a Cookie header's value: a logged-in user's session) if given,
        and offering permessage-deflate with ``deflate``.

        The Origin header matches the host, as AllowedHostsOriginValidator requires.
        """
        host, port = split_target(target)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as error:
            raise WireError("connect_timeout", f"{target}: {error}") from None
        except OSError as error:
            raise WireError("connect_failed", f"{target}: {error.strerror or error}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            key = base64.b64encode(os.urandom(16))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://{netloc}\r\n"
                + (f"Cookie: {cookie}\r\n" if cookie else "")
                + (f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else "")
                + "\r\n"
            ).encode()
            sock.sendall(request)
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk:
                    raise WireError("handshake_failed", "server closed during the handshake")
                response += chunk
                if len(response) > 65536:
                    raise WireError("handshake_failed", "handshake response too long")
            head, _, leftover = response.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = status_line.split(" ", 2)
            if len(status) < 2 or status[1] != "101":
                raise WireError("handshake_rejected", f"{target}{path}: {status_line}")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines)
            }
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != accept:
                raise WireError("handshake_failed", "bad Sec-WebSocket-Accept")
            sock.settimeout(None)
        except WireError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            raise WireError("handshake_timeout", f"{target}{path}") from None
        except OSError as error:
            sock.close()
            raise WireError("handshake_failed", f"{target}{path}: {error}") from None
        inflate = negotiated_inflater(headers.get("sec-websocket-extensions", ""))
        if inflate is not None and not deflate:
            sock.close()
            raise WireError("handshake_failed", "the server chose an extension never offered")
        return cls(sock, leftover, inflate=inflate)

    def send_payload(self, payload: bytes) -> None:
        """Send one text frame (the payload is already UTF-8); OSError if it cannot."""
        self._write(encode_client_frame(payload))

    def _write(self, frame: bytes) -> None:
        """Write a frame without blocking (so the hub may call it) when under gevent:
        one ``send`` on the real socket; a tail that does not fit, and every frame after
        it, is written in order by a greenlet."""
        raw = self.raw
        if raw is None:
            self.sock.sendall(frame)
            return
        if self.backlog:
            self.backlog.append(frame)
            return
        try:
            sent = raw.send(frame)
        except BlockingIOError:
            sent = 0
        if sent < len(frame):
            self.backlog.append(frame[sent:])
            gevent.spawn(self._flush_backlog)

    def _flush_backlog(self) -> None:
        backlog = self.backlog
        try:
            while backlog:  # bounded: each pass writes (or drops) one queued frame
                self.sock.sendall(backlog[0])  # gevent's: waits until writable
                backlog.pop(0)
        except OSError:
            backlog.clear()  # the receiver reports the broken connection

    def receive_in_hub(self, on_text: Callable[[bytes, int], None], *, clock: Clock) -> HubReceiver:
        """Start reading under gevent: ``on_text(payload, recv_ns)`` per text message,
        called in the hub, ``recv_ns`` read on ``clock``. The returned receiver stands in
        for a receive-loop greenlet."""
        receiver = self.receiver = HubReceiver(self, on_text, clock=clock)
        receiver.start()
        return receiver

    def receive_loop(
        self, on_text: Callable[[bytes, int], None], *, clock: Clock, recv_size: int = 262144
    ) -> str:
        """Read until the connection ends; call ``on_text(payload, recv_ns)`` per text
        message, ``recv_ns`` read on ``clock``. Returns how it ended: "closed" (close
        handshake done), "server_closed" (the server sent close first), "eof" or "reset"."""
        sock = self.sock
        parser = self.parser
        pending = parser.feed(b"") if parser.buffer else []
        now_ns = clock.time_ns
        recv_ns = now_ns()
        while True:
            for opcode, payload in pending:
                if opcode == OP_TEXT:
                    on_text(payload, recv_ns)
                elif opcode == OP_CLOSE:
                    self.close_received = True
                    if not self.close_sent:
                        self._send_close(payload[:2] or struct.pack("!H", 1000))
                        return "server_closed"
                    return "closed"
                elif opcode == OP_PING:
                    self._send_control(OP_PONG, payload)
                elif opcode == OP_BINARY:
                    on_text(b"\x00binary", recv_ns)
            try:
                data = sock.recv(recv_size)
            except OSError:
                return "reset"
            recv_ns = now_ns()
            if not data:
                return "eof"
            pending = parser.feed(data)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        # A broken connection is reported by the receive loop, not here.
        with contextlib.suppress(OSError):
            self._write(encode_client_frame(payload, opcode))

    def _send_close(self, payload: bytes) -> None:
        if not self.close_sent:
            self.close_sent = True
            self._send_control(OP_CLOSE, payload)

    def start_close(self) -> None:
        """Send a normal close frame; the receive loop ends when the server answers."""
        self._send_close(struct.pack("!H", 1000))

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self.receiver is not None:
            self.receiver.stop()  # before the close: libev must not watch a closed fd
        with contextlib.suppress(OSError):
            self.sock.close()


class HubReceiver:
    """Reads one connection from a libev io watcher whose callback runs in the gevent
    hub: one ``recv`` per readiness (level-triggered, so what is left is reported again),
    the receipt time right after it, then the frames. Nothing here may block or switch.

    It stands in for a ``receive_loop`` greenlet: ``ready()``, ``value`` (how the
    connection ended, as ``receive_loop`` returns it, or "error" if the callback raised),
    ``join(timeout)``, ``kill()``, and ``gevent.wait`` works on it.
    """

    RECV_SIZE = 262144

    def __init__(
        self, connection: Connection, on_text: Callable[[bytes, int], None], *, clock: Clock
    ) -> None:
        self.connection = connection
        self.on_text = on_text
        self.clock = clock
        self.value: str | None = None
        self.finished = Event()
        self.watcher: Any = None
        self.links: dict[Callable[[Any], None], Callable[[Any], None]] = {}

    def start(self) -> None:
        connection = self.connection
        if connection.parser.buffer:  # frames that came with the handshake response
            self._dispatch(connection.parser.feed(b""), self.clock.time_ns())
        if not self.finished.is_set():
            assert connection.raw is not None  # the hub reads gevent's sockets only
            self.watcher = gevent.get_hub().loop.io(connection.raw.fileno(), 1)
            self.watcher.start(self._readable_callback())

    def _readable_callback(self) -> Callable[[], None]:
        """The watcher's callback; the usual case (one small, complete text frame per
        ``recv`` and nothing buffered) goes straight to ``on_text``."""
        assert self.connection.raw is not None  # the hub reads gevent's sockets only
        recv = self.connection.raw.recv
        size = self.RECV_SIZE
        buffer = self.connection.parser.buffer
        on_text = self.on_text
        now_ns = self.clock.time_ns

        def readable() -> None:
            try:
                data = recv(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._finish("reset")
                return
            recv_ns = now_ns()
            try:
                length = len(data)
                # (length < 128: the second byte is then the whole payload length)
                if 2 < length < 128 and data[0] == 0x81 and data[1] == length - 2 and not buffer:
                    on_text(data[2:], recv_ns)
                elif length == 0:
                    self._finish("eof")
                else:
                    self._dispatch(self.connection.parser.feed(data), recv_ns)
            except Exception:
                self._finish("error")
                raise  # the hub logs it; this connection is over

        return readable

    def _dispatch(self, messages: list[tuple[int, bytes]], recv_ns: int) -> None:
        """What ``receive_loop`` does with each parsed message."""
        connection = self.connection
        for opcode, payload in messages:
            if opcode == OP_TEXT:
                self.on_text(payload, recv_ns)
            elif opcode == OP_CLOSE:
                connection.close_received = True
                if not connection.close_sent:
                    connection._send_close(payload[:2] or struct.pack("!H", 1000))
                    self._finish("server_closed")
                else:
                    self._finish("closed")
                return
            elif opcode == OP_PING:
                connection._send_control(OP_PONG, payload)
            elif opcode == OP_BINARY:
                self.on_text(b"\x00binary", recv_ns)

    def _finish(self, outcome: str | None) -> None:
        if not self.finished.is_set():
            self.value = outcome
            self.stop()
            self.finished.set()

    def stop(self) -> None:
        """Stop watching the socket (idempotent)."""
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()

    def ready(self) -> bool:
        return self.finished.is_set()

    def join(self, timeout: float | None = None) -> None:
        self.finished.wait(timeout)

    def kill(self, block: bool = False) -> None:
        """Stop reading; like a killed greenlet, ``value`` stays None."""
        self._finish(None)

    # gevent.wait() links to what it waits on, and returns what called back: this.
    def rawlink(self, callback: Callable[[Any], None]) -> None:
        self.links[callback] = link = lambda _event: callback(self)
        self.finished.rawlink(link)

    def unlink(self, callback: Callable[[Any], None]) -> None:
        link = self.links.pop(callback, None)
        if link is not None:
            self.finished.unlink(link)
