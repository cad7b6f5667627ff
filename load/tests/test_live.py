"""The live numbers (combined from per-process snapshots) and the terminal progress line:
synthetic snapshots, no network, no Locust."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from load.commands.progress import ProgressPrinter
from load.core.livestats import LiveView, Snapshot, progress_line
from load.core.stats import LogHistogram, Window

SECOND = 1_000_000_000
WINDOW = Window(start_ns=100 * SECOND, measure_from_ns=100 * SECOND, until_ns=110 * SECOND)


def histogram(*values_ms: float) -> dict:
    h = LogHistogram()
    for value in values_ms:
        h.add(value * 1000)
    return h.to_dict()


def snapshot(process: str, **fields) -> Snapshot:
    base: dict[str, Any] = {
        "at_ns": 200 * SECOND,  # taken after everything these tests ask about
        "sends": [],
        "memberships": [],
        "open_sockets": [],
        "arrived": {},
        "received": {},
        "errors": {},
        "recent_latency": {},
    }
    base.update(fields)
    return Snapshot(process=process, **base)


def two_processes() -> LiveView:
    """Room r: one socket in each process, both open since 99 s. Process a sends one
    message at 100.2 s and one at 101.2 s; the second never reaches process b's socket."""
    view = LiveView(window=WINDOW, drain_s=2.0, test_start_ns=99 * SECOND, total_s=13.0)
    view.add(
        snapshot(
            "a",
            sends=[("r", 100 * SECOND + 200_000_000), ("r", 101 * SECOND + 200_000_000)],
            open_sockets=[("r", 99 * SECOND)],
            arrived={0: 1, 1: 1},
            received={0: 1, 1: 1},
            recent_latency={0: histogram(3.0), 1: histogram(5.0)},
        )
    )
    view.add(
        snapshot(
            "b",
            open_sockets=[("r", 99 * SECOND)],
            arrived={0: 1},
            received={0: 1},
            errors={"send_failed": 1},
            recent_latency={0: histogram(4.0)},
        )
    )
    return view


def test_lost_counts_only_seconds_whose_drain_has_passed() -> None:
    view = two_processes()
    # At 103.5 s the second 0 (100-101 s) is settled (drain 2 s), second 1 is not yet.
    early = view.view(103 * SECOND + 500_000_000)
    assert early["lost_so_far"] == 0
    late = view.view(104 * SECOND + 500_000_000)
    assert late["lost_so_far"] == 1  # expected 2 at second 1, arrived 1
    # A later snapshot of the same process replaces its cumulative counts, and its new
    # sends are appended: nothing counts twice.
    view.add(snapshot("a", open_sockets=[("r", 99 * SECOND)], arrived={0: 1, 1: 1}))
    assert view.view(105 * SECOND)["lost_so_far"] == 1


def test_rates_percentiles_errors_and_sockets_add_up_across_processes() -> None:
    numbers = two_processes().view(102 * SECOND + 100_000_000)
    assert numbers["delivered_per_s"] == 1  # second 1 received one first copy
    assert numbers["delivered"] == 3
    assert numbers["connected"] == 2
    assert numbers["errors_by_kind"] == {"send_failed": 1}
    assert numbers["latency_samples"] == 3
    assert 3.9 <= numbers["p50_ms"] <= 4.1
    assert 4.9 <= numbers["p99_ms"] <= 5.1
    assert numbers["elapsed_s"] == 3.1


def test_a_snapshot_survives_the_message_channel() -> None:
    one = snapshot("a", sends=[("r", 5)], arrived={0: 2}, recent_latency={0: histogram(1.0)})
    assert Snapshot.from_dict(json.loads(json.dumps(one.to_dict()))) == one


