"""Logging in to the chat over HTTP as a browser does, with nothing but the standard library
(so a load process under gevent uses it too: its sockets are gevent's there).

    browser = HttpBrowser("http://127.0.0.1:8000")
    session_key = browser.log_in("user00000", ACCOUNT_PASSWORD)   # then browser.cookies

A browser GETs the login form (a ``csrftoken`` cookie and the form's hidden token), POSTs
the form with both, and keeps the ``sessionid`` cookie of the answer. Every request here
goes on a TCP connection of its own.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

__all__ = ["LOGIN_PATH", "SESSION_COOKIE", "HttpBrowser", "HttpResponse", "NoAnswer"]

LOGIN_PATH = "/accounts/login/"
SESSION_COOKIE = "sessionid"  # Django's SESSION_COOKIE_NAME, which the app keeps
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class NoAnswer(Exception):
    """No complete answer (a timeout, a refused or broken connection)."""


@dataclass
class HttpResponse:
    status: int
    cookies: dict[str, str]
    body: str


class HttpBrowser:
    """One user's cookie jar (as a browser profile has), for any number of requests."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.cookies: dict[str, str] = {}

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> HttpResponse:
        """One request with this browser's cookies, within ``timeout`` (default: the
        browser's); NoAnswer if no answer came back whole."""
        headers = {"Connection": "close"}
        if self.cookies:
            headers["Cookie"] = self.cookie_header()
        body = None
        if form is not None:
            body = urlencode(form)
            headers |= {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin}
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout or self.timeout
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as error:
            raise NoAnswer(f"{method} {path}: {type(error).__name__}: {error}") from None
        finally:
            connection.close()
        cookies: dict[str, str] = {}
        for header in answer.headers.get_all("Set-Cookie") or []:
            cookies |= {name: morsel.value for name, morsel in SimpleCookie(header).items()}
        return HttpResponse(answer.status, cookies, text)

    def log_in(self, username: str, password: str, *, timeout: float | None = None) -> str | None:
        """Log in through the form; the session key the answer set (None: refused).
        ``timeout`` bounds each of its two requests (the POST waits for a password hash,
        which queues behind other logins' on a busy server)."""
        form_page = self.request("GET", LOGIN_PATH, timeout=timeout)
        self.cookies |= form_page.cookies
        token = CSRF_INPUT.search(form_page.body)
        form = {
            "csrfmiddlewaretoken": token[1] if token else "",
            "username": username,
            "password": password,
        }
        answer = self.request("POST", LOGIN_PATH, form, timeout=timeout)
        self.cookies |= answer.cookies
        return answer.cookies.get(SESSION_COOKIE)
