"""Logged-in load users: how they log in (``--login``) and whom they log in as (the
accounts file, ``--accounts``), with no Locust import.

The accounts file is JSON: ``{"password": "...", "usernames": ["alice", ...], "sessions":
{"alice": "<session key>", ...}}``. ``bench`` and ``capacity`` write one for the users they
make (harness/accounts.py); ``run`` against someone else's server takes one the user made.
Load user ``i`` logs in as ``usernames[i % len(usernames)]``: with fewer names than users,
some people have two tabs open, which is ordinary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# none: anonymous (the tutorial's frames); http: log in through the form first, as a
# browser does; sessions: connect with a session the harness wrote in bulk.
LOGINS = ("none", "http", "sessions")
# Logging in costs the server one password hash: about 0.3 s of CPU with Django 5.2 on the
# machines of results/, one at a time on one process. A run whose users log in over HTTP
# gives them this long each before anyone sends (Plan.connect_s), so that the measured
# window starts with everyone in.
HTTP_LOGIN_S = 0.4
# What a Django username may hold (UnicodeUsernameValidator allows more letters; a load
# message carries the name, so it keeps to these, which JSON never escapes).
USERNAME = re.compile(r"[A-Za-z0-9@.+_-]{1,150}")


@dataclass(frozen=True)
class LoadAccounts:
    """The users a load run logs in as."""

    usernames: tuple[str, ...]
    password: str = ""
    sessions: dict[str, str] = field(default_factory=dict)

    def username_of(self, user_index: int) -> str:
        return self.usernames[user_index % len(self.usernames)]


def read_accounts(path: str | Path, login: str) -> LoadAccounts:
    """The accounts file at ``path`` for ``--login login``; ValueError with one line if it
    is missing, unreadable, or lacks what the login needs."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"--accounts {path}: cannot read it ({error.strerror})") from None
    except ValueError as error:
        raise ValueError(f"--accounts {path}: not JSON ({error})") from None
    usernames = data.get("usernames") if isinstance(data, dict) else None
    if not isinstance(usernames, list) or not usernames:
        raise ValueError(
            f'--accounts {path}: give {{"usernames": [...], "password": "..."}} '
            "with at least one username"
        )
    bad = [name for name in usernames if not isinstance(name, str) or not USERNAME.fullmatch(name)]
    if bad:
        raise ValueError(
            f"--accounts {path}: {bad[0]!r} is not a username the load can carry: use ASCII "
            "letters, digits and @.+-_"
        )
    password = data.get("password", "")
    sessions = data.get("sessions") or {}
    if login == "http" and (not isinstance(password, str) or not password):
        raise ValueError(f'--accounts {path}: --login http needs the users\' "password"')
    if login == "sessions":
        missing = [name for name in usernames if not isinstance(sessions.get(name), str)]
        if missing:
            raise ValueError(
                f"--accounts {path}: --login sessions needs a session key for every "
                f"username; {missing[0]!r} has none"
            )
    return LoadAccounts(tuple(usernames), password, dict(sessions))
