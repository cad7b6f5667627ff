"""Positive controls of the counting: a real ``python -m load run`` against a server that
drops, duplicates and leaks known deliveries and closes sockets right after dropping a
delivery to them (load/tests/misbehaving_server.py). The harness must report exactly what
the server did, and no expected delivery may vanish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from load.core.plan import DEFAULT_CLOSE_GRACE_S
from load.tests.helpers import assert_accounting, run_load
from load.tests.misbehaving_server import Acts, MisbehavingServer, Misbehaviour, acts_dict

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

# 8 users in 2 rooms of 4, 4 msg/s each for 4 s: about 128 messages, 512 deliveries.
USERS, ROOMS, ROOM_SIZE = 8, 2, 4
SHAPE = ("--users", str(USERS), "--rooms", str(ROOMS), "--rate", "4", "--duration", "4")


def run_against(rules: Misbehaviour, out: Path) -> tuple[dict[str, Any], Acts]:
    """(the run record, what the server did)."""
    with MisbehavingServer(rules) as server:
        finished = run_load("run", "--target", server.target, *SHAPE, "--out", str(out))
    assert finished.returncode == 0, finished.stderr
    (record,) = finished.summary(out)["runs"]
    return record, server.acts


def test_drops_duplicates_and_leaks_in_a_steady_run_are_counted_exactly(tmp_path: Path) -> None:
    rules = Misbehaviour(drop_every=7, duplicate_every=5, leak_every=9)
    record, acts = run_against(rules, tmp_path / "out")
    truth = acts_dict(acts)
    assert acts.dropped and acts.duplicated and acts.leaked, truth  # the control did act
    assert record["sent"] == acts.relayed, truth
    # Every message is expected at the 4 members of its room: nobody left or joined.
    assert record["expected"] == ROOM_SIZE * acts.relayed
    assert record["lost"] == acts.dropped, truth
    assert record["duplicated"] == acts.duplicated, truth
    assert record["leaked"] == acts.leaked, truth
    assert (record["unconfirmed"], record["errors"]) == (0, 0), record["errors_by_kind"]
    assert record["delivered"] == record["expected"] - acts.dropped


def test_a_delivery_dropped_before_the_server_closes_the_socket_is_lost(tmp_path: Path) -> None:
    # Every 6th message loses one delivery; every second such receiver is closed 0.2 s
    # later (twice the close grace): the dropped delivery must be lost, never in doubt.
    rules = Misbehaviour(drop_every=6, close_after_drop_every=2, close_delay_s=0.2)
    assert rules.close_delay_s >= 2 * DEFAULT_CLOSE_GRACE_S
    record, acts = run_against(rules, tmp_path / "out")
    truth = acts_dict(acts)
    assert acts.closed == acts.dropped_before_close > 0, truth
    assert record["errors_by_kind"].get("connection_server_closed") == acts.closed, record
    assert record["lost"] + record["unconfirmed"] >= acts.dropped_before_close, truth
    assert record["lost"] == acts.dropped, (record["lost"], record["unconfirmed"], truth)
    assert record["duplicated"] == record["leaked"] == 0
    # Every close was answered (the client noticed it and replied).
    assert len(acts.close_handshakes_ms) == acts.closed, truth


def test_the_identity_check_catches_a_delivery_that_ends_nowhere() -> None:
    consistent = {"expected": 10, "delivered": 7, "lost": 2, "unconfirmed": 1,
                  "accounting_consistent": True}  # fmt: skip
    assert_accounting(consistent)
    with pytest.raises(AssertionError):
        assert_accounting({**consistent, "unconfirmed": 0})
