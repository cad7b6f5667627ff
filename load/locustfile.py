"""Chat load for Locust's web UI or headless runs.

    locust -f load/locustfile.py --host ws://127.0.0.1:8000 --scenario fanout --rooms 10

Open http://localhost:8089, pick users and a spawn rate, press Start; each user joins a
room of the tutorial chat, sends ``--rate`` messages/s for ``--duration`` s, drains and
leaves. Exact counts and sub-millisecond latencies appear at /chat-load and in the log
when the users are done (Locust's own table rounds to whole milliseconds).
``python -m load run`` / ``bench`` drive this same file headless.
"""

import sys
from pathlib import Path

from locust import events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # make `load` importable

# clocksync: remote workers' clocks; webui: the web UI tab, live numbers, progress file.
from load import clocksync, webui  # noqa: F401
from load.gevent_users import ChatUser, add_arguments

__all__ = ["ChatUser"]


@events.init_command_line_parser.add_listener
def _(parser):
    add_arguments(parser)
