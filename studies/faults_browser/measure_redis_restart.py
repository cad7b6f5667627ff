"""How long after Redis comes back until a message typed in one window reaches another.

    python -m studies.faults_browser.measure_redis_restart --runs 3 --actions wait,reload

For each Redis layer and each action, ``--runs`` times: a redis-server and a Daphne of
their own, two windows of headless Chromium in a room, a message that reaches both (the
positive control), then Redis stopped for ``--down`` seconds and started again on its
port. From that moment (t = 0) the sending window "types" a new message every 0.25 s
(the page's own Send, as a person pressing Enter again and again), and the receiving
window notes, in the page, the wall-clock time the first one shows in its log. The
action is what the person does at t = 0: ``wait`` (nothing) or ``reload`` (both
windows, at once). A run that sees nothing within ``--limit`` seconds says so.

The page is the one this checkout serves: for the tutorial's page, run this file from a
checkout of a commit before the reconnecting page (studies/faults_browser/README.md says how).
Not a test: Redis stays away for the fault's length (``BackendServer.restart``), and its
output is the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.wait import WebDriverWait

from e2e.browser import Browser, HeadlessChromium, WindowPool, chromium_paths
from harness import REDIS_LAYERS, Backend, RedisServer
from harness.live import LiveServers

PROBE_INTERVAL_MS = 250

# Run in the sending window: press Send with a new message every PROBE_INTERVAL_MS.
START_PROBES = """
let probe = 0;
window.probes = setInterval(() => {
    probe += 1;
    document.querySelector('#chat-message-input').value = 'probe ' + probe;
    document.querySelector('#chat-message-submit').click();
}, arguments[0]);
"""
# Run in the receiving window: note when the first probe shows in the log.
WATCH_FOR_PROBE = """
window.firstProbeAt = null;
window.probeWatch = setInterval(() => {
    if (document.querySelector('#chat-log').value.includes('probe ')) {
        window.firstProbeAt = Date.now();
        clearInterval(window.probeWatch);
    }
}, 5);
"""


def one_run(
    layer: str, action: str, *, browser: Browser, servers: LiveServers, down: float, limit: float
) -> float | None:
    """Seconds from Redis being back until the first probe arrived; None past ``limit``."""
    with RedisServer.start() as redis:
        server = servers.start(
            layer, "async", "daphne", backend=Backend(layer, {"REDIS_URL": redis.url}, redis)
        )
        try:
            room = f"measure-{uuid.uuid4().hex[:8]}"
            sender, receiver = browser.open_room(server, room), browser.open_room(server, room)
            sender.type_message("before the restart")
            sender.wait_for_log(["before the restart"])
            receiver.wait_for_log(["before the restart"])

            redis.restart(down_s=down)
            back = time.time()
            if action == "reload":
                sender.reload()
                receiver.reload()
            receiver.focus()
            browser.driver.execute_script(WATCH_FOR_PROBE)
            sender.focus()
            browser.driver.execute_script(START_PROBES, PROBE_INTERVAL_MS)
            receiver.focus()
            try:
                arrived_ms = WebDriverWait(
                    browser.driver, back + limit - time.time(), poll_frequency=0.05
                ).until(lambda driver: driver.execute_script("return window.firstProbeAt;"))
            except TimeoutException:
                return None
            return arrived_ms / 1000 - back
        finally:
            browser.close_windows()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.faults_browser.measure_redis_restart")
    parser.add_argument("--layers", default=",".join(REDIS_LAYERS))
    parser.add_argument("--actions", default="wait,reload", help="wait, reload or both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--down", type=float, default=2.0, help="seconds Redis stays down")
    parser.add_argument("--limit", type=float, default=15.0, help="give up after this long")
    args = parser.parse_args(argv)

    factory = HeadlessChromium(*chromium_paths())
    driver = factory()
    servers = LiveServers(lambda layer: None, Path(tempfile.mkdtemp(prefix="measure-")))
    results = []
    try:
        pool = WindowPool(driver)
        for layer in args.layers.split(","):
            for action in args.actions.split(","):
                seconds = [
                    one_run(
                        layer,
                        action,
                        browser=Browser(pool),
                        servers=servers,
                        down=args.down,
                        limit=args.limit,
                    )
                    for _ in range(args.runs)
                ]
                arrived = [s for s in seconds if s is not None]
                median = statistics.median(arrived) if len(arrived) == len(seconds) else None
                result = {"layer": layer, "action": action, "seconds": seconds, "median": median}
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        driver.quit()
        factory.remove_profiles()
    return 0


if __name__ == "__main__":
    sys.exit(main())
