"""Network paths of a test's own: a network namespace joined to this one by a veth pair,
and a fixed delay on the path, one amount each way.

The delay comes from ``tc netem`` where the kernel has it; where it has not (this
project's reference machine is built without CONFIG_NET_SCH_NETEM), from ``Relay``, a
TCP relay in user space that holds each chunk it reads for the delay of its direction
before writing it on, in the order read. Either way only the traffic to one port (the
master's channel) is delayed: a chat server near the workers and a master far away is
the case a clock bound wider than the latency describes.

Everything here is made by the test and removed by ``close()``: namespaces, veth pairs
(addresses in 10.213.0.0/16, a /30 each, nothing else on them) and relays. Needs root
and iproute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CLONE_NEWNET = 0x40000000
CHUNK = 65536
QUEUED_CHUNKS = 256  # per direction: a bounded buffer; the reader waits when it is full
COMMAND_TIMEOUT_S = 10


class NetPathUnavailable(Exception):
    """Namespaces cannot be made here (no iproute2, not root): the text says what to do."""


def run(*argv: str, namespace: str | None = None, check: bool = True) -> str:
    """``argv`` (inside ``namespace`` if given); its stdout. RuntimeError if it fails."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    command = [*prefix, *argv]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {finished.stderr.strip()}")
    return finished.stdout


def require_netns() -> None:
    """Raise NetPathUnavailable unless this process can make a network namespace."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        raise NetPathUnavailable("ip/tc are not installed: sudo apt-get install iproute2")
    if os.geteuid() != 0:
        raise NetPathUnavailable(
            "network namespaces need root: run this test as root "
            "(sudo -E env PATH=$PATH python -m pytest load/tests/test_netns_workers.py)"
        )
    probe = f"chatload-probe-{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
    except RuntimeError as error:
        raise NetPathUnavailable(f"cannot make a network namespace: {error}") from None
    finally:
        run("ip", "netns", "del", probe, check=False)


def netem_available() -> bool:
    """Whether the kernel takes a netem qdisc, tried on a throw-away namespace's loopback."""
    probe = f"chatload-netem-{os.getpid()}"
    run("ip", "netns", "add", probe)
    try:
        finished = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
             "netem", "delay", "1ms"],
            capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False,
        )  # fmt: skip
        return finished.returncode == 0
    finally:
        run("ip", "netns", "del", probe, check=False)


def free_subnet_octet() -> int:
    """A third octet x for 10.213.x.0/24 that no interface of this machine uses."""
    used = run("ip", "-o", "-4", "addr", "show")
    for octet in range(0, 256):
        if f"10.213.{octet}." not in used:
            return octet
    raise RuntimeError("every 10.213.x.0/24 is in use")


