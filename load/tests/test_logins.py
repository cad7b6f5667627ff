"""Logged-in load users: every delivery names its sender (``misattributed`` is 0) on
Daphne and Uvicorn (every ASGI server with --heavy), whether the users logged in through
the form over HTTP or came with sessions written in bulk; a consumer that names the wrong
sender is caught (the positive control); the accounts file's mistakes are one clear line.

Every layer runs logged in too: test_scenarios.py's fanout runs log in with sessions, and
app/mysite/test_environment.py checks a logged-in sender's frames on Uvicorn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.live import asgi_params
from load.core.logins import read_accounts
from load.tests.helpers import run_load
from load.tests.test_scenarios import assert_clean, run_against

pytestmark = [pytest.mark.load, pytest.mark.usefixtures("load_dependencies")]

SHAPE = ("--users", "12", "--rooms", "3", "--rate", "2", "--duration", "2", "--drain", "2")
MISATTRIBUTING = "load.tests.misattributing_consumer.ChatConsumer"


def logged_in_run(server_url: str, out: Path, accounts: Path, login: str, *args: str) -> dict:
    summary = run_against(
        server_url, out, "--login", login, "--accounts", str(accounts), *SHAPE, *args
    )
    (run,) = summary["runs"]
    assert run["login"] == login
    return run


@pytest.mark.parametrize("asgi", asgi_params())
def test_users_who_log_in_through_the_form_are_named(asgi: str, live_chat, tmp_path: Path) -> None:
    (server,) = live_chat("inmemory", asgi=asgi)
    # A frame without a user counts too, so 0 also says that every frame named someone.
    # Fewer users than SHAPE's: each login costs the server a password hash.
    run = logged_in_run(
        server.ws_url, tmp_path, live_chat.accounts_file, "http", "--users", "6", "--rooms", "2"
    )
    assert_clean(run)
    assert run["connects"] == 6
    assert run["expected"] == run["sent"] * 3


def test_a_consumer_that_names_the_wrong_sender_is_caught(live_chat, tmp_path: Path) -> None:
    """The positive control: the consumer keeps the sender on its class, so every message
    names whoever connected last. Nothing is lost, and most deliveries are misattributed."""
    (server,) = live_chat("inmemory", consumer=MISATTRIBUTING)
    run = logged_in_run(server.ws_url, tmp_path, live_chat.accounts_file, "sessions")
    assert run["lost"] == 0 and run["delivered"] == run["expected"]
    # 12 users, one of whom is named on every frame: about 11 in 12 deliveries are wrong
    # (how many exactly depends on how much that one user happened to send).
    assert run["misattributed"] >= run["delivered"] // 2 > 0


def test_anonymous_frames_that_name_someone_are_counted(live_chat, tmp_path: Path) -> None:
    # The same consumer names the anonymous sender "" (AnonymousUser's username): a frame
    # of an anonymous sender must carry no user at all.
    (server,) = live_chat("inmemory", consumer=MISATTRIBUTING)
    summary = run_against(server.ws_url, tmp_path, *SHAPE)
    (run,) = summary["runs"]
    assert run["login"] == "none"
    # Every copy is misattributed. `misattributed` counts every copy received, also of a
    # message sent just outside the measured window, which `delivered` leaves out (one such
    # message, four copies, made 192 against 188 in one run): so at least every delivery.
    assert run["misattributed"] >= run["delivered"] > 0


def write_accounts(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("data", "login", "needle"),
    [
        ({"usernames": []}, "sessions", "at least one username"),
        ([1, 2], "http", "at least one username"),
        ({"usernames": ["al~ice"], "password": "x"}, "http", "'al~ice' is not a username"),
        ({"usernames": ["alice"]}, "http", 'needs the users\' "password"'),
        ({"usernames": ["alice", "bob"], "sessions": {"alice": "k"}}, "sessions", "'bob' has"),
    ],
)
def test_an_accounts_file_that_cannot_serve_the_login_is_refused(
    tmp_path: Path, data: object, login: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        read_accounts(write_accounts(tmp_path / "accounts.json", data), login)


def test_an_accounts_file_that_is_missing_or_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        read_accounts(tmp_path / "absent.json", "http")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        read_accounts(tmp_path / "bad.json", "http")


def test_users_are_shared_out_round_robin(tmp_path: Path) -> None:
    accounts = read_accounts(
        write_accounts(tmp_path / "a.json", {"usernames": ["a", "b"], "password": "p"}), "http"
    )
    assert [accounts.username_of(i) for i in range(5)] == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--login", "http"], "--login http needs --accounts FILE"),
        (["--login", "oauth"], "invalid choice: 'oauth'"),
        (["--login", "sessions", "--accounts", "/nonexistent/a.json"], "cannot read it"),
    ],
)
def test_run_refuses_a_login_it_cannot_do_in_one_line(args: list[str], needle: str) -> None:
    finished = run_load("run", "--target", "ws://127.0.0.1:1", *args)
    assert finished.returncode == 2
    assert needle in finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1
    assert "Traceback" not in finished.stderr
