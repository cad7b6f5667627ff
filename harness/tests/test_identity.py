"""The HTTP identity check (harness/identity.py): on the chat, with Daphne and Uvicorn (the
other ASGI servers with --heavy), every answer reaches its own user; on a server that mixes
answers up, as channels 3.0.2 did (CVE-2020-35681), the check says so. The real 3.0.2 is
an opt-in compat cell (compat/README.md); the default suite never installs it."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from harness import Accounts, check_identity, page_user
from harness.live import asgi_params


@pytest.mark.parametrize("asgi", asgi_params())
@pytest.mark.parametrize(("shape", "users", "rounds"), [("burst", 16, 10), ("staggered", 8, 10)])
def test_every_answer_reaches_its_own_user(
    asgi: str, shape: str, users: int, rounds: int, live_chat
) -> None:
    (server,) = live_chat("inmemory", asgi=asgi)
    accounts = live_chat.accounts  # the live servers' users; each logs in anew here
    some = Accounts(accounts.database, accounts.usernames[:users], accounts.password)
    report = check_identity(server.url, some, shape=shape, rounds=rounds)
    assert report.clean, report.describe()
    assert report.requests == users * (2 + rounds)  # two for the login, then the pages


def test_the_page_names_nobody_for_an_anonymous_visitor() -> None:
    assert page_user('You are <strong id="chat-user">alice</strong>.') == "alice"
    assert page_user("<p>You are anonymous. <a id=login-link>Log in</a></p>") is None


# --- the positive control: a server that mixes answers up ---------------------------------


class MixUpServer(ThreadingHTTPServer):
    """The chat's login and room page, served with the CVE's mistake when ``shared``: each
    request writes whom it is for into one slot of the server and reads it back to answer,
    so concurrent requests answer for whoever wrote last. A barrier of ``users`` makes the
    mix-up certain instead of likely, for the logins and ``rounds`` rounds of pages (the
    check's own concurrent part); later requests come alone and are answered straight.
    ``never_answer`` is a user whose pages get no answer."""

    daemon_threads = True

    def __init__(
        self, *, users: int, shared: bool, rounds: int = 3, never_answer: str = ""
    ) -> None:
        super().__init__(("127.0.0.1", 0), MixUpHandler)
        self.shared = shared
        self.never_answer = never_answer
        self.slot = ""
        self.mixed_left = users * (1 + rounds)
        self.lock = threading.Lock()
        self.together = threading.Barrier(users, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer_for(self, user: str) -> str:
        with self.lock:
            self.mixed_left -= 1
            mixed = self.shared and self.mixed_left >= 0
        if not mixed:
            return user
        self.slot = user
        # Broken only if a request never came (a very busy machine): answer anyway.
        with contextlib.suppress(threading.BrokenBarrierError):
            self.together.wait()
        return self.slot


class MixUpHandler(BaseHTTPRequestHandler):
    server: MixUpServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, body: str, *, cookie: str = "") -> None:
        self.send_response(200 if not cookie.startswith("sessionid") else 302)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:
        if self.path.startswith("/accounts/login/"):
            token = '<input name="csrfmiddlewaretoken" value="t0ken">'
            self.reply(token, cookie="csrftoken=t0ken")
            return
        match = re.search(r"sessionid=s-([\w]+)", self.headers.get("Cookie", ""))
        user = match[1] if match else ""
        if user and user == self.server.never_answer:
            self.close_connection = True  # hang up without a word
            return
        named = self.server.answer_for(user)
        self.reply(f'You are <strong id="chat-user">{named}</strong>.' if named else "anonymous")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        user = self.server.answer_for(form["username"][0])
        self.reply("", cookie=f"sessionid=s-{user}")


@pytest.fixture
def mix_up(request: pytest.FixtureRequest) -> Iterator[MixUpServer]:
    server = MixUpServer(**request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fake_accounts(tmp_path: Path, users: int) -> Accounts:
    return Accounts(tmp_path / "unused.sqlite3", tuple(f"user{i}" for i in range(users)), "pw")


@pytest.mark.parametrize("mix_up", [{"users": 8, "shared": False}], indirect=True)
def test_the_mix_up_server_is_clean_without_its_mistake(mix_up, tmp_path: Path) -> None:
    report = check_identity(mix_up.url, fake_accounts(tmp_path, 8), rounds=3)
    assert report.clean, report.describe()


@pytest.mark.parametrize("mix_up", [{"users": 8, "shared": True}], indirect=True)
def test_answers_for_another_user_are_counted(mix_up, tmp_path: Path) -> None:
    report = check_identity(mix_up.url, fake_accounts(tmp_path, 8), rounds=3)
    assert not report.clean
    # Every login got the last writer's session: 7 of 8 wrong; each round of pages names
    # one user to all 8, so at least 7 wrong pages a round.
    assert report.foreign_session >= 7
    assert report.wrong_user >= 7 * 3
    assert report.unanswered == 0 and report.answered == report.requests


@pytest.mark.parametrize(
    "mix_up", [{"users": 4, "shared": False, "never_answer": "user2"}], indirect=True
)
def test_requests_left_without_an_answer_are_counted(mix_up, tmp_path: Path) -> None:
    report = check_identity(mix_up.url, fake_accounts(tmp_path, 4), rounds=3, timeout=2)
    assert report.unanswered == 3  # user2's three pages (its login was answered)
    assert report.answered == report.requests - 3
    assert report.wrong_user == 0 and not report.clean
