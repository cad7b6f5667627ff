"""Every way of serving the chat (harness/chat.py's ``ASGI``) keeps the chat's contract,
on a real server process: the page serves, a message reaches every member of its room and
no one else, a bad frame gets an error on an open socket, a bad room name and a foreign
Origin are refused with 403 before the socket is accepted, and the description says what
the server is made of. On InMemory for all six; for the two Gunicorn shapes also with two
workers on Redis, where a room's members sit in different worker processes.

Where a server does something of its own (lifespan, permessage-deflate), the test asserts
what it does; docs/guide.md ("Serving") says it. The command lines and the description are
checked without a network at the end. The load runs are load/tests/test_scenarios.py's
``test_every_asgi_server_delivers_a_fanout_exactly``; the browser's, e2e/test_servers.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from harness import ASGI, ASGI_SERVERS, GUNICORN_SERVERS, ROOT, ChatServer, ServiceError
from harness.chat import (
    check_workers,
    describe,
    event_loop,
    negotiated_deflate,
    server_command,
)
from harness.live import LiveChat

# (layer, asgi, workers): each server on InMemory; the Gunicorn shapes with two workers on
# Redis, the layer that carries a room between processes.
SHAPES = [pytest.param(("inmemory", asgi, 1), id=f"{asgi}-inmemory") for asgi in ASGI_SERVERS]
SHAPES += [
    pytest.param(("redis", asgi, 2), id=f"{asgi}-redis-x2", marks=pytest.mark.redis)
    for asgi in GUNICORN_SERVERS
]

# What each server answers a client that offers permessage-deflate (as browsers do):
# measured, and asserted, so that a change of version that changes it shows.
DEFLATE = {
    "daphne": "no",
    "uvicorn": "yes (server_max_window_bits=12, client_max_window_bits=12)",
    "hypercorn": "yes (client_max_window_bits=15)",
    "granian": "no",
    "gunicorn-asgi": "no",
    "gunicorn-uvicorn": "yes (server_max_window_bits=12, client_max_window_bits=12)",
}
# What each server logs about lifespan, which Channels' ProtocolTypeRouter does not
# handle: Hypercorn and Uvicorn's Gunicorn worker cannot be told to leave it out.
LIFESPAN_LINES = {
    "hypercorn": "ASGI Framework Lifespan error, continuing without Lifespan support",
    "gunicorn-uvicorn": "ASGI 'lifespan' protocol appears unsupported.",
}
RECV_S = 10.0


@pytest.fixture
def shape(request: pytest.FixtureRequest, live_chat: LiveChat) -> ChatServer:
    """The session's server of the parameter's (layer, asgi, workers)."""
    layer, asgi, workers = request.param
    (server,) = live_chat(layer, asgi=asgi, workers=workers)
    return server


def unique_room(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def connect_to(
    server: ChatServer, room: str, *, session: str | None = None, origin: str | None = None
) -> ClientConnection:
    """A chat socket (enter it, as websockets 17 wants: ``Sockets.open`` does)."""
    headers = {"Cookie": f"sessionid={session}"} if session else None
    return connect(
        f"{server.ws_url}/ws/chat/{room}/",
        origin=Origin(origin or server.url),
        open_timeout=RECV_S,
        additional_headers=headers,
    )


class Sockets(list[ClientConnection]):
    """The sockets a test opened, closed at its end whatever happened."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def open(
        self, server: ChatServer, room: str, *, session: str | None = None
    ) -> ClientConnection:
        socket = self._stack.enter_context(connect_to(server, room, session=session))
        self.append(socket)
        return socket


def handshake_status(server: ChatServer, room: str, origin: str | None = None) -> int:
    """101 when the socket was accepted, else the HTTP status of the refusal."""
    try:
        with connect_to(server, room, origin=origin):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def receive(socket: ClientConnection) -> str:
    return str(socket.recv(timeout=RECV_S))


def worker_of(server: ChatServer, socket: ClientConnection) -> int:
    """The Gunicorn worker that holds the server end of ``socket``."""
    local_port = socket.socket.getsockname()[1]
    for pid in server.worker_pids():
        for connection in psutil.Process(pid).net_connections("tcp"):
            if connection.raddr and connection.raddr.port == local_port:
                return pid
    raise AssertionError(f"no worker of {server!r} holds the socket from port {local_port}")


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    with contextlib.ExitStack() as stack:
        yield Sockets(stack)