def listening_socket_in(namespace: str, host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` inside ``namespace``. A socket stays in the
    namespace it was made in, so one short thread joins the namespace, makes it and ends;
    this process (and its relay loop) stays where it was."""
    libc = ctypes.CDLL(None, use_errno=True)
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with open(f"/var/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            made.append(listener)
        except BaseException as error:  # handed to the caller's thread
            made.append(error)

    thread = threading.Thread(target=make, name=f"netns-{namespace}")
    thread.start()
    thread.join(COMMAND_TIMEOUT_S)
    if not made:
        raise RuntimeError(f"making a socket in {namespace} did not finish")
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@dataclass(frozen=True)
class Delay:
    """Seconds added toward the master (upstream) and toward the worker (downstream)."""

    to_upstream_s: float
    to_downstream_s: float

    def __str__(self) -> str:
        return (
            f"{self.to_upstream_s * 1000:g} ms toward the master, "
            f"{self.to_downstream_s * 1000:g} ms toward the worker"
        )


class Relay:
    """Accepts on ``listener`` and connects each client to ``upstream``; every chunk is
    held for its direction's delay, counted from its arrival, so a steady stream is
    shifted, not slowed, and bytes leave in the order they came. Runs an asyncio loop in
    its own thread until ``close()``."""

    def __init__(self, listener: socket.socket, upstream: tuple[str, int], delay: Delay) -> None:
        self.listener = listener
        self.upstream = upstream
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def start(self) -> Relay:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        future.result(timeout=COMMAND_TIMEOUT_S)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connect, sock=self.listener)

    async def _connect(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_in, upstream_out = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), COMMAND_TIMEOUT_S
            )
        except (OSError, asyncio.TimeoutError):
            client_out.close()
            return
        for writer in (client_out, upstream_out):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections.add(writer)
        try:
            await asyncio.gather(
                self._pump(client_in, upstream_out, self.delay.to_upstream_s),
                self._pump(upstream_in, client_out, self.delay.to_downstream_s),
            )
        finally:
            for writer in (client_out, upstream_out):
                self.connections.discard(writer)
                writer.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay_s: float
    ) -> None:
        """One direction: a reader stamps each chunk on arrival, a writer sends it when
        its delay is up; an empty chunk (EOF) is passed on the same way."""
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

        async def read() -> None:
            while True:
                try:
                    chunk = await source.read(CHUNK)
                except OSError:
                    chunk = b""
                await held.put((self.loop.time() + delay_s, chunk))
                if not chunk:
                    return

        async def write() -> None:
            while True:
                due, chunk = await held.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    with contextlib.suppress(OSError):
                        sink.write_eof()
                    return
                sink.write(chunk)
                try:
                    await sink.drain()
                except OSError:
                    return

        await asyncio.gather(read(), write())

    def close(self) -> None:
        if not self.thread.is_alive():
            self.listener.close()
            return

        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            for writer in list(self.connections):
                writer.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(COMMAND_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(COMMAND_TIMEOUT_S)
        self.listener.close()


@dataclass
class NetPath:
    """One namespace, its veth pair (``host_address`` on this side, ``address`` inside),
    and the delayed way from inside it to one TCP port here."""

    namespace: str
    host_if: str
    inner_if: str
    host_address: str
    address: str
    delay: Delay


class NetPaths:
    """The namespaces and relays of one test; ``close()`` removes all of them.

    ``kind`` is "netem" when the kernel delays the packets, "relay" when ``Relay`` does."""

    def __init__(self, *, tag: str) -> None:
        self.tag = tag
        self.kind = "netem" if netem_available() else "relay"
        self.octet = free_subnet_octet()
        self.paths: list[NetPath] = []
        self.relays: list[Relay] = []
        self.processes: list[subprocess.Popen] = []

    def popen(
        self, argv: Sequence[str], *, path: NetPath | None = None, **options: Any
    ) -> subprocess.Popen:
        """``argv`` started inside ``path``'s namespace (here when None), in a session of
        its own so that ``close()`` ends it with everything it started (faketime forks)."""
        prefix = ["ip", "netns", "exec", path.namespace] if path is not None else []
        process = subprocess.Popen([*prefix, *argv], start_new_session=True, **options)
        self.processes.append(process)
        return process

    def add(self, delay: Delay) -> NetPath:
        index = len(self.paths)
        namespace = f"chatload-{self.tag}-{index}"
        host_if, inner_if = f"cl{self.tag}{index}h", f"cl{self.tag}{index}n"
        base = 4 * index  # a /30 each: .base+1 here, .base+2 inside
        host_address = f"10.213.{self.octet}.{base + 1}"
        address = f"10.213.{self.octet}.{base + 2}"
        path = NetPath(namespace, host_if, inner_if, host_address, address, delay)
        self.paths.append(path)  # before it exists: close() removes whatever got made
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", inner_if,
            "netns", namespace)  # fmt: skip
        run("ip", "addr", "add", f"{host_address}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "link", "set", "lo", "up", namespace=namespace)
        run("ip", "addr", "add", f"{address}/30", "dev", inner_if, namespace=namespace)
        run("ip", "link", "set", inner_if, "up", namespace=namespace)
        return path

    def delayed_port(self, path: NetPath, upstream: tuple[str, int]) -> tuple[str, int]:
        """An address that the namespace reaches over the veth and that leads to
        ``upstream`` (a port here) with the path's delay; returns it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((path.host_address, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        if self.kind == "netem":
            # Only the relay's port: the chat traffic on the same veth stays undelayed.
            netem(path.host_if, delay_s=path.delay.to_downstream_s, match=("sport", port))
            netem(
                path.inner_if,
                delay_s=path.delay.to_upstream_s,
                match=("dport", port),
                namespace=path.namespace,
            )
            delay = Delay(0.0, 0.0)
        else:
            delay = path.delay
        self.relays.append(Relay(listener, upstream, delay).start())
        return path.host_address, port

    def loopback_port(self, path: NetPath, port: int) -> None:
        """``127.0.0.1:port`` inside the namespace leads, undelayed, to the same port on
        this machine's loopback (the chat server: its Host header stays one it accepts)."""
        listener = listening_socket_in(path.namespace, "127.0.0.1", port)
        self.relays.append(Relay(listener, ("127.0.0.1", port), Delay(0.0, 0.0)).start())

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=COMMAND_TIMEOUT_S)
        for relay in self.relays:
            relay.close()
        for path in self.paths:
            run("ip", "netns", "del", path.namespace, check=False)
            run("ip", "link", "del", path.host_if, check=False)  # gone with its peer, normally

    def leftovers(self) -> Sequence[str]:
        """Namespaces or interfaces of these paths still present (none after close())."""
        namespaces = run("ip", "netns", "list")
        links = run("ip", "-o", "link", "show")
        return [
            name
            for path in self.paths
            for name in (path.namespace, path.host_if)
            if name in namespaces or f" {name}@" in links or f" {name}:" in links
        ]


def netem(
    device: str, *, delay_s: float, match: tuple[str, int], namespace: str | None = None
) -> None:
    """Delay the packets leaving ``device`` whose TCP port ``match`` names (("sport" or
    "dport", port)); every other packet takes the undelayed class."""
    direction, port = match
    run("tc", "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "10",
       namespace=namespace)  # fmt: skip
    for classid in ("1:10", "1:20"):
        run("tc", "class", "add", "dev", device, "parent", "1:", "classid", classid, "htb",
           "rate", "10gbit", namespace=namespace)  # fmt: skip
    run("tc", "qdisc", "add", "dev", device, "parent", "1:20", "handle", "20:", "netem",
       "delay", f"{delay_s * 1000:g}ms", namespace=namespace)  # fmt: skip
    run("tc", "filter", "add", "dev", device, "parent", "1:", "protocol", "ip", "prio", "1",
       "u32", "match", "ip", direction, str(port), "0xffff", "flowid", "1:20",
       namespace=namespace)  # fmt: skip
