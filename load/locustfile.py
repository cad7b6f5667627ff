"""Chat load for Locust's web UI or headless runs.

    locust -f load/locustfile.py --host ws://127.0.0.1:8000 --scenario fanout --rooms 10

Open http://localhost:8089, pick users and a spawn rate, press Start; each user joins a
room of the tutorial chat, sends ``--rate`` messages/s for ``--duration`` s, drains and
leaves. Exact counts and sub-millisecond latencies appear at /chat-load and in the log
when the users are done (Locust's own table rounds to whole milliseconds).
``python -m load run`` / ``bench`` drive this same file headless.

Every Locust listener of the harness is registered here, in the order it runs; the
modules only define them.
"""

import sys
from functools import partial
from pathlib import Path

from locust import events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # make `load` importable

from load.core.clock import Clock
from load.inlocust import clocksync, users, webui
from load.inlocust.users import ChatUser

__all__ = ["ChatUser"]

# This process's one clock. On a remote worker the clock sync sets it to the master's at
# each test start; the users, their sockets' receipt stamps, the slow readers and the live
# view all read it.
CLOCK = Clock()

events.init_command_line_parser.add_listener(users.add_arguments)
events.init_command_line_parser.add_listener(webui.add_arguments)

# Message handlers: the clock exchanges, the per-process results, the live snapshots.
events.init.add_listener(clocksync.on_init)
events.init.add_listener(users._on_init)
events.init.add_listener(webui.on_init)

# The clock first: the master times the remote workers and each worker sets its clock
# before the users' module computes the plan's window and starts its greenlets; the live
# view starts last (in a greenlet of its own, once the plan is set).
events.test_start.add_listener(
    partial(clocksync.on_test_start, process_clock=CLOCK, schedule=users.PROCESS)
)
events.test_start.add_listener(partial(users._on_test_start, process_clock=CLOCK))
events.test_start.add_listener(webui.on_test_start)

events.test_stop.add_listener(users._on_test_stop)