def members(
    server: ChatServer, room: str, sockets: Sockets, *, session: str
) -> tuple[ClientConnection, list[ClientConnection]]:
    """A logged-in sender and anonymous listeners in ``room``: one listener, or with
    several workers as many as it takes to have one on another worker than the sender's
    (the kernel spreads connections by a hash; 30 tries make missing it unlikely beyond
    any run: 2**-30)."""
    sender = sockets.open(server, room, session=session)
    listeners = [sockets.open(server, room)]
    if server.workers > 1:
        senders_worker = worker_of(server, sender)
        while worker_of(server, listeners[-1]) == senders_worker and len(listeners) < 30:
            listeners.append(sockets.open(server, room))
        assert worker_of(server, listeners[-1]) != senders_worker, "all on one worker"
    return sender, listeners


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_the_page_serves_and_a_message_reaches_every_member(
    shape: ChatServer, live_chat: LiveChat, sockets: Sockets
) -> None:
    """A logged-in sender's frame names it; an anonymous sender's frame is the tutorial's,
    byte for byte. With two workers, the room has members on both."""
    server = shape
    with urllib.request.urlopen(f"{server.url}/chat/lobby/", timeout=RECV_S) as page:
        assert 'id="chat-log"' in page.read().decode()
    name, session = next(iter(live_chat.accounts.sessions.items()))
    sender, listeners = members(server, unique_room("members"), sockets, session=session)
    everyone = [sender, *listeners]

    sender.send(json.dumps({"message": f"served by {server.asgi}"}))
    named = [json.loads(receive(socket)) for socket in everyone]
    assert named == [{"message": f"served by {server.asgi}", "user": name}] * len(everyone)

    listeners[-1].send(json.dumps({"message": "anonymous"}))
    assert [receive(socket) for socket in everyone] == ['{"message": "anonymous"}'] * len(everyone)


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_a_message_stays_in_its_room(shape: ChatServer, sockets: Sockets) -> None:
    server = shape
    here, elsewhere = unique_room("here"), unique_room("elsewhere")
    in_here, in_elsewhere = sockets.open(server, here), sockets.open(server, elsewhere)
    in_here.send(json.dumps({"message": "for here"}))
    assert json.loads(receive(in_here)) == {"message": "for here"}
    # Positive control: the other room's member does receive its own room's message, and
    # that is the first frame it gets (not the message for here, delivered before).
    in_elsewhere.send(json.dumps({"message": "for elsewhere"}))
    assert json.loads(receive(in_elsewhere)) == {"message": "for elsewhere"}
    # And the other way round: here's next frame is here's next message, not elsewhere's.
    in_here.send(json.dumps({"message": "for here again"}))
    assert json.loads(receive(in_here)) == {"message": "for here again"}


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_a_bad_frame_gets_an_error_and_the_socket_stays_open(
    shape: ChatServer, sockets: Sockets
) -> None:
    socket = sockets.open(shape, unique_room("frames"))
    socket.send("not JSON")
    assert json.loads(receive(socket)) == {"error": 'frame is not JSON: send {"message": "<text>"}'}
    socket.send(b"\x00binary")
    assert "binary frames are not accepted" in json.loads(receive(socket))["error"]
    socket.send(json.dumps({"message": "still here"}))
    assert json.loads(receive(socket)) == {"message": "still here"}


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_a_bad_room_name_is_refused_with_403_before_accept(shape: ChatServer) -> None:
    """A 403 answer to the handshake (never a 500, never an accepted socket)."""
    assert handshake_status(shape, "ünïcode") == 403
    assert handshake_status(shape, "x" * 95) == 403
    assert handshake_status(shape, "x" * 94) == 101  # positive control: the longest good name


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_a_cross_origin_handshake_is_refused(shape: ChatServer) -> None:
    room = unique_room("origin")
    assert handshake_status(shape, room, origin="http://evil.example") == 403
    assert handshake_status(shape, room) == 101  # positive control: the page's own origin


def mapped_uvloop(server: ChatServer) -> bool:
    """Whether any process of the server has uvloop's extension mapped: it imported it."""
    for stats in server.process_stats():
        try:
            maps = Path(f"/proc/{stats.pid}/maps").read_text()
        except OSError:
            continue
        if "/uvloop/loop." in maps:
            return True
    return False


