"""Load workers on other machines: the master's side of ``python -m load run --workers N``
and the command line of ``python -m load worker`` (no Locust import)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"
DEFAULT_MASTER_PORT = 5557  # Locust's own default
# How long a master waits for its workers before giving up (Locust's own check).
DEFAULT_WAIT_S = 300.0


@dataclass(frozen=True)
class RemoteWorkers:
    """N Locust workers that connect to this master from anywhere."""

    count: int
    bind: str
    port: int = DEFAULT_MASTER_PORT
    wait_s: float = DEFAULT_WAIT_S

    def master_args(self) -> list[str]:
        return [
            "--master",
            "--master-bind-host", self.bind,
            "--master-bind-port", str(self.port),
            "--expect-workers", str(self.count),
            "--expect-workers-max-wait", str(int(self.wait_s)),
        ]  # fmt: skip


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 1 and 65535")
    return port


def master_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST[:PORT] (e.g. [::1]:5557)")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a bare host name or IPv4/IPv6 address
        host, port = text, ""
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} has no host: give HOST[:PORT]")
    return host, port_number(port) if port else DEFAULT_MASTER_PORT


def worker_command(host: str, port: int, *, processes: int = 1) -> list[str]:
    """The Locust worker that ``python -m load worker`` runs in its place."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", host, "--master-port", str(port),
    ]  # fmt: skip
    if processes > 1:
        command += ["--processes", str(processes)]
    return command
