"""quickstart.py keeps the README's promise that no server it installs is started or enabled
as a system service.

apt-get and systemctl are small fakes on PATH (apt itself is not what is tested): the fake
apt-get asks the policy-rc.d in place whether it may start a service, as a package's
maintainer script does through invoke-rc.d, and "installs" units that the fake systemctl
then lists as enabled. The policy path and systemd's run directory point into the test's
directory: the machine's own /usr/sbin/policy-rc.d is never written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import quickstart

FAKE_APT_GET = """#!/bin/sh
# Record each call and what policy-rc.d answers for a start, as invoke-rc.d asks it.
"$FAKE_POLICY" redis-server start >/dev/null 2>&1
echo "apt-get $1 policy=$?" >> "$FAKE_RECORD"
if [ "$1" = install ]; then touch "$FAKE_INSTALLED"; fi
exit "${FAKE_APT_STATUS:-0}"
"""
FAKE_SYSTEMCTL = """#!/bin/sh
# Enabled before the install: ssh.service; enabled by it: redis-server.service, epmd.socket.
case "$1" in
  list-unit-files)
    echo "ssh.service enabled enabled"
    if [ -e "$FAKE_INSTALLED" ]; then
      echo "epmd.socket enabled enabled"
      echo "redis-server.service enabled enabled"
    fi ;;
  *) echo "systemctl $*" >> "$FAKE_RECORD" ;;
esac
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root shell on a machine missing redis-server, with the fakes on PATH and
    systemd running; returns the file the fakes record their calls in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("apt-get", FAKE_APT_GET), ("systemctl", FAKE_SYSTEMCTL)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_INSTALLED", str(tmp_path / "installed"))
    monkeypatch.setenv("FAKE_POLICY", str(tmp_path / "policy-rc.d"))
    monkeypatch.setattr(quickstart, "POLICY_RC_D", tmp_path / "policy-rc.d")
    (tmp_path / "run-systemd").mkdir()
    monkeypatch.setattr(quickstart, "SYSTEMD_RUNNING", tmp_path / "run-systemd")
    monkeypatch.setattr(quickstart.os, "geteuid", lambda: 0)
    monkeypatch.setitem(quickstart.SYSTEM_NEEDS, "bench", {"not-a-server-here": "redis-server"})
    return record


def test_the_install_starts_no_service_and_disables_only_what_it_enabled(machine):
    quickstart.install_system_packages("bench")
    assert machine.read_text().splitlines() == [
        "apt-get update policy=101",
        "apt-get install policy=101",  # every start refused while packages install
        "systemctl disable -- epmd.socket redis-server.service",  # not ssh.service
    ]
    assert not quickstart.POLICY_RC_D.exists()  # the one it wrote is gone


def test_a_policy_of_the_machine_is_kept_untouched(machine):
    own_policy = "#!/bin/sh\nexit 0\n"
    quickstart.POLICY_RC_D.write_text(own_policy)
    quickstart.POLICY_RC_D.chmod(0o755)
    quickstart.install_system_packages("bench")
    assert machine.read_text().splitlines()[:2] == [
        "apt-get update policy=0",  # the machine's own policy decided
        "apt-get install policy=0",
    ]
    assert quickstart.POLICY_RC_D.read_text() == own_policy


def test_a_failed_install_still_removes_its_policy_and_without_systemd_asks_nothing(
    machine, monkeypatch, tmp_path
):
    monkeypatch.setattr(quickstart, "SYSTEMD_RUNNING", tmp_path / "no-systemd")
    monkeypatch.setenv("FAKE_APT_STATUS", "100")
    with pytest.raises(quickstart.subprocess.CalledProcessError):
        quickstart.install_system_packages("bench")
    assert machine.read_text().splitlines() == ["apt-get update policy=101"]
    assert not quickstart.POLICY_RC_D.exists()
