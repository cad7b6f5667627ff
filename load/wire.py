"""A lean WebSocket client (RFC 6455) on a plain socket, for the load generator.

Inside Locust the socket module is gevent's, so a blocking ``recv`` yields to other
greenlets. It is deliberately small: one ``recv`` may carry many frames and all of them
are parsed from one buffer with the receipt time taken once, right after ``recv``
returns; masking is one big-integer XOR (C speed) instead of a Python loop over bytes;
TCP_NODELAY is set so small frames are not held back by Nagle's algorithm.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WireError(Exception):
    """The connection failed or the peer broke the protocol; ``kind`` names the error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def split_target(target: str) -> tuple[str, int]:
    """(host, port) of ``ws://HOST:PORT`` (brackets removed from an IPv6 host)."""
    parts = urlsplit(target)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"target must look like ws://HOST:PORT, got {target!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"target has a bad port: {target!r}") from None
    return parts.hostname, port


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (RFC 6455 §5.3), in C via int."""
    length = len(payload)
    if length == 0:
        return b""
    repeated = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )


def encode_client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, masked client frame."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + mask_payload(payload, key)


class FrameParser:
    """Splits a byte stream from the server into (opcode, payload) messages."""

    __slots__ = ("buffer", "fragment_opcode", "fragments")

    def __init__(self, initial: bytes = b"") -> None:
        self.buffer = bytearray(initial)
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0

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
                    messages.append((self.fragment_opcode, b"".join(self.fragments)))
                    self.fragments = []
            elif final:
                messages.append((opcode, payload))
            else:
                self.fragment_opcode = opcode
                self.fragments = [payload]
        del buffer[:offset]
        return messages


class Connection:
    """One client WebSocket: ``open`` does the handshake, ``receive_loop`` reads."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.parser = FrameParser(leftover)
        self.close_sent = False
        self.close_received = False

    @classmethod
    def open(cls, target: str, path: str, *, timeout: float = 10.0) -> Connection:
        """Connect to ``target`` (ws://HOST:PORT) and complete the handshake for ``path``.

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
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://{netloc}\r\n\r\n"
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
        return cls(sock, leftover)

    def send_payload(self, payload: bytes) -> None:
        """Send one text frame (the payload is already UTF-8)."""
        self.sock.sendall(encode_client_frame(payload))

    def receive_loop(
        self, on_text: Callable[[bytes, int], None], *, recv_size: int = 262144
    ) -> str:
        """Read until the connection ends; call ``on_text(payload, recv_ns)`` per text
        message. Returns how it ended: "closed" (close handshake done), "server_closed"
        (the server sent close first), "eof" or "reset"."""
        sock = self.sock
        parser = self.parser
        pending = parser.feed(b"") if parser.buffer else []
        clock = time.time_ns
        recv_ns = clock()
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
            recv_ns = clock()
            if not data:
                return "eof"
            pending = parser.feed(data)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        # A broken connection is reported by the receive loop, not here.
        with contextlib.suppress(OSError):
            self.sock.sendall(encode_client_frame(payload, opcode))

    def _send_close(self, payload: bytes) -> None:
        if not self.close_sent:
            self.close_sent = True
            self._send_control(OP_CLOSE, payload)

    def start_close(self) -> None:
        """Send a normal close frame; the receive loop ends when the server answers."""
        self._send_close(struct.pack("!H", 1000))

    def abort(self) -> None:
        """Drop the TCP connection now."""
        with contextlib.suppress(OSError):
            self.sock.close()
