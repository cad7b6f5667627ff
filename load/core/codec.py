"""The measurement data carried inside a chat message's text.

A message is ``chatload|<run>|<room>|<msg id>|<send time ns>``: the run id, the room the
sender is in, a globally unique id (sender process token + sequence number) and
``time.time_ns()`` taken just before the frame is written; ``--message-bytes`` appends a
sixth field of padding so that the byte rate is realistic. A logged-in sender's id begins
with its username and ``~`` (no Django username holds one), so a receiver can tell whether
the ``user`` the server attached to the frame is the sender's (``sender_of``).

It uses only characters that JSON does not escape, so the tutorial server's
``json.dumps({"message": text})`` reaches every member byte for byte and the receiver can
slice it without a JSON parser; any other shape (another server's spacing, escapes) falls
back to ``json.loads``.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

MAGIC = "chatload"
# What the tutorial consumer sends: json.dumps({"message": text}) with default separators.
SERVER_PREFIX = b'{"message": "'
SERVER_SUFFIX = b'"}'
SAFE_FIELD = re.compile(r"[A-Za-z0-9_.\-]+")
# What follows the message in a logged-in sender's frame: json.dumps({"message": text,
# "user": name}) with default separators.
USER_FIELD = b'", "user": "'
SENDER_MARK = "~"
# Padding needs no JSON escaping either; the longest message the app accepts by default is
# 65,536 characters.
PADDING = "x" * 65536


class Stamp(NamedTuple):
    """The decoded measurement fields of one chat message."""

    run_id: str
    room: str
    msg_id: str
    send_ns: int


def encode_text(run_id: str, room: str, msg_id: str, send_ns: int, pad_to: int = 0) -> str:
    """The ``message`` string for one send, padded to about ``pad_to`` characters."""
    text = f"{MAGIC}|{run_id}|{room}|{msg_id}|{send_ns}"
    if pad_to > len(text) + 1:
        text += "|" + PADDING[: pad_to - len(text) - 1]
    return text


def id_prefix(sequence_prefix: str, sender: str | None = None) -> str:
    """What a socket's message ids begin with (then a sequence number): its own prefix,
    after ``<sender>~`` when the sender is logged in."""
    return sequence_prefix if sender is None else f"{sender}{SENDER_MARK}{sequence_prefix}"


def sender_of(msg_id: str) -> str | None:
    """The username a message id names as its sender, or None (an anonymous sender)."""
    sender, mark, _ = msg_id.partition(SENDER_MARK)
    return sender if mark else None


def encode_frame_payload(text: str) -> bytes:
    """The client's text frame payload: ``{"message": "<text>"}`` (text needs no escaping)."""
    return b'{"message": "' + text.encode() + b'"}'


def room_prefix(run_id: str, room: str) -> bytes:
    """How every tutorial-server frame carrying a message sent in ``room`` begins: the
    receiver checks this constant instead of parsing (see ``stats.FastLedger``)."""
    return SERVER_PREFIX + f"{MAGIC}|{run_id}|{room}|".encode()


def parse_text(text: str) -> Stamp | None:
    """Fields of a measurement message, or None if ``text`` is not one."""
    parts = text.split("|", 5)
    if len(parts) < 5 or parts[0] != MAGIC:
        return None
    try:
        send_ns = int(parts[4])
    except ValueError:
        return None
    return Stamp(parts[1], parts[2], parts[3], send_ns)


def parse_server_payload(payload: bytes) -> tuple[Stamp | None, str | None]:
    """Decode a server frame: (stamp, None) for a measurement message, (None, reason) else."""
    stamp, _user, problem = parse_server_frame(payload)
    return stamp, problem


def parse_server_frame(payload: bytes) -> tuple[Stamp | None, str | None, str | None]:
    """Decode a server frame: (stamp, user, None) for a measurement message, where ``user``
    is the frame's ``user`` (None when it has none), or (None, None, reason).

    The fast path slices the tutorial server's exact framing of an anonymous sender's
    message; anything else goes through ``json.loads`` so a server with other JSON spacing,
    or a logged-in sender's frame, still measures.
    """
    if payload.startswith(SERVER_PREFIX) and payload.endswith(SERVER_SUFFIX):
        body = payload[len(SERVER_PREFIX) : -len(SERVER_SUFFIX)]
        if b"\\" not in body and b'"' not in body:
            try:
                stamp = parse_text(body.decode())
            except UnicodeDecodeError:
                return None, None, "frame is not UTF-8"
            if stamp is not None:
                return stamp, None, None
    try:
        data = json.loads(payload)
    except ValueError:
        return None, None, "frame is not JSON"
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        stamp = parse_text(data["message"])
        if stamp is not None:
            user = data.get("user")
            # A user that is not a string is no sender's name: it shows as a wrong one.
            return stamp, (user if isinstance(user, str) or user is None else repr(user)), None
        return None, None, "message is not a load-test message"
    if isinstance(data, dict) and "error" in data:
        return None, None, f"server error frame: {str(data['error'])[:120]}"
    return None, None, "frame has no string message"