@pytest.mark.parametrize("shape", SHAPES, indirect=True)
def test_the_description_says_what_the_server_is_made_of(shape: ChatServer) -> None:
    """server_software's parts, checked against the running server: permessage-deflate
    as probed, the event loop against what its processes loaded, lifespan as logged."""
    server = shape
    description = server.description
    spec = ASGI[server.asgi]
    assert description.startswith(
        f"{server.asgi}: gunicorn " if spec.arbiter else f"{server.asgi} "
    ), description
    assert f"WebSocket: {spec.websocket}, {spec.websocket_package} " in description
    assert f"permessage-deflate: {DEFLATE[server.asgi]})" in description, description
    assert server.permessage_deflate == DEFLATE[server.asgi]
    if spec.arbiter:
        assert f", {server.workers} worker" in description
    loop = event_loop(spec)
    assert f"event loop: {loop}" in description
    # A server said to run asyncio never loaded uvloop; one said to run uvloop did.
    if sys.platform == "linux":
        assert mapped_uvloop(server) == (loop == "uvloop"), description
    log = server.log_text()
    if server.asgi in LIFESPAN_LINES:
        assert LIFESPAN_LINES[server.asgi] in log
    else:
        assert "lifespan" not in log.lower(), log


@pytest.mark.redis
@pytest.mark.parametrize("asgi", GUNICORN_SERVERS)
def test_gunicorn_spreads_sockets_over_its_workers_and_replaces_a_killed_one(
    asgi: str, live_chat: LiveChat, backend_for, sockets: Sockets
) -> None:
    """40 sockets opened one after another land on both workers, by the kernel's hash of
    --reuse-port (harness/chat.py says why). A killed worker is replaced on the same port,
    under the same arbiter, and the server serves again; its process list then names the
    new one, and the other worker's sockets stay open."""
    server = live_chat.own("redis", backend=backend_for("redis"), asgi=asgi, workers=2)
    room = unique_room("spread")
    for _ in range(40):
        sockets.open(server, room)
    counts: dict[int, int] = {}
    for socket in sockets:
        pid = worker_of(server, socket)
        counts[pid] = counts.get(pid, 0) + 1
    # A fair hash puts fewer than 8 of 40 on one worker once in 30,000 runs.
    assert len(counts) == 2 and min(counts.values()) >= 8, counts

    owners = {id(socket): worker_of(server, socket) for socket in sockets}
    arbiter, (oldest, other) = server.pid, server.worker_pids()
    assert server.kill_worker() == oldest
    server.wait_for_workers(replaced=oldest)
    workers = server.worker_pids()
    assert server.pid == arbiter and other in workers and oldest not in workers
    assert {stats.pid for stats in server.process_stats()} == {arbiter, *workers}
    assert server.serves_index()
    # The killed worker's sockets are gone with it; the other worker's are still open.
    on_killed = next(socket for socket in sockets if owners[id(socket)] == oldest)
    with pytest.raises(ConnectionClosed):
        on_killed.recv(timeout=RECV_S)
    on_other = next(socket for socket in sockets if owners[id(socket)] == other)
    on_other.send(json.dumps({"message": "still here"}))
    assert json.loads(receive(on_other)) == {"message": "still here"}


# --- without a network: command lines, refusals, the description -------------------------


