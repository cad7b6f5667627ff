"""Logged-in users for the chats the harness starts: a throw-away SQLite database (the
app's CHAT_DATABASE) with ordinary ``django.contrib.auth`` users, made in bulk.

    accounts = make_accounts(tmp_path, users=100, sessions=True)
    with ChatServer.start(env=accounts.env) as chat:      # every server of a stack shares it
        ...                                               # log in as accounts.usernames[0]

Logging in costs the server one password hash (PBKDF2, Django's default: about 0.3 s of
CPU each with Django 5.2 on the machines of results/), so a load run whose users all log in
over HTTP spends minutes of server CPU before its first message. ``sessions=True`` writes
one session per user straight into the database as well, the way Django's login() would
have (the user's id, backend and session hash), so that thousands of logged-in sockets
can connect at once with their cookies. The users' password is hashed once and shared:
they are throw-away users on a throw-away database.

The Django part runs in a subprocess from app/ (``python -m harness.accounts``), with the
app's own settings, so the calling process never configures Django.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import APP_DIR, ROOT
from harness.processes import ServiceError

__all__ = ["ACCOUNT_PASSWORD", "Accounts", "make_accounts", "username"]

ACCOUNT_PASSWORD = "chat-harness-password"  # throw-away users on loopback
DATABASE_FILE = "chat-users.sqlite3"
MAKE_TIMEOUT_S = 300.0


def username(index: int) -> str:
    """The harness's user number ``index``: letters and digits only, so a load message can
    carry it (load/core/codec.py)."""
    return f"user{index:05d}"


@dataclass(frozen=True)
class Accounts:
    """Users in a migrated database: their names, their password, and (if made with
    ``sessions=True``) each one's session key, the value of its ``sessionid`` cookie."""

    database: Path
    usernames: tuple[str, ...]
    password: str = ACCOUNT_PASSWORD
    sessions: Mapping[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a chat server needs to use these users (ChatServer.start(env=...))."""
        return {"CHAT_DATABASE": str(self.database)}

    def to_json(self) -> dict[str, object]:
        """The accounts file that ``--accounts`` reads (load/core/plan.py)."""
        return {
            "password": self.password,
            "usernames": list(self.usernames),
            "sessions": dict(self.sessions),
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json()))
        return path


def make_accounts(
    directory: Path,
    *,
    users: int,
    sessions: bool = False,
    timeout: float = MAKE_TIMEOUT_S,
    python: str | None = None,
) -> Accounts:
    """Migrate a new database in ``directory`` and make ``users`` users in it (and a
    session each, with ``sessions``).

    ``python`` is the interpreter that does it (default: this one). A server of another
    virtualenv (a compat cell with an older Django) gets a database migrated and passwords
    hashed by its own Django that way; that interpreter needs Django and psutil."""
    if users < 0:
        raise ServiceError(f"users must be 0 or more, got {users}")
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / DATABASE_FILE
    if database.exists():
        raise ServiceError(f"{database} exists already: give make_accounts a folder of its own")
    command = [python or sys.executable, "-m", "harness.accounts", str(database), str(users)]
    if sessions:
        command.append("--sessions")
    env = {
        **os.environ,
        "CHAT_DATABASE": str(database),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        # The app's own layer settings are not needed to make users: never reach a backend.
        "CHANNEL_LAYER": "inmemory",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(APP_DIR), str(ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    try:
        made = subprocess.run(
            command, cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(f"making {users} users took more than {timeout:.0f} s") from None
    if made.returncode != 0:
        last = (made.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServiceError(f"making {users} users in {database} failed: {last}")
    keys = json.loads(made.stdout) if sessions else {}
    return Accounts(database, tuple(username(i) for i in range(users)), sessions=keys)


def _make_in_django(users: int, *, sessions: bool) -> dict[str, str]:
    """Run inside the app (DJANGO_SETTINGS_MODULE set): migrate, make the users, and
    return {username: session key} when ``sessions``."""
    from datetime import timedelta

    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    password = make_password(ACCOUNT_PASSWORD)  # hashed once: see the module's docstring
    User.objects.bulk_create(
        [User(username=username(i), password=password) for i in range(users)], batch_size=500
    )
    if not sessions:
        return {}
    backend = "django.contrib.auth.backends.ModelBackend"
    expires = timezone.now() + timedelta(days=1)
    keys: dict[str, str] = {}
    rows = []
    for user in User.objects.filter(username__in=[username(i) for i in range(users)]):
        store = SessionStore()
        # A private method (a key no session has yet) that django-stubs, which
        # channels-lite's channels[types] installs, does not declare.
        key = store._get_new_session_key()  # type: ignore[attr-defined]
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: backend,
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
        keys[user.username] = key
    Session.objects.bulk_create(rows, batch_size=500)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.accounts", description=__doc__)
    parser.add_argument("database", help="the CHAT_DATABASE file (also read from the variable)")
    parser.add_argument("users", type=int)
    parser.add_argument("--sessions", action="store_true")
    args = parser.parse_args(argv)
    os.environ["CHAT_DATABASE"] = args.database
    print(json.dumps(_make_in_django(args.users, sessions=args.sessions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
