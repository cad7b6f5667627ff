"""``--deflate on``: the load client offers permessage-deflate as browsers do, reads the
compressed frames of a server that accepts it (RFC 7692), and counts the sockets that
negotiated it. Frame-level cases without a network; one short run against each server."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from load.inlocust.wire import DEFLATE_TAIL, OP_TEXT, FrameParser, negotiated_inflater
from load.tests.test_scenarios import assert_clean, run_against

MESSAGES = [b'{"message": "hello"}', b'{"message": "hello again"}', b"x" * 300]


def compressed_frames(messages: list[bytes], *, takeover: bool, split: bool = False) -> bytes:
    """Server frames (unmasked) carrying ``messages`` compressed as a server would, one
    compressor for the connection with ``takeover``, a new one per message without; with
    ``split``, each message in two frames (RSV1 on the first only)."""
    compressor = zlib.compressobj(wbits=-15)
    stream = b""
    for message in messages:
        if not takeover:
            compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(DEFLATE_TAIL)
        data = data[: -len(DEFLATE_TAIL)]
        if split:
            half = len(data) // 2
            stream += bytes((0x40 | OP_TEXT, half)) + data[:half]  # RSV1, not final
            stream += bytes((0x80, len(data) - half)) + data[half:]  # continuation, final
        else:
            assert len(data) < 126
            stream += bytes((0x80 | 0x40 | OP_TEXT, len(data))) + data
    return stream


@pytest.mark.parametrize("takeover", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_compressed_messages_are_read_whole(takeover: bool, split: bool) -> None:
    extensions = "permessage-deflate" + ("" if takeover else "; server_no_context_takeover")
    parser = FrameParser(inflate=negotiated_inflater(extensions))
    stream = compressed_frames(MESSAGES, takeover=takeover, split=split)
    # Byte by byte: the parser must not care where a read ends.
    received = [message for byte in stream for message in parser.feed(bytes((byte,)))]
    assert received == [(OP_TEXT, message) for message in MESSAGES]


def test_a_window_kept_across_messages_needs_the_same_inflater() -> None:
    # The positive control of the test above: with a fresh inflater per message, the second
    # message of a compressor that keeps its window cannot be read.
    parser = FrameParser(
        inflate=negotiated_inflater("permessage-deflate; server_no_context_takeover")
    )
    with pytest.raises(zlib.error):
        parser.feed(compressed_frames([b"abcabc" * 20, b"abcabc" * 20], takeover=True))


def test_an_uncompressed_frame_on_a_deflate_socket_stays_as_it_is() -> None:
    parser = FrameParser(inflate=negotiated_inflater("permessage-deflate"))
    assert parser.feed(bytes((0x81, 5)) + b"hello") == [(OP_TEXT, b"hello")]


def test_only_an_accepted_permessage_deflate_makes_an_inflater() -> None:
    assert negotiated_inflater("") is None
    assert negotiated_inflater("x-webkit-deflate-frame") is None
    assert negotiated_inflater("permessage-deflate; client_max_window_bits=15") is not None


@pytest.mark.load
@pytest.mark.usefixtures("load_dependencies")
@pytest.mark.parametrize(("asgi", "negotiates"), [("uvicorn", True), ("daphne", False)])
def test_each_server_says_whether_it_compresses(
    asgi: str, negotiates: bool, live_chat, tmp_path: Path
) -> None:
    """Uvicorn (websockets) accepts permessage-deflate and every message arrives through
    the inflater, counted exactly; Daphne (Autobahn, as Daphne configures it) does not."""
    (server,) = live_chat("inmemory", asgi=asgi)
    summary = run_against(
        server.ws_url, tmp_path, "--deflate", "on", "--users", "8", "--rooms", "2",
        "--rate", "2", "--duration", "2", "--drain", "2",
    )  # fmt: skip
    (run,) = summary["runs"]
    assert_clean(run)
    assert run["deflate_sockets"] == (run["connects"] if negotiates else 0)
    assert run["connects"] == 8