def test_each_server_has_its_command_line() -> None:
    python = sys.executable
    app = "mysite.asgi:application"
    assert server_command("daphne", "127.0.0.1", 8001) == [
        python, "-m", "daphne", "-b", "127.0.0.1", "-p", "8001", app,
    ]  # fmt: skip
    assert server_command("uvicorn", "127.0.0.1", 8001) == [
        python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "8001",
        "--ws", "websockets-sansio", "--lifespan", "off",
    ]  # fmt: skip
    assert server_command("hypercorn", "::1", 8001) == [
        python, "-m", "hypercorn", "--bind", "[::1]:8001", "--worker-class", "asyncio", app,
    ]  # fmt: skip
    assert server_command("granian", "127.0.0.1", 8001) == [
        python, "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1",
        "--port", "8001", "--loop", "uvloop", app,
    ]  # fmt: skip
    assert server_command("gunicorn-asgi", "127.0.0.1", 8001, workers=3) == [
        python, "-m", "gunicorn", "--bind", "127.0.0.1:8001", "--workers", "3",
        "--worker-class", "asgi", "--asgi-loop", "uvloop", "--asgi-lifespan", "off",
        "--reuse-port", "--no-control-socket", app,
    ]  # fmt: skip
    assert server_command("gunicorn-uvicorn", "127.0.0.1", 8001) == [
        python, "-m", "gunicorn", "--bind", "127.0.0.1:8001", "--workers", "1",
        "--worker-class", "uvicorn_worker.UvicornWorker",
        "--reuse-port", "--no-control-socket", app,
    ]  # fmt: skip
    assert server_command("daphne", "127.0.0.1", 8001, via="runserver")[1:] == [
        "manage.py", "runserver", "--noreload", "127.0.0.1:8001",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("asgi", "workers", "layer", "needle"),
    [
        ("tornado", 1, "redis", "unknown ASGI server 'tornado'"),
        ("gunicorn-asgi", 0, "redis", "workers must be at least 1"),
        ("hypercorn", 2, "redis", "hypercorn is started as one process here: start 2 servers"),
        ("gunicorn-uvicorn", 2, "inmemory", "each worker would have rooms of its own"),
    ],
)
def test_workers_that_do_not_fit_are_refused_in_one_line(
    asgi: str, workers: int, layer: str, needle: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        check_workers(asgi, workers, layer)
    assert needle in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ServiceError):
        ChatServer.start(asgi=asgi, workers=workers, layer=layer)  # refused before starting


def test_workers_that_fit_pass() -> None:
    for asgi in ASGI_SERVERS:
        check_workers(asgi, 1, "inmemory")
    for asgi in GUNICORN_SERVERS:
        check_workers(asgi, 4, "redis")


@pytest.mark.parametrize(
    ("header", "parameters"),
    [
        (None, None),
        ("", None),
        ("permessage-deflate", ""),
        ("permessage-deflate; client_max_window_bits=15", "client_max_window_bits=15"),
        (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            "server_max_window_bits=12, client_max_window_bits=12",
        ),
        (
            "x-webkit-deflate-frame, PerMessage-Deflate; server_no_context_takeover",
            "server_no_context_takeover",
        ),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_negotiated_deflate_reads_the_extensions_header(
    header: str | None, parameters: str | None
) -> None:
    assert negotiated_deflate(header) == parameters


def test_the_description_names_server_websocket_loop_and_deflate() -> None:
    versions = {
        "gunicorn": "27.0.1",
        "uvicorn-worker": "0.4.0",
        "uvicorn": "0.54.0",
        "websockets": "17.4",
        "uvloop": "0.23.0",
        "daphne": "4.2.3",
        "autobahn": "26.11.1",
    }
    assert describe(ASGI["daphne"], versions, loop="asyncio", deflate="no") == (
        "daphne 4.2.3 (WebSocket: autobahn, autobahn 26.11.1; event loop: asyncio, under "
        "Twisted's asyncioreactor; permessage-deflate: no)"
    )
    assert describe(
        ASGI["gunicorn-uvicorn"], versions, workers=2, loop="uvloop", deflate="yes"
    ) == (
        "gunicorn-uvicorn: gunicorn 27.0.1 with uvicorn-worker 0.4.0 and uvicorn 0.54.0, "
        "2 workers (WebSocket: websockets-sansio, websockets 17.4; event loop: uvloop 0.23.0, "
        "Uvicorn's --loop auto; permessage-deflate: yes)"
    )


def test_uvicorns_worker_speaks_the_websocket_implementation_it_is_said_to() -> None:
    """gunicorn-uvicorn's UvicornWorker cannot be given --ws: its auto must be what the
    description names (websockets-sansio), and its --loop auto uvloop when installed."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    assert AutoWebSocketsProtocol is WebSocketsSansIOProtocol
    assert ASGI["gunicorn-uvicorn"].websocket == "websockets-sansio"
    assert event_loop(ASGI["gunicorn-uvicorn"]) == "uvloop"  # uvicorn[standard] brings it


def test_serve_refuses_workers_that_do_not_fit_in_one_line() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "services.py", "serve", "--asgi", "granian", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("python services.py serve: error: granian is started as one process here")
    )
