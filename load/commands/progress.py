"""Terminal progress of ``python -m load run|bench|capacity``: one line a second while
Locust runs (elapsed/total, delivered/s, p50/p99, lost so far, errors, sockets).

The Locust master appends its live numbers to a progress file each second
(load/inlocust/webui.py); a thread here reads new lines and prints them. On a terminal each line
replaces the last one (carriage return); piped into a file or a CI log every line is
printed as it is, with no control characters.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from load.core.livestats import progress_line

POLL_S = 0.5
# Far more lines than any run prints (one a second); bounds the reading loop.
MAX_POLLS = 10_000_000


class ProgressPrinter:
    """Prints each new line of a progress file; ``close`` prints whatever came last."""

    def __init__(self, path: Path, stream: TextIO, label: str = "") -> None:
        self.path = path
        self.stream = stream
        self.label = label
        self.offset = 0
        self.tty = stream.isatty()
        self.printed = False

    def poll(self) -> None:
        try:
            with self.path.open() as progress:
                progress.seek(self.offset)
                text = progress.read()
        except FileNotFoundError:
            return
        complete, _, _partial = text.rpartition("\n")
        if not complete:
            return
        self.offset += len(complete) + 1
        for raw in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                self.show(json.loads(raw))

    def show(self, view: dict[str, Any]) -> None:
        line = progress_line(view, self.label)
        if self.tty:
            # Overwrite the previous line and clear what is left of it.
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.printed = True

    def close(self) -> None:
        self.poll()
        if self.tty and self.printed:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def printing(path: Path, stream: TextIO, label: str = "") -> Iterator[ProgressPrinter]:
    printer = ProgressPrinter(path, stream, label)
    stop = threading.Event()

    def follow() -> None:
        for _ in range(MAX_POLLS):
            if stop.wait(POLL_S):
                return
            printer.poll()

    thread = threading.Thread(target=follow, name="progress", daemon=True)
    thread.start()
    try:
        yield printer
    finally:
        stop.set()
        thread.join(timeout=5)
        printer.close()


def watcher(
    label: str = "", stream: TextIO | None = None
) -> Callable[[Path], contextlib.AbstractContextManager[Any]]:
    """What ``run_locust(progress=...)`` takes: prints ``label`` and the numbers to
    ``stream`` (default stdout)."""

    def watch(path: Path) -> contextlib.AbstractContextManager[Any]:
        return printing(path, stream or sys.stdout, label)

    return watch
