"""Does every HTTP response reach the user it belongs to? Logged-in users load their room
page at the same time, and each must see its own name, with its own session cookie, and
get exactly one answer per request.

    accounts = make_accounts(tmp_path, users=16)
    with ChatServer.start(env=accounts.env) as chat:
        report = check_identity(chat.url, accounts, shape="burst")
        assert report.clean, report.describe()

Each user has a cookie jar of its own (as separate browsers do) and one TCP connection per
request. It logs in over HTTP as a browser does (GET the form for the CSRF cookie and
token, POST it, keep the ``sessionid`` cookie of the answer), then loads its room page
``rounds`` times. ``shape="burst"`` lines all users up before every request (a barrier),
``"staggered"`` starts each request up to 20 ms after its turn, at random. With
``logins="one_by_one"`` the users log in one after another first, so that every page load
of the concurrent part is a logged-in one even on a server that loses concurrent logins.

What counts (every request is answered and right, or one of these):
- ``wrong_user``: a page that names another user, or nobody.
- ``foreign_session``: a login that set no session cookie, or whose session belongs to
  another user: after the concurrent part, each user's cookie is tried alone, when no
  other request is in flight to be mixed up with.
- ``unanswered``: no complete answer within ``timeout`` (or the connection failed).

This is what CVE-2020-35681 did in channels 3.0.0 to 3.0.2 (compat/test_identity.py: a strict
expected failure there); the current stack must show zero of each.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from harness.accounts import Accounts
from harness.login import SESSION_COOKIE, HttpBrowser, HttpResponse, NoAnswer

__all__ = ["SHAPES", "IdentityReport", "check_identity", "page_user"]

SHAPES = ("burst", "staggered")
LOGINS = ("together", "one_by_one")
STAGGER_S = 0.02  # a staggered request starts up to this long after its turn
PAGE_USER = re.compile(r'id="chat-user">([^<]*)<')
EXAMPLES = 5  # problems described in full; the rest are counted


def page_user(html: str) -> str | None:
    """The user a room page says you are, or None for an anonymous page."""
    match = PAGE_USER.search(html)
    return match[1] if match else None


@dataclass
class IdentityReport:
    """The counts of one check; ``clean`` when every request was answered, and right."""

    shape: str
    users: int
    max_examples: int = EXAMPLES
    requests: int = 0
    answered: int = 0
    wrong_user: int = 0
    foreign_session: int = 0
    unanswered: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def clean(self) -> bool:
        problems = (self.wrong_user, self.foreign_session, self.unanswered)
        return problems == (0, 0, 0) and self.answered == self.requests > 0

    def count(self, kind: str, example: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            if len(self.examples) < self.max_examples:
                self.examples.append(f"{kind}: {example}")

    def describe(self) -> str:
        head = (
            f"{self.shape}, {self.users} users: {self.requests} requests, {self.answered} "
            f"answered, {self.wrong_user} named the wrong user, {self.foreign_session} logins "
            f"got no session or another user's, {self.unanswered} unanswered"
        )
        return "; ".join([head, *self.examples])


class _CountedBrowser(HttpBrowser):
    """A browser whose requests count in the report (unless ``counted`` is off)."""

    def __init__(self, base_url: str, timeout: float, report: IdentityReport) -> None:
        super().__init__(base_url, timeout=timeout)
        self.report = report
        self.counted = True

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> HttpResponse:
        if not self.counted:
            return super().request(method, path, form, timeout=timeout)
        with self.report.lock:
            self.report.requests += 1
        response = super().request(method, path, form, timeout=timeout)
        with self.report.lock:
            self.report.answered += 1
        return response


def check_identity(
    base_url: str,
    accounts: Accounts,
    *,
    shape: str = "burst",
    rounds: int = 10,
    room: str = "identity",
    timeout: float = 10.0,
    login_timeout: float = 60.0,
    logins: str = "together",
    examples: int = EXAMPLES,
) -> IdentityReport:
    """Log every user of ``accounts`` in (at once, or ``one_by_one`` first), then load the
    room page ``rounds`` times each, together; see the module's docstring for what is
    counted. ``timeout`` bounds each page load; ``login_timeout`` each request of a login,
    whose POST waits for a password hash (about 0.3 s of CPU with Django 5.2), all users'
    at once on the server's threads. ``examples``: how many problems ``describe`` spells
    out."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    if logins not in LOGINS:
        raise ValueError(f"unknown logins {logins!r}: use one of {', '.join(LOGINS)}")
    users = accounts.usernames
    report = IdentityReport(shape, len(users), max_examples=examples)
    if not users:
        return report
    # Bounded: a user stuck on a request is released after its timeout, the rest after
    # the barrier's.
    barrier = threading.Barrier(len(users), timeout=3 * max(timeout, login_timeout))
    page = f"/chat/{room}/"

    def turn() -> None:
        if shape == "burst":
            # A broken barrier (someone timed out) lets everyone go on without it.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        else:
            time.sleep(random.uniform(0, STAGGER_S))  # the load's shape, not a wait

    browsers = {name: _CountedBrowser(base_url, timeout, report) for name in users}

    def log_in(name: str) -> None:
        if browsers[name].log_in(name, accounts.password, timeout=login_timeout) is None:
            report.count("foreign_session", f"{name}'s login set no session cookie")

    if logins == "one_by_one":
        for name in users:
            try:
                log_in(name)
            except NoAnswer as error:
                report.count("unanswered", f"{name}: {error}")

    def one_user(name: str) -> None:
        browser = browsers[name]

        def load_page() -> None:
            seen = page_user(browser.request("GET", page).body)
            if seen != name:
                report.count("wrong_user", f"{name}'s page named {seen or 'nobody'}")

        calls = [load_page] * rounds
        if logins == "together":
            calls.insert(0, lambda: log_in(name))
        for call in calls:
            turn()
            try:
                call()
            except NoAnswer as error:
                report.count("unanswered", f"{name}: {error}")

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        list(pool.map(one_user, users))
    # Whose session did each login get? Asked one user at a time, when no other request
    # is in flight to be mixed up with; these requests are not in the counts.
    for name, browser in browsers.items():
        if SESSION_COOKIE not in browser.cookies:
            continue  # counted at the login
        browser.counted = False
        try:
            owner = page_user(browser.request("GET", page).body)
        except NoAnswer:
            owner = "nobody (unanswered)"
        if owner != name:
            report.count("foreign_session", f"{name}'s login got the session of {owner}")
    return report
