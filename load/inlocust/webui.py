"""Live numbers on the Locust side: every load process ships a snapshot each second, the
master (or the only process) combines them (load/core/livestats.py) and shows them

* in a "Chat load" tab of Locust's web UI, added the way Locust documents extending it
  (``extended_tabs``/``extended_tables`` template arguments, rows in the
  ``extended_stats`` of ``/stats/requests``), with the exact result once the run is done;
* at ``/chat-load``: the same numbers as a styled page, refreshed every two seconds;
* in ``--progress-file``: one JSON line a second, which ``python -m load`` prints as the
  terminal progress line.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from flask import request
from locust.runners import MasterRunner, WorkerRunner

from load.core.clock import Clock
from load.core.livestats import RECENT_S, LiveView, Snapshot, tab_rows
from load.core.plan import SECOND_NS
from load.core.stats import Window, summarize
from load.inlocust.users import PROCESS, LoadProcess
from load.reporting import report

LIVE_MESSAGE = "chatload_live"
TAB_KEY = "chat-load"
# The loops below end with the run; this bounds them if it never ends.
MAX_TICKS = 24 * 3600
# Each process snapshots just after every whole second of the run's timeline, so that a
# snapshot holds that second complete; the master publishes a little later, once the
# workers' snapshots have crossed the network. (A snapshot still late then only makes the
# shown second an older one: livestats.LiveView.view.)
SHIP_AFTER_S = 0.05
PUBLISH_AFTER_S = 0.25


class Live:
    """The master's (or local runner's) combined view of the current test."""

    def __init__(self) -> None:
        self.view: LiveView | None = None
        self.latest: dict[str, Any] | None = None


LIVE = Live()


def add_arguments(parser: Any) -> None:
    """The web UI's own option (the locustfile registers this and the listeners below)."""
    parser.add_argument(
        "--progress-file",
        default="",
        include_in_web_ui=False,
        help="the master appends the live numbers here as one JSON line a second",
    )


class Shipper:
    """One load process's side: what changed since the last snapshot."""

    def __init__(self, process: LoadProcess) -> None:
        self.process = process
        self.tally = process.tally  # a new test replaces it: then this shipper stops
        self.name = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.sends_sent = 0
        self.memberships_sent = 0

    def snapshot(self) -> Snapshot:
        tally = self.process.tally
        assert tally is not None  # _ship checked it is still this shipper's (a test's) tally
        # The fast receive path files deliveries in bulk once a second (Tally.fold); file
        # them now, or the live numbers would lag a second behind and read low.
        # The users' clock: on a remote worker, the master's (load/inlocust/clocksync.py).
        at_ns = self.process.clock.time_ns()
        tally.fold()
        sends = tally.sends[self.sends_sent :]
        memberships = tally.memberships[self.memberships_sent :]
        self.sends_sent += len(sends)
        self.memberships_sent += len(memberships)
        timeline = tally.timeline
        current = self.process.window.second(at_ns)
        return Snapshot(
            process=self.name,
            at_ns=at_ns,
            sends=list(sends),
            memberships=list(memberships),
            open_sockets=[(ledger.room, ledger.join_ns) for ledger in self.process.live.values()],
            arrived={second: h.count for second, h in timeline.latency.items()},
            received=dict(timeline.counts["received"]),
            errors=dict(tally.errors),
            recent_latency={
                second: h.to_dict()
                for second, h in timeline.latency.items()
                if current - RECENT_S - 1 <= second <= current
            },
            in_doubt=dict(timeline.counts["in_doubt"]),
        )


def on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(LIVE_MESSAGE, _on_live)
    if environment.web_ui and not isinstance(runner, WorkerRunner):
        _extend_web_ui(environment)


def _on_live(environment: Any, msg: Any, **_kwargs: Any) -> None:
    if LIVE.view is not None:
        LIVE.view.add(Snapshot.from_dict(msg.data))