def test_progress_lines_have_no_control_characters_when_piped(tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    numbers = two_processes().view(104 * SECOND + 500_000_000)
    progress.write_text(json.dumps(numbers) + "\n" + json.dumps(numbers) + "\n{partial")
    piped = io.StringIO()
    printer = ProgressPrinter(progress, piped, label="inmemory-fanout")
    printer.poll()
    printer.close()
    lines = piped.getvalue().splitlines()
    assert len(lines) == 2  # the unfinished last line waits for its newline
    assert lines[0] == progress_line(numbers, "inmemory-fanout")
    assert "lost so far 1" in lines[0] and "p99 5.0 ms" in lines[0] and "6/13 s" in lines[0]
    assert all(ch.isprintable() for ch in piped.getvalue().replace("\n", ""))


def test_on_a_terminal_each_line_replaces_the_last(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    progress = tmp_path / "progress.jsonl"
    numbers = two_processes().view(104 * SECOND)
    progress.write_text(json.dumps(numbers) + "\n")
    terminal = Terminal()
    printer = ProgressPrinter(progress, terminal)
    printer.poll()
    printer.close()
    assert terminal.getvalue() == "\r" + progress_line(numbers) + "\x1b[K\n"


def test_the_web_ui_tab_shows_live_rows_then_the_exact_result() -> None:
    from load.core.livestats import tab_rows

    numbers = two_processes().view(104 * SECOND + 500_000_000)
    live = {row["measure"]: row["value"] for row in tab_rows(numbers, None)}
    assert live["lost so far"] == "1"
    assert live["connected sockets"] == "2"
    assert live["errors"] == "1"
    assert "result: lost" not in live
    result = {
        "sent": 2, "expected": 4, "delivered": 3, "lost": 1, "duplicated": 0, "leaked": 0,
        "errors": 1, "latency_ms": {"p50": 4.0, "p90": 5.0, "p99": 5.0, "max": 5.0},
    }  # fmt: skip
    done = {row["measure"]: row["value"] for row in tab_rows(numbers, result)}
    assert done["result: lost"] == "1"
    assert done["result: latency"] == "4.00 ms / 5.00 ms / 5.00 ms / 5.00 ms"
    assert tab_rows(None, None)[0]["value"] == "waiting for a test to start"


def test_the_chat_load_page_is_readable_html_not_a_dict_dump() -> None:
    from load.reporting.report import live_page

    numbers = two_processes().view(104 * SECOND + 500_000_000)
    page = live_page(numbers, None)
    assert "<style>" in page and 'class="card bad"' in page  # the loss is highlighted
    assert "lost so far" in page and "send_failed" in page
    assert "{'" not in page  # no Python dict anywhere
    assert "appears when every user has finished" in page


def test_delivered_per_s_counts_the_last_second_every_snapshot_holds_whole() -> None:
    """A snapshot taken 0.4 s into second 2 holds 0.4 of that second's deliveries: the
    live rate is second 1's, complete, not the part of second 2 (which read 0.6 of the
    final rate all through a steady run in the web UI)."""
    view = LiveView(window=WINDOW, drain_s=2.0, test_start_ns=99 * SECOND, total_s=13.0)
    view.add(snapshot("a", at_ns=102 * SECOND + 400_000_000, received={1: 160, 2: 64}))
    early = view.view(103 * SECOND + 100_000_000)
    assert (early["delivered_second"], early["delivered_per_s"]) == (1, 160)
    # Two processes: the one that reported least recently decides which second is whole.
    view.add(snapshot("a", at_ns=103 * SECOND + 50_000_000, received={1: 160, 2: 150}))
    view.add(snapshot("b", at_ns=102 * SECOND + 900_000_000, received={1: 40, 2: 35}))
    both = view.view(103 * SECOND + 250_000_000)
    assert (both["delivered_second"], both["delivered_per_s"]) == (1, 200)
    view.add(snapshot("b", at_ns=103 * SECOND + 60_000_000, received={1: 40, 2: 40}))
    later = view.view(103 * SECOND + 250_000_000)
    assert (later["delivered_second"], later["delivered_per_s"]) == (2, 190)


def test_lost_waits_for_snapshots_taken_after_the_drain() -> None:
    view = two_processes()
    for process in ("a", "b"):  # both last reported before second 1's drain ended (104 s)
        view.latest[process] = replace(view.latest[process], at_ns=103 * SECOND + 900_000_000)
    assert view.view(104 * SECOND + 500_000_000)["lost_so_far"] == 0
    view.add(replace(view.latest["a"], at_ns=104 * SECOND + 100_000_000, sends=[]))
    view.add(replace(view.latest["b"], at_ns=104 * SECOND + 100_000_000, sends=[]))
    assert view.view(104 * SECOND + 500_000_000)["lost_so_far"] == 1


def test_unconfirmed_so_far_counts_the_window_of_doubt_of_closed_sockets() -> None:
    """Room r: process b's socket was closed by the server; its membership ended at
    101.3 s, firm until 101.2 s. Of a's messages at 101.1 s (firm) and 101.25 s (in doubt)
    b got neither: one lost, one unconfirmed; a got both."""
    view = LiveView(window=WINDOW, drain_s=2.0, test_start_ns=99 * SECOND, total_s=13.0)
    sends = [("r", 101 * SECOND + 100_000_000), ("r", 101 * SECOND + 250_000_000)]
    view.add(snapshot("a", sends=sends, open_sockets=[("r", 99 * SECOND)], arrived={1: 2}))
    closed = ("r", 99 * SECOND, 101 * SECOND + 200_000_000, 101 * SECOND + 300_000_000)
    view.add(snapshot("b", memberships=[closed]))
    numbers = view.view(104 * SECOND + 500_000_000)
    assert (numbers["lost_so_far"], numbers["unconfirmed_so_far"]) == (1, 1)
    assert "lost so far 1 (+1 unconfirmed)" in progress_line(numbers)
    # Deliveries in doubt that did arrive are neither.
    view = LiveView(window=WINDOW, drain_s=2.0, test_start_ns=99 * SECOND, total_s=13.0)
    view.add(snapshot("a", sends=sends, open_sockets=[("r", 99 * SECOND)], arrived={1: 2}))
    view.add(snapshot("b", memberships=[closed], arrived={1: 1}, in_doubt={1: 1}))
    numbers = view.view(104 * SECOND + 500_000_000)
    assert (numbers["lost_so_far"], numbers["unconfirmed_so_far"]) == (1, 0)
    assert "unconfirmed" not in progress_line(numbers)