def on_test_start(environment: Any, **_kwargs: Any) -> None:
    # In a greenlet of its own, which runs once every test_start listener has: the users'
    # module has set the plan, window and clock by then.
    gevent.spawn(_start_live, environment)


def _start_live(environment: Any) -> None:
    runner = environment.runner
    plan = PROCESS.plan
    if plan is None:
        return
    if not isinstance(runner, WorkerRunner):
        LIVE.view = LiveView(
            window=PROCESS.window,
            drain_s=plan.drain_s,
            test_start_ns=environment.parsed_options.chatload_start_ns,
            total_s=plan.total_s,
        )
        LIVE.latest = None
        gevent.spawn(_publish, environment, LIVE.view, PROCESS.clock)
    if not isinstance(runner, MasterRunner):
        gevent.spawn(_ship, environment, Shipper(PROCESS))


def _ship(environment: Any, shipper: Shipper) -> None:
    """Every second until this process has reported its result."""
    process = shipper.process
    local = not isinstance(environment.runner, WorkerRunner)
    for _ in range(MAX_TICKS):
        _sleep_past_second(process.window, process.clock.time_ns, SHIP_AFTER_S)
        if process.tally is not shipper.tally:
            return
        snapshot = shipper.snapshot()
        if local:
            if LIVE.view is not None:
                LIVE.view.add(snapshot)
        else:
            environment.runner.send_message(LIVE_MESSAGE, snapshot.to_dict())
        if process.reported:
            return


def _publish(environment: Any, view: LiveView, clock: Clock) -> None:
    """Every second: the combined numbers, for the web UI and the progress file."""
    options = environment.parsed_options
    path = Path(options.progress_file) if options and options.progress_file else None
    for _ in range(1, MAX_TICKS):
        _sleep_past_second(view.window, clock.time_ns, PUBLISH_AFTER_S)
        if LIVE.view is not view:
            return
        LIVE.latest = view.view(clock.time_ns())
        if path is not None:
            with path.open("a") as progress:
                progress.write(json.dumps(LIVE.latest) + "\n")
        if _finished() or LIVE.latest["elapsed_s"] > view.total_s + 30:
            return


def _sleep_past_second(window: Window, clock: Callable[[], int], after_s: float) -> None:
    """Until ``after_s`` past the next whole second of the run's timeline (a fixed grid,
    so that a slow second does not shift the later ones)."""
    now_ns = clock()
    next_second_ns = window.start_ns + (window.second(now_ns) + 1) * SECOND_NS
    gevent.sleep(max(0.0, (next_second_ns - now_ns) / 1e9 + after_s))


def _finished() -> bool:
    return PROCESS.merged is not None and PROCESS.results_received >= PROCESS.results_expected


def _result() -> dict[str, Any] | None:
    if not _finished():
        return None
    assert PROCESS.merged is not None  # _finished() checked it
    return summarize(PROCESS.merged)


# ---------------------------------------------------------------- the web UI


def _extend_web_ui(environment: Any) -> None:
    web_ui = environment.web_ui
    web_ui.template_args["extended_tabs"] = [{"title": "Chat load", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "measure", "title": "Measure"},
                {"key": "value", "title": "Value"},
                {"key": "detail", "title": "How it is counted"},
            ],
        }
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "/chat-load", "title": "Chat load page (live numbers and the exact result)"}
    ]

    @web_ui.app.after_request
    def _add_chat_load_rows(response: Any) -> Any:
        if request.path != "/stats/requests" or not response.is_json:
            return response
        payload = response.get_json()
        payload["extended_stats"] = [{"key": TAB_KEY, "data": tab_rows(LIVE.latest, _result())}]
        response.set_data(json.dumps(payload))
        return response

    @web_ui.app.route("/chat-load")
    def _chat_load_page() -> Any:
        return report.live_page(LIVE.latest, _result(), rows=tab_rows(LIVE.latest, None))

    @web_ui.app.route("/chat-load/live.json")
    def _chat_load_json() -> Any:
        return {"live": LIVE.latest, "result": _result()}
